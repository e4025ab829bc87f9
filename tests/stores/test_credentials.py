"""Credentials in store URLs: honoured where the store has users (pgvector, redis; milvus's
token), refused with a clear error everywhere else, and never echoed: not on stderr, not in
the receipt, the rejects file or the checkpoint. Bad ports are UsageErrors for every scheme.

The password tests start their own PostgreSQL (scram for one role) and Redis (requirepass),
so the shared servers other tests use keep their settings."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vexchange.cli import main
from vexchange.connectors import _registry
from vexchange.connectors._store import translated
from vexchange.errors import DecodeError, PermanentError, UsageError, redact
from vexchange.spec import StoreSpec
from vexchange.engine import run as engine_run
from vexchange.testing.conformance import FailingWriter, write_vmig
from vexchange.testing.records import sample_records

SCHEMES = sorted(_registry._BUILTINS)
FILE_SCHEMES = {name for name, entry in _registry._BUILTINS.items() if entry.takes_path}
HONOURED = {name for name, entry in _registry._BUILTINS.items() if entry.userinfo}
"""Stores whose connector takes a user (or token) from the URL: the builtin rows say which."""


def new_secret() -> str:
    """A secret no earlier test registered, so a masked one proves this test's redaction."""
    return f"Sekr3t{uuid.uuid4().hex[:12]}"


def vex(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out + err


def assert_nowhere(secret: str, shown: str, folder: Path) -> None:
    """The secret (as is or percent-encoded) is neither in what the CLI printed nor in any
    file the run left: receipt, rejects, checkpoint, sidecar, output."""
    encoded = secret.replace("@", "%40")
    assert secret not in shown and encoded not in shown, shown
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert secret.encode() not in data and encoded.encode() not in data, path


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return write_vmig(tmp_path / "in.vmig.jsonl", list(sample_records(6, dims=4, null_vectors=False)))


def run_args(tmp_path: Path) -> list[str]:
    return ["--receipt", str(tmp_path / "r.json"), "--rejects", str(tmp_path / "r.rejects.jsonl"),
            "--retries", "1"]


def location(scheme: str, tmp_path: Path, *, userinfo: str = "", port: str = "",
             query: str = "") -> str:
    """A location of ``scheme`` with the parts under test: a server URL, or a file one."""
    if scheme in FILE_SCHEMES:
        netloc = f"{userinfo}@" if userinfo else ""
        netloc += f"127.0.0.1:{port}" if port else ""
        return f"{scheme}://{netloc}{tmp_path}/out.{scheme}{query}"
    host = "127.0.0.1" + (f":{port}" if port else "")
    return f"{scheme}://{userinfo + '@' if userinfo else ''}{host}/coll{query}"


# --- every scheme: userinfo, secret options, SDK error texts, ports --------------------------

@pytest.mark.parametrize("scheme", sorted(set(SCHEMES) - HONOURED))
def test_a_url_password_is_refused_where_the_store_has_no_users(
        scheme: str, source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = new_secret()
    target = location(scheme, tmp_path, userinfo=f"user:{secret}")
    code, shown = vex(capsys, "migrate", str(source), target, *run_args(tmp_path))
    assert code == 2 and "vex: error:" in shown
    if scheme not in FILE_SCHEMES:
        assert "--target-secret" in shown and f"VEX_{scheme.upper()}_" in shown
    assert_nowhere(secret, shown, tmp_path)


@pytest.mark.parametrize("scheme", sorted(set(SCHEMES) - HONOURED - FILE_SCHEMES))
def test_a_lone_user_part_is_refused_and_not_echoed(
        scheme: str, source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``qdrant://KEY@host``: a store without users takes a key there by mistake."""
    secret = new_secret()
    code, shown = vex(capsys, "migrate", str(source), location(scheme, tmp_path, userinfo=secret),
                      *run_args(tmp_path))
    assert code == 2 and "--target-secret" in shown
    assert_nowhere(secret, shown, tmp_path)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_secret_option_in_the_url_is_refused_and_not_echoed(
        scheme: str, source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = new_secret()
    for option in ("api_key", "token", "password"):
        target = location(scheme, tmp_path, query=f"?{option}={secret}")
        code, shown = vex(capsys, "migrate", str(source), target, *run_args(tmp_path))
        assert code == 2 and option in shown
        assert_nowhere(secret, shown, tmp_path)


def sdk_error(scheme: str, text: str) -> PermanentError:
    """What ``translated`` makes of an SDK exception whose text is ``text``."""
    try:
        with translated(scheme, "upsert", permanent=(RuntimeError,)):
            raise RuntimeError(text)
    except PermanentError as err:
        return err
    raise AssertionError("translated let the error through")


@pytest.mark.parametrize("given", ["flag", "env"])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_an_sdk_error_quoting_the_secret_never_reaches_stderr_receipt_rejects_or_checkpoint(
        scheme: str, given: str, source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The secret is given the ordinary way (a flag or a VEX_* variable); the store's SDK then
    fails the second batch with a message that quotes it, in the forms SDKs use."""
    secret = new_secret()
    secret_args = ["--target-secret", f"api_key={secret}"] if given == "flag" else []
    if given == "env":
        monkeypatch.setenv(f"VEX_{scheme.upper()}_API_KEY", secret)
    text = (f"401 Unauthorized: key {secret} refused by https://u:{secret}@h/?api_key={secret}"
            f" {{'api-key': '{secret}'}}")
    opened = engine_run._open_writer  # the SDK fails once the run has its secrets, as in life
    monkeypatch.setattr(engine_run, "_open_writer", lambda *a, **k: FailingWriter(
        opened(*a, **k), fail_on=2, error=sdk_error(scheme, text), after_write=False))
    code, shown = vex(capsys, "migrate", str(source), str(tmp_path / "out.vmig.jsonl"),
                      "--batch-size", "2", *secret_args, *run_args(tmp_path))
    assert code == 1 and f"{scheme} upsert failed" in shown and "***" in shown
    assert (tmp_path / "r.json").exists() and (tmp_path / "r.json.checkpoint").exists()
    assert_nowhere(secret, shown, tmp_path)


@pytest.mark.parametrize("port", ["99999", "0", "65536", "abc", "-1"])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_bad_port_is_a_usage_error(scheme: str, port: str, source: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    target = location(scheme, tmp_path, port=port)
    code, shown = vex(capsys, "migrate", str(source), target, *run_args(tmp_path))
    assert code == 2 and "bad port" in shown and "1 to 65535" in shown


def test_a_raw_slash_in_a_url_password_is_neither_echoed_nor_taken_for_a_port(
        capsys: pytest.CaptureFixture[str], source: Path, tmp_path: Path) -> None:
    code, shown = vex(capsys, "migrate", str(source), "pgvector://u:pa55/w0rdXY@127.0.0.1/db",
                      *run_args(tmp_path))
    assert code == 2 and "percent-encoded" in shown and "pa55" not in shown and "w0rdXY" not in shown


# --- the spec and the redaction helper -----------------------------------------------------

def test_userinfo_becomes_the_user_and_the_password_secret() -> None:
    secret = new_secret()
    spec = StoreSpec.parse(f"pgvector://al%40ice:{secret}%2F@db.example:5433/mem?table=t")
    assert spec.user == "al@ice" and spec.secret("password") == secret + "/"
    assert secret not in spec.redacted() and secret not in repr(spec)
    assert spec.redacted() == "pgvector://al%40ice@db.example:5433/mem?table=t"
    redis_spec = StoreSpec.parse(f"redis://:{secret}@h:6379/2")
    assert redis_spec.user is None and redis_spec.secret("password") == secret
    milvus = StoreSpec.parse(f"milvus://root:{secret}@h:19530/c")
    assert milvus.secret("token") == f"root:{secret}" and secret not in milvus.redacted()


def test_a_secret_given_twice_must_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """URL and --*-secret: the same value is fine, two values are refused (neither is dropped
    silently); either beats the VEX_* variable."""
    secret = new_secret()
    url = f"pgvector://alice:{secret}@h/db"
    assert StoreSpec.parse(url, secrets={"password": secret}).secret("password") == secret
    with pytest.raises(UsageError) as caught:
        StoreSpec.parse(url, secrets={"password": "other-" + secret})
    assert secret not in str(caught.value) and "given twice" in str(caught.value)
    with pytest.raises(UsageError):
        StoreSpec.parse(url).with_secrets({"password": "other"})
    with pytest.raises(UsageError):
        StoreSpec.parse("pgvector://alice@h/db?user=bob")
    monkeypatch.setenv("VEX_PGVECTOR_PASSWORD", "from-the-environment")
    assert StoreSpec.parse(url).secret("password") == secret
    assert StoreSpec.parse("pgvector://alice@h/db").secret("password") == "from-the-environment"


def test_every_error_message_and_hint_is_redacted() -> None:
    secret = new_secret()
    StoreSpec.parse("qdrant://h:6333/c", secrets={"api_key": secret})
    err = UsageError(f"cannot reach qdrant://h/c: key {secret}", hint=f"not {secret}")
    assert secret not in str(err) and secret not in (err.hint or "")
    decode = DecodeError(f"bad {secret}", location="f.jsonl:3")
    assert secret not in str(decode) and secret not in decode.reason
    assert redact("dsn host=h password=hunter2 user=u") == "dsn host=h password=*** user=u"
    assert redact("Authorization: Bearer abc.def") == "Authorization: Bearer ***"
    assert redact("give --target-secret api_key=... instead") == "give --target-secret api_key=... instead"
    assert redact("metadata author: Ada, key: 3") == "metadata author: Ada, key: 3"


# --- real servers -------------------------------------------------------------------------

def psycopg_connect(server: Any, **kwargs: Any) -> Any:
    psycopg = pytest.importorskip("psycopg")
    return psycopg.connect(host=server.host, port=server.port, dbname="postgres", autocommit=True,
                           **{"user": "postgres", **kwargs})


@pytest.fixture
def pg_role(store_servers: Any) -> Iterator[tuple[Any, str, str]]:
    """A login role with a password on the shared server (trust auth: the password is not
    checked there, but the role is), dropped afterwards with what it owns."""
    pytest.importorskip("pgvector")
    server = store_servers["postgres"]
    role, password = f"vexcred_{uuid.uuid4().hex[:8]}", new_secret()
    with psycopg_connect(server) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        conn.execute(f"GRANT CREATE ON SCHEMA public TO {role}")
    try:
        yield server, role, password
    finally:
        with psycopg_connect(server) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def test_pgvector_connects_as_the_url_user(pg_role: tuple[Any, str, str], source: Path,
                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server, role, password = pg_role
    url = f"pgvector://{role}:{password}@{server.host}:{server.port}/postgres?table=t_{role}"
    code, shown = vex(capsys, "migrate", str(source), url, *run_args(tmp_path))
    assert code == 0, shown
    with psycopg_connect(server) as conn:
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = %s",
                             (f"t_{role}",)).fetchone()
    assert owner == (role,)
    assert f"postgresql://{role}@" in (tmp_path / "r.json").read_text()
    assert_nowhere(password, shown, tmp_path)


@pytest.fixture(scope="module")
def scram_postgres() -> Iterator[tuple[Any, str, str]]:
    """An own PostgreSQL where one role must give its password (scram-sha-256)."""
    pytest.importorskip("pgvector")
    from vexchange.testing import servers

    workdir = Path(tempfile.mkdtemp(prefix="vex-pg-auth-"))
    workdir.chmod(0o755)  # postgres runs as another user and must reach it
    server = servers.start("postgres", workdir)
    try:
        role, password = "vexauth", new_secret()
        with psycopg_connect(server) as conn:
            conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
            conn.execute(f"GRANT CREATE ON SCHEMA public TO {role}")
            hba = Path(conn.execute("SHOW hba_file").fetchone()[0])
            hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
            conn.execute("SELECT pg_reload_conf()")
        yield server, role, password
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_pgvector_takes_the_url_password(scram_postgres: tuple[Any, str, str], source: Path,
                                         tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    server, role, password = scram_postgres
    where = f"{server.host}:{server.port}/postgres?table=t_{uuid.uuid4().hex[:8]}"
    wrong = new_secret()
    code, shown = vex(capsys, "migrate", str(source), f"pgvector://{role}:{wrong}@{where}",
                      *run_args(tmp_path))
    assert code == 1 and "password authentication failed" in shown
    assert_nowhere(wrong, shown, tmp_path)
    assert_nowhere(password, shown, tmp_path)
    monkeypatch.setenv("VEX_PGVECTOR_PASSWORD", wrong)  # the URL's password beats the variable
    code, shown = vex(capsys, "migrate", str(source), f"pgvector://{role}:{password}@{where}",
                      *run_args(tmp_path))
    assert code == 0, shown
    code, shown = vex(capsys, "migrate", str(source), f"pgvector://{role}:{password}@{where}",
                      "--target-secret", f"password={wrong}", *run_args(tmp_path))
    assert code == 2 and "given twice" in shown
    monkeypatch.delenv("VEX_PGVECTOR_PASSWORD")
    code, shown = vex(capsys, "migrate", str(source), f"pgvector://{role}@{where}",
                      "--target-secret", f"password={password}", *run_args(tmp_path))
    assert code == 0, shown
    assert_nowhere(password, shown, tmp_path)
    assert_nowhere(wrong, shown, tmp_path)


@pytest.fixture
def redis_with_password(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    """An own Redis that asks for a password (CONFIG SET requirepass), and an ACL user."""
    redis = pytest.importorskip("redis")
    from vexchange.testing import servers

    server = servers.start("redis", tmp_path_factory.mktemp("redis-auth"))
    try:
        password = new_secret()
        client = redis.Redis(host=server.host, port=server.port)
        client.execute_command("ACL", "SETUSER", "alice", "on", f">{password}-alice", "~*", "&*",
                               "+@all")
        client.config_set("requirepass", password)
        client.close()
        yield server, password
    finally:
        server.stop()


def test_redis_takes_the_url_password_and_user(redis_with_password: tuple[Any, str], source: Path,
                                               tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server, password = redis_with_password
    where = f"{server.host}:{server.port}/0"
    wrong = new_secret()
    code, shown = vex(capsys, "migrate", str(source), f"redis://:{wrong}@{where}?index=a",
                      *run_args(tmp_path))
    assert code == 1 and "redis connect failed" in shown
    seen = shown
    for url in [f"redis://:{password}@{where}?index=a", f"redis://default:{password}@{where}?index=b",
                f"redis://alice:{password}-alice@{where}?index=c"]:
        code, shown = vex(capsys, "migrate", str(source), url, *run_args(tmp_path))
        assert code == 0, shown
        seen += shown
    assert f"redis://alice@{where}#c" in (tmp_path / "r.json").read_text()
    code, shown = vex(capsys, "migrate", str(source), f"redis://alice:{password}@{where}?index=d",
                      *run_args(tmp_path))
    assert code == 1 and "redis connect failed" in shown
    seen += shown
    code, shown = vex(capsys, "migrate", str(source), f"redis://:{password}@{where}?index=e",
                      "--target-secret", f"password={wrong}", *run_args(tmp_path))
    assert code == 2 and "given twice" in shown
    assert_nowhere(password, seen + shown, tmp_path)
    assert_nowhere(wrong, seen + shown, tmp_path)

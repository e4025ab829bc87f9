"""A real Letta server (PyPI ``letta`` 0.16.8) on loopback for the tests, with no LLM and no
network: tests/test_letta_server.py makes agents through its REST API, exports and imports
Agent Files with its own code, and searches its archival memory.

    python -m vexchange.testing.letta_server install [VENV]   # the venv, once (minutes)
    python -m vexchange.testing.letta_server start DIR        # prints DIR/letta.json
    python -m vexchange.testing.letta_server stop DIR

Why each piece is as it is (docs/connectors/letta.md, "Tested against a running Letta"):

* **A venv of its own** (``$VEXTEST_LETTA_VENV``, else ``~/.cache/vexchange/letta-venv``):
  ``letta`` pins ``opentelemetry-api==1.30.0`` and cannot sit beside vexchange's pins. It holds
  ``letta[server]==0.16.8`` and the PostgreSQL drivers of its ``postgres`` extra (binary
  psycopg2: the extra's source ``psycopg2`` needs a compiler and libpq headers).
* **PostgreSQL with pgvector**: Letta 0.16 talks to PostgreSQL only (its SQLite settings
  remain, but its engine is always built on the Postgres URI). The server uses a database of its
  own, created at start and dropped at stop, on the PostgreSQL of the project's test servers
  (``$VEXTEST_STORES/servers.json``) when it is running, else on one started under DIR
  (vexchange.testing.servers). The wheel ships no Alembic migrations, so the schema is made
  from Letta's own ORM models (``Base.metadata.create_all``), after ``CREATE EXTENSION vector``.
* **Embeddings** from vexchange's offline MiniLM behind an OpenAI-compatible endpoint
  (vexchange.testing.openai_embeddings), so archival passages have real sentence vectors and
  Letta's own archival search ranks them by meaning. Agents are given this endpoint in their
  ``embedding_config`` (``EMBEDDING_CONFIG`` below).
* **No LLM**: creating agents, blocks, messages (``initial_message_sequence``) and passages,
  exporting and importing need none. An agent's ``llm_config`` names an endpoint that nothing
  serves (``LLM_CONFIG``); sending a message to an agent would fail, and no test does.
* Letta's home (``~/.letta``) is DIR/home: nothing is written outside DIR.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["EMBEDDING_DIMS", "LETTA_VERSION", "LettaServer", "LettaUnavailable", "default_venv",
           "embedding_config", "install", "installed", "llm_config", "load", "start", "stop"]

LETTA_VERSION = "0.16.8"
PACKAGES = (f"letta[server]=={LETTA_VERSION}", "asyncpg", "pg8000", "pgvector", "psycopg2-binary",
            "pydantic<2.13", "sqlalchemy[asyncio]<2.1")
"""``letta[server]`` and the drivers of its ``postgres`` extra, with two caps on what came after
Letta 0.16.8: pydantic 2.13 removed a private helper the ``mcp`` version Letta resolves to
imports, and Letta was written against SQLAlchemy 2.0."""
EMBEDDER = "minilm"
EMBEDDING_MODEL = "all-MiniLM-L6-v2"
EMBEDDING_DIMS = 384
_START_SECONDS = 180.0
_STATE = "letta.json"
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
"""Processes this process started, kept so they are waited for (never left as zombies, nor
collected while running)."""


class LettaUnavailable(RuntimeError):
    """The Letta venv is missing or the server cannot start; the message says why."""


def default_venv() -> Path:
    given = os.environ.get("VEXTEST_LETTA_VENV")
    return Path(given) if given else Path.home() / ".cache" / "vexchange" / "letta-venv"


def installed(venv: Path | None = None) -> bool:
    """The venv holds the letta server this module was written for."""
    root = venv or default_venv()
    marker = root / ".installed"
    return (root / "bin" / "letta").exists() and marker.exists() \
        and marker.read_text().strip() == LETTA_VERSION


def install(venv: Path | None = None) -> Path:
    """Make the venv (once; a lock keeps parallel callers from installing twice)."""
    root = venv or default_venv()
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed(root):
            return root
        if not (root / "bin" / "python").exists():  # a half-made venv is finished, not redone
            base = getattr(sys, "_base_executable", sys.executable)
            _run([base, "-m", "venv", str(root)])
        pip = [str(root / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        _run([*pip, "--upgrade", "pip"])  # the venv's own pip trips over letta's lxml extras
        _run([*pip, *PACKAGES])
        (root / ".installed").write_text(LETTA_VERSION + "\n")
    return root


def _run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
        shown = " ".join(cmd[:1] + [c for c in cmd[1:4] if "\n" not in c])
        raise LettaUnavailable(f"{shown} ... failed ({done.returncode}):\n" + "\n".join(tail))
    return done


# ----------------------------------------------------------------------------- configs


def embedding_config(server: LettaServer) -> dict[str, Any]:
    """The ``embedding_config`` of an agent that embeds through this server's endpoint."""
    return {"embedding_endpoint_type": "openai", "embedding_endpoint": server.embedding_endpoint,
            "embedding_model": EMBEDDING_MODEL, "embedding_dim": EMBEDDING_DIMS,
            "embedding_chunk_size": 300, "handle": f"openai/{EMBEDDING_MODEL}"}


def llm_config(server: LettaServer) -> dict[str, Any]:
    """An ``llm_config`` naming an endpoint nothing serves: agents are made, never run."""
    return {"model": "gpt-4o-mini", "model_endpoint_type": "openai",
            "model_endpoint": f"http://127.0.0.1:{server.embedding_port}/no-llm/v1",
            "context_window": 32000, "handle": "openai/gpt-4o-mini"}


# ----------------------------------------------------------------------------- running


@dataclass
class LettaServer:
    """One running Letta server and what it needs; saved as DIR/letta.json."""

    workdir: str
    base_url: str
    pid: int
    port: int
    embedding_pid: int
    embedding_port: int
    database: str
    pg_host: str
    pg_port: int
    own_postgres: bool
    venv: str

    @property
    def embedding_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.embedding_port}/v1"

    @property
    def pg_uri(self) -> str:
        return f"postgresql://postgres@{self.pg_host}:{self.pg_port}/{self.database}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _postgres(workdir: Path) -> tuple[str, int, bool]:
    """(host, port, started here): the test servers' PostgreSQL, else one of our own."""
    stores = os.environ.get("VEXTEST_STORES")
    if stores and (Path(stores) / "servers.json").exists():
        found = json.loads((Path(stores) / "servers.json").read_text()).get("postgres")
        if found:
            return str(found["host"]), int(found["port"]), False
    from . import servers

    pg = workdir / "postgres-server"
    pg.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        workdir.chmod(0o755)  # postgres runs as its own user and must reach its directory
    server = servers.start("postgres", pg)
    (workdir / "postgres.json").write_text(json.dumps(asdict(server)))
    return server.host, server.port, True


_DB_SETUP = """
import sys
import pg8000.native
host, port, name, action = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
admin = pg8000.native.Connection("postgres", host=host, port=port, database="postgres")
if action == "drop":
    admin.run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    sys.exit(0)
admin.run(f'CREATE DATABASE "{name}"')
admin.close()
db = pg8000.native.Connection("postgres", host=host, port=port, database=name)
db.run("CREATE EXTENSION IF NOT EXISTS vector")
db.close()
from sqlalchemy import create_engine
import letta.orm
engine = create_engine(f"postgresql+pg8000://postgres@{host}:{port}/{name}")
letta.orm.Base.metadata.create_all(engine)
engine.dispose()
db = pg8000.native.Connection("postgres", host=host, port=port, database=name)
db.run("CREATE SEQUENCE message_seq OWNED BY messages.sequence_id")
db.run("ALTER TABLE messages ALTER COLUMN sequence_id SET DEFAULT nextval('message_seq')")
db.close()
"""
"""Run in the Letta venv: make (or drop) the server's database, its schema from Letta's ORM (with
``LETTA_PG_URI`` set, so the ORM picks its PostgreSQL column types: pgvector, not SQLite's), and
the one thing the models leave to a migration: ``messages.sequence_id`` is a ``FetchedValue``
that a sequence fills (Letta's listing orders messages by it)."""


def _server_env(workdir: Path, pg_uri: str) -> dict[str, str]:
    home = workdir / "home"
    (home / ".letta").mkdir(parents=True, exist_ok=True)
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update({"HOME": str(home), "LETTA_DIR": str(home / ".letta"), "LETTA_PG_URI": pg_uri,
                "OPENAI_API_KEY": "unused-local", "NO_PROXY": "127.0.0.1,localhost",
                "LETTA_TELEMETRY_ENABLE_DATADOG": "false", "PYTHONUNBUFFERED": "1"})
    return env


def _wait_http(url: str, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + _START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-20:] if log.exists() else []
            raise LettaUnavailable(f"{what} exited with {process.returncode}:\n" + "\n".join(tail))
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.25)
    raise LettaUnavailable(f"{what} did not answer {url} within {_START_SECONDS:.0f} s (log: {log})")


def start(workdir: Path, *, venv: Path | None = None) -> LettaServer:
    """Start the embeddings endpoint and the Letta server under ``workdir``; write letta.json.
    Everything started is stopped again if a later step fails."""
    root = venv or default_venv()
    if not installed(root):
        raise LettaUnavailable(f"no Letta {LETTA_VERSION} venv at {root}: run"
                               f" `python -m vexchange.testing.letta_server install {root}`")
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    started: dict[str, Any] = {"workdir": str(workdir), "venv": str(root)}
    (workdir / _STATE).write_text(json.dumps(started))  # stop() undoes what is written here
    try:
        port_file = workdir / "embeddings.port"
        port_file.unlink(missing_ok=True)
        elog = workdir / "embeddings.log"
        with open(elog, "wb") as out:
            embed = subprocess.Popen([sys.executable, "-m", "vexchange.testing.openai_embeddings",
                                      "--embedder", EMBEDDER, "--model-name", EMBEDDING_MODEL,
                                      "--port-file", str(port_file)], stdout=out, stderr=out,
                                     start_new_session=True)
        _CHILDREN[embed.pid] = embed
        started["embedding_pid"] = embed.pid
        (workdir / _STATE).write_text(json.dumps(started))
        deadline = time.monotonic() + _START_SECONDS
        while not port_file.exists():
            if embed.poll() is not None or time.monotonic() > deadline:
                raise LettaUnavailable("the embeddings endpoint did not start:\n"
                                       + elog.read_text(errors="replace")[-2000:])
            time.sleep(0.1)
        started["embedding_port"] = int(port_file.read_text())

        host, pg_port, own = _postgres(workdir)
        database = f"letta_{os.getpid()}_{secrets.token_hex(4)}"
        started.update(pg_host=host, pg_port=pg_port, own_postgres=own)
        python = str(root / "bin" / "python")
        env = _server_env(workdir, f"postgresql://postgres@{host}:{pg_port}/{database}")
        started["database"] = database
        (workdir / _STATE).write_text(json.dumps(started))
        _run([python, "-c", _DB_SETUP, host, str(pg_port), database, "create"], env=env)

        port = _free_port()
        log = workdir / "letta.log"
        with open(log, "wb") as out:
            letta = subprocess.Popen([str(root / "bin" / "letta"), "server", "--host", "127.0.0.1",
                                      "--port", str(port)], stdout=out, stderr=out, env=env,
                                     cwd=workdir, start_new_session=True)
        _CHILDREN[letta.pid] = letta
        started.update(pid=letta.pid, port=port, base_url=f"http://127.0.0.1:{port}")
        (workdir / _STATE).write_text(json.dumps(started))
        _wait_http(f"http://127.0.0.1:{port}/v1/health/", letta, f"letta {LETTA_VERSION}", log)
    except BaseException:
        stop(workdir)
        raise
    server = LettaServer(**started)
    (workdir / _STATE).write_text(json.dumps(asdict(server), indent=2))
    return server


def load(workdir: Path) -> LettaServer:
    """The server a ``start`` (maybe in another process) left running under ``workdir``."""
    state = workdir.resolve() / _STATE
    try:
        return LettaServer(**json.loads(state.read_text()))
    except (OSError, ValueError, TypeError) as err:
        raise LettaUnavailable(f"no running Letta server recorded in {state}: {err}") from None


def _end(pid: int | None) -> None:
    """SIGTERM the process group a start made (its leader is ``pid``), SIGKILL after 15 s."""
    if not pid:
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            child.wait(timeout=15)
        return
    for _ in range(150):  # started by another process (`start` then `stop` from the shell)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def stop(workdir: Path) -> None:
    """Stop what ``start`` started under ``workdir`` (by the pids it saved), drop its database."""
    state_file = workdir.resolve() / _STATE
    if not state_file.exists():
        return
    state = json.loads(state_file.read_text())
    _end(state.get("pid"))
    _end(state.get("embedding_pid"))
    venv = Path(state.get("venv") or default_venv())
    if state.get("database") and not state.get("own_postgres") and state.get("pg_host"):
        subprocess.run([str(venv / "bin" / "python"), "-c", _DB_SETUP, state["pg_host"],
                        str(state["pg_port"]), state["database"], "drop"], capture_output=True,
                       check=False, timeout=60)
    own = workdir.resolve() / "postgres.json"
    if own.exists():
        from . import servers

        servers.Server(**json.loads(own.read_text())).stop()
        own.unlink()
        shutil.rmtree(workdir.resolve() / "postgres-server", ignore_errors=True)
    state_file.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vexchange.testing.letta_server",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("action", choices=["install", "start", "stop"])
    parser.add_argument("dir", type=Path, nargs="?",
                        help="install: the venv (default $VEXTEST_LETTA_VENV or ~/.cache/vexchange/"
                             "letta-venv); start/stop: the server's directory")
    args = parser.parse_args(argv)
    try:
        if args.action == "install":
            print(install(args.dir))
        elif args.dir is None:
            parser.error(f"{args.action} needs the server's directory")
        elif args.action == "start":
            print(json.dumps(asdict(start(args.dir)), indent=2))
        else:
            stop(args.dir)
    except LettaUnavailable as err:
        print(f"letta_server: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

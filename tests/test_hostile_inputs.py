"""Hostile inputs are refused in bounded time with a clear error: a SQL view over a recursive
CTE in place of the table a reader uses (VEKTOR database, cartridge, the cartridge of a
VectorPack whose manifest was re-hashed to match), and JSON nested too deep (a .vmig.jsonl
line, a metadata_json value, a manifest). Every CLI run has a timeout: a hang fails the test."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from vexchange import api
from vexchange._json import MAX_DEPTH, NestingError, loads_exact
from vexchange._sqlite import DamagedDatabaseError, open_readonly
from vexchange.checks import validate
from vexchange.errors import DecodeError
from vexchange.pack.manifest import dump_manifest, load_manifest

ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)"


def _vex(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vexchange", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def _source(tmp_path: Path) -> Path:
    path = tmp_path / "s.vmig.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"id": f"r{i}", "text": f"hello {i}", "vector": [0.5, i, 1.0],
                                            "namespace": "a" if i % 2 else None}) + b"\n"
                              for i in range(6)))
    return path


def _endless_view(db_path: Path, table: str, columns: dict[str, str]) -> None:
    """Replace ``table`` with a view of endless rows (the real rows renamed away)."""
    db = sqlite3.connect(db_path)
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        db.execute(f'DROP TRIGGER "{name}"')
    db.execute(f"ALTER TABLE {table} RENAME TO {table}_real")
    names = [r[1] for r in db.execute(f"PRAGMA table_info({table}_real)")]
    select = ", ".join(f"{columns.get(c, 'NULL')} AS {c}" for c in names)
    db.execute(f"CREATE VIEW {table} AS {ENDLESS} SELECT {select} FROM c")
    db.commit()
    db.close()


def _refused(result: subprocess.CompletedProcess[str], started: float) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert "vex: error:" in result.stderr and "view" in result.stderr, result.stderr
    assert time.monotonic() - started < 30


@pytest.fixture()
def vektor_view(tmp_path: Path) -> Path:
    db = tmp_path / "memory.db"
    api.migrate(_source(tmp_path), f"vektor://{db}")
    _endless_view(db, "memories", {"id": "x", "content": "'t'"})
    return db


def test_a_vektor_database_whose_memories_is_an_endless_view_is_refused_by_every_reader(
        vektor_view: Path, tmp_path: Path) -> None:
    url = f"vektor://{vektor_view}"
    for args in (["inspect", url], ["migrate", url, "out.vmig.jsonl"],
                 ["migrate", url, f"cartridge://{tmp_path / 'c.cartridge'}"],
                 ["verify", url, "--against", str(tmp_path / "s.vmig.jsonl")]):
        started = time.monotonic()
        _refused(_vex(*args, cwd=tmp_path), started)


def test_a_vektor_side_table_that_is_a_view_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    api.migrate(_source(tmp_path), f"vektor://{db}")
    _endless_view(db, "vexchange_records", {"row_key": "CAST(x AS TEXT)", "fingerprint": "''",
                                            "overrides": "'{}'"})
    started = time.monotonic()
    _refused(_vex("migrate", f"vektor://{db}", "o.vmig.jsonl", cwd=tmp_path), started)


@pytest.fixture()
def cartridge_view(tmp_path: Path) -> Path:
    path = tmp_path / "memory.cartridge"
    api.migrate(_source(tmp_path), f"cartridge://{path}")
    db = sqlite3.connect(path)
    db.execute("DROP TABLE records_fts")
    db.commit()
    db.close()
    _endless_view(path, "records", {"rid": "x", "nskey": "''", "id": "CAST(x AS TEXT)", "id_type": "'str'",
                                    "content_id": "''", "modality": "'text'", "payload": "'{}'"})
    return path


def test_a_cartridge_whose_records_is_an_endless_view_is_refused_by_every_reader(
        cartridge_view: Path, tmp_path: Path) -> None:
    url = f"cartridge://{cartridge_view}"
    vector = tmp_path / "q.json"
    vector.write_text("[0.1, 0.2, 0.3]")
    for args in (["inspect", url], ["migrate", url, "out.vmig.jsonl"],
                 ["search", str(cartridge_view), "--vector-file", str(vector)],
                 ["verify", url, "--against", str(tmp_path / "s.vmig.jsonl")]):
        started = time.monotonic()
        _refused(_vex(*args, cwd=tmp_path), started)


def test_a_pack_whose_cartridge_is_an_endless_view_is_refused_even_when_re_hashed(tmp_path: Path) -> None:
    pack = tmp_path / "memory.vpack"
    api.migrate(_source(tmp_path), f"vectorpack://{pack}")
    cartridge = pack / "tables" / "memory.db"
    db = sqlite3.connect(cartridge)
    db.execute("DROP TABLE records_fts")
    db.commit()
    db.close()
    _endless_view(cartridge, "records", {"rid": "x", "nskey": "''", "id": "CAST(x AS TEXT)",
                                         "id_type": "'str'", "content_id": "''", "modality": "'text'",
                                         "payload": "'{}'"})
    manifest = load_manifest((pack / "manifest.yaml").read_bytes(), "manifest")
    data = cartridge.read_bytes()  # a hostile author makes the manifest agree
    manifest["files"]["tables/memory.db"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (pack / "manifest.yaml").write_bytes(dump_manifest(manifest))
    vector = tmp_path / "q.json"
    vector.write_text("[0.1, 0.2, 0.3]")
    for args in (["pack", "verify", str(pack)], ["search", str(pack), "--vector-file", str(vector)],
                 ["migrate", f"vectorpack://{pack}", "out.vmig.jsonl"], ["inspect", f"vectorpack://{pack}"]):
        started = time.monotonic()
        result = _vex(*args, cwd=tmp_path)
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
        assert "view" in result.stdout + result.stderr
        assert time.monotonic() - started < 30


def test_a_query_that_runs_too_long_is_stopped_by_the_time_bound(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (a)")
    db.commit()
    db.close()
    guarded = open_readonly(path, limit=0.3)
    started = time.monotonic()
    with pytest.raises(DamagedDatabaseError, match=r"ran longer than 0\.3 s"):
        guarded.execute(f"{ENDLESS} SELECT count(*) FROM c").fetchone()
    with pytest.raises(DamagedDatabaseError, match="ran longer"):
        for _ in guarded.execute(f"{ENDLESS} SELECT x FROM c"):  # an endless stream of rows too
            pass
    assert time.monotonic() - started < 5
    with pytest.raises(DamagedDatabaseError, match="readonly"):
        guarded.execute("INSERT INTO t VALUES (1)")
    assert isinstance(DamagedDatabaseError("x"), sqlite3.DatabaseError)  # pack verify lists it


def test_a_file_that_is_not_sqlite_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.cartridge"
    path.write_bytes(b"not a database at all" * 300)
    result = _vex("inspect", f"cartridge://{path}", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "vex: error:" in result.stderr


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_deep_json_is_a_nesting_error_never_a_recursion_error() -> None:
    assert loads_exact(_deep(MAX_DEPTH)) is not None
    for depth in (MAX_DEPTH + 1, 999, 1010, 5000):
        with pytest.raises(ValueError) as caught:
            loads_exact(_deep(depth))
        assert isinstance(caught.value, (NestingError, orjson.JSONDecodeError))
    with pytest.raises(NestingError):  # a huge integer sends the text to json, which recurses
        loads_exact("[123456789012345678901234, " + _deep(990) + "]")
    err = NestingError(location="f line 3")
    assert isinstance(err, DecodeError) and isinstance(err, orjson.JSONDecodeError)
    assert "128 levels" in str(err) and "\n" not in str(err)


def test_a_deep_vmig_line_is_a_counted_reject_and_the_run_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "deep.vmig.jsonl"
    good = [orjson.dumps({"id": f"g{i}", "text": "x", "vector": [0.1, 0.2]}) for i in range(3)]
    deep = [f'{{"id":"d{d}","metadata":{{"k":{_deep(d)}}}}}'.encode() for d in (200, 990, 1010, 3000)]
    deep.append(b'{"id":"j","metadata":{"k":"' + _deep(995).encode() + b'"},"metadata_json":["k"]}')
    deep.append(b'{"id":"e","text":"x","k":' + _deep(999).encode() + b"}")
    path.write_bytes(b"\n".join([good[0], *deep, *good[1:]]) + b"\n")
    report = validate(path)
    assert report["records"] == 9 and sum(report["error_counts"].values()) == 6
    target = tmp_path / "out.vmig.jsonl"
    receipt = api.migrate(path, target, allow_skips=True)
    assert receipt.counts.written == 3 and receipt.counts.skipped_total == 6
    rejects = [orjson.loads(line) for line in Path(str(receipt.rejects_file)).read_bytes().splitlines()]
    assert {r["reason"] for r in rejects} <= {"bad_json", "bad_metadata"} and len(rejects) == 6
    for args in (["inspect", str(path)], ["validate", str(path)]):
        result = _vex(*args, cwd=tmp_path)
        assert "Traceback" not in result.stderr and "RecursionError" not in result.stdout + result.stderr


def test_a_deep_manifest_is_a_decode_error() -> None:
    for raw in (b'"a": ' + b"[" * 5000, b"[" * 5000,
                b"".join(b"  " * i + b'"k":\n' for i in range(300))):
        with pytest.raises(DecodeError):
            load_manifest(raw, "manifest.yaml")


DEEP = b"[" * (MAX_DEPTH + 50) + b"]" * (MAX_DEPTH + 50)


def test_deep_or_damaged_run_files_are_decode_errors(tmp_path: Path) -> None:
    """Sidecars, checkpoints, receipts, micro-packs and adapter cards read from disk: too deep,
    not UTF-8, or not an object is a DecodeError naming the file, never a traceback."""
    from vexchange.adapters import load_adapter
    from vexchange.engine.checkpoint import Checkpoint
    from vexchange.engine.receipt import load_receipt
    from vexchange.pack.micropack import read_micropack
    from vexchange.sidecar import read_sidecar

    data = tmp_path / "m.vmig.jsonl"
    data.write_bytes(b"")
    (tmp_path / "m.vmig.meta.json").write_bytes(b'{"a": ' + DEEP + b"}")
    with pytest.raises(DecodeError):
        read_sidecar(data)
    for content in (DEEP, b"[1, 2]", b"\xff\xfe{"):
        (tmp_path / "c.checkpoint").write_bytes(content)
        with pytest.raises(DecodeError):
            Checkpoint(tmp_path / "c.checkpoint").load()
        (tmp_path / "r.json").write_bytes(content)
        with pytest.raises(DecodeError):
            load_receipt(tmp_path / "r.json")
    (tmp_path / "p.micro.jsonl").write_bytes(DEEP + b"\n")
    with pytest.raises(DecodeError):
        read_micropack(tmp_path / "p.micro.jsonl")
    (tmp_path / "a.card.json").write_bytes(DEEP)
    (tmp_path / "a.npz").write_bytes(b"")
    with pytest.raises(DecodeError):
        load_adapter(tmp_path / "a.npz")


def test_sqlite_errors_are_told_apart_by_their_result_codes(tmp_path: Path) -> None:
    from vexchange._sqlite import error_kind

    db = tmp_path / "locked.db"
    holder = sqlite3.connect(db)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(db, timeout=0)
    with pytest.raises(sqlite3.OperationalError) as locked:
        other.execute("INSERT INTO t VALUES (1)")
    assert error_kind(locked.value) == "busy"
    holder.rollback()
    (tmp_path / "not.db").write_bytes(b"x" * 4096)
    with pytest.raises(sqlite3.DatabaseError) as notadb:
        sqlite3.connect(tmp_path / "not.db").execute("SELECT * FROM sqlite_master").fetchall()
    assert error_kind(notadb.value) == "notadb"

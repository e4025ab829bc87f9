"""Ids repeated across the shards of a parallel run (docs/engine.md, "Parallel runs", "Ids
repeated across shards"): a 4-worker run accounts for them exactly as a one-worker run does:
the same counts, the same rejects (the later occurrence, whole), the same digests, and the
target holds the first occurrence, read back with the store's own client or reader."""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

import vexchange
from vexchange.engine.receipt import Receipt

_N = 4000
_REPEATS = {3500: 10, 2100: 100, 1500: 1400, 3900: 3890}
"""line -> the earlier line whose id it repeats: across shards (3500, 2100, 3900 beyond 3890's
shard only if cut there) and within one (1500 -> 1400)."""


def _source(path: Path, *, odd_dims_at: int | None = None) -> Path:
    lines = []
    for i in range(_N):
        rid = _REPEATS.get(i, i)
        dims = 3 if i == odd_dims_at else 4
        vec = [round(0.25 + (i % 7) * 0.5 + k, 2) for k in range(dims)]
        ns = "a" if rid % 3 else "b"
        lines.append(json.dumps({"id": f"r{rid}", "namespace": ns, "text": f"line {i} " + "x" * (i % 40),
                                 "vector": vec}) + "\n")
    path.write_text("".join(lines))
    return path


def _rejects(receipt: Receipt) -> list[dict[str, Any]]:
    if receipt.rejects_file is None:
        return []
    return [json.loads(line) for line in Path(receipt.rejects_file).read_bytes().splitlines()]


def _same(one: Receipt, four: Receipt) -> None:
    assert four.options["workers"] == 4
    assert four.counts == one.counts
    assert four.namespaces == one.namespaces
    assert four.status == one.status
    assert _rejects(four) == _rejects(one)


_ENGINES = ["local", pytest.param("ray", marks=pytest.mark.slow)]


def _engine(engine: str) -> str:
    if engine == "ray":
        pytest.importorskip("ray")
    return engine


@pytest.mark.parametrize("engine", _ENGINES)
def test_vmig_target_is_byte_identical(tmp_path: Path, engine: str) -> None:
    src = _source(tmp_path / "src.vmig.jsonl")
    one = vexchange.migrate(src, tmp_path / "one.vmig.jsonl")
    four = vexchange.migrate(src, tmp_path / "four.vmig.jsonl", workers=4, engine=_engine(engine))
    assert one.counts.skipped == {"duplicate_id": len(_REPEATS)}
    _same(one, four)
    assert (tmp_path / "four.vmig.jsonl").read_bytes() == (tmp_path / "one.vmig.jsonl").read_bytes()
    assert vexchange.verify(tmp_path / "four.vmig.jsonl").ok  # the sidecar counts and checksum


def _cartridge_ids(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        table = "records" if "records" in tables else tables[0]
        cols = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
        text = "text" if "text" in cols else cols[1]
        return sorted((str(r[0]), str(r[1])) for r in db.execute(f"SELECT id, {text} FROM {table}"))


@pytest.mark.parametrize("engine", _ENGINES)
def test_cartridge_target(tmp_path: Path, engine: str) -> None:
    """A replayed target: the later lines are dropped from the parts before the replay, a
    later occurrence its shard refused for another reason counted as a ``duplicate_id``."""
    src = _source(tmp_path / "src.vmig.jsonl", odd_dims_at=3500)
    one = vexchange.migrate(src, f"cartridge:{tmp_path / 'one.cartridge'}")
    four = vexchange.migrate(src, f"cartridge:{tmp_path / 'four.cartridge'}", workers=4,
                             engine=_engine(engine))
    _same(one, four)
    assert _cartridge_ids(tmp_path / "four.cartridge") == _cartridge_ids(tmp_path / "one.cartridge")


@pytest.fixture(scope="module")
def store_servers(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from vexchange.testing import servers

    shared = os.environ.get("VEXTEST_STORES")
    if shared:
        yield servers.load(Path(shared))
        return
    pytest.importorskip("psycopg")
    workdir = tmp_path_factory.mktemp("stores")
    workdir.chmod(0o755)
    own = {"postgres": servers.start("postgres", workdir)}
    yield own
    servers.stop_all(own)


def _pg(store_servers: Any) -> str:
    server = store_servers["postgres"]
    return f"pgvector://{server.host}:{server.port}/postgres?table=t_{uuid.uuid4().hex[:8]}&user=postgres"


def _pg_rows(location: str) -> list[tuple[str, str]]:
    import urllib.parse

    import psycopg

    parts = urllib.parse.urlsplit(location)
    table = dict(urllib.parse.parse_qsl(parts.query))["table"]
    with psycopg.connect(host=parts.hostname, port=parts.port, dbname="postgres", user="postgres") as conn:
        cols = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,))]
        text = "text" if "text" in cols else "document"
        got = conn.execute(psycopg.sql.SQL("SELECT id, {} FROM {}").format(
            psycopg.sql.Identifier(text), psycopg.sql.Identifier(table))).fetchall()
    return sorted((str(i), str(t)) for i, t in got)


@pytest.mark.parametrize("engine", _ENGINES)
def test_pgvector_target_holds_the_first(tmp_path: Path, store_servers: Any, engine: str) -> None:
    """A store: the later shard's write is undone by writing the first occurrence again; a
    later occurrence its shard refused for another reason (a vector of 3 dims in a 4-dims
    table) is a ``duplicate_id``, as one worker refuses it."""
    pytest.importorskip("psycopg")
    src = _source(tmp_path / "src.vmig.jsonl", odd_dims_at=2100)
    one_target, four_target = _pg(store_servers), _pg(store_servers)
    os.chdir(tmp_path)
    one = vexchange.migrate(src, one_target)
    four = vexchange.migrate(src, four_target, workers=4, engine=_engine(engine))
    assert one.counts.skipped == {"duplicate_id": len(_REPEATS)}
    _same(one, four)
    rows = _pg_rows(four_target)
    assert rows == _pg_rows(one_target) and len(rows) == _N - len(_REPEATS)
    assert vexchange.verify(four_target, receipt=four.receipt_file).ok


_DRIVER = """
import json, sys, vexchange
from pathlib import Path
if __name__ == "__main__":
    r = vexchange.migrate(sys.argv[1], sys.argv[2], workers=4, batch_size=200, resume=sys.argv[3] == "resume")
    rejects = Path(r.rejects_file).read_text().splitlines() if r.rejects_file else []
    print(json.dumps({"status": r.status, "counts": r.to_dict()["counts"], "rejects": rejects,
                      "namespaces": {k: v.written for k, v in r.namespaces.items()}}))
"""


@pytest.mark.slow
def test_kill_and_resume_account_for_repeats(tmp_path: Path, store_servers: Any) -> None:
    """Kill -9 of a worker or the coordinator at random points (the correction included:
    it runs after the shards, at the end), then ``--resume``: the same as one worker."""
    import random

    import test_parallel_faults as faults

    pytest.importorskip("psutil")
    driver = tmp_path / "driver.py"
    driver.write_text(_DRIVER)
    src = str(_source(tmp_path / "src.vmig.jsonl", odd_dims_at=2100))
    rng = random.Random(1919)
    n = iter(range(100))
    for label, new_target, rows in (
            ("vmig", lambda: str(tmp_path / f"out{next(n)}.vmig.jsonl"), lambda t: Path(t).read_bytes()),
            ("pgvector", lambda: _pg(store_servers), _pg_rows)):
        one_target = new_target()
        one = vexchange.migrate(src, one_target)
        for point in range(3):
            target = new_target()
            delay, victim = rng.uniform(0.5, 3.5), rng.choice(["worker", "coordinator"])
            faults._kill_at(driver, src, target, delay, victim, tmp_path)
            done = faults._resume(driver, src, target, tmp_path)
            where = (label, point, delay, victim)
            assert done["counts"] == one.to_dict()["counts"], where
            assert done["namespaces"] == {k: v.written for k, v in one.namespaces.items()}, where
            assert done["rejects"] == Path(str(one.rejects_file)).read_text().splitlines(), where
            assert rows(target) == rows(one_target), where

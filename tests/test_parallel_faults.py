"""Kill -9 of a 4-worker migration (a worker or the coordinator) at 20 random points, then
``--resume``: nothing lost, nothing duplicated, digests equal to a one-worker run, checked in
the targets with the stores' own clients. Slow: each point starts processes."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import vexchange
from vexchange.sample_data import build

pytestmark = pytest.mark.slow

_DRIVER = """
import sys, vexchange
if __name__ == "__main__":
    resume = sys.argv[3] == "resume"
    r = vexchange.migrate(sys.argv[1], sys.argv[2], workers=4, batch_size=200, resume=resume)
    import json
    print(json.dumps({"status": r.status, "namespaces": {k: v.written for k, v in r.namespaces.items()}}))
"""
_RECORDS = 4000


def _kill_at(driver: Path, source: str, target: str, delay: float, victim: str, cwd: Path) -> None:
    import psutil

    proc = subprocess.Popen([sys.executable, str(driver), source, target, "fresh"], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    if proc.poll() is None:
        workers = []
        for child in psutil.Process(proc.pid).children(recursive=True):
            try:
                if "spawn_main" in " ".join(child.cmdline()):
                    workers.append(child)
            except psutil.Error:  # gone, or a zombie already
                continue
        pid = random.Random(delay).choice(workers).pid if victim == "worker" and workers else proc.pid
        os.kill(pid, signal.SIGKILL)
    proc.wait(60)
    if victim == "coordinator":  # its workers finish or die on their own; wait for them
        time.sleep(0.5)


def _resume(driver: Path, source: str, target: str, cwd: Path) -> dict[str, Any]:
    for _ in range(3):  # a kill may land before the first checkpoint: then start over
        for mode in ("resume", "fresh"):
            out = subprocess.run([sys.executable, str(driver), source, target, mode], cwd=cwd,
                                 capture_output=True, text=True, timeout=300)
            if out.returncode == 0:
                return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
            if mode == "resume" and "nothing to resume" not in out.stderr:
                break
    raise AssertionError(out.stderr[-2000:])


def _pg_location(store_servers: Any) -> str:
    server = store_servers["postgres"]
    return f"pgvector://{server.host}:{server.port}/postgres?table=t_{uuid.uuid4().hex[:8]}&user=postgres"


def _pg_rows(location: str) -> list[tuple[str, bytes]]:
    import urllib.parse

    import numpy as np
    import psycopg
    from pgvector.psycopg import register_vector

    parts = urllib.parse.urlsplit(location)
    table = dict(urllib.parse.parse_qsl(parts.query))["table"]
    with psycopg.connect(host=parts.hostname, port=parts.port, dbname="postgres", user="postgres") as conn:
        register_vector(conn)
        got = conn.execute(psycopg.sql.SQL("SELECT id, embedding FROM {}").format(
            psycopg.sql.Identifier(table))).fetchall()
    return [(i, np.asarray(e.to_numpy(), dtype="<f4").tobytes()) for i, e in got]


def _edge_ids(location: str) -> list[str]:
    import urllib.parse

    import qdrant_edge as qe

    shard = qe.EdgeShard.load(urllib.parse.urlsplit(location).path)
    ids: list[str] = []
    try:
        offset = None
        while True:
            points, offset = shard.scroll(qe.ScrollRequest(offset=offset, limit=500, with_payload=True))
            ids.extend(str(p.id) for p in points)  # one point per record id
            if offset is None:
                return ids
    finally:
        shard.close()


def _vmig_ids(location: str) -> list[str]:
    return [json.loads(line)["id"] for line in Path(location).read_bytes().splitlines() if line.strip()]


def _cartridge_ids(location: str) -> list[str]:
    path = location.split(":", 1)[1].lstrip("/")
    with sqlite3.connect("/" + path if not path.startswith("/") else path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        table = "records" if "records" in tables else tables[0]
        return [str(r[0]) for r in db.execute(f"SELECT id FROM {table}")]


@pytest.fixture(scope="module")
def store_servers(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The PostgreSQL server: the shared one (``VEXTEST_STORES``), else one started here."""
    from vexchange.testing import servers

    shared = os.environ.get("VEXTEST_STORES")
    if shared:
        yield servers.load(Path(shared))
        return
    workdir = tmp_path_factory.mktemp("stores")
    workdir.chmod(0o755)  # postgres runs as another user and must reach it
    own = {"postgres": servers.start("postgres", workdir)}
    yield own
    servers.stop_all(own)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("sources")
    build(root / "m.db", n=_RECORDS, dims=8)
    vexchange.migrate(f"vektor:{root / 'm.db'}", root / "m.vmig.jsonl")
    return {"vektor": f"vektor:{root / 'm.db'}", "vmig": str(root / "m.vmig.jsonl")}


Pair = tuple[str, str, Callable[[], str], Callable[[str], list[Any]]]


def _pg_ids(location: str) -> list[str]:
    return [i for i, _ in _pg_rows(location)]


def _pairs(tmp: Path, store_servers: Any) -> list[Pair]:
    n = iter(range(10_000))
    return [
        ("vektor", "vektor->vmig", lambda: str(tmp / f"out{next(n)}.vmig.jsonl"), _vmig_ids),
        ("vmig", "vmig->cartridge", lambda: f"cartridge:{tmp / f'out{next(n)}.cartridge'}", _cartridge_ids),
        ("vmig", "vmig->pgvector", lambda: _pg_location(store_servers), _pg_ids),
        ("vmig", "vmig->qdrant-edge", lambda: f"qdrant-edge://{tmp / f'edge{next(n)}'}", _edge_ids),
    ]


def test_kill_and_resume_loses_and_duplicates_nothing(tmp_path: Path, sources: dict[str, str],
                                                      store_servers: Any) -> None:
    driver = tmp_path / "driver.py"
    driver.write_text(_DRIVER)
    rng = random.Random(19)
    for source_kind, label, new_target, native_ids in _pairs(tmp_path, store_servers):
        source = sources[source_kind]
        reference = vexchange.migrate(source, new_target(), workers=1)
        for point in range(5):
            target = new_target()
            delay, victim = rng.uniform(0.8, 4.0), rng.choice(["worker", "coordinator"])
            _kill_at(driver, source, target, delay, victim, tmp_path)
            done = _resume(driver, source, target, tmp_path)
            assert done["status"] in ("completed", "completed_with_skips")
            assert done["namespaces"] == {k: v.written for k, v in reference.namespaces.items()}, (
                label, point, delay, victim)  # digests equal to a one-worker run
            ids = native_ids(target)
            assert len(ids) == _RECORDS, (label, point, delay, victim)  # 0 lost
            assert len(set(ids)) == len(ids), (label, point)  # 0 duplicated
            result = vexchange.verify(target, against=source)
            assert result.ok, (label, point, delay, victim)
        assert reference.counts.written == _RECORDS


def test_kill_and_resume_from_an_mg_file(tmp_path: Path, sources: dict[str, str]) -> None:
    """A ``.mg`` source split into grain index ranges (with their vectors offsets): kill -9
    at random points, ``--resume``, and the joined file is the one-worker run's, byte for byte."""
    driver = tmp_path / "driver.py"
    driver.write_text(_DRIVER)
    mg = str(tmp_path / "m.mg")
    vexchange.migrate(sources["vektor"], mg)
    one = tmp_path / "one.vmig.jsonl"
    reference = vexchange.migrate(mg, one, workers=1)
    rng = random.Random(1903)
    for point in range(5):
        target = str(tmp_path / f"mg{point}.vmig.jsonl")
        delay, victim = rng.uniform(0.8, 4.0), rng.choice(["worker", "coordinator"])
        _kill_at(driver, mg, target, delay, victim, tmp_path)
        done = _resume(driver, mg, target, tmp_path)
        assert done["namespaces"] == {k: v.written for k, v in reference.namespaces.items()}, (point, delay)
        assert Path(target).read_bytes() == one.read_bytes(), (point, delay, victim)

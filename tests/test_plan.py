"""``vex plan``: counts and refusals are the engine's (a real migrate with the same options agrees),
nothing is written to the target, the time estimate is within a factor of 2 of the measured run
(slow, three store pairs), and the CLI's output and exit codes."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from vexchange import api, sample_data
from vexchange.cli import main
from vexchange.connectors._base import Capabilities, Connector, Page
from vexchange.errors import MigrationError, TransientError, UsageError
from vexchange.plan import machine_factor, plan
from vexchange.record import MemoryRecord, Vector
from vexchange.spec import StoreSpec
from vexchange.testing.conformance import write_vmig


def _unit(rng: np.random.Generator, dims: int) -> Vector:
    v = rng.standard_normal(dims).astype("<f4")
    return Vector((v / np.linalg.norm(v)).astype("<f4").tobytes(), "m")


def _records(n: int = 60, dims: int = 8) -> list[MemoryRecord]:
    rng = np.random.default_rng(7)
    out = [MemoryRecord(id=str(i), text=f"memory {i}", namespace="a" if i % 2 else "b",
                        vectors={"": _unit(rng, dims)}, metadata={"i": i, "tag": "x" * (i % 5)})
           for i in range(n)]
    out.append(MemoryRecord(id="3", text="the same id again", namespace="a", vectors={"": _unit(rng, dims)}))
    out.append(MemoryRecord(id="zero", text="zeros", namespace="a",
                            vectors={"": Vector(np.zeros(dims, dtype="<f4").tobytes(), "m")}))
    out.append(MemoryRecord(id="short", text="a vector of another size", namespace="b",
                            vectors={"": _unit(rng, dims // 2)}))
    out.append(MemoryRecord(id="named", text="two vectors", namespace="b",
                            vectors={"": _unit(rng, dims), "title": _unit(rng, dims)}))
    out.append(MemoryRecord(id="bare", text="no vector", namespace="b"))
    return out


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    return write_vmig(folder / "memory.vmig.jsonl", _records(), metric="cosine")


def _migrated(source: Path, target: str, tmp_path: Path, **options: Any) -> Any:
    return api.migrate(source, target, allow_skips=True, receipt=tmp_path / "r.json",
                       rejects=tmp_path / "rejects.jsonl", **options)


@pytest.mark.parametrize("kind", ["vmig", "faiss", "vektor"])
def test_counts_and_refusals_are_what_migrate_does(source: Path, tmp_path: Path, kind: str) -> None:
    target = {"vmig": tmp_path / "out" / "copy.vmig.jsonl", "faiss": tmp_path / "out" / "copy.faiss",
              "vektor": tmp_path / "out" / "copy.db"}[kind]
    target.parent.mkdir()
    url = f"vektor://{target}" if kind == "vektor" else str(target)
    report = plan(source, url, batch_size=16, sample=20)
    assert list(target.parent.iterdir()) == []  # nothing written, no throwaway left beside it
    receipt = _migrated(source, url, tmp_path, batch_size=16)
    counts = receipt.counts
    assert (report.read, report.selected, report.will_write) == (counts.read, counts.selected, counts.written)
    refused = {c.kind.removeprefix("refused:"): c.records for c in report.changes
               if c.kind.startswith("refused:")}
    assert refused == counts.skipped and report.refused == counts.skipped_total
    assert report.ok is (counts.skipped_total == 0)
    assert "duplicate_id" in refused
    assert report.time.basis == "sample" and report.time.estimated_s is not None
    assert report.disk.basis == "sample" and report.disk.target_bytes > 0 and report.disk.fits
    assert {e["reason"] for e in report.examples} <= set(counts.skipped)


def test_what_a_normalising_target_changes_and_refuses(source: Path, tmp_path: Path) -> None:
    """faiss keeps cosine vectors L2-normalised: a zero vector is refused, the rest change."""
    report = plan(source, tmp_path / "copy.faiss", sample=10)
    kinds = {c.kind: c for c in report.changes}
    assert kinds["refused:not_normalisable"].records == 1
    assert "L2-normalised" in kinds["normalised"].detail
    assert "metric" not in kinds  # the source declares cosine
    assert report.vector_spaces["source"][""]["metric"] == "cosine"


def test_sizes(tmp_path: Path) -> None:
    records = [MemoryRecord(id=f"r{i}", text="é" * 3, vectors={"": Vector(b"\0\0\x80?" * 4)},
                            metadata={"k": i}) for i in range(10)]
    report = plan(write_vmig(tmp_path / "s.vmig.jsonl", records), tmp_path / "t.vmig.jsonl")
    sizes = report.sizes
    assert (sizes.records, sizes.vectors, sizes.vector_bytes, sizes.text_bytes) == (10, 10, 160, 60)
    assert sizes.metadata_bytes == 10 * len(b'{"k":0}') and sizes.id_bytes == 20
    assert sizes.total_bytes == 160 + 60 + 70 + 20 and sizes.dims == {"4": 10}
    assert report.memory.index_bytes == 160 + 128 * 10 and report.memory.run_bytes > 0
    assert report.ok and report.changes[0].kind == "metric"  # no metric declared: cosine


def test_options_are_migrates(source: Path, tmp_path: Path) -> None:
    report = plan(source, tmp_path / "t.vmig.jsonl", namespaces=["b"], limit=5)
    receipt = _migrated(source, str(tmp_path / "t2.vmig.jsonl"), tmp_path, namespaces=["b"], limit=5)
    assert (report.selected, report.filtered) == (receipt.counts.selected, receipt.counts.filtered)
    assert report.sizes.records == 5
    with pytest.raises(UsageError, match="fresh, full run"):
        plan(source, tmp_path / "t.vmig.jsonl", resume=True)
    with pytest.raises(UsageError, match="batch_size"):
        plan(source, tmp_path / "t.vmig.jsonl", batch_size=0)
    with pytest.raises(TypeError):
        plan(source, tmp_path / "t.vmig.jsonl", bach_size=3)  # type: ignore[call-arg]


def test_dry_run_plan_and_empty_source(source: Path, tmp_path: Path) -> None:
    dry = plan(source, tmp_path / "t.vmig.jsonl", dry_run=True)
    assert dry.time.estimated_s == dry.time.read_side_s and dry.time.sample_records == dry.read
    empty = plan(write_vmig(tmp_path / "e.vmig.jsonl", []), tmp_path / "t.vmig.jsonl")
    assert empty.time.basis == "empty" and empty.read == 0 and empty.ok


def test_machine_factor_is_bounded() -> None:
    assert 0.25 <= machine_factor() <= 20.0
    assert machine_factor([1.0]) == 20.0 and machine_factor([1e-9]) == 0.25


def test_cli_json_and_exit_codes(source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = str(tmp_path / "t.vmig.jsonl")
    assert main(["plan", str(source), target, "--json", "--sample", "10"]) == 4  # records would be refused
    report = orjson.loads(capsys.readouterr().out)
    assert report["refused"] > 0 and report["time"]["basis"] == "sample"
    assert main(["plan", str(source), target, "--allow-skips", "--namespace", "a"]) == 0
    out = capsys.readouterr().out
    assert "estimated_s:" in out and "refused:duplicate_id" in out
    assert main(["plan", str(source), target, "--receipt", "x.json"]) == 2
    assert "no receipt" in capsys.readouterr().err
    assert not Path(target).exists()


# ------------------------------------------------------------------------------ a server store


@pytest.fixture(scope="module")
def postgres() -> Iterator[Any]:
    pytest.importorskip("psycopg")
    pytest.importorskip("pgvector")
    from vexchange.testing import servers

    shared = os.environ.get("VEXTEST_STORES")
    if shared and "postgres" in servers.load(Path(shared)):
        yield servers.load(Path(shared))["postgres"]
        return
    import shutil
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="vex-plan-pg-"))
    workdir.chmod(0o755)
    server = servers.start("postgres", workdir)
    try:
        yield server
    finally:
        servers.stop_all({"postgres": server})
        shutil.rmtree(workdir, ignore_errors=True)


def _tables(server: Any, pattern: str) -> int:
    import psycopg

    with psycopg.connect(host=server.host, port=server.port, user="postgres", dbname="postgres") as conn:
        row = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE %s", (pattern,)).fetchone()
    return int(row[0]) if row else 0


def test_a_server_is_never_written_unless_scratch_is_asked(source: Path, postgres: Any) -> None:
    table = f"plan_{uuid.uuid4().hex[:8]}"
    url = f"pgvector://{postgres.host}:{postgres.port}/postgres?table={table}&user=postgres"
    report = plan(source, url, sample=10)
    assert report.time.basis == "read+rate" and report.time.write_rate and report.disk.basis == "payload"
    assert _tables(postgres, table) == 0
    scratched = plan(source, url, sample=10, scratch=True)
    assert scratched.time.basis == "sample" and "throwaway pgvector table" in scratched.time.note
    assert _tables(postgres, table) == 0 and _tables(postgres, "vexplan_%") == 0
    assert scratched.selected == report.selected


# ------------------------------------------------------------------ the estimate against the run


def _pairs(tmp_path: Path, postgres: Any) -> list[tuple[str, str, str, dict[str, Any]]]:
    db = tmp_path / "memory.db"
    sample_data.build(db, n=4000, dims=384)
    vmig = tmp_path / "memory.vmig.jsonl"
    api.export(f"vektor://{db}", vmig, receipt=tmp_path / "e.json")
    table = f"plan_{uuid.uuid4().hex[:8]}"
    return [
        ("VEKTOR -> vmig", f"vektor://{db}", str(tmp_path / "out" / "copy.vmig.jsonl"), {}),
        ("vmig -> cartridge", str(vmig), str(tmp_path / "out" / "copy.cartridge"), {}),
        ("vmig -> pgvector", str(vmig),
         f"pgvector://{postgres.host}:{postgres.port}/postgres?table={table}&user=postgres",
         {"scratch": True}),
    ]


@pytest.mark.slow
def test_the_estimate_is_within_a_factor_of_two_of_the_run(tmp_path: Path, postgres: Any) -> None:
    """Each pair planned, then run for real with the same options (4,000 records of 384 dims, a
    sample of a quarter of them in pages of 250); the run's wall time against the estimate.
    A machine loaded by other work moves both; one retry absorbs a burst that hits only one."""
    (tmp_path / "out").mkdir()
    misses = []
    pairs = _pairs(tmp_path, postgres)
    try:
        for label, src, dst, extra in pairs:
            ratios = []
            for attempt in range(2):
                target = dst.replace("?table=", f"?table=a{attempt}") if dst.startswith("pgvector") \
                    else dst.replace("copy.", f"copy{attempt}.")
                report = plan(src, target, batch_size=250, sample=1000, **extra)
                assert report.time.basis == "sample" and report.time.estimated_s
                started = time.monotonic()
                api.migrate(src, target, batch_size=250, receipt=tmp_path / f"{attempt}.json",
                            rejects=tmp_path / f"{attempt}.rejects.jsonl")
                ratios.append(report.time.estimated_s / (time.monotonic() - started))
                if 0.5 <= ratios[-1] <= 2.0:
                    break
            if not 0.5 <= ratios[-1] <= 2.0:
                misses.append(f"{label}: estimate/run {', '.join(f'{r:.2f}' for r in ratios)}")
    finally:
        table = pairs[-1][2].partition("?table=")[2].partition("&")[0]
        _drop(postgres, [f"a{attempt}{table}" for attempt in range(2)])
    assert not misses, misses


def _drop(server: Any, tables: list[str]) -> None:
    import psycopg

    with psycopg.connect(host=server.host, port=server.port, user="postgres", dbname="postgres",
                         autocommit=True) as conn:
        for table in tables:
            conn.execute(psycopg.sql.SQL("DROP TABLE IF EXISTS {}").format(psycopg.sql.Identifier(table)))


class _Failing(Connector):
    """A source whose reads keep failing as a busy server's do (a real TransientError)."""

    name = "failing"
    capabilities = Capabilities(read=True, write=False)

    def __init__(self) -> None:
        super().__init__(StoreSpec("failing", "failing"))

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        yield Page([MemoryRecord(id="1", text="one")], "1")
        raise TransientError("the server went away")


def test_a_failed_pass_says_nothing_was_written(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="vex plan stopped") as caught:
        plan(_Failing(), tmp_path / "t.vmig.jsonl", retries=1)
    assert caught.value.receipt is None and "--resume" not in str(caught.value)
    assert "nothing was written" in str(caught.value) and not (tmp_path / "t.vmig.jsonl").exists()

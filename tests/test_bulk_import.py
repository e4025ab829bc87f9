"""``vex migrate ... --bulk`` into Pinecone, end to end: the import files written to a real S3
server (moto on loopback), the import started, polled and checked through the official
``pinecone`` SDK against the project's emulator of Pinecone's documented import API, which
reads those files back from moto with the storage integration's credentials.

Also: the emulator's import checks themselves (error modes, per-file errors, cancel, list),
and what ``--bulk`` refuses. docs/connectors/pinecone.md, "Bulk import".
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pinecone")
pytest.importorskip("pyarrow")

import pyarrow as pa
import pyarrow.parquet as pq

from vexchange import migrate
from vexchange.checks import verify
from vexchange.errors import MigrationError, UsageError
from vexchange.testing.conformance import ConnectorConformance, read_all, write_vmig
from vexchange.testing.emulators.pinecone import PineconeEmulator, S3Credentials
from vexchange.testing.moto_server import ACCESS_KEY, SECRET_KEY, MotoServer, serving
from vexchange.testing.records import sample_records
from vexchange.testing.tricky import tricky_records

KEY = "bulk-emulator-key"
BUCKET = "vex-imports"
INTEGRATION = "vex-integration"


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoServer]:
    yield from serving(BUCKET)


@pytest.fixture(scope="module")
def emulator(s3: MotoServer) -> Iterator[PineconeEmulator]:
    with PineconeEmulator(api_key=KEY) as pinecone:
        pinecone.configure_storage(s3.endpoint, {INTEGRATION: S3Credentials(ACCESS_KEY, SECRET_KEY)})
        pinecone.import_seconds = 0.15
        yield pinecone


@pytest.fixture(autouse=True)
def env(s3: MotoServer, emulator: PineconeEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEX_PINECONE_API_KEY", KEY)
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    emulator.faults.clear()


def index_url(emulator: PineconeEmulator, *, prefix: str | None = None, name: str | None = None,
              **params: str) -> str:
    name = name or f"bulk-{uuid.uuid4().hex[:8]}"
    query = {"controller": emulator.url, "create": "true", "bulk_poll": "0.05",
             "bulk_uri": f"s3://{BUCKET}/{prefix or name}", "integration_id": INTEGRATION, **params}
    return f"pinecone://{name}?" + "&".join(f"{k}={v}" for k, v in query.items() if v)


def _run(tmp_path: Path, records: list[Any], target: str, tag: str, **options: Any) -> Any:
    source = write_vmig(tmp_path / f"{tag}.vmig.jsonl", records, metric="cosine")
    return migrate(source, target, receipt=tmp_path / f"{tag}.json",
                   rejects=tmp_path / f"{tag}.rejects.jsonl", **options)


def test_the_tricky_corpus_through_a_bulk_import_as_through_upserts(
        tmp_path: Path, emulator: PineconeEmulator) -> None:
    """Bulk and upsert runs of the tricky corpus: the same counts, the same digests, the same
    records in the index; the receipt names the import, and ``vex verify`` passes."""
    records = tricky_records(dims=8, named=())
    bulk_target = index_url(emulator)
    bulk = _run(tmp_path, records, bulk_target, "bulk", bulk=True)
    upsert_target = index_url(emulator)
    upserted = _run(tmp_path, records, upsert_target, "upsert")
    assert bulk.counts == upserted.counts and bulk.counts.written
    assert {k: v.written for k, v in bulk.namespaces.items()} == \
        {k: v.written for k, v in upserted.namespaces.items()}
    assert bulk.options["bulk"] is True and "bulk" not in upserted.options
    done = bulk.target["bulk_import"]
    assert done["status"] == "Completed" and done["records_imported"] == bulk.counts.written
    name = bulk_target.split("//")[1].split("?")[0]
    assert list(emulator.indexes[name].imports) == [done["id"]]
    got = read_all(bulk_target)
    ConnectorConformance.assert_strictly_same(list(read_all(upsert_target).values()), got)
    assert verify(bulk_target, receipt=tmp_path / "bulk.json").ok


def test_a_second_import_into_the_same_namespaces_is_refused(tmp_path: Path,
                                                             emulator: PineconeEmulator) -> None:
    records = list(sample_records(30, dims=4, null_vectors=False, seed=1))
    target = index_url(emulator)
    _run(tmp_path, records, target, "first", bulk=True)
    again = target.replace(f"bulk_uri=s3://{BUCKET}/", f"bulk_uri=s3://{BUCKET}/again-")
    with pytest.raises(UsageError, match="only into new namespaces"):
        _run(tmp_path, records, again, "second", bulk=True)
    name = target.split("//")[1].split("?")[0]
    assert len(emulator.indexes[name].imports) == 1


def test_an_interrupted_poll_resumes_the_same_import(tmp_path: Path, emulator: PineconeEmulator,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while the run polls an import it started: ``--resume`` polls that import (its
    id kept beside the files), never starting another."""
    import vexchange.connectors._pinecone_import as bulk
    from vexchange.errors import RunInterrupted

    records = list(sample_records(40, dims=4, null_vectors=False, seed=2))
    target = index_url(emulator)

    def interrupt(seconds: float) -> None:  # Ctrl-C lands in the wait between two polls
        raise KeyboardInterrupt

    with monkeypatch.context() as patched, pytest.raises(RunInterrupted):
        patched.setattr(bulk.PineconeImportWriter, "sleep", staticmethod(interrupt))
        _run(tmp_path, records, target, "poll", bulk=True)
    name = target.split("//")[1].split("?")[0]
    assert len(emulator.indexes[name].imports) == 1
    receipt = _run(tmp_path, records, target, "poll", bulk=True, resume=True)
    assert receipt.resumed and receipt.target["bulk_import"]["status"] == "Completed"
    assert receipt.counts.written + sum(receipt.counts.skipped.values()) == 40
    assert len(emulator.indexes[name].imports) == 1
    assert len(read_all(target)) == receipt.counts.written


def test_an_import_that_skips_records_fails_the_run(tmp_path: Path, emulator: PineconeEmulator,
                                                    s3: MotoServer) -> None:
    """With ``continue``, an import that leaves records out completes on Pinecone's side, and
    the run fails on the count: what the index holds is never claimed complete."""
    records = list(sample_records(20, dims=4, null_vectors=False, seed=3))
    target = index_url(emulator, bulk_error_mode="continue")
    import vexchange.connectors._pinecone_import as bulk

    start = bulk.PineconeImportWriter._start

    def spoil_then_start(self: Any) -> str:  # one file Pinecone refuses: a column it does not know
        import pyarrow.fs as pafs

        fs = s3.filesystem()
        infos = fs.get_file_info(pafs.FileSelector(self.files.path.as_posix(), recursive=True))  # type: ignore[attr-defined]
        first = sorted(i.path for i in infos if i.path.endswith(".parquet"))[0]
        with fs.open_input_file(first) as handle:  # type: ignore[attr-defined]
            table = pq.read_table(handle)
        with fs.open_output_stream(first) as handle:  # type: ignore[attr-defined]
            pq.write_table(table.append_column("extra", pa.array([1] * table.num_rows)), handle)
        return start(self)

    bulk.PineconeImportWriter._start = spoil_then_start  # type: ignore[method-assign]
    try:
        with pytest.raises(MigrationError, match=r"imported \d+ of the \d+ records"):
            _run(tmp_path, records, target, "spoilt", bulk=True)
    finally:
        bulk.PineconeImportWriter._start = start  # type: ignore[method-assign]


def test_bulk_refusals(tmp_path: Path, emulator: PineconeEmulator) -> None:
    records = list(sample_records(5, dims=4, seed=4))
    with pytest.raises(UsageError, match="needs the object storage"):
        _run(tmp_path, records, index_url(emulator, bulk_uri=""), "nouri", bulk=True)
    with pytest.raises(UsageError, match="s3:// or gs://"):
        _run(tmp_path, records, index_url(emulator, bulk_uri="/tmp/local"), "local", bulk=True)
    with pytest.raises(UsageError, match="bulk"):
        _run(tmp_path, records, f"parquet://{tmp_path}/out", "parquet", bulk=True)


def test_a_namespace_no_import_folder_can_name_is_refused_by_name(tmp_path: Path,
                                                                  emulator: PineconeEmulator) -> None:
    """``team/a`` is a Pinecone namespace an upsert keeps, but no import folder: its records
    are refused (counted, whole in the rejects file), never imported into another namespace."""
    records = [r.replace(namespace="team/a" if i % 2 else "team-b")
               for i, r in enumerate(sample_records(10, dims=4, null_vectors=False, seed=6))]
    records = [r for r in records if len((r.text or "").encode()) < 30_000]
    target = index_url(emulator)
    receipt = _run(tmp_path, records, target, "slash", bulk=True)
    refused = receipt.counts.skipped.get("namespace_not_importable", 0)
    assert refused == sum(1 for r in records if r.namespace == "team/a") and refused
    assert {ns for ns, _ in read_all(target)} == {"team-b"}
    assert "write it without --bulk" in (tmp_path / "slash.rejects.jsonl").read_text()


# ------------------------------------------------------------------ the emulator's import API

@pytest.fixture
def sdk_index(emulator: PineconeEmulator) -> Iterator[Callable[[], tuple[Any, str]]]:
    """Makes a new index in the emulator and the Pinecone SDK's client of it (closed after the
    test, so no connection is left for the garbage collector to warn about in a later test)."""
    from pinecone import Pinecone

    made: list[Any] = []

    def make() -> tuple[Any, str]:
        name = f"raw-{uuid.uuid4().hex[:8]}"
        host = emulator.create_index(name, 4)
        made.append(Pinecone(api_key=KEY, host=emulator.url).index(host=host))
        return made[-1], name

    yield make
    for index in made:
        index.close()


def _put(s3: MotoServer, key: str, table: pa.Table) -> None:
    with s3.filesystem().open_output_stream(f"{BUCKET}/{key}") as handle:  # type: ignore[attr-defined]
        pq.write_table(table, handle)


def _wait(index: Any, import_id: str) -> Any:
    import time

    for _ in range(400):
        model = index.describe_import(import_id)
        if model.status in ("Completed", "Failed", "Cancelled"):
            return model
        time.sleep(0.02)
    raise AssertionError("the import did not end")


def _files(s3: MotoServer, prefix: str) -> None:
    f32 = pa.list_(pa.float32())
    good = pa.table({"id": ["a", "b"], "values": pa.array([[1, 0, 0, 0], [0, 1, 0, 0]], f32),
                     "metadata": ['{"k": 1}', None]})
    bad = pa.table({"id": ["c", "z"], "values": pa.array([[0, 0, 1, 0], [0, 0, 0, 0]], f32)})
    _put(s3, f"{prefix}/ns1/0.parquet", good)
    _put(s3, f"{prefix}/ns1/1.parquet", bad)  # "z" is all zeros
    _put(s3, f"{prefix}/__default__/0.parquet", good.append_column("extra", pa.array([1, 2])))
    with s3.filesystem().open_output_stream(f"{BUCKET}/{prefix}/notes.txt") as handle:  # type: ignore[attr-defined]
        handle.write(b"not read")


def test_the_emulator_imports_as_documented(s3: MotoServer, emulator: PineconeEmulator,
                                            sdk_index: Callable[[], tuple[Any, str]]) -> None:
    """abort: the first bad record fails the import and nothing is imported; continue: the
    bad record and the file with a foreign column are skipped, the rest imported; a namespace
    that exists already fails an import; list and cancel."""
    prefix = f"raw-{uuid.uuid4().hex[:6]}"
    _files(s3, prefix)
    index, name = sdk_index()
    uri = f"s3://{BUCKET}/{prefix}/"
    failed = _wait(index, index.start_import(uri=uri, integration_id=INTEGRATION).id)
    assert failed.status == "Failed" and "must be id, values" in (failed.error or "")
    assert emulator.records(name) == 0
    done = _wait(index, index.start_import(uri=uri, integration_id=INTEGRATION, error_mode="continue").id)
    assert done.status == "Completed" and done.records_imported == 3
    assert sorted(emulator.indexes[name].namespaces["ns1"]) == ["a", "b", "c"]
    assert "" not in emulator.indexes[name].namespaces
    skipped = emulator.import_errors[done.id]
    assert len(skipped) == 2 and any("extra" in s for s in skipped)
    again = _wait(index, index.start_import(uri=uri, integration_id=INTEGRATION, error_mode="continue").id)
    assert again.status == "Failed" and "already exists" in (again.error or "")
    assert [m.id for m in index.list_imports()] == [failed.id, done.id, again.id]
    emulator.import_seconds = 5.0
    try:
        other, _ = sdk_index()
        slow = other.start_import(uri=uri, integration_id=INTEGRATION, error_mode="continue").id
        other.cancel_import(slow)
        assert _wait(other, slow).status == "Cancelled"
    finally:
        emulator.import_seconds = 0.15
    from pinecone.errors.exceptions import ApiError

    with pytest.raises(ApiError, match="integration"):
        index.start_import(uri=uri, integration_id="nope")


def test_the_engine_refuses_bulk_where_it_cannot_run(tmp_path: Path, emulator: PineconeEmulator) -> None:
    """One import per run (no workers, not incremental), and a Milvus target names why."""
    records = list(sample_records(5, dims=4, null_vectors=False, seed=5))
    with pytest.raises(UsageError, match="--workers"):
        _run(tmp_path, records, index_url(emulator), "workers", bulk=True, workers=2)
    with pytest.raises(UsageError, match="incremental"):
        _run(tmp_path, records, index_url(emulator), "incremental", bulk=True, incremental=True)
    pytest.importorskip("pymilvus")
    with pytest.raises(UsageError, match="Milvus Lite"):
        _run(tmp_path, records, "milvus://127.0.0.1:9/bulk_refused", "milvus", bulk=True)

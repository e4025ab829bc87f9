"""Lance datasets (pylance, the ``lance`` module): the conformance suite against datasets the
real Lance engine writes and reads, datasets pylance wrote read by vexchange, and datasets
vexchange wrote opened, scanned and searched with pylance itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import subprocess

import numpy as np
import pytest

from vexchange.connectors import _registry
from vexchange.testing import conformance
from vexchange.testing.conformance import ConnectorConformance, NativeRow
from vexchange.testing.moto_server import MotoServer, serving, set_aws_environment

lance = pytest.importorskip("lance")
pa = pytest.importorskip("pyarrow")


@pytest.fixture(autouse=True)
def lance_connector() -> Iterator[None]:
    """The connector by name until its builtin registry row lands (replace: a no-op then)."""
    if "lance" not in _registry._BUILTINS:
        _registry.register("lance", "vexchange.connectors.lance:LanceConnector", replace=True)
    yield


def lance_rows(location: str) -> list[NativeRow]:
    """Every row of the dataset at a location, through pylance and pyarrow alone."""
    path = location.removeprefix("lance://")
    table = lance.dataset(path).to_table()
    rows = []
    vectors = table.column("vector") if "vector" in table.column_names else None
    for i, text in enumerate(table.column("text").to_pylist()):
        cell = vectors[i] if vectors is not None else None
        dense = None if cell is None or not cell.is_valid else np.asarray(
            cell.values.to_numpy(zero_copy_only=False), dtype="<f4").tobytes()
        rows.append(NativeRow(text, dense))
    return rows


class TestLanceDataset(ConnectorConformance):
    """A Lance dataset holds what one run wrote (rows, not keys): namespaces stay apart."""

    same_id_in_namespaces = True

    @pytest.fixture
    def native_rows(self) -> Any:
        return lance_rows

    @pytest.fixture
    def new_location(self, tmp_path: Path) -> Any:
        return lambda name: f"lance://{tmp_path}/ds-{name}.lance"

    @pytest.fixture
    def broken_location(self, tmp_path: Path) -> str:
        blocker = tmp_path / "file.lance"
        blocker.write_text("a file where the dataset directory should be")
        return f"lance://{blocker}"

    def test_resume_after_the_process_is_killed(self, tmp_path: Path, new_location: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
        """The suite's killed run, in a child process that knows the connector's name too
        (until the registry row lands)."""
        _child_knows_lance(monkeypatch)
        super().test_resume_after_the_process_is_killed(tmp_path, new_location)


def _child_knows_lance(monkeypatch: pytest.MonkeyPatch) -> None:
    if "lance" not in _registry._BUILTINS:
        popen = subprocess.Popen
        setup = ("from vexchange.connectors import _registry; _registry.register("
                 "'lance', 'vexchange.connectors.lance:LanceConnector', replace=True); ")

        def with_setup(args: list[str], **kwargs: Any) -> Any:
            return popen([*args[:-1], setup + args[-1]], **kwargs)

        monkeypatch.setattr(conformance.subprocess, "Popen", with_setup)


def test_vexchange_reads_a_dataset_pylance_wrote(tmp_path: Path) -> None:
    """A dataset of another shape, written by pylance: integer ids (kept as integers), the
    fixed-size float32 column as the default vector, text, scalars and lists as metadata."""
    from vexchange.testing.conformance import read_all

    vectors = np.random.default_rng(5).standard_normal((20, 6)).astype("<f4")
    lance.write_dataset(pa.table({
        "id": pa.array(range(20), pa.int64()),
        "emb": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 6),
        "text": [f"doc {i}" for i in range(20)], "year": list(range(20)),
        "tags": [["a", str(i)] for i in range(20)]}), str(tmp_path / "theirs.lance"),
        max_rows_per_file=7)
    got = read_all(f"lance://{tmp_path}/theirs.lance", batch_size=6)
    assert len(got) == 20
    for i in range(20):
        record = got[(None, str(i))]
        assert record.id_type == "int" and record.text == f"doc {i}"
        assert record.vector is not None and record.vector.data == vectors[i].tobytes()
        assert record.metadata == {"year": i, "tags": ["a", str(i)]}


def test_pylance_and_lancedb_open_what_vexchange_writes(tmp_path: Path) -> None:
    """A dataset vexchange wrote is a Lance dataset to pylance (fixed-size float32 vectors,
    nearest-neighbour search finds each record's own vector) and, placed in a LanceDB
    directory, a LanceDB table the lancedb connector reads back record for record."""
    from vexchange.api import migrate
    from vexchange.testing.conformance import read_all, write_vmig
    from vexchange.testing.records import sample_records

    records = list(sample_records(60, dims=8, named=("title",), null_vectors=False, sparse=True))
    source = write_vmig(tmp_path / "src.vmig.jsonl", records, metric="euclidean")
    (tmp_path / "db").mkdir()
    migrate(source, f"lance://{tmp_path}/db/memories.lance", batch_size=25,
            receipt=tmp_path / "r.json", rejects=tmp_path / "r.rejects.jsonl")
    ds = lance.dataset(str(tmp_path / "db" / "memories.lance"))
    assert ds.count_rows() == 60 and len(ds.versions()) == 3  # one version per batch
    kind = ds.schema.field("vector").type
    assert pa.types.is_fixed_size_list(kind) and kind.list_size == 8 and kind.value_type == pa.float32()
    probe = records[7].vectors[""].array()
    near = ds.to_table(nearest={"column": "vector", "q": probe, "k": 1})
    assert near.column("id").to_pylist() == [records[7].id]
    pytest.importorskip("lancedb")
    ConnectorConformance.assert_same(records, read_all(f"lancedb://{tmp_path}/db?table=memories"))


def test_a_rerun_replaces_only_a_lance_dataset(tmp_path: Path) -> None:
    """A directory that is not a Lance dataset is never replaced; a dataset is, whole."""
    from vexchange.api import migrate
    from vexchange.errors import UsageError
    from vexchange.testing.conformance import read_all, write_vmig
    from vexchange.testing.records import sample_records

    (tmp_path / "mine.lance").mkdir()
    (tmp_path / "mine.lance" / "notes.txt").write_text("not a dataset")
    source = write_vmig(tmp_path / "src.vmig.jsonl", list(sample_records(5, dims=4)))
    with pytest.raises(UsageError, match="not a directory this format wrote"):
        migrate(source, f"lance://{tmp_path}/mine.lance", receipt=tmp_path / "a.json",
                rejects=tmp_path / "a.rejects.jsonl")
    assert (tmp_path / "mine.lance" / "notes.txt").exists()
    target = f"lance://{tmp_path}/ds.lance"
    for n in (5, 3):
        source = write_vmig(tmp_path / f"src{n}.vmig.jsonl", list(sample_records(n, dims=4)))
        migrate(source, target, receipt=tmp_path / f"{n}.json", rejects=tmp_path / f"{n}.rejects.jsonl")
    assert len(read_all(target)) == 3 and not (tmp_path / "ds.lance.partial").exists()


# ------------------------------------------------------------------------ in object storage

BUCKET = "vex-lance"


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoServer]:
    yield from serving(BUCKET)


@pytest.fixture
def aws_env(s3: MotoServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return set_aws_environment(s3, monkeypatch)


def storage_options(s3: Any) -> dict[str, str]:
    """pylance's own options for the server, written out here (not vexchange's)."""
    from vexchange.testing.moto_server import ACCESS_KEY, SECRET_KEY

    return {"access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY, "region": "us-east-1",
            "endpoint": s3.endpoint, "allow_http": "true"}


def s3_lance_rows(s3: Any) -> Any:
    def rows(location: str) -> list[NativeRow]:
        url = location.removeprefix("lance:").split("?")[0]
        table = lance.dataset(url, storage_options=storage_options(s3)).to_table()
        vectors = table.column("vector") if "vector" in table.column_names else None
        out = []
        for i, text in enumerate(table.column("text").to_pylist()):
            cell = vectors[i] if vectors is not None else None
            dense = None if cell is None or not cell.is_valid else np.asarray(
                cell.values.to_numpy(zero_copy_only=False), dtype="<f4").tobytes()
            out.append(NativeRow(text, dense))
        return out
    return rows


class TestLanceOnS3(ConnectorConformance):
    """``lance:s3://bucket/prefix/x.lance``: the conformance suite, read back with pylance."""

    same_id_in_namespaces = True

    @pytest.fixture
    def native_rows(self, s3: Any) -> Any:
        return s3_lance_rows(s3)

    @pytest.fixture
    def new_location(self, aws_env: dict[str, str], request: pytest.FixtureRequest) -> Any:
        test = request.node.name.replace("[", "-").replace("]", "")
        return lambda name: f"lance:s3://{BUCKET}/{test}/ds-{name}.lance"

    @pytest.fixture
    def broken_location(self, aws_env: dict[str, str], s3: Any) -> str:
        with s3.filesystem().open_output_stream(f"{BUCKET}/broken/x.lance/notes.txt") as handle:
            handle.write(b"not a dataset")
        return f"lance:s3://{BUCKET}/broken/x.lance"

    def test_resume_after_the_process_is_killed(self, tmp_path: Path, new_location: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
        """The suite's killed run (the child gets the AWS_* variables from this process)."""
        _child_knows_lance(monkeypatch)
        super().test_resume_after_the_process_is_killed(tmp_path, new_location)


def test_an_interrupted_s3_write_leaves_no_visible_version(tmp_path: Path, aws_env: dict[str, str],
                                                           s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that fails after two batches were written as fragments: their data files are in
    the bucket, yet pylance sees no dataset (a new one) or the earlier version unchanged (a
    rerun); ``--resume`` commits the whole run as one new version."""
    import pyarrow.fs as pafs

    from vexchange.api import migrate
    from vexchange.errors import MigrationError
    from vexchange.testing.conformance import read_all, write_vmig
    from vexchange.testing.records import sample_records

    records = list(sample_records(100, dims=4, null_vectors=False, seed=8))
    source = write_vmig(tmp_path / "src.vmig.jsonl", records, metric="cosine")
    url = f"s3://{BUCKET}/interrupted/ds.lance"
    target = f"lance:{url}"
    real = lance.fragment.write_fragments
    calls = [0]

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] > 2:
            raise OSError("connection reset by peer")
        return real(*args, **kwargs)

    def run(**options: Any) -> Any:
        return migrate(source, target, batch_size=20, receipt=tmp_path / "r.json",
                       rejects=tmp_path / "r.rejects.jsonl", **options)

    for earlier in (None, 30):
        if earlier:  # the rerun case: a complete earlier dataset of 30 records
            first = write_vmig(tmp_path / "first.vmig.jsonl", records[:earlier], metric="cosine")
            migrate(first, target, receipt=tmp_path / "f.json", rejects=tmp_path / "f.rejects.jsonl")
        calls[0] = 0
        with monkeypatch.context() as patched, pytest.raises(MigrationError):
            patched.setattr(lance.fragment, "write_fragments", failing)
            run()
        data = s3.filesystem().get_file_info(pafs.FileSelector(f"{BUCKET}/interrupted/ds.lance/data",
                                                               allow_not_found=True))
        assert len(data) >= 2 + (1 if earlier else 0)  # the fragments are there...
        if earlier is None:  # ...and no version names them
            with pytest.raises(ValueError, match="not found"):
                lance.dataset(url, storage_options=storage_options(s3))
        else:
            ds = lance.dataset(url, storage_options=storage_options(s3))
            assert ds.count_rows() == earlier and len(ds.versions()) == 1
        receipt = run(resume=True)
        assert receipt.counts.written == 100
        ds = lance.dataset(url, storage_options=storage_options(s3))
        assert ds.count_rows() == 100
        ConnectorConformance.assert_strictly_same(records, read_all(target))
        s3.filesystem().delete_dir(f"{BUCKET}/interrupted")


def test_lance_s3_credentials_as_secrets_never_in_the_receipt(tmp_path: Path, s3: Any,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from vexchange.api import migrate
    from vexchange.testing.conformance import write_vmig
    from vexchange.testing.moto_server import ACCESS_KEY, SECRET_KEY
    from vexchange.testing.records import sample_records

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    records = list(sample_records(12, dims=4, seed=3))
    source = write_vmig(tmp_path / "src.vmig.jsonl", records)
    target = f"lance:s3://{BUCKET}/secrets/ds.lance?endpoint_url={s3.endpoint}&region=us-east-1"
    secrets = {"key": ACCESS_KEY, "secret": SECRET_KEY}
    migrate(source, target, target_secrets=secrets, receipt=tmp_path / "r.json",
            rejects=tmp_path / "r.rejects.jsonl")
    text = (tmp_path / "r.json").read_text()
    assert SECRET_KEY not in text and ACCESS_KEY not in text and f"s3://{BUCKET}/secrets/ds.lance" in text
    from vexchange import open_store

    with open_store(target, secrets=secrets) as store:
        assert store.count() == 12
        got = {(r.namespace, r.id) for page in store.read(batch_size=5) for r in page.items}
    assert got == {(r.namespace, r.id) for r in records}

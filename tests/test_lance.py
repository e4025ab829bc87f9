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
        if "lance" not in _registry._BUILTINS:
            popen = subprocess.Popen
            setup = ("from vexchange.connectors import _registry; _registry.register("
                     "'lance', 'vexchange.connectors.lance:LanceConnector', replace=True); ")

            def with_setup(args: list[str], **kwargs: Any) -> Any:
                return popen([*args[:-1], setup + args[-1]], **kwargs)

            monkeypatch.setattr(conformance.subprocess, "Popen", with_setup)
        super().test_resume_after_the_process_is_killed(tmp_path, new_location)


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

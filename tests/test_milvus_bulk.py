"""The ``milvus-bulk`` connector: the conformance suite in both file types (each file read
back with pyarrow or json alone), files written by pymilvus's own ``LocalBulkWriter`` read
by vexchange, vexchange's files holding exactly the columns and row keys that writer writes,
and their rows accepted by Milvus (Milvus Lite, embedded) into the collection the manifest
describes. Milvus Lite has no bulk import (``do_bulk_insert`` answers UNIMPLEMENTED), so the
import itself is checked against pymilvus's writer's layout, not run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow.parquet as pq
import pytest

from vexchange.api import migrate
from vexchange.connectors import _registry
from vexchange.testing.conformance import ConnectorConformance, NativeRow, read_all, write_vmig
from vexchange.testing.records import sample_records

ROW = "vexchange.connectors.milvus_bulk:MilvusBulkConnector"


@pytest.fixture(autouse=True)
def _registered() -> Any:
    added = "milvus-bulk" not in _registry._BUILTINS
    if added:
        _registry.register("milvus-bulk", ROW, replace=True)
    yield
    if added:
        _registry._REGISTERED.pop("milvus-bulk", None)


def _root(location: str) -> Path:
    return Path(location.split("://", 1)[1].split("?")[0])


def milvus_rows(location: str) -> list[NativeRow]:
    """Every row of every import file: Parquet through pyarrow, row JSON through json; the
    text from ``$meta`` (the dynamic field, where Milvus keeps it)."""
    rows = []
    for path in sorted(_root(location).glob("*/*.parquet")):
        table = pq.read_table(path)
        for vec, meta in zip(table.column("vector").to_pylist(), table.column("$meta").to_pylist(),
                             strict=True):
            rows.append(NativeRow(json.loads(meta).get("text"), np.asarray(vec, "<f4").tobytes()))
    for path in sorted(_root(location).glob("*/*.json")):
        for row in json.loads(path.read_text())["rows"]:
            rows.append(NativeRow(row["$meta"].get("text"), np.asarray(row["vector"], "<f4").tobytes()))
    return rows


class TestMilvusBulkParquet(ConnectorConformance):
    null_vectors = False
    same_id_in_namespaces = True  # one partition per namespace
    file_type: ClassVar[str] = "parquet"

    @pytest.fixture
    def new_location(self, tmp_path: Path) -> Any:
        return lambda name: f"milvus-bulk://{tmp_path}/{name}?format={self.file_type}"

    @pytest.fixture
    def broken_location(self, tmp_path: Path) -> str:
        (tmp_path / "file").write_text("not a directory")
        return f"milvus-bulk://{tmp_path}/file"

    @pytest.fixture
    def native_rows(self) -> Any:
        return milvus_rows

    def test_resume_after_the_process_is_killed(self, tmp_path: Path, new_location: Any) -> None:
        if "milvus-bulk" not in _registry._BUILTINS:
            pytest.skip("a child process finds milvus-bulk only through its builtin registry row")
        super().test_resume_after_the_process_is_killed(tmp_path, new_location)


class TestMilvusBulkJson(TestMilvusBulkParquet):
    file_type = "json"


def _schema(dims: int) -> Any:
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("id", DataType.VARCHAR, max_length=65535, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dims)
    schema.verify()
    return schema


def _pymilvus_files(tmp_path: Path, file_type: str, rows: list[dict[str, Any]]) -> Path:
    """Files made by pymilvus's LocalBulkWriter, moved into one partition folder."""
    bulk_writer = pytest.importorskip("pymilvus.bulk_writer")
    kind = {"json": bulk_writer.BulkFileType.JSON, "parquet": bulk_writer.BulkFileType.PARQUET}[file_type]
    writer = bulk_writer.LocalBulkWriter(schema=_schema(4), local_path=str(tmp_path / f"pm-{file_type}"),
                                         file_type=kind)
    for row in rows:
        writer.append_row(row)
    writer.commit()
    root = tmp_path / f"import-{file_type}"
    (root / "_default").mkdir(parents=True)
    for i, path in enumerate(Path(f) for group in writer.batch_files for f in group):
        path.rename(root / "_default" / f"{i}.{file_type}")
    return root


@pytest.mark.parametrize("file_type", ["json", "parquet"])
def test_files_pymilvus_writes_load_in_vexchange(tmp_path: Path, file_type: str) -> None:
    vec = np.arange(8, dtype="<f4").reshape(2, 4) / 3
    rows = [{"id": "a", "vector": vec[0].tolist(), "genre": "news", "n": 7, "nested": {"k": [1, 2]}},
            {"id": "b", "vector": vec[1].tolist(), "$meta": {"text": "hello"}}]
    root = _pymilvus_files(tmp_path, file_type, rows)
    got = read_all(f"milvus-bulk://{root}")
    assert set(got) == {(None, "a"), (None, "b")}
    assert got[(None, "a")].metadata == {"genre": "news", "n": 7, "nested": {"k": [1, 2]}}
    assert got[(None, "a")].vectors[""].data == vec[0].tobytes()
    assert got[(None, "b")].text == "hello" and got[(None, "b")].metadata is None


@pytest.mark.parametrize("file_type", ["json", "parquet"])
def test_vexchange_files_have_the_layout_pymilvus_writes(tmp_path: Path, file_type: str) -> None:
    """Same Parquet columns and types (``id`` string, ``vector`` list<float>, ``$meta``
    string); the same row JSON (``{"rows": [...]}``, each row ``id``, ``vector``, ``$meta``)."""
    theirs = _pymilvus_files(tmp_path, file_type, [{"id": "a", "vector": [0.5, 1.0, 2.0, 3.0], "k": 1}])
    records = list(sample_records(5, dims=4, null_vectors=False, seed=4))
    out = tmp_path / "ours"
    migrate(write_vmig(tmp_path / "s.vmig.jsonl", records), f"milvus-bulk://{out}?format={file_type}",
            receipt=tmp_path / "r.json", rejects=tmp_path / "r.rejects.jsonl")
    ours = sorted(out.glob(f"*/*.{file_type}"))
    assert ours
    their_file = next(theirs.glob(f"*/*.{file_type}"))
    if file_type == "parquet":
        a, b = pq.read_schema(their_file), pq.read_schema(ours[0])
        assert a.names == b.names and [f.type for f in a] == [f.type for f in b]
    else:
        a_rows, b_rows = json.loads(their_file.read_text()), json.loads(ours[0].read_text())
        assert set(a_rows) == set(b_rows) == {"rows"}
        assert all(set(r) == set(a_rows["rows"][0]) for r in b_rows["rows"])
        assert all(isinstance(r["$meta"], dict) for r in b_rows["rows"])


@pytest.mark.slow
def test_milvus_accepts_the_rows_into_the_collection_the_manifest_describes(tmp_path: Path) -> None:
    """The manifest's collection created in Milvus Lite, each partition folder's rows
    inserted (what an import does), read back through pymilvus: every vector bit for bit,
    the ``$meta`` keys as dynamic fields (``namespace`` read back as one)."""
    pymilvus = pytest.importorskip("pymilvus")
    records = [r for r in sample_records(40, dims=8, null_vectors=False, seed=6)]
    out = tmp_path / "m"
    migrate(write_vmig(tmp_path / "s.vmig.jsonl", records, metric="dot"), f"milvus-bulk://{out}",
            receipt=tmp_path / "r.json", rejects=tmp_path / "r.rejects.jsonl")
    manifest = json.loads((out / "vexchange.json").read_text())
    collection = manifest["layout"]["collection"]
    client = pymilvus.MilvusClient(str(tmp_path / "lite.db"))
    schema = pymilvus.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True)
    for field in collection["fields"]:
        params = {k: v for k, v in field.items() if k in ("max_length", "is_primary", "dim")}
        schema.add_field(field["name"], getattr(pymilvus.DataType, field["type"]), **params)
    index = client.prepare_index_params()
    index.add_index("vector", index_type="FLAT", metric_type=collection["fields"][1]["metric"])
    want = {(r.namespace, r.id): r for r in records}
    read = 0
    for partition in manifest["layout"]["partitions"]:
        # Milvus Lite has no partitions: each folder goes to a collection of its own here
        name = f"bulk{partition}"
        client.create_collection(name, schema=schema, index_params=index)
        for path in sorted((out / partition).glob("*.parquet")):
            rows = pq.read_table(path).to_pylist()
            client.insert(name, [{"id": r["id"], "vector": r["vector"], **json.loads(r["$meta"])}
                                 for r in rows])
        client.load_collection(name)
        got = client.query(name, filter='id != ""', output_fields=["id", "vector", "namespace"],
                           limit=1000)
        for row in got:
            record = want[(row.get("namespace"), row["id"])]
            assert np.asarray(row["vector"], "<f4").tobytes() == record.vectors[""].data
        read += len(got)
    assert read == len(records)
    client.close()


def test_records_the_collection_cannot_hold_are_refused_by_name(tmp_path: Path) -> None:
    """A vector of another size, a missing named vector, an id over 65,535 bytes: each a
    counted reject with the whole record, the rest written."""
    base = list(sample_records(4, dims=4, named=("title",), null_vectors=False, seed=8))
    odd = [base[1].replace(id="short", vectors={**base[1].vectors, "title": base[1].vectors[""]}),
           base[2].replace(id="no-title", vectors={"": base[2].vectors[""]}),
           base[3].replace(id="x" * 70_000)]
    odd = [r.replace(id_type="str") for r in odd]
    out = tmp_path / "m"
    source = write_vmig(tmp_path / "s.vmig.jsonl", [base[0].replace(id_type="str", id="ok"), *odd])
    receipt = migrate(source, f"milvus-bulk://{out}", receipt=tmp_path / "r.json",
                      rejects=tmp_path / "r.rejects.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "r.rejects.jsonl").read_text().splitlines()]
    assert {(line["id"][:8], line["reason"]) for line in lines} == {
        ("short", "dims_mismatch"), ("no-title", "no_vector"), ("xxxxxxxx", "id_too_long")}
    assert all(line["record"] for line in lines) and receipt.counts.written == 1
    assert set(read_all(f"milvus-bulk://{out}")) == {(base[0].namespace, "ok")}

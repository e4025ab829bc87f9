"""The ``pinecone-bulk`` connector: the conformance suite (each file read back with pyarrow
and json alone), the exact layout Pinecone's import takes (peers.md 5.1), and files written
with pyarrow by that layout read by vexchange."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vexchange.api import migrate
from vexchange.connectors import _registry
from vexchange.testing.conformance import ConnectorConformance, NativeRow, read_all, write_vmig
from vexchange.testing.records import sample_records

ROW = "vexchange.connectors.pinecone_bulk:PineconeBulkConnector"
PINECONE_SCHEMA = pa.schema([
    ("id", pa.string()), ("values", pa.list_(pa.float32())),
    ("sparse_values", pa.struct([("indices", pa.list_(pa.uint32())), ("values", pa.list_(pa.float32()))])),
    ("metadata", pa.string())])


@pytest.fixture(autouse=True)
def _registered() -> Any:
    added = "pinecone-bulk" not in _registry._BUILTINS
    if added:
        _registry.register("pinecone-bulk", ROW, replace=True)
    yield
    if added:
        _registry._REGISTERED.pop("pinecone-bulk", None)


def _root(location: str) -> Path:
    return Path(location.split("://", 1)[1].split("?")[0])


def pinecone_rows(location: str) -> list[NativeRow]:
    """Every row of every ``<namespace>/*.parquet`` through pyarrow: ``values`` as float32,
    the text from the ``metadata`` JSON object (as Pinecone would hold it)."""
    rows = []
    for path in sorted(_root(location).glob("*/*.parquet")):
        table = pq.read_table(path)
        for values, meta in zip(table.column("values").to_pylist(),
                                table.column("metadata").to_pylist(), strict=True):
            rows.append(NativeRow(json.loads(meta).get("text"), np.asarray(values, "<f4").tobytes()))
    return rows


class TestPineconeBulk(ConnectorConformance):
    named_vectors = ()
    null_vectors = False
    same_id_in_namespaces = True
    tricky_refused: ClassVar[dict[str, str]] = {
        "text-long": "metadata_too_large",  # 400,000 bytes of text; Pinecone holds 40 KB
        "cos-zero": "zero_vector",  # Pinecone refuses a dense vector of zeros
    }

    @pytest.fixture
    def new_location(self, tmp_path: Path) -> Any:
        """The tricky corpus within Pinecone's own limits (no blobs), so what exceeds them is
        refused by name; the other tests keep long texts whole in a blob directory."""
        blobs = f"?blobs={tmp_path}/blobs"
        return lambda name: f"pinecone-bulk://{tmp_path}/{name}" + ("" if name == "tricky" else blobs)

    @pytest.fixture
    def broken_location(self, tmp_path: Path) -> str:
        (tmp_path / "file").write_text("not a directory")
        return f"pinecone-bulk://{tmp_path}/file"

    @pytest.fixture
    def native_rows(self) -> Any:
        return pinecone_rows

    def test_resume_after_the_process_is_killed(self, tmp_path: Path, new_location: Any) -> None:
        if "pinecone-bulk" not in _registry._BUILTINS:
            pytest.skip("a child process finds pinecone-bulk only through its builtin registry row")
        super().test_resume_after_the_process_is_killed(tmp_path, new_location)


def test_the_layout_is_exactly_what_pinecone_imports(tmp_path: Path) -> None:
    """One folder per namespace (``__default__`` for none), nothing but the four columns with
    Pinecone's types, metadata a JSON object within 40 KB, finite values of the index's size."""
    records = [r.replace(text=(r.text or "")[:500]) for r in
               sample_records(60, dims=8, null_vectors=False, sparse=True, seed=2)]
    records += [records[0].replace(namespace=None, id="987654")]
    out = tmp_path / "bulk"
    source = write_vmig(tmp_path / "s.vmig.jsonl", records, metric="dot")
    migrate(source, f"pinecone-bulk://{out}?rows_per_file=7", receipt=tmp_path / "r.json",
            rejects=tmp_path / "r.rejects.jsonl")
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    from vexchange.connectors.pinecone_bulk import store_namespace

    want = sorted({store_namespace(r.namespace) for r in records})  # "" -> vx-<sha256 of "">
    assert folders == want
    total = 0
    for path in out.glob("*/*.parquet"):
        schema = pq.read_schema(path)
        assert schema.names == PINECONE_SCHEMA.names
        assert [f.type for f in schema] == [f.type for f in PINECONE_SCHEMA]
        table = pq.read_table(path)
        assert table.num_rows <= 7
        total += table.num_rows
        assert table.column("id").null_count == 0
        columns = [table.column(c).to_pylist() for c in ("values", "metadata", "sparse_values")]
        for values, meta, sparse in zip(*columns, strict=True):
            assert len(values) == 8 and np.isfinite(values).all()
            assert isinstance(json.loads(meta), dict) and len(meta.encode()) <= 40 * 1024
            if sparse is not None:
                assert len(sparse["indices"]) == len(sparse["values"]) > 0
    assert total == len(records)
    ConnectorConformance.assert_same(records, read_all(f"pinecone-bulk://{out}"))


def test_files_written_by_pyarrow_in_pinecone_layout_load(tmp_path: Path) -> None:
    """Import files made by another tool (pyarrow with the schema Pinecone documents), with
    plain metadata and no ``_vex``: read as records of the folders' namespaces."""
    root = tmp_path / "import"
    vec = np.arange(12, dtype="<f4").reshape(3, 4)
    for ns in ("docs", "__default__"):
        (root / ns).mkdir(parents=True)
        pq.write_table(pa.table({
            "id": ["a", "b", "c"], "values": pa.array(vec.tolist(), pa.list_(pa.float32())),
            "sparse_values": pa.array([None, {"indices": [1, 5], "values": [0.5, 2.0]}, None],
                                      PINECONE_SCHEMA.field("sparse_values").type),
            "metadata": ['{"genre": "news", "year": 2020}', None, '{"tags": ["x"]}']},
            schema=PINECONE_SCHEMA), root / ns / "0.parquet")
    got = read_all(f"pinecone-bulk://{root}")
    assert set(got) == {(ns, i) for ns in ("docs", None) for i in "abc"}
    a = got[("docs", "a")]
    assert a.metadata == {"genre": "news", "year": 2020} and a.text is None
    assert a.vectors[""].data == vec[0].tobytes()
    assert got[(None, "b")].sparse[""].index_array().tolist() == [1, 5]

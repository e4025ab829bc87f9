"""The ``parquet`` connector: the conformance suite (each file read back with pyarrow alone),
and the files both ways with the ecosystem's own readers and writers: ``datasets``
(``load_dataset("parquet", ...)``, ``Dataset.to_parquet``) and ``pyarrow.dataset``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from vexchange.api import migrate
from vexchange.connectors import _registry
from vexchange.errors import VexError
from vexchange.testing.conformance import ConnectorConformance, NativeRow, read_all, write_vmig
from vexchange.testing.records import sample_records
from vexchange.testing.tricky import tricky_records

ROWS = {"parquet": "vexchange.connectors.parquet:ParquetConnector",
        "pinecone-bulk": "vexchange.connectors.pinecone_bulk:PineconeBulkConnector",
        "milvus-bulk": "vexchange.connectors.milvus_bulk:MilvusBulkConnector"}


@pytest.fixture(autouse=True)
def _registered() -> Any:
    """Until the registry has their builtin rows, the connectors are registered at run time."""
    added = [name for name in ROWS if name not in _registry._BUILTINS]
    for name in added:
        _registry.register(name, ROWS[name], replace=True)
    yield
    for name in added:
        _registry._REGISTERED.pop(name, None)


def needs_builtin_row(name: str) -> None:
    if name not in _registry._BUILTINS:
        pytest.skip(f"a child process finds {name} only through its builtin registry row")


def parquet_rows(location: str) -> list[NativeRow]:
    """Every row through pyarrow alone: ``text`` and the ``vector`` column's float32 bytes."""
    root = Path(location.split("://", 1)[1].split("?")[0])
    table = pads.dataset(root / "data", format="parquet").to_table()
    rows = []
    for text, vec in zip(table.column("text").to_pylist(), table.column("vector").to_pylist(),
                         strict=True):
        rows.append(NativeRow(text, None if vec is None else np.asarray(vec, "<f4").tobytes()))
    return rows


class TestParquet(ConnectorConformance):
    same_id_in_namespaces = True

    @pytest.fixture
    def new_location(self, tmp_path: Path) -> Any:
        return lambda name: f"parquet://{tmp_path}/out-{name}.parquet"

    @pytest.fixture
    def broken_location(self, tmp_path: Path) -> str:
        (tmp_path / "not-ours.parquet").write_text("a file vexchange did not write")
        return f"parquet://{tmp_path}/not-ours.parquet"

    @pytest.fixture
    def native_rows(self) -> Any:
        return parquet_rows

    def test_resume_after_the_process_is_killed(self, tmp_path: Path, new_location: Any) -> None:
        needs_builtin_row("parquet")
        super().test_resume_after_the_process_is_killed(tmp_path, new_location)


def _export(tmp_path: Path, records: list[Any], target: str, **options: Any) -> Any:
    source = write_vmig(tmp_path / "src.vmig.jsonl", records, metric="cosine")
    return migrate(source, target, receipt=tmp_path / "x.json", rejects=tmp_path / "x.rejects.jsonl",
                   **options)


def test_load_dataset_and_pyarrow_dataset_read_what_vexchange_writes(tmp_path: Path) -> None:
    """The card's features are what ``datasets`` infers; vectors are fixed-length float32
    lists, bit for bit; several files, each in row groups; the metric is in the card."""
    datasets = pytest.importorskip("datasets")
    records = list(sample_records(250, dims=16, named=("title",), null_vectors=False, seed=5))
    out = tmp_path / "mem.parquet"
    _export(tmp_path, records, f"parquet://{out}?rows_per_file=100&row_group=40", batch_size=33)
    names = sorted(p.name for p in (out / "data").iterdir())
    assert names == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    assert [pq.ParquetFile(out / "data" / n).metadata.num_row_groups for n in names] == [3, 3, 2]
    card = (out / "README.md").read_text()
    assert "| (default) | `vector` | 16 | cosine |" in card
    loaded = datasets.load_dataset(str(out), split="train")
    assert loaded.features["vector"] == datasets.List(datasets.Value("float32"), length=16)
    assert loaded.num_rows == 250
    plain = datasets.load_dataset("parquet", data_dir=str(out / "data"), split="train")
    assert plain.features == loaded.features
    by_id = {r.id: r for r in records}
    for row in loaded.with_format("numpy"):
        want = by_id[row["id"]]
        assert row["vector"].astype("<f4").tobytes() == want.vectors[""].data
        assert row["vector_title"].astype("<f4").tobytes() == want.vectors["title"].data
        assert row["text"] == want.text
        assert (None if row["metadata"] is None else json.loads(str(row["metadata"]))) == want.metadata
    table = pads.dataset(out / "data", format="parquet").to_table()
    assert table.schema.field("vector").type == pa.list_(pa.float32(), 16)
    assert sorted(table.column("id").to_pylist()) == sorted(by_id)


def test_what_datasets_and_pyarrow_write_loads_in_vexchange(tmp_path: Path) -> None:
    """A dataset saved by ``datasets`` (a ``Sequence`` of float32, an integer id, other
    columns), and files written by pyarrow (float64 lists, no id column, a Hive folder
    layout with ``_SUCCESS``), read as records: vectors as float32, columns as metadata."""
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((20, 6)).astype("<f4")
    features = datasets.Features({"id": datasets.Value("int64"), "text": datasets.Value("string"),
                                  "embedding": datasets.List(datasets.Value("float32"), length=6),
                                  "year": datasets.Value("int32"),
                                  "tags": datasets.List(datasets.Value("string"))})
    ds = datasets.Dataset.from_dict({"id": list(range(20)), "text": [f"t{i}" for i in range(20)],
                                     "embedding": vectors.tolist(), "year": [2000 + i for i in range(20)],
                                     "tags": [["a", str(i)] for i in range(20)]}, features=features)
    hf = tmp_path / "hf"
    (hf / "data").mkdir(parents=True)
    ds.to_parquet(str(hf / "data" / "train-00000-of-00001.parquet"))
    got = read_all(f"parquet://{hf}")
    assert len(got) == 20
    record = got[(None, "7")]
    assert record.id_type == "int" and record.text == "t7"
    assert record.vectors[""].data == vectors[7].tobytes()
    assert record.metadata == {"year": 2007, "tags": ["a", "7"]}

    hive = tmp_path / "hive"
    for part in (0, 1):
        folder = hive / f"part={part}"
        folder.mkdir(parents=True)
        pq.write_table(pa.table({"vec": pa.array(vectors[part * 10:(part + 1) * 10].astype("f8").tolist(),
                                                 pa.list_(pa.float64())),
                                 "label": [f"l{part}"] * 10}), folder / "0.parquet")
    (hive / "_SUCCESS").write_text("")
    rows = read_all(f"parquet://{hive}", batch_size=4)
    assert sorted(k[1] for k in rows) == sorted(str(i) for i in range(20))
    assert rows[(None, "13")].vectors[""].data == vectors[13].tobytes()
    assert rows[(None, "13")].metadata == {"label": "l1"}


def test_the_tricky_corpus_through_datasets_and_back(tmp_path: Path) -> None:
    """vexchange -> Parquet -> ``datasets`` (loaded, saved again as Parquet by datasets
    itself) -> vexchange: the columns datasets keeps carry every record exactly."""
    datasets = pytest.importorskip("datasets")
    records = tricky_records(dims=8, named=("title",))
    out = tmp_path / "t.parquet"
    _export(tmp_path, records, f"parquet://{out}")
    loaded = datasets.load_dataset(str(out), split="train")
    again = tmp_path / "again.parquet"
    again.mkdir()
    (again / "vexchange.json").write_text("{}")
    loaded.to_parquet(str(again / "0.parquet"))
    # datasets drops the schema's metadata; the columns still say whose layout it is
    assert b"vexchange" not in (pq.read_schema(again / "0.parquet").metadata or {})
    ConnectorConformance.assert_strictly_same(records, read_all(f"parquet://{again}"))


def test_a_rerun_replaces_the_output_and_a_foreign_directory_is_never_replaced(tmp_path: Path) -> None:
    records = list(sample_records(30, dims=4, seed=1))
    out = tmp_path / "o.parquet"
    _export(tmp_path, records, f"parquet://{out}")
    _export(tmp_path, records[:10], f"parquet://{out}")
    assert len(read_all(f"parquet://{out}")) == 10
    assert not (tmp_path / "o.parquet.staging").exists() and not (tmp_path / "o.parquet.partial").exists()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(VexError, match="did not write"):
        _export(tmp_path, records, f"parquet://{foreign}")
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_bad_options_and_files_are_usage_errors(tmp_path: Path) -> None:
    for bad in ("rows_per_file=0", "compression=brotli9", "cdc=maybe", "split=a/b"):
        with pytest.raises(VexError):
            read_all(f"parquet://{tmp_path}/x.parquet?{bad}")
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(VexError, match="not a readable Parquet"):
        read_all(f"parquet://{tmp_path}/junk.parquet")


# ------------------------------------------------------------------ the engine's fast Parquet path

def _records(n: int, **meta: Any) -> list[Any]:
    from vexchange.record import MemoryRecord, Vector

    return [MemoryRecord(id=f"r{i}", text=f"t{i}", namespace="ns",
                         vectors={"": Vector(np.full(4, i, "<f4").tobytes(), "m")},
                         metadata={"i": i, **meta}) for i in range(n)]


def test_a_page_of_plain_records_travels_as_msgpack_with_its_digests() -> None:
    from vexchange._canonical import record_digest
    from vexchange.connectors._base import Page
    from vexchange.engine.read_process import _decode_page, _encode_page, digests_of

    records = _records(5, tags=["a", "b"], x=-0.0, big=2**63 - 1)
    kind, body = _encode_page(Page(records, "c1"))
    assert kind == b"R"
    page = _decode_page(kind, body)
    assert page.items == records and page.cursor == "c1"
    assert digests_of(page) == [record_digest(r) for r in records]


def test_a_nan_in_metadata_travels_as_msgpack_bit_for_bit() -> None:
    """NaN is not equal to itself, so only the type screen (``_plain``) lets its page go as
    msgpack; msgpack keeps a float64's bits, payload and sign included."""
    import struct

    from vexchange.connectors._base import Page
    from vexchange.engine.read_process import _decode_page, _encode_page

    odd = struct.unpack("<d", struct.pack("<Q", 0xFFF8000000000123))[0]
    records = _records(3, odd=odd)
    kind, body = _encode_page(Page(records, None))
    assert kind == b"R"
    back = [struct.pack("<d", r.metadata["odd"]) for r in _decode_page(kind, body).items]  # type: ignore[index]
    assert back == [struct.pack("<d", odd)] * 3


@pytest.mark.parametrize("value", [(1, 2), 2**70, {"when": np.float32(1.5)}, {1: "int key"}])
def test_a_page_msgpack_would_change_goes_as_a_pickle(value: Any) -> None:
    from vexchange.connectors._base import Page
    from vexchange.engine.read_process import _decode_page, _encode_page, digests_of

    records = _records(3, odd=value)
    kind, body = _encode_page(Page(records, None))
    assert kind == b"P"
    page = _decode_page(kind, body)
    assert digests_of(page) is None
    assert [type(r.metadata["odd"]) for r in page.items] == [type(value)] * 3  # type: ignore[union-attr,index]


def test_the_data_files_are_written_as_the_run_goes_and_rebuilt_when_that_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vexchange.connectors import _arrow

    from vexchange.connectors.parquet import ParquetConnector
    from vexchange.spec import StoreSpec

    src = f"parquet://{tmp_path / 'src'}"
    writer = ParquetConnector(StoreSpec.parse(src)).open_writer()
    writer.write(list(sample_records(60)))
    writer.finish({})
    first = migrate(src, f"parquet://{tmp_path / 'live'}?row_group=7", batch_size=10)
    assert not list((tmp_path / "live" / "data").glob(".live-*"))
    assert pq.read_metadata(tmp_path / "live" / "data" / "train-00000-of-00001.parquet").num_row_groups > 1

    def broken(*args: Any, **kwargs: Any) -> int:
        raise OSError("no space left on device")

    monkeypatch.setattr(_arrow, "write_parquet_files", broken)  # the live writer's, not build_group's
    second = migrate(src, f"parquet://{tmp_path / 'rebuilt'}?row_group=7", batch_size=10)
    assert second.counts.written == first.counts.written == 60
    assert second.namespaces == first.namespaces
    assert read_all(f"parquet://{tmp_path / 'rebuilt'}") == read_all(f"parquet://{tmp_path / 'live'}")
    assert not (tmp_path / "rebuilt.staging").exists()

"""Parquet to Parquet as tables: a page of vexchange's own layout travels from the reading
child as its Arrow table and is written as it is, with the digests, counts and checks of the
records it holds; any page that is not the usual one is made into records and checked one by
one, with its refusals named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vexchange import migrate
from vexchange._canonical import record_digest
from vexchange.connectors import parquet
from vexchange.connectors.parquet import ParquetConnector, Shape, own_digests, own_records
from vexchange.errors import ConnectorError, VexError
from vexchange.record import MemoryRecord
from vexchange.spec import StoreSpec
from vexchange.testing.conformance import read_all
from vexchange.testing.records import sample_records
from vexchange.testing.tricky import tricky_records


def _dataset(path: Path, records: list[MemoryRecord], *, batch: int = 50) -> str:
    location = f"parquet://{path}"
    writer = ParquetConnector(StoreSpec.parse(location)).open_writer()
    for start in range(0, len(records), batch):
        writer.write(records[start:start + batch])
        writer.checkpoint()
    writer.finish({})
    return location


def _table(location: str) -> pa.Table:
    root = Path(StoreSpec.parse(location).path or "")
    return pq.read_table(sorted((root / "data").glob("*.parquet")))


def _plain_records(n: int, **options: Any) -> list[MemoryRecord]:
    return list(sample_records(n, null_vectors=False, **options))


def _counting(taken: list[int]) -> Any:
    original = parquet.ParquetWriter.write_table

    def spy(self: Any, table: Any) -> None:
        taken.append(table.num_rows)
        original(self, table)

    return spy


@pytest.fixture
def tables_written(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Rows the Parquet writer took as tables, page by page (the engine's side: the reading
    child is another process)."""
    taken: list[int] = []
    monkeypatch.setattr(parquet.ParquetWriter, "write_table", _counting(taken))
    monkeypatch.setenv("VEX_READ_AHEAD", "process")  # the child at any size
    return taken


@pytest.mark.parametrize("corpus", ["sample", "named", "tricky"])
def test_the_digests_from_columns_are_those_of_the_records(tmp_path: Path, corpus: str) -> None:
    records = (_plain_records(120) if corpus == "sample" else
               _plain_records(120, named=("title", "image")) if corpus == "named" else
               [r for r in tricky_records() if isinstance(r, MemoryRecord)])
    migrate_from = tmp_path / "src.vmig.jsonl"
    from vexchange.testing.conformance import write_vmig

    write_vmig(migrate_from, records)
    location = f"parquet://{tmp_path / 'ds'}"
    migrate(migrate_from, location, allow_skips=True, batch_size=11)
    table = _table(location)
    shape = Shape(table.schema)
    taken_pages = 0
    for start in range(0, table.num_rows, 9):
        page = table.slice(start, 9)
        taken = own_digests(page, shape)
        made = own_records(page, shape)
        if taken is None:
            continue
        taken_pages += 1
        assert all(isinstance(r, MemoryRecord) for r in made)
        digests, ids, namespaces = taken
        assert digests == [record_digest(r) for r in made]  # type: ignore[arg-type]
        assert ids == [r.id for r in made] and namespaces == [r.namespace for r in made]
    assert taken_pages > 0


def test_a_copy_goes_as_tables_and_matches_the_record_path(
        tmp_path: Path, tables_written: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    records = _plain_records(400, named=("title",))
    source = _dataset(tmp_path / "src", records)
    as_tables = migrate(source, f"parquet://{tmp_path / 'tables'}", batch_size=64)
    assert sum(tables_written) == as_tables.counts.written == 400

    monkeypatch.setattr(parquet.ParquetWriter, "takes_table", lambda self, table: False)
    tables_written.clear()
    as_records = migrate(source, f"parquet://{tmp_path / 'records'}", batch_size=64)
    assert not tables_written
    monkeypatch.undo()  # tables again, read in this process (a thread, then the main thread)
    monkeypatch.setattr(parquet.ParquetWriter, "write_table", _counting(tables_written))
    for mode in ("thread", "off"):
        monkeypatch.setenv("VEX_READ_AHEAD", mode)
        in_process = migrate(source, f"parquet://{tmp_path / mode}", batch_size=64)
        assert sum(tables_written) == 400
        tables_written.clear()
        assert _table(f"parquet://{tmp_path / mode}").equals(_table(f"parquet://{tmp_path / 'tables'}"))

    assert as_tables.namespaces == as_records.namespaces == in_process.namespaces
    assert as_tables.counts == as_records.counts == in_process.counts
    table = _table(f"parquet://{tmp_path / 'tables'}")
    assert table.equals(_table(f"parquet://{tmp_path / 'records'}"))
    assert table.schema.equals(_table(f"parquet://{tmp_path / 'off'}").schema, check_metadata=True)
    assert read_all(f"parquet://{tmp_path / 'tables'}") == read_all(source)
    assert {(r.namespace, r.id): r for r in records} == read_all(source)


def _with_bad_rows(source: str, out: Path) -> str:
    """The source's rows with row 3 repeated at the end and row 5's vector made NaN, in a
    file of the same layout (its schema keeps vexchange's metadata)."""
    table = _table(source)
    column = table.column("vector").combine_chunks()
    values = column.flatten().to_numpy().copy()
    size = column.type.list_size
    values[5 * size] = np.nan
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(values, pa.float32()), size)
    table = table.set_column(table.schema.get_field_index("vector"), table.schema.field("vector"), vectors)
    table = pa.concat_tables([table, table.slice(3, 1)])
    (out / "data").mkdir(parents=True)
    pq.write_table(table, out / "data" / "train-00000-of-00001.parquet")
    return f"parquet://{out}"


def test_a_page_with_a_repeated_id_or_a_broken_vector_is_checked_record_by_record(
        tmp_path: Path, tables_written: list[int]) -> None:
    source = _with_bad_rows(_dataset(tmp_path / "src", _plain_records(40)), tmp_path / "bad")
    receipt = migrate(source, f"parquet://{tmp_path / 'out'}", batch_size=10, allow_skips=True)
    assert receipt.counts.skipped == {"duplicate_id": 1, "invalid_vector": 1}
    assert receipt.counts.written == 39 and sum(tables_written) == 30  # the three clean pages
    assert receipt.rejects_file is not None
    rejects = [json.loads(line) for line in Path(receipt.rejects_file).read_text().splitlines()]
    assert sorted(r["reason"] for r in rejects) == ["duplicate_id", "invalid_vector"]
    assert all(r["record"]["id"] for r in rejects)  # each with its whole record
    written = read_all(f"parquet://{tmp_path / 'out'}")
    assert len(written) == 39


def test_a_run_that_fails_while_writing_tables_resumes_to_the_same_output(
        tmp_path: Path, tables_written: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    source = _dataset(tmp_path / "src", _plain_records(300))
    whole = migrate(source, f"parquet://{tmp_path / 'whole'}", batch_size=32)
    original = parquet.ParquetWriter.write_table
    calls = [0]

    def failing(self: Any, table: Any) -> None:
        calls[0] += 1
        if calls[0] == 4:
            raise ConnectorError("the disk went away")
        original(self, table)

    monkeypatch.setattr(parquet.ParquetWriter, "write_table", failing)
    target = f"parquet://{tmp_path / 'cut'}"
    with pytest.raises(VexError, match="the disk went away"):
        migrate(source, target, batch_size=32)
    assert not (tmp_path / "cut").exists()  # nothing looks complete
    resumed = migrate(source, target, batch_size=32, resume=True)
    assert resumed.resumed and resumed.counts == whole.counts and resumed.namespaces == whole.namespaces
    assert read_all(target) == read_all(source)
    assert _table(target).equals(_table(f"parquet://{tmp_path / 'whole'}"))


def test_a_broken_file_met_while_reading_tables_stops_the_run_with_its_error(
        tmp_path: Path, tables_written: list[int]) -> None:
    location = _dataset(tmp_path / "src", _plain_records(200))
    data = tmp_path / "src" / "data" / "train-00000-of-00001.parquet"
    pq.write_table(_table(location), data, row_group_size=20, compression="snappy")
    groups = pq.ParquetFile(data).metadata
    middle = groups.row_group(7).column(0).data_page_offset  # row group 7's first page: garbage
    raw = bytearray(data.read_bytes())
    raw[middle:middle + 64] = b"\xff" * 64
    data.write_bytes(bytes(raw))
    with pytest.raises(VexError) as caught:
        migrate(location, f"parquet://{tmp_path / 'out'}", batch_size=20)
    assert "page header" in str(caught.value)  # pyarrow's own words, not a traceback
    assert 0 < sum(tables_written) <= 140  # pages before the broken row group went as tables
    assert not (tmp_path / "out").exists()

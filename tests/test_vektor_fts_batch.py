"""A batch of new rows into VEKTOR fills ``memories_fts`` in one statement: Slipstream's insert
trigger is dropped and created again inside the batch's transaction (connectors/vektor.py
``_FtsPlan.batch_insert``). What the index holds is the trigger's, a failure leaves the
trigger where it was, and any other trigger is left alone to fire row by row."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

import vexchange
from vexchange.connectors._vektor_schema import SLIPSTREAM_DDL
from vexchange.connectors.vektor import VektorWriter, _CopyTrigger
from vexchange.record import MemoryRecord, Vector
from vexchange.testing.conformance import write_vmig

SLIPSTREAM_INSERT = (
    "CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN\n"
    "  INSERT INTO memories_fts(rowid, content, tags) VALUES (new.id, new.content, new.tags);\n"
    "END")


def _records(n: int, start: int = 1) -> list[MemoryRecord]:
    return [MemoryRecord(id=str(i), id_type="int", text=f"memory {i} about zebra{i % 3}",
                         namespace="n", metadata={"tags": f"t{i}"},
                         vectors={"": Vector(np.full(4, i, dtype="<f4").tobytes())},
                         created_at=i * 1000, updated_at=i * 1000)
            for i in range(start, start + n)]


def _slipstream(path: Path, extra: str = "") -> Path:
    con = sqlite3.connect(path)
    con.executescript(SLIPSTREAM_DDL + extra)
    con.close()
    return path


def _trigger_rows(db: Path) -> dict[str, tuple[int, str]]:
    """Each trigger's row in sqlite_master and its SQL: a trigger dropped and created again
    takes a new row."""
    con = sqlite3.connect(db)
    try:
        return {n: (r, q) for n, r, q in con.execute(
            "SELECT name, rowid, sql FROM sqlite_master WHERE type = 'trigger'")}
    finally:
        con.close()


def _trigger_places(db: Path) -> dict[str, int]:
    return {name: row for name, (row, _) in _trigger_rows(db).items()}


def _triggers(db: Path) -> dict[str, str]:
    return {name: sql for name, (_, sql) in _trigger_rows(db).items()}


def _matches(db: Path, query: str) -> list[int]:
    con = sqlite3.connect(db)
    try:
        con.execute("INSERT INTO memories_fts(memories_fts) VALUES ('integrity-check')")
        return [r for (r,) in con.execute(
            "SELECT rowid FROM memories_fts WHERE memories_fts MATCH ? ORDER BY rowid", (query,))]
    finally:
        con.close()


@pytest.mark.parametrize("sql, found", [
    (SLIPSTREAM_INSERT, ["content", "tags"]),
    (SLIPSTREAM_INSERT.replace(" BEGIN", " FOR EACH ROW BEGIN").replace("(rowid, content, tags)",
                                                                        "( rowid,content ,tags )"),
     ["content", "tags"]),
    (SLIPSTREAM_INSERT.replace("new.content, new.tags", "new.tags, new.content"), None),  # swapped
    (SLIPSTREAM_INSERT.replace("new.id", "new.id + 1"), None),
    (SLIPSTREAM_INSERT.replace(" BEGIN", " WHEN new.pinned = 1 BEGIN"), None),
    (SLIPSTREAM_INSERT.replace("AFTER", "BEFORE"), None),
    (SLIPSTREAM_INSERT.replace("END", "  INSERT INTO log VALUES (new.id);\nEND"), None),
])
def test_only_a_trigger_that_copies_the_new_row_is_taken_over(sql: str, found: list[str] | None) -> None:
    assert SLIPSTREAM_INSERT + ";" in SLIPSTREAM_DDL
    con = sqlite3.connect(":memory:")
    con.executescript(SLIPSTREAM_DDL.replace(SLIPSTREAM_INSERT + ";", "")
                      + "CREATE TABLE log (id INTEGER);" + sql + ";")
    trigger = _CopyTrigger.find(con)
    assert (trigger.columns if trigger else None) == found


def test_a_second_insert_trigger_leaves_both_to_fire_row_by_row(tmp_path: Path) -> None:
    db = _slipstream(tmp_path / "t.db", 'CREATE TABLE log (id INTEGER); CREATE TRIGGER "log it"'
                     " AFTER INSERT ON memories BEGIN INSERT INTO log VALUES (new.id); END;")
    before = _trigger_places(db)
    receipt = vexchange.migrate(write_vmig(tmp_path / "in.vmig.jsonl", _records(40)), f"vektor:{db}")
    assert receipt.counts.written == 40
    assert _trigger_places(db) == before  # nothing dropped
    con = sqlite3.connect(db)
    assert [r for (r,) in con.execute("SELECT id FROM log ORDER BY id")] == list(range(1, 41))
    con.close()
    assert _matches(db, "zebra1") == [i for i in range(1, 41) if i % 3 == 1]


def test_slipstreams_trigger_comes_back_as_it_was_and_the_index_is_whole(tmp_path: Path) -> None:
    db = _slipstream(tmp_path / "t.db")
    triggers = _triggers(db)
    before = _trigger_places(db)
    vexchange.migrate(write_vmig(tmp_path / "in.vmig.jsonl", _records(1200)), f"vektor:{db}",
                      batch_size=500)
    assert _trigger_places(db)["memories_fts_insert"] != before["memories_fts_insert"]  # batched
    assert _triggers(db) == triggers
    assert _matches(db, "zebra2") == [i for i in range(1, 1201) if i % 3 == 2]
    assert _matches(db, "t7") == [7]
    # and the trigger works for the next writer, which is not vexchange
    con = sqlite3.connect(db)
    con.execute("INSERT INTO memories (id, content, tags) VALUES (5000, 'a giraffe', '')")
    con.commit()
    con.close()
    assert _matches(db, "giraffe") == [5000]


def test_a_batch_that_fails_after_the_drop_leaves_the_trigger_and_no_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = _slipstream(tmp_path / "t.db")
    triggers = _triggers(db)
    original = VektorWriter._insert_rows

    def insert_then_fail(self: VektorWriter, *args: object) -> None:
        original(self, *args)  # type: ignore[arg-type]
        raise RuntimeError("the disk went away")

    writer = VektorWriter(db, dry_run=False)
    monkeypatch.setattr(VektorWriter, "_insert_rows", insert_then_fail)
    with pytest.raises(RuntimeError):
        writer.write(_records(10))
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM memories").fetchone() == (0,)
    con.close()
    assert _triggers(db) == triggers
    monkeypatch.setattr(VektorWriter, "_insert_rows", original)
    assert writer.write(_records(10)) == []
    writer.finish({})
    assert _matches(db, "zebra0") == [3, 6, 9]


def test_a_database_without_an_insert_trigger_gets_its_index_from_the_connector(tmp_path: Path) -> None:
    db = _slipstream(tmp_path / "t.db")
    con = sqlite3.connect(db)
    con.execute("DROP TRIGGER memories_fts_insert")
    con.close()
    vexchange.migrate(write_vmig(tmp_path / "in.vmig.jsonl", _records(30)), f"vektor:{db}")
    assert _matches(db, "zebra0") == [i for i in range(1, 31) if i % 3 == 0]
    assert "memories_fts_insert" not in _triggers(db)  # none is added either


def _change_schema(db: Path, sql: str) -> None:
    """Another program's change to the database, between two of the writer's batches."""
    con = sqlite3.connect(db)
    con.executescript(sql)
    con.close()


def test_a_trigger_replaced_between_two_batches_is_left_as_the_other_program_made_it(
        tmp_path: Path) -> None:
    db = _slipstream(tmp_path / "t.db")
    writer = VektorWriter(db, dry_run=False)
    assert writer.write(_records(30)) == []
    replaced = SLIPSTREAM_INSERT.replace(" BEGIN", " WHEN new.pinned = 0 BEGIN")
    _change_schema(db, f"DROP TRIGGER memories_fts_insert; {replaced};")
    assert writer.write(_records(30, start=31)) == []
    writer.finish({})
    assert _triggers(db)["memories_fts_insert"] == replaced  # not the text the writer saw first
    assert _matches(db, "zebra1") == [i for i in range(1, 61) if i % 3 == 1]


def test_a_trigger_dropped_between_two_batches_leaves_the_index_to_the_connector(tmp_path: Path) -> None:
    db = _slipstream(tmp_path / "t.db")
    writer = VektorWriter(db, dry_run=False)
    assert writer.write(_records(30)) == []
    _change_schema(db, "DROP TRIGGER memories_fts_insert;")
    assert writer.write(_records(30, start=31)) == []
    writer.finish({})
    assert "memories_fts_insert" not in _triggers(db)
    assert _matches(db, "zebra2") == [i for i in range(1, 61) if i % 3 == 2]

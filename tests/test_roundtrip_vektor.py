"""VEKTOR -> vmig -> VEKTOR and vmig -> vmig, bit for bit, on both table layouts."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import vexchange
from vexchange.connectors.vmig import read_file
from vexchange.record import MemoryRecord
from vexchange.testing.vektor_fixture import Fixture


def records(path: Path) -> list[MemoryRecord]:
    return [r for page in read_file(path, batch_size=100) for r in page.items
            if isinstance(r, MemoryRecord)]


def rows(db: Path) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT * FROM memories ORDER BY rowid").fetchall()
    finally:
        con.close()


@pytest.mark.parametrize("layout", ["slipstream", "legacy"])
def test_vektor_vmig_vektor_is_bit_exact(layout: str, request: pytest.FixtureRequest,
                                          tmp_path: Path) -> None:
    fx: Fixture = request.getfixturevalue(layout)
    first = tmp_path / "a.vmig.jsonl"
    receipt = vexchange.export(f"vektor:{fx.path}", first, allow_skips=True)
    assert receipt.counts.written == fx.records - 1
    assert receipt.counts.skipped == {"bad_row": 1}  # the truncated blob, never truncated silently

    copy = tmp_path / ("copy.db" if layout == "slipstream" else "copy-legacy.db")
    if layout == "legacy":  # write into the same layout
        sqlite3.connect(copy).executescript(
            "CREATE TABLE memories (id TEXT PRIMARY KEY, content TEXT, embedding BLOB,"
            " metadata TEXT, created_at TEXT, namespace TEXT);")
    vexchange.import_(first, f"vektor:{copy}")
    second = tmp_path / "b.vmig.jsonl"
    vexchange.export(f"vektor:{copy}", second)
    assert first.read_bytes() == second.read_bytes()

    source_rows = [r for r in rows(fx.path) if str(r[0]) != fx.edge_ids["truncated_blob"]]
    assert _comparable(rows(copy), layout) == _comparable(source_rows, layout)  # every byte


def _comparable(table: list[tuple], layout: str) -> list[tuple]:
    """Legacy metadata is JSON text: compare it parsed (its spacing is not content)."""
    if layout == "slipstream":
        return table
    return [(*r[:3], json.loads(r[3]), *r[4:]) for r in table]


def test_exported_records_keep_every_column_and_type(slipstream: Fixture, tmp_path: Path) -> None:
    out = tmp_path / "a.vmig.jsonl"
    vexchange.export(f"vektor:{slipstream.path}", out, allow_skips=True)
    by_id = {r.id: r for r in records(out)}
    one = by_id["5"]
    assert one.id_type == "int" and one.namespace == "default"
    assert set(one.metadata or {}) >= {"agent_id", "tags", "importance", "memory_type", "pinned",
                                       "summary", "confidence", "potential", "source_db"}
    assert isinstance(one.metadata["importance"], float)
    assert isinstance(one.metadata["pinned"], int)
    assert one.created_at == (1_735_689_600 + 5 * 37) * 1000
    assert one.updated_at == one.created_at + 60_000
    con = sqlite3.connect(slipstream.path)
    blob = con.execute("SELECT vector FROM memories WHERE id = 5").fetchone()[0]
    assert one.vector is not None and one.vector.data == blob
    edge = slipstream.edge_ids
    assert by_id[edge["null_vector"]].vectors == {}
    assert by_id[edge["unicode"]].text == "naïve café — 日本語 🚀 \"quoted\" 'single' \\backslash"
    assert by_id[edge["newlines"]].text == "line one\nline two\r\nline three\ttabbed"
    assert by_id[edge["far_future"]].created_at == 4_102_444_800_000
    assert by_id[edge["far_past"]].created_at == 0
    assert by_id[edge["nested"]].metadata["tags"] == '["edge", "case"]'  # raw text kept


def test_legacy_nested_metadata_survives(legacy: Fixture, tmp_path: Path) -> None:
    out = tmp_path / "a.vmig.jsonl"
    vexchange.export(f"vektor:{legacy.path}", out, allow_skips=True)
    nested = {r.id: r for r in records(out)}[legacy.edge_ids["nested"]]
    assert nested.metadata["nested"] == {"a": 1, "b": [1, 2.5, None]}
    assert nested.metadata["flag"] is True
    assert vexchange.validate(out)["ok"]  # written flat: nested values as JSON text


def test_vmig_to_vmig_is_byte_identical(slipstream: Fixture, tmp_path: Path) -> None:
    a, b = tmp_path / "a.vmig.jsonl", tmp_path / "b.vmig.jsonl"
    vexchange.export(f"vektor:{slipstream.path}", a, allow_skips=True)
    vexchange.migrate(a, b)
    assert a.read_bytes() == b.read_bytes()


def test_records_from_other_stores_survive_a_slipstream_database(tmp_path: Path) -> None:
    vec = np.array([0.1, -2.5, 7.038531e-26, 3.4028235e38], dtype="<f4").tobytes()
    original = [
        MemoryRecord(id="mem-a", text=None, namespace=None, metadata={"n": 3, "x": 1.0, "b": True,
                     "l": ["a,b", "c"], "deep": {"k": [1, {"z": None}]}, "importance": 2},
                     vectors={"": vexchange.Vector(vec, "bge-small"),
                              "title": vexchange.Vector(vec[:8], "other")},
                     created_at=1_700_000_000_123, updated_at=None, extra={"custom": [1, 2]}),
        MemoryRecord(id="42", id_type="str", text="plain", namespace="n1", metadata=None),
        MemoryRecord(id="-7", id_type="int", text="negative int id", namespace="n1"),
    ]
    src = tmp_path / "in.vmig.jsonl"
    from vexchange.codecs.vmig import encode_record

    src.write_bytes(b"".join(encode_record(r) for r in original))
    vexchange.import_(src, f"vektor:{tmp_path / 'x.db'}")
    out = tmp_path / "out.vmig.jsonl"
    vexchange.export(f"vektor:{tmp_path / 'x.db'}", out)
    back = {r.id: r.replace(source_store=None) for r in records(out)}
    assert back == {r.id: r for r in original}


def test_reimport_never_duplicates_and_keeps_fts(slipstream: Fixture, tmp_path: Path) -> None:
    out = tmp_path / "a.vmig.jsonl"
    vexchange.export(f"vektor:{slipstream.path}", out, allow_skips=True)
    target = tmp_path / "t.db"
    vexchange.import_(out, f"vektor:{target}")
    vexchange.import_(out, f"vektor:{target}")
    con = sqlite3.connect(target)
    assert con.execute("SELECT COUNT(*) FROM memories").fetchone()[0] == slipstream.records - 1
    hits = con.execute("SELECT COUNT(*) FROM memories_fts WHERE memories_fts MATCH 'café'").fetchone()
    assert hits[0] == 1
    triggers = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
    assert "memories_fts_insert" in triggers


def test_import_into_existing_slipstream_db_with_insert_trigger_only(
        slipstream: Fixture, tmp_path: Path) -> None:
    """The fixture has only Slipstream's insert trigger: updates must keep FTS right by hand."""
    out = tmp_path / "a.vmig.jsonl"
    vexchange.export(f"vektor:{slipstream.path}", out, namespaces=["work"])
    lines = out.read_bytes().replace(b"memory 4:", b"edited memory 4:")
    out.write_bytes(lines)
    (tmp_path / "a.vmig.meta.json").unlink()
    vexchange.import_(out, f"vektor:{slipstream.path}")
    con = sqlite3.connect(slipstream.path)
    matches = con.execute("SELECT COUNT(*) FROM memories_fts WHERE memories_fts MATCH 'edited'").fetchone()
    assert matches[0] == 1
    con.execute("INSERT INTO memories_fts(memories_fts) VALUES ('integrity-check')")
    assert con.execute("SELECT COUNT(*) FROM memories").fetchone()[0] == slipstream.records


def test_same_id_in_two_namespaces_is_a_counted_conflict_not_an_overwrite(tmp_path: Path) -> None:
    """VEKTOR ids are global: the second record must be skipped with a reason, never overwrite."""
    from vexchange.codecs.vmig import encode_record

    src = tmp_path / "in.vmig.jsonl"
    src.write_bytes(encode_record(MemoryRecord(id="7", text="in a", namespace="a"))
                    + encode_record(MemoryRecord(id="7", text="in b", namespace="b")))
    target = tmp_path / "t.db"
    receipt = vexchange.import_(src, f"vektor:{target}", allow_skips=True)
    assert receipt.counts.written == 1 and receipt.counts.skipped == {"id_conflict": 1}
    assert rows(target)[0][2] == "in a"
    # and an existing row of another namespace is never overwritten by a later import either
    later = tmp_path / "later.vmig.jsonl"
    later.write_bytes(encode_record(MemoryRecord(id="7", text="from elsewhere", namespace="c")))
    again = vexchange.import_(later, f"vektor:{target}", allow_skips=True)
    assert again.counts.skipped == {"id_conflict": 1} and rows(target)[0][2] == "in a"


def test_string_ids_never_take_the_rowid_of_a_later_integer_id(tmp_path: Path) -> None:
    """A string id in an integer-id database gets a rowid below zero: an integer id arriving
    later (in this run or the next) finds its own row free, and nothing is overwritten."""
    from vexchange.testing.conformance import read_all, write_vmig
    from vexchange.record import Vector

    vec = Vector(np.ones(4, dtype="<f4").tobytes())
    first = [MemoryRecord(id="mem-a", namespace="x", vectors={"": vec}, source_store="qdrant"),
             MemoryRecord(id="note-b", namespace="x", vectors={"": vec})]
    later = [MemoryRecord(id=str(i), id_type="int", namespace="x", vectors={"": vec}) for i in (1, 2)]
    target = f"vektor://{tmp_path}/m.db"
    vexchange.migrate(write_vmig(tmp_path / "a.vmig.jsonl", first, metric="dot"), target,
                      receipt=tmp_path / "a.json", rejects=tmp_path / "a.rej")
    receipt = vexchange.migrate(write_vmig(tmp_path / "b.vmig.jsonl", later), target,
                                receipt=tmp_path / "b.json", rejects=tmp_path / "b.rej")
    assert receipt.counts.written == 2 and not receipt.counts.skipped
    back = read_all(target)
    assert set(back) == {("x", "mem-a"), ("x", "note-b"), ("x", "1"), ("x", "2")}
    assert back[("x", "mem-a")].source_store == "qdrant"
    assert vexchange.open_store(target).vector_spaces()[""].metric == "dot"


def _import(tmp_path: Path, name: str, batch: list[MemoryRecord], target: Path,
            **options: object) -> vexchange.Receipt:
    from vexchange.testing.conformance import write_vmig

    return vexchange.migrate(write_vmig(tmp_path / f"{name}.vmig.jsonl", batch), f"vektor:{target}",
                             receipt=tmp_path / f"{name}.json", rejects=tmp_path / f"{name}.rej",
                             **options)


def _table(db: Path, name: str) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(f"SELECT * FROM {name} ORDER BY 1").fetchall()
    finally:
        con.close()


def test_a_record_without_namespace_never_overwrites_one_of_another_namespace(
        tmp_path: Path) -> None:
    """No namespace is a namespace of its own (neither "" nor the column's 'default'): in the
    same batch or a later run, it is a counted conflict with the row of another namespace."""
    target = tmp_path / "t.db"
    batch = [MemoryRecord(id="7", id_type="int", text="in a", namespace="a"),
             MemoryRecord(id="7", id_type="int", text="no namespace", namespace=None),
             MemoryRecord(id="note", text="none first", namespace=None),
             MemoryRecord(id="note", text="empty", namespace="")]
    receipt = _import(tmp_path, "one", batch, target)
    assert receipt.counts.written == 2 and receipt.counts.skipped == {"id_conflict": 2}
    later = [MemoryRecord(id="7", id_type="int", text="later, no namespace", namespace=None)]
    again = _import(tmp_path, "two", later, target)
    assert again.counts.written == 0 and again.counts.skipped == {"id_conflict": 1}
    from vexchange.testing.conformance import read_all

    back = read_all(f"vektor:{target}")
    assert {k: r.text for k, r in back.items()} == {("a", "7"): "in a", (None, "note"): "none first"}


def test_a_string_id_like_a_negative_integer_gets_a_row_of_its_own(tmp_path: Path) -> None:
    """Ids that are not their own rowid get fresh rowids from the bottom of int64, so "-1" or
    "-3" keep their own rowid; an id whose rowid a fresh key took anyway ("mem-b" was given
    -2**63 + 1 before "-9223372036854775807" arrived) gets a fresh row, never that one, and a
    re-run finds every id where it left it."""
    from vexchange.testing.conformance import read_all

    target = tmp_path / "t.db"
    bottom = str(-(1 << 63) + 1)
    first = [MemoryRecord(id="mem-a", text="a string id", namespace="x"),
             MemoryRecord(id="mem-b", text="another", namespace="x")]
    later = [MemoryRecord(id="-1", text="minus one", namespace="x"),
             MemoryRecord(id="-3", id_type="int", text="minus three", namespace="x"),
             MemoryRecord(id=bottom, id_type="int", text="near the bottom", namespace="x")]
    assert _import(tmp_path, "one", first, target).counts.written == 2
    assert [r[0] for r in rows(target)] == [-(1 << 63), -(1 << 63) + 1]
    for run in ("two", "three"):  # the second time, everything is an upsert of its own row
        receipt = _import(tmp_path, run, later, target)
        assert receipt.counts.written == 3 and not receipt.counts.skipped, receipt.counts
    back = read_all(f"vektor:{target}")
    assert {k: (r.text, r.id_type) for k, r in back.items()} == {
        ("x", "mem-a"): ("a string id", "str"), ("x", "mem-b"): ("another", "str"),
        ("x", "-1"): ("minus one", "str"), ("x", "-3"): ("minus three", "int"),
        ("x", bottom): ("near the bottom", "int")}
    by_rowid = {r[0]: r[2] for r in rows(target)}
    assert by_rowid[-1] == "minus one" and by_rowid[-3] == "minus three"  # natively, too
    assert by_rowid[-(1 << 63) + 1] == "another" and len(by_rowid) == 5


def test_the_same_import_twice_changes_nothing(tmp_path: Path) -> None:
    """Same rows, same side table, same counts, no new conflicts: with string ids, ids without
    a namespace, negative-looking ids and twins of an id in another namespace."""
    records = [MemoryRecord(id="shared", namespace=None, text="none"),
               MemoryRecord(id="shared", namespace="", text="empty"),
               MemoryRecord(id="shared", namespace="t", text="t"),
               MemoryRecord(id="mem-a", namespace="t", text="a"),
               MemoryRecord(id="-1", namespace="t", text="minus one"),
               MemoryRecord(id="42", id_type="int", namespace="o", text="int"),
               MemoryRecord(id="42", id_type="int", namespace=None, text="int twin")]
    target = tmp_path / "t.db"
    first = _import(tmp_path, "one", records, target, batch_size=3)
    tables = [_table(target, t) for t in ("memories", "vexchange_records")]
    second = _import(tmp_path, "two", records, target, batch_size=3)
    assert first.counts.written == second.counts.written == 4
    assert first.counts.skipped == second.counts.skipped == {"id_conflict": 3}
    assert [_table(target, t) for t in ("memories", "vexchange_records")] == tables


def test_a_string_id_in_two_namespaces_of_one_batch_is_refused_once(tmp_path: Path) -> None:
    """The twin is placed after its first holder's id mapping is stored, not at batch end: it
    is the counted conflict, and there is one row."""
    target = tmp_path / "t.db"
    batch = [MemoryRecord(id="mem-x", text="in a", namespace="a"),
             MemoryRecord(id="mem-x", text="in b", namespace="b")]
    receipt = _import(tmp_path, "one", batch, target)
    assert receipt.counts.written == 1 and receipt.counts.skipped == {"id_conflict": 1}
    assert [r[2] for r in rows(target)] == ["in a"]


def test_a_row_edited_by_slipstream_wins_but_keeps_its_memory_id(tmp_path: Path) -> None:
    """After Slipstream edits a row, its side-table entry no longer applies, except which
    memory the row is: the export names it by its own id, and a re-import updates that row."""
    from vexchange.testing.conformance import read_all

    target = tmp_path / "t.db"
    original = MemoryRecord(id="mem-a", text="from the source", namespace="x",
                            metadata={"importance": 2, "custom": [1]})
    _import(tmp_path, "one", [original], target)
    con = sqlite3.connect(target)
    con.execute("UPDATE memories SET importance = 5.5, content = 'edited in Slipstream'")
    con.commit()
    con.close()
    edited = read_all(f"vektor:{target}")
    assert list(edited) == [("x", "mem-a")]
    back = edited[("x", "mem-a")]
    assert back.id_type == "str" and back.text == "edited in Slipstream"
    assert back.metadata is not None and back.metadata["importance"] == 5.5
    again = _import(tmp_path, "two", [original], target)
    assert again.counts.written == 1 and not again.counts.skipped
    assert read_all(f"vektor:{target}")[("x", "mem-a")].replace(source_store=None) == original
    assert len(rows(target)) == 1


def test_a_value_its_column_cannot_bind_is_kept_exactly_not_a_traceback(tmp_path: Path) -> None:
    """An integer beyond 64 bits under a key that has a column (``pinned``, ``importance``)
    leaves the column at its default; the side table keeps the value, exactly."""
    from vexchange.testing.conformance import read_all
    from vexchange.testing.tricky import strict_form

    target = tmp_path / "t.db"
    metadata = {"pinned": 1 << 64, "importance": -(1 << 70), "tags": ["a,b", "c"],
                "summary": {"x": [1]}, "confidence": "high", "agent_id": True, "potential": 1e300}
    record = MemoryRecord(id="1", id_type="int", text="t", namespace="n", metadata=metadata)
    receipt = _import(tmp_path, "one", [record], target)
    assert receipt.counts.written == 1 and not receipt.counts.skipped
    back = read_all(f"vektor:{target}")[("n", "1")]
    assert strict_form(back.metadata) == strict_form(metadata)
    con = sqlite3.connect(target)
    assert con.execute("SELECT pinned, importance FROM memories").fetchone() == (0, 1.0)


# ------------------------------------------------------------- the page-at-a-time paths


def _tricky_int_ids() -> list[MemoryRecord]:
    """The tricky corpus with canonical integer ids (each its own rowid, all new): what a
    batch of new rows is made of, with every field the side table keeps."""
    from vexchange.testing.tricky import tricky_records

    return [r.replace(id=str(i + 1), id_type="int") for i, r in enumerate(tricky_records())]


# FTS5's own pages: how it lays out its segments, which depends on how the rows were indexed
# (row by row through the trigger, or a batch at once); what they hold is ``_fts_index``
_FTS_SEGMENTS = {"memories_fts_data", "memories_fts_idx"}


def _all_tables(db: Path) -> dict[str, list[tuple]]:
    """Every table's rows, the schema, and the FTS index as terms, documents and positions."""
    con = sqlite3.connect(db)
    try:
        names = [n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        tables = {n: con.execute(f'SELECT * FROM "{n}" ORDER BY 1').fetchall()
                  for n in names if n not in _FTS_SEGMENTS}
        tables["schema"] = sorted(con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"
                                              " WHERE name NOT LIKE 'sqlite_autoindex%'").fetchall())
        tables["fts index"] = _fts_index(con)
        return tables
    finally:
        con.close()


def _fts_index(con: sqlite3.Connection) -> list[tuple]:
    """What ``memories_fts`` indexes, every (term, rowid, column, offset), after FTS5's own
    consistency check against the ``memories`` rows."""
    con.execute("INSERT INTO memories_fts(memories_fts) VALUES ('integrity-check')")
    con.execute("CREATE VIRTUAL TABLE temp.fts_terms USING fts5vocab(main, memories_fts, instance)")
    try:
        return con.execute("SELECT term, doc, col, offset FROM temp.fts_terms"
                           " ORDER BY term, doc, col, offset").fetchall()
    finally:
        con.execute("DROP TABLE temp.fts_terms")


def test_a_batch_of_new_rows_writes_what_the_record_by_record_path_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vexchange.connectors.vektor import VektorWriter

    from vexchange.connectors._vektor_schema import SLIPSTREAM_DDL

    batch = _tricky_int_ids()
    fast, slow = tmp_path / "fast.db", tmp_path / "slow.db"
    for db in (fast, slow):  # Slipstream's tables, without the clock in the timestamps' defaults
        sqlite3.connect(db).executescript(SLIPSTREAM_DDL.replace("DEFAULT (strftime('%s','now'))", ""))
    _import(tmp_path, "fast", batch, fast)
    taken: list[int] = []
    original = VektorWriter._fresh_keys
    monkeypatch.setattr(VektorWriter, "_fresh_keys",
                        lambda self, b: taken.append(1) or None)  # type: ignore[func-returns-value]
    _import(tmp_path, "slow", batch, slow)
    assert taken  # the record-by-record path did run
    monkeypatch.setattr(VektorWriter, "_fresh_keys", original)
    assert _all_tables(fast) == _all_tables(slow)  # rows, side table, schema, FTS index
    assert _table(fast, "vexchange_records")  # the corpus needs side-table entries
    assert len(_all_tables(fast)["fts index"]) > len(batch)
    back = {r.id: r for r in records(_export(tmp_path, fast))}
    assert back == {r.id: r for r in batch}


def _tricky_mixed_ids() -> list[MemoryRecord]:
    """The tricky corpus with string ids (``mem-…``, each given a fresh rowid) between
    canonical integer ones (their own rowids, above the fresh keys' range)."""
    return [r.replace(id=f"mem-{i:04d}", id_type="str") if i % 3 else r.replace(id=str(i + 1), id_type="int")
            for i, r in enumerate(_tricky_int_ids())]


@pytest.mark.parametrize("corpus", ["string ids", "integer ids", "an own rowid among the fresh keys"])
def test_a_batch_of_new_string_ids_writes_what_the_record_by_record_path_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus: str) -> None:
    """New string ids take fresh rowids a batch at once (``_fresh_keys``), the rows, side table
    (with each id's mapping) and FTS index exactly as record by record; an import of the same
    ids again, now mapped, goes record by record on both and still agrees. A batch with an own
    rowid in the fresh keys' range is left to the record-by-record path."""
    from vexchange.connectors._vektor_schema import SLIPSTREAM_DDL
    from vexchange.connectors.vektor import VektorWriter

    batch = _tricky_int_ids() if corpus == "integer ids" else _tricky_mixed_ids()
    if corpus == "an own rowid among the fresh keys":
        batch[0] = batch[0].replace(id=str(-(1 << 63) + 1), id_type="int")
    fast, slow = tmp_path / "fast.db", tmp_path / "slow.db"
    original = VektorWriter._fresh_keys
    took: list[bool] = []

    def recording(self: VektorWriter, b: list[MemoryRecord]) -> list[int] | None:
        keys = original(self, b)
        took.append(keys is not None)
        return keys

    for db, fresh_keys in ((fast, recording), (slow, lambda self, b: None)):
        sqlite3.connect(db).executescript(SLIPSTREAM_DDL.replace("DEFAULT (strftime('%s','now'))", ""))
        monkeypatch.setattr(VektorWriter, "_fresh_keys", fresh_keys)
        _import(tmp_path, f"{db.stem}-1", batch, db)
        _import(tmp_path, f"{db.stem}-2", batch, db)  # upserts of mapped ids
    monkeypatch.setattr(VektorWriter, "_fresh_keys", original)
    assert took == ([False, False] if corpus == "an own rowid among the fresh keys" else [True, False])
    assert _all_tables(fast) == _all_tables(slow)
    mapped = {r[1] for r in _table(fast, "vexchange_records") if r[1] is not None}
    assert {r.id for r in batch if r.id_type == "str"} <= mapped
    back = {r.id: r for r in records(_export(tmp_path, fast))}
    assert back == {r.id: r for r in batch}


def _export(tmp_path: Path, db: Path) -> Path:
    out = tmp_path / f"{db.stem}-back.vmig.jsonl"
    vexchange.export(f"vektor:{db}", out)
    return out


def test_a_stale_side_table_entry_of_a_new_row_is_removed_on_both_paths(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vexchange.connectors.vektor import VektorWriter
    from vexchange.record import Vector

    plain = [MemoryRecord(id=str(i), id_type="int", text=f"m{i}", namespace="n", metadata={},
                          vectors={"": Vector(np.full(4, i, dtype="<f4").tobytes())},
                          created_at=i * 1000, updated_at=i * 1000) for i in range(1, 6)]
    modelled = [r.replace(vectors={"": Vector(r.vectors[""].data, "m")}) for r in plain]
    tables = []
    for name, fresh_keys in (("fast", VektorWriter._fresh_keys), ("slow", lambda self, b: None)):
        monkeypatch.setattr(VektorWriter, "_fresh_keys", fresh_keys)
        db = tmp_path / f"{name}.db"
        _import(tmp_path, f"{name}-1", modelled, db)  # side-table entries (the model)
        con = sqlite3.connect(db)
        con.execute("DELETE FROM memories WHERE id = 3")  # Slipstream deletes a row
        con.commit()
        con.close()
        _import(tmp_path, f"{name}-2", plain[2:3], db)  # a new row 3, without the model
        tables.append(_all_tables(db))
    assert tables[0] == tables[1]
    entries = {r[0]: r[3] for r in tables[0]["vexchange_records"]}
    assert '"model":"m"' in entries["1"] and '"model":"m"' not in entries.get("3", "")


def test_plain_rows_read_as_the_row_by_row_path_reads_them(
        slipstream: Fixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vexchange.connectors._vektor_schema import PlainRows
    from vexchange.connectors.vektor import VektorConnector
    from vexchange.spec import StoreSpec

    written = tmp_path / "tricky.db"
    _import(tmp_path, "tricky", _tricky_int_ids(), written)
    con = sqlite3.connect(written)  # rows no plain read may take: NaN, a blob in a column
    con.execute("UPDATE memories SET vector = ? WHERE id = 2", (np.full(8, np.nan, "<f4").tobytes(),))
    con.execute("UPDATE memories SET summary = x'00ff' WHERE id = 3")
    con.execute("UPDATE memories SET created_at = 99999999999999999 WHERE id = 4")
    con.commit()
    con.close()
    for db in (slipstream.path, written):
        source = VektorConnector(StoreSpec(scheme="vektor", path=str(db)))
        by_pages = [item for page in source.read(batch_size=7) for item in page.items]
        monkeypatch.setattr(PlainRows, "records", lambda self, rows: [None] * len(rows))
        by_rows = [item for page in source.read(batch_size=7) for item in page.items]
        monkeypatch.undo()
        assert [repr(i) for i in by_pages] == [repr(i) for i in by_rows]
        assert any(not isinstance(i, MemoryRecord) for i in by_pages)  # the bad rows are there

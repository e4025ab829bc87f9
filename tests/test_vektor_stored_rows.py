"""A batch of new rows into VEKTOR is known from the values bound, without reading it back, where
SQLite surely stores each value as bound (``vexchange._sqlite_affinity``; connectors/vektor.py
``_stored_rows``). What ``KeptValues`` calls kept is what SQLite stores, type and bits; a batch
known that way leaves the database, side table included, as reading it back does; and a
trigger another program adds between two batches is seen."""

from __future__ import annotations

import math
import sqlite3
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vexchange.connectors.vektor as vektor
from vexchange._sqlite_affinity import KeptValues, affinity
from vexchange.connectors._vektor_schema import SIDE_TABLE, SLIPSTREAM_DDL
from vexchange.connectors.vektor import VektorWriter
from vexchange.record import MemoryRecord, Vector
from vexchange.testing.conformance import ConnectorConformance, read_all

DECLARED = ["TEXT", "VARCHAR(20)", "CLOB", "INTEGER", "INT", "BIGINT", "REAL", "DOUBLE", "FLOAT",
            "NUMERIC", "DECIMAL(10,5)", "BOOLEAN", "DATE", "", "BLOB", "ANY"]


@pytest.mark.parametrize("declared, expected", [
    ("TEXT", "TEXT"), ("VARCHAR(20)", "TEXT"), ("INTEGER", "INTEGER"), ("BIGINT", "INTEGER"),
    ("REAL", "REAL"), ("DOUBLE PRECISION", "REAL"), ("FLOAT", "REAL"), ("", "BLOB"), ("BLOB", "BLOB"),
    ("NUMERIC", "NUMERIC"), ("DATE", "NUMERIC"), ("CHARINT", "INTEGER"),  # "INT" is looked for first
    ("FLOATING POINT", "INTEGER"),  # as section 3.1 of SQLite's datatype page says: it holds "INT"
])
def test_affinity_follows_sqlites_rules(declared: str, expected: str) -> None:
    assert affinity(declared) == expected


_values = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([-0.0, 0.0, 1.0, 1e300, 2.5]),
    st.text(max_size=8), st.sampled_from(["12", " 12", "1e3", "0x10", "1.0", "-0", "NaN", "inf"]),
    st.binary(max_size=8))


def _same(stored: Any, bound: Any) -> bool:
    if type(stored) is not type(bound):
        return False
    if type(bound) is float:
        return struct.pack("<d", stored) == struct.pack("<d", bound)
    return bool(stored == bound)


@settings(max_examples=300, deadline=None)
@given(st.lists(_values, min_size=len(DECLARED), max_size=len(DECLARED)), st.booleans(), st.booleans())
def test_what_kept_values_calls_kept_is_stored_as_bound(values: list[Any], notnull: bool,
                                                        strict: bool) -> None:
    declared = [d for d in DECLARED if d in ("INT", "INTEGER", "REAL", "TEXT", "BLOB", "ANY")] \
        if strict else DECLARED
    clause = " NOT NULL ON CONFLICT REPLACE DEFAULT 7" if notnull else ""
    columns = [f'c{i}' for i in range(len(declared))]
    con = sqlite3.connect(":memory:")
    con.execute(f"CREATE TABLE t ({', '.join(f'{c} {d}{clause}' for c, d in zip(columns, declared))})"
                + (" STRICT" if strict else ""))
    kept = KeptValues(con, "t")
    for column, value in zip(columns, values):
        try:
            con.execute(f"INSERT INTO t ({column}) VALUES (?)", (value,))
        except sqlite3.Error:
            continue  # a STRICT table refused it: the batch fails, nothing is stored
        (stored,) = con.execute(f"SELECT {column} FROM t WHERE rowid = last_insert_rowid()").fetchone()
        if kept.all_kept([(column, value)]):
            assert _same(stored, value), (column, value, stored)
    con.close()


def test_the_cases_sqlite_changes_are_not_kept() -> None:
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE t (r REAL, i INTEGER, t TEXT, n NUMERIC, b, nn TEXT NOT NULL)")
    kept = KeptValues(con, "t")
    assert not kept.all_kept([("r", -0.0)])  # reads back as 0.0
    assert not kept.all_kept([("b", math.nan)])  # stored as NULL
    assert not kept.all_kept([("r", 3)])  # becomes 3.0
    assert not kept.all_kept([("i", 3.0)])  # becomes 3
    assert not kept.all_kept([("i", "12")])  # becomes 12
    assert not kept.all_kept([("t", 12)])  # becomes '12'
    assert not kept.all_kept([("i", True)])  # becomes 1
    assert not kept.all_kept([("nn", None)])
    assert not kept.all_kept([("nowhere", "x")])
    assert kept.all_kept([("r", 2.5), ("i", 3), ("t", "12"), ("n", 7), ("b", -0.5), ("t", None),
                          ("i", b"\x00"), ("r", math.inf)])


def _slipstream(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.executescript(SLIPSTREAM_DDL)
    con.close()
    return path


def _tricky(n: int) -> list[MemoryRecord]:
    """Records whose rows SQLite stores as bound, and others it does not (an integer in a
    REAL column, -0.0, a boolean, a number as text in an INTEGER column, a namespace or
    timestamp left to the table's default, milliseconds, a vector's model)."""
    odd: list[dict[str, Any]] = [
        {"metadata": {"importance": 3}}, {"metadata": {"importance": -0.0}},
        {"metadata": {"pinned": True}}, {"metadata": {"pinned": "12"}}, {"namespace": None},
        {"created_at": None}, {"updated_at": 1_700_000_000_123}, {"model": "m"},
        {"metadata": {"tags": ["a,b"]}}, {"metadata": {"summary": None}}, {"text": None},
        {"metadata": {"agent_id": "007", "extra": 1}},
    ]
    out = []
    for i in range(1, n + 1):
        change = odd[i % len(odd)] if i % 3 == 0 else {}
        metadata = {"agent_id": "a", "summary": f"s{i}", "importance": 0.5, "tags": ["x", "y"],
                    "pinned": 0, "memory_type": "semantic", "confidence": 0.25, "source_db": None,
                    "edge_type": "semantic", "potential": None, **change.get("metadata", {})}
        out.append(MemoryRecord(
            id=str(i), id_type="int", text=change.get("text", f"memory {i}"),
            namespace=change.get("namespace", "n"), metadata=metadata,
            vectors={"": Vector(np.full(4, i, dtype="<f4").tobytes(), change.get("model"))},
            created_at=change.get("created_at", i * 1000),
            updated_at=change.get("updated_at", i * 1000), source_store="vektor"))
    return out


def _contents(db: Path) -> tuple[list[Any], list[Any]]:
    con = sqlite3.connect(db)
    try:
        return (con.execute("SELECT * FROM memories ORDER BY id").fetchall(),
                con.execute(f"SELECT * FROM {SIDE_TABLE} ORDER BY row_key").fetchall())
    finally:
        con.close()


def _import(db: Path, records: list[MemoryRecord]) -> None:
    writer = VektorWriter(db, dry_run=False)
    for start in range(0, len(records), 50):
        assert writer.write(records[start:start + 50]) == []
    writer.finish({})


def test_known_rows_leave_the_database_as_reading_them_back_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records = _tricky(240)
    known = _slipstream(tmp_path / "known.db")
    read = _slipstream(tmp_path / "read.db")
    calls: list[int] = []
    original = VektorWriter._read_back

    def counted(self: VektorWriter, keys: list[int]) -> Any:
        calls.append(len(keys))
        return original(self, keys)

    monkeypatch.setattr(VektorWriter, "_read_back", counted)
    _import(known, records)
    assert 0 < sum(calls) < len(records) / 2  # most rows are known; the odd ones are read back
    monkeypatch.setattr(vektor, "_kept_on_insert", lambda db, fts: None)
    _import(read, records)
    rows, side = _contents(known)
    assert (rows, side) == _contents(read)
    assert len(side) > 0
    ConnectorConformance.assert_strictly_same(records, read_all(f"vektor:{known}"))


def test_a_trigger_added_between_two_batches_is_seen(tmp_path: Path) -> None:
    db = _slipstream(tmp_path / "t.db")
    records = _tricky(100)
    plain = [r for r in records if int(r.id) % 3 != 0]  # every row stored as bound
    writer = VektorWriter(db, dry_run=False)
    assert writer.write(plain[:30]) == []
    other = sqlite3.connect(db)
    other.execute("CREATE TRIGGER stamp AFTER INSERT ON memories BEGIN"
                  " UPDATE memories SET summary = 'changed' WHERE id = new.id; END")
    other.commit()
    other.close()
    assert writer.write(plain[30:]) == []
    writer.finish({})
    ConnectorConformance.assert_strictly_same(plain, read_all(f"vektor:{db}"))
    rows, side = _contents(db)
    assert {row[0] for row in rows if row[3] == "changed"} == {int(r.id) for r in plain[30:]}
    assert len(side) == len(plain) - 30  # the summary each row no longer holds

"""Whether SQLite stores a bound value exactly as it was bound, by the column's type affinity.

SQLite converts what it stores by the affinity of the column's declared type
(https://sqlite.org/datatype3.html, section 3): text that reads as a number becomes a number in
an INTEGER, NUMERIC or REAL column; a float with no fraction becomes an integer in an INTEGER
or NUMERIC column; an integer becomes a float in a REAL column and a number becomes text in a
TEXT column. Whatever the column, NaN is stored as NULL, and -0.0 in a REAL column reads back as
0.0 (SQLite keeps REAL values with no fraction as integers on disk). A writer that knows every
value of a row is kept as bound knows the stored row without reading it back; for any other
value it must read it back (``KeptValues`` only ever answers "surely kept" or "not sure").
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable
from typing import Any

__all__ = ["KeptValues", "affinity"]

_KEPT_TYPES: dict[str, frozenset[type]] = {
    "TEXT": frozenset({str, bytes}),
    "NUMERIC": frozenset({int, bytes}),
    "INTEGER": frozenset({int, bytes}),
    "REAL": frozenset({float, bytes}),
    "BLOB": frozenset({str, int, float, bytes}),
}
"""The Python types sqlite3 binds that each affinity stores unchanged (bytes are never
converted; ``bool`` binds as an integer and is not kept; floats are checked further)."""


def affinity(declared: str | None) -> str:
    """The affinity of a column declared with this type: the rules of section 3.1, in order
    (so "ANY" of a STRICT table counts as NUMERIC here, which only makes fewer values kept)."""
    kind = (declared or "").upper()
    if "INT" in kind:
        return "INTEGER"
    if "CHAR" in kind or "CLOB" in kind or "TEXT" in kind:
        return "TEXT"
    if "BLOB" in kind or not kind:
        return "BLOB"
    if "REAL" in kind or "FLOA" in kind or "DOUB" in kind:
        return "REAL"
    return "NUMERIC"


class KeptValues:
    """For each column of a table, which bound values it surely stores as they are.

    NULL counts as kept only in a column without NOT NULL: with ``NOT NULL ON CONFLICT
    REPLACE`` SQLite stores the column's default instead."""

    def __init__(self, db: sqlite3.Connection, table: str) -> None:
        self._types: dict[str, frozenset[type]] = {}
        for _, name, declared, notnull, _, _ in db.execute(f'PRAGMA table_info("{table}")'):
            kept = _KEPT_TYPES[affinity(declared)]
            self._types[name] = kept if notnull else kept | {type(None)}

    def all_kept(self, values: Iterable[tuple[str, Any]]) -> bool:
        """Whether every ``(column, value)`` is surely stored as it is bound."""
        types = self._types
        for column, value in values:
            kind = type(value)
            if kind not in types.get(column, ()):
                return False
            if kind is float and (value != value or (value == 0.0 and math.copysign(1.0, value) < 0)):
                return False
        return True

"""The triple index (docs/formats/oms-level3.md §5): subject, relation, object as blind tokens.

Three composite indexes stand for the six hexastore orderings: every pattern of bound
positions is a prefix of one of them (s, sr, sro -> SRO; r, ro -> ROS; o, os -> OSR), which is
the query coverage of SPO/SOP/PSO/POS/OPS/OSP for equality lookups, at half the write cost.
Only the ordering of unbound results differs, and queries return grains in write order.
"""

from __future__ import annotations

import sqlite3

__all__ = ["SCHEMA", "add", "pattern", "remove"]

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS triples (gid INTEGER PRIMARY KEY, s BLOB, r BLOB, o BLOB)",
    "CREATE INDEX IF NOT EXISTS triples_sro ON triples (s, r, o)",
    "CREATE INDEX IF NOT EXISTS triples_ros ON triples (r, o, s)",
    "CREATE INDEX IF NOT EXISTS triples_osr ON triples (o, s, r)",
)


def add(db: sqlite3.Connection, gid: int, s: bytes | None, r: bytes | None, o: bytes | None) -> None:
    if s is not None or r is not None or o is not None:
        db.execute("INSERT OR REPLACE INTO triples (gid, s, r, o) VALUES (?, ?, ?, ?)", (gid, s, r, o))


def remove(db: sqlite3.Connection, gid: int) -> None:
    db.execute("DELETE FROM triples WHERE gid = ?", (gid,))


def pattern(s: bytes | None, r: bytes | None, o: bytes | None) -> tuple[str, list[bytes]] | None:
    """The condition on the bound positions of ``triples t`` (joined to the grains), or None
    when none is bound."""
    bound = [(name, value) for name, value in (("s", s), ("r", r), ("o", o)) if value is not None]
    if not bound:
        return None
    return " AND ".join(f"t.{name} = ?" for name, _ in bound), [value for _, value in bound]

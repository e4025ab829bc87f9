"""Grouping turns by conversation at constant memory: a temporary SQLite file.

A source need not hand records over grouped or in order (a store returns them by id, an export
by time), so every turn waits in a SQLite file in the temporary directory (``TMPDIR``) until the
whole source is read; then the turns come back one conversation at a time, conversations in the
order their first record was read (as Vex's grouping keeps them), turns by ``position``, then
``created_at``, then record id (a turn without a position or time comes after those with one).
Python holds one page of records while reading and one conversation while writing; SQLite
sorts through its own bounded cache and temporary files.

Strings go in as UTF-8 bytes with ``surrogatepass``, so a text holding a lone surrogate (which
SQLite's text binding refuses) still reaches its format, which refuses that conversation with a
reason instead of the whole run failing.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType

from ._turns import Conversation, Row, Turn, display_id

__all__ = ["Spill"]

_SCHEMA = """
CREATE TABLE seen (key BLOB PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE turn (key BLOB NOT NULL, name BLOB, pos INTEGER, created INTEGER, rid BLOB NOT NULL,
                   sub INTEGER NOT NULL, tid BLOB NOT NULL, role BLOB NOT NULL, raw_role BLOB NOT NULL,
                   text BLOB NOT NULL);
"""
_ORDERED = """
SELECT s.key, t.name, t.tid, t.role, t.raw_role, t.text FROM turn t JOIN seen s ON s.key = t.key
ORDER BY s.seq, t.pos IS NULL, t.pos, t.created IS NULL, t.created, t.rid, t.sub, t.rowid
"""


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _s(blob: bytes) -> str:
    return blob.decode("utf-8", "surrogatepass")


class Spill:
    """Turns in, conversations out. A context manager: the temporary file goes on exit."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="vex-convert-")
        self.path = Path(self._dir.name) / "turns.sqlite"
        self._db = sqlite3.connect(self.path)
        # a scratch file: nothing to recover after a crash, so no journal and no fsync
        self._db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
                               " PRAGMA cache_size=-8192; PRAGMA temp_store=FILE;" + _SCHEMA)
        self._seq = 0
        self._last: str | None = None
        self.turns = 0

    def add(self, rows: Iterable[Row]) -> None:
        """Keep one page's turns; a conversation's place is fixed by the first of its turns read."""
        batch = list(rows)
        if not batch:
            return
        cur = self._db.cursor()
        for row in batch:
            if row.key == self._last:  # turns of one conversation often come together
                continue
            self._last = row.key
            cur.execute("INSERT OR IGNORE INTO seen (key, seq) VALUES (?, ?)", (_b(row.key), self._seq + 1))
            if cur.rowcount:
                self._seq += 1
        cur.executemany(
            "INSERT INTO turn VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(_b(r.key), None if r.name is None else _b(r.name), r.position, r.created_at,
              _b(r.record_id), r.sub, _b(r.turn.id), _b(r.turn.role), _b(r.turn.raw_role),
              _b(r.turn.text)) for r in batch])
        self._db.commit()
        self.turns += len(batch)

    @property
    def conversations(self) -> int:
        return self._seq

    def conversations_in_order(self) -> Iterator[Conversation]:
        """Each conversation with every one of its turns (``turns`` is filled by the caller,
        who decides which turns a format sees), in order. The name is the first one its turns
        carry, in turn order."""
        key: str | None = None
        name: str | None = None
        turns: list[Turn] = []
        for raw_key, raw_name, tid, role, raw_role, text in self._db.execute(_ORDERED):
            row_key = _s(raw_key)
            if row_key != key:
                if key is not None:
                    yield Conversation(display_id(key), name, [], turns)
                key, name, turns = row_key, None, []
            if name is None and raw_name is not None:
                name = _s(raw_name)
            turns.append(Turn(_s(tid), _s(role), _s(raw_role), _s(text)))
        if key is not None:
            yield Conversation(display_id(key), name, [], turns)

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()

    def __enter__(self) -> Spill:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

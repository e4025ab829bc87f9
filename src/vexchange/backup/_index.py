"""The digest index of a snapshot, held in a temporary SQLite file so that comparing or
restoring a source of any size takes constant memory (never all digests in a dict).

A record is keyed by its namespace and id (``[namespace, id]`` as JSON text: SQLite would let
two NULL namespaces with one id through a two-column key). Each entry holds the record's
canonical digest (``_canonical.record_digest``: what the project calls the same record), a
hash of its exact line (a change of a field the digest leaves out, such as ``score``, is a
change for a backup), and the snapshot whose data chunks hold that version.
"""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import orjson

from .._canonical import NamespaceDigest
from ..errors import IntegrityError
from .._record_keys import key_of, record_key
from ._layout import Manifest, Repository

__all__ = ["DigestIndex", "key_of", "line_hash", "record_key"]


def line_hash(line: bytes) -> bytes:
    return hashlib.sha256(line).digest()[:16]


class DigestIndex:
    """Two tables in one temporary file: ``prev`` (a snapshot's index, as loaded) and ``cur``
    (what is being built or compared: the source's records, or the restore's progress)."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="vex-backup-index-")
        self.db = sqlite3.connect(Path(self._dir.name) / "index.sqlite3", isolation_level=None)
        self.db.executescript("""
            PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -4096;
            CREATE TABLE prev (key TEXT PRIMARY KEY, digest BLOB, line BLOB, snap INTEGER,
                               done INTEGER DEFAULT 0) WITHOUT ROWID;
            CREATE TABLE cur (key TEXT PRIMARY KEY, digest BLOB, line BLOB, snap INTEGER) WITHOUT ROWID;
            BEGIN;
        """)

    def __enter__(self) -> DigestIndex:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()
        self._dir.cleanup()

    def load(self, repo: Repository, manifest: Manifest) -> None:
        """A snapshot's index into ``prev``, checking its count and digest sum."""
        total = NamespaceDigest()
        rows = (self._entry(raw, total) for _, chunk in repo.chunks(manifest, "index")
                for raw in chunk.splitlines())
        try:
            self.db.executemany("INSERT INTO prev (key, digest, line, snap) VALUES (?, ?, ?, ?)", rows)
        except sqlite3.IntegrityError:
            raise IntegrityError(f"snapshot {manifest.snapshot}'s index names a record twice") from None
        if total.count != manifest.records or total.hex != manifest.digest:
            raise IntegrityError(f"snapshot {manifest.snapshot}'s index holds {total.count} records"
                                 f" whose digests do not add up to its manifest's")

    @staticmethod
    def _entry(raw: bytes, total: NamespaceDigest) -> tuple[str, bytes, bytes, int]:
        try:
            namespace, record_id, digest, line, snap = orjson.loads(raw)
            entry = (record_key(namespace, record_id), bytes.fromhex(digest), bytes.fromhex(line), int(snap))
        except (TypeError, ValueError):
            raise IntegrityError("a snapshot index entry is malformed") from None
        total.add(entry[1])
        return entry

    def previous(self, key: str) -> tuple[bytes, bytes, int] | None:
        row = self.db.execute("SELECT digest, line, snap FROM prev WHERE key = ?", (key,)).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def add_current(self, key: str, digest: bytes, line: bytes, snap: int) -> bool:
        """False when the key is already there (a source that holds one record twice)."""
        try:
            self.db.execute("INSERT INTO cur VALUES (?, ?, ?, ?)", (key, digest, line, snap))
        except sqlite3.IntegrityError:
            return False
        return True

    def current(self, key: str) -> tuple[bytes, bytes] | None:
        row = self.db.execute("SELECT digest, line FROM cur WHERE key = ?", (key,)).fetchone()
        return None if row is None else (row[0], row[1])

    def removed(self) -> Iterator[str]:
        """Keys of ``prev`` that ``cur`` lacks, in key order."""
        for (key,) in self.db.execute(
                "SELECT key FROM prev WHERE NOT EXISTS (SELECT 1 FROM cur WHERE cur.key = prev.key)"
                " ORDER BY key"):
            yield key

    def current_entries(self) -> Iterator[tuple[str, bytes, bytes, int]]:
        yield from self.db.execute("SELECT key, digest, line, snap FROM cur ORDER BY key")

    def snapshots_needed(self) -> list[int]:
        return [row[0] for row in self.db.execute("SELECT DISTINCT snap FROM prev ORDER BY snap")]

    def wanted(self, key: str, snap: int) -> tuple[bytes, bytes] | None:
        """For a restore: the digests a record must have when ``snap`` holds its live version
        and it was not restored yet (then it is marked restored), else None."""
        row = self.db.execute("SELECT digest, line FROM prev WHERE key = ? AND snap = ? AND done = 0",
                              (key, snap)).fetchone()
        if row is None:
            return None
        self.db.execute("UPDATE prev SET done = 1 WHERE key = ?", (key,))
        return row[0], row[1]

    def not_done(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM prev WHERE done = 0").fetchone()[0])

    def reset_done(self) -> None:
        self.db.execute("UPDATE prev SET done = 0")

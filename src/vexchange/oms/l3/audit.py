"""The hash-chained audit trail (docs/formats/oms-level3.md §6).

Entry *i* is canonical JSON (sorted keys, no spaces) and its chain value is
``mac_i = HMAC-SHA256(audit key, mac_{i-1} || u64be(i) || entry_i)`` with ``mac_0`` 32 zero
bytes. The head (last seq and mac) is kept in the store's meta table in the same transaction
as the entry. So an edited entry, a removed one (a gap, or a chain that no longer links), a
reordered pair, or a cut tail (head past the last entry) each fail :func:`verify`. Keyed, the
chain cannot be rebuilt by someone without the master key; rolling the whole store back to an
earlier state is caught only against a head kept elsewhere (``expect_head``).
"""

from __future__ import annotations

import hmac
import sqlite3
import time
from typing import Any

import orjson

__all__ = ["AuditTrail"]

_ZERO = bytes(32)
SCHEMA = "CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, entry BLOB NOT NULL, mac BLOB NOT NULL)"


def _mac(key: bytes, previous: bytes, seq: int, entry: bytes) -> bytes:
    return hmac.digest(key, previous + seq.to_bytes(8, "big") + entry, "sha256")


class AuditTrail:
    """Append and verify over the store's connection (the caller holds the transaction)."""

    def __init__(self, db: sqlite3.Connection, key: bytes) -> None:
        self.db = db
        self._key = key
        db.execute(SCHEMA)

    def head(self) -> tuple[int, bytes]:
        row = self.db.execute("SELECT value FROM meta WHERE name = 'audit_head'").fetchone()
        if row is None:
            return 0, _ZERO
        value = bytes(row[0])
        return int.from_bytes(value[:8], "big"), value[8:]

    def append(self, op: str, *, address: str | None = None, user: bytes | None = None,
               decision: str = "allow", rule: str = "", reason: str = "",
               now_ms: int | None = None) -> int:
        seq, previous = self.head()
        seq += 1
        entry = orjson.dumps({
            "seq": seq, "ts": int(time.time() * 1000) if now_ms is None else now_ms, "op": op,
            "address": address, "user": None if user is None else user.hex(), "decision": decision,
            "rule": rule, "reason": reason}, option=orjson.OPT_SORT_KEYS)
        mac = _mac(self._key, previous, seq, entry)
        self.db.execute("INSERT INTO audit (seq, entry, mac) VALUES (?, ?, ?)", (seq, entry, mac))
        self.db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('audit_head', ?)",
                        (seq.to_bytes(8, "big") + mac,))
        return seq

    def verify(self, *, expect_head: str | None = None) -> dict[str, Any]:
        """``ok``, ``entries``, ``head`` (hex), and on failure ``error`` naming the first bad seq."""
        previous, expected_seq, count = _ZERO, 1, 0
        for seq, entry, mac in self.db.execute("SELECT seq, entry, mac FROM audit ORDER BY seq"):
            if seq != expected_seq:
                return self._fail(count, f"entry {expected_seq} is missing (next is {seq})")
            if orjson.loads(entry).get("seq") != seq:
                return self._fail(count, f"entry {seq} records seq {orjson.loads(entry).get('seq')}:"
                                         " entries were moved")
            if not hmac.compare_digest(_mac(self._key, previous, seq, bytes(entry)), bytes(mac)):
                return self._fail(count, f"entry {seq} does not chain: edited, reordered or"
                                         " an earlier entry removed")
            previous, expected_seq, count = bytes(mac), seq + 1, count + 1
        head_seq, head_mac = self.head()
        if head_seq != count or not hmac.compare_digest(head_mac, previous):
            return self._fail(count, f"the trail ends at entry {count} but its head says {head_seq}:"
                                     " entries were cut from the end")
        if expect_head is not None and not hmac.compare_digest(expect_head, previous.hex()):
            return self._fail(count, "the head is not the one expected: the store was rolled back"
                                     " or replaced")
        return {"ok": True, "entries": count, "head": previous.hex(), "error": None}

    def _fail(self, count: int, message: str) -> dict[str, Any]:
        return {"ok": False, "entries": count, "head": None, "error": message}

"""The OMS Store protocol (§17.2, §28.4) and the invalidation policy (§23) it enforces.

``GrainStore`` offers get, put, exists, list, delete and supersede over grain blobs, with the
index-layer fields (superseded_by, system_valid_to, verification_status, access_count,
last_accessed_at) kept beside the blobs, never in them. ``MemoryGrainStore`` keeps grains in a
dict; ``SqliteGrainStore`` in one SQLite file, with supersession as one transaction.

The policy fails closed: an unknown mode (or fallback mode) is ``locked``. Signatures are
not verified here (signing is optional in OMS and vexchange does not implement COSE): the
caller states who signed (``signer_did``, ``cosigners``) after verifying them itself.
"""

from __future__ import annotations

import builtins
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import error_class
from .grain import Grain, content_address, decode_grain

__all__ = ["GrainStore", "MemoryGrainStore", "SqliteGrainStore", "check_invalidation"]

_MAX_HOPS = 16
MODES = ("open", "soft_locked", "locked", "quorum", "delegated", "timed", "hold",
         "consent_cascade")


def _denied(message: str) -> Exception:
    return error_class("ERR_INVALIDATION_DENIED")(message)


def check_invalidation(policy: Any, *, justification: str | None = None,
                       signer_did: str | None = None, cosigners: list[str] | None = None,
                       now_s: float | None = None, erase: bool = False) -> None:
    """Raise ERR_INVALIDATION_DENIED unless a grain with ``policy`` may be superseded (or,
    with ``erase``, deleted) by this request."""
    if policy is None:
        return
    mode = policy.get("mode", "open") if isinstance(policy, dict) else None
    if mode == "timed":
        until = policy.get("locked_until")
        now = time.time() if now_s is None else now_s
        if not isinstance(until, (int, float)) or now < until:
            raise _denied(f"timed policy: locked until {until}")
        mode = policy.get("fallback_mode", "open")
    if mode not in MODES or mode == "timed":
        raise _denied(f"unknown invalidation mode {mode!r}: fail closed, treated as locked")
    authorized = set(policy.get("authorized") or [])
    if mode == "hold":
        raise _denied("litigation hold: no supersession, contradiction or erasure")
    if erase:
        return  # erasure is refused only by a hold (§28.4)
    if mode == "locked":
        raise _denied("the grain's invalidation policy is locked")
    if mode == "soft_locked" and not (justification or "").strip():
        raise _denied("soft_locked: a supersession must carry supersession_justification")
    if mode == "delegated" and signer_did not in authorized:
        raise _denied(f"delegated: {signer_did!r} is not among the authorized DIDs")
    if mode == "quorum":
        threshold = int(policy.get("threshold") or 1)
        valid = authorized & set(cosigners or [])
        if len(valid) < threshold:
            raise _denied(f"quorum: {len(valid)} of the {threshold} authorized signatures needed")


class GrainStore(ABC):
    """get / put / exists / list / delete / supersede over grain blobs (§17.2, §28.4)."""

    @abstractmethod
    def _load(self, address: str) -> tuple[bytes, dict[str, Any]] | None: ...

    @abstractmethod
    def _save(self, address: str, blob: bytes) -> None: ...

    @abstractmethod
    def _set_index(self, address: str, **fields: Any) -> None: ...

    @abstractmethod
    def _remove(self, address: str) -> None: ...

    @abstractmethod
    def addresses(self) -> Iterator[str]: ...

    def transaction(self) -> Any:
        """A context in which supersession is all-or-nothing."""
        import contextlib

        return contextlib.nullcontext()

    def put(self, blob: bytes) -> str:
        """Store a blob (validated); idempotent. Returns its content address."""
        decode_grain(blob)
        address = content_address(blob)
        if self._load(address) is None:
            self._save(address, blob)
        return address

    def get(self, address: str) -> Grain | None:
        found = self._load(address)
        return None if found is None else decode_grain(found[0])

    def index_state(self, address: str) -> dict[str, Any]:
        found = self._load(address)
        return {} if found is None else dict(found[1])

    def exists(self, address: str) -> bool:
        return self._load(address) is not None

    def list(self, *, namespace: str | None = None, type: str | None = None,
             current_only: bool = False) -> Iterator[Grain]:
        for address in self.addresses():
            found = self._load(address)
            if found is None or (current_only and found[1].get("superseded_by")):
                continue
            grain = decode_grain(found[0])
            if namespace is not None and grain.fields.get("namespace") != namespace:
                continue
            if type is not None and grain.type != type:
                continue
            yield grain

    def supersede(self, old_address: str, new_blob: bytes, *, justification: str | None = None,
                  signer_did: str | None = None, cosigners: builtins.list[str] | None = None,
                  now_s: float | None = None) -> str:
        """Write ``new_blob`` as the successor of ``old_address``, if every policy allows:
        the old grain's, and that of any ancestor (``derived_from``, 16 hops) whose policy
        covers its subtree or lineage."""
        old = self.get(old_address)
        if old is None:
            raise error_class("ERR_SCHEMA")(f"no grain {old_address} to supersede")
        request: dict[str, Any] = {"justification": justification, "signer_did": signer_did,
                                   "cosigners": cosigners, "now_s": now_s}
        check_invalidation(old.fields.get("invalidation_policy"), **request)
        new = decode_grain(new_blob)
        for ancestor in self._ancestors(new, skip=old_address):
            policy = ancestor.fields.get("invalidation_policy")
            if isinstance(policy, dict) and policy.get("scope") in ("subtree", "lineage"):
                check_invalidation(policy, **request)
        with self.transaction():
            address = self.put(new_blob)
            now_ms = int((time.time() if now_s is None else now_s) * 1000)
            self._set_index(old_address, superseded_by=address, system_valid_to=now_ms)
        return address

    def _ancestors(self, grain: Grain, *, skip: str) -> Iterator[Grain]:
        frontier: builtins.list[str] = [a for a in grain.fields.get("derived_from") or []
                                        if isinstance(a, str)]
        seen: set[str] = set()
        for _ in range(_MAX_HOPS):
            following: builtins.list[str] = []
            for address in frontier:
                if address in seen or address == skip:
                    continue
                seen.add(address)
                found = self.get(address)
                if found is not None:
                    yield found
                    following += [a for a in found.fields.get("derived_from") or [] if isinstance(a, str)]
            frontier = following
            if not frontier:
                return

    def delete(self, address: str) -> None:
        """Compliance erasure only; refused under a litigation hold."""
        grain = self.get(address)
        if grain is None:
            return
        check_invalidation(grain.fields.get("invalidation_policy"), erase=True)
        self._remove(address)


class MemoryGrainStore(GrainStore):
    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._index: dict[str, dict[str, Any]] = {}

    def _load(self, address: str) -> tuple[bytes, dict[str, Any]] | None:
        blob = self._blobs.get(address)
        return None if blob is None else (blob, self._index.get(address, {}))

    def _save(self, address: str, blob: bytes) -> None:
        self._blobs[address] = blob

    def _set_index(self, address: str, **fields: Any) -> None:
        self._index.setdefault(address, {}).update(fields)

    def _remove(self, address: str) -> None:
        self._blobs.pop(address, None)
        self._index.pop(address, None)

    def addresses(self) -> Iterator[str]:
        yield from list(self._blobs)


class SqliteGrainStore(GrainStore):
    """Grains in one SQLite file: ``grains(address, blob, superseded_by, system_valid_to,
    verification_status, access_count, last_accessed_at)``."""

    _COLUMNS = ("superseded_by", "system_valid_to", "verification_status", "access_count",
                "last_accessed_at")

    def __init__(self, path: str | Path) -> None:
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS grains (address TEXT PRIMARY KEY, blob BLOB NOT NULL,"
            " superseded_by TEXT, system_valid_to INTEGER, verification_status TEXT,"
            " access_count INTEGER, last_accessed_at INTEGER)")

    def _load(self, address: str) -> tuple[bytes, dict[str, Any]] | None:
        row = self.db.execute(f"SELECT blob, {', '.join(self._COLUMNS)} FROM grains WHERE address = ?",
                              (address,)).fetchone()
        if row is None:
            return None
        return bytes(row[0]), {k: v for k, v in zip(self._COLUMNS, row[1:], strict=False) if v is not None}

    def _save(self, address: str, blob: bytes) -> None:
        self.db.execute("INSERT OR IGNORE INTO grains (address, blob) VALUES (?, ?)", (address, blob))

    def _set_index(self, address: str, **fields: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields if k in self._COLUMNS)
        self.db.execute(f"UPDATE grains SET {sets} WHERE address = ?",
                        (*[v for k, v in fields.items() if k in self._COLUMNS], address))

    def _remove(self, address: str) -> None:
        self.db.execute("DELETE FROM grains WHERE address = ?", (address,))

    def addresses(self) -> Iterator[str]:
        for (address,) in self.db.execute("SELECT address FROM grains ORDER BY address").fetchall():
            yield address

    def transaction(self) -> Any:
        db = self.db

        class _Tx:
            def __enter__(self) -> None:
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self, kind: Any, err: Any, tb: Any) -> None:
                db.execute("COMMIT" if kind is None else "ROLLBACK")

        return _Tx()

    def close(self) -> None:
        self.db.close()

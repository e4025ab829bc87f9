"""The OMS Store protocol (§17.2, §28.4) and the invalidation policy (§23) it enforces.

``GrainStore`` offers get, put, exists, list, delete, supersede and contradict over grain blobs,
with the index-layer fields (superseded_by, system_valid_to, contradicted, verification_status,
access_count, last_accessed_at) kept beside the blobs, never in them. ``MemoryGrainStore`` keeps
grains in a dict; ``SqliteGrainStore`` in one SQLite file.

Every rule lives in the base class, over six backend primitives (``_load``, ``_save``,
``_set_index``, ``_remove``, ``addresses``, ``transaction``), so every backend gets the same
Level 2: the policy walk over ancestors and successors (:meth:`GrainStore.covering_policies`),
``put`` of a derived grain under the same rules as ``supersede``, the justification read from
the superseding grain, no self-supersession, ``get`` checking the address in constant time,
and writes that undo themselves when a step fails (on top of the backend's own transaction).

The policy fails closed: an unknown mode (or fallback mode, or scope) is ``locked`` (or the
widest scope). Signatures are not verified here (signing is optional in OMS and vexchange does
not implement COSE): the caller states who signed (``signer_did``, ``cosigners``) after
verifying them itself. docs/formats/oms.md, "Invalidation policy and Store protocol".
"""

from __future__ import annotations

import builtins
import contextlib
import hmac
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import OMSError, error_class
from .grain import Grain, check_address_format, content_address, decode_grain

__all__ = ["GrainStore", "MemoryGrainStore", "Request", "SqliteGrainStore", "check_invalidation"]

MAX_HOPS = 16
"""How far the policy walk follows derived_from and supersession links (§23.6)."""
MODES = ("open", "soft_locked", "locked", "quorum", "delegated", "timed", "hold",
         "consent_cascade")
SCOPES = ("grain", "subtree", "lineage")
INDEX_FIELDS = ("superseded_by", "system_valid_to", "contradicted", "verification_status",
                "access_count", "last_accessed_at")
"""The index-layer fields a store keeps per grain (§5.6, §28.3; ``contradicted`` per §14.3/§23)."""


def _denied(message: str) -> Exception:
    return error_class("ERR_INVALIDATION_DENIED")(message)


def check_invalidation(policy: Any, *, justification: str | None = None,
                       signer_did: str | None = None, cosigners: list[str] | None = None,
                       now_s: float | None = None, erase: bool = False) -> None:
    """Raise ERR_INVALIDATION_DENIED unless a grain with ``policy`` may be superseded or
    contradicted (or, with ``erase``, deleted) by this request."""
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


def _scope(policy: Any) -> str:
    """A policy's scope; absent is ``grain`` (§23.2), anything unknown the widest (fail closed)."""
    scope = policy.get("scope", "grain") if isinstance(policy, dict) else "unknown"
    return scope if scope in SCOPES else "unknown"


def _parents(grain: Grain) -> builtins.list[str]:
    found = grain.fields.get("derived_from")
    return [a for a in found if isinstance(a, str)] if isinstance(found, list) else []


class Request:
    """Who asks, and with what: the inputs of :func:`check_invalidation` for one operation."""

    __slots__ = ("cosigners", "justification", "now_s", "signer_did")

    def __init__(self, *, justification: str | None = None, signer_did: str | None = None,
                 cosigners: builtins.list[str] | None = None, now_s: float | None = None) -> None:
        self.justification = justification
        self.signer_did = signer_did
        self.cosigners = cosigners
        self.now_s = time.time() if now_s is None else now_s

    @classmethod
    def for_grain(cls, grain: Grain, *, justification: str | None = None, **more: Any) -> Request:
        """The request of a superseding grain: its own ``supersession_justification`` is the
        justification (§23.2: the grain MUST carry it); ``justification=`` (the §28.4 parameter)
        counts only when the grain carries none."""
        carried = grain.fields.get("supersession_justification")
        return cls(justification=carried if isinstance(carried, str) and carried.strip() else justification,
                   **more)

    def check(self, policy: Any, *, erase: bool = False) -> None:
        check_invalidation(policy, justification=self.justification, signer_did=self.signer_did,
                           cosigners=self.cosigners, now_s=self.now_s, erase=erase)


class GrainStore(ABC):
    """get / put / exists / list / delete / supersede / contradict over grain blobs.

    A backend implements the primitives below; everything else is here. ``_set_index(address,
    name=None)`` clears a field (the undo of a failed write relies on it). ``transaction()``
    is one all-or-nothing unit with nothing nested inside it; the base class also undoes its
    own writes when a step fails, so a backend whose transaction is a no-op is still atomic
    for a single writer."""

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
        """A context in which a write is all-or-nothing."""
        return contextlib.nullcontext()

    # ------------------------------------------------------------------------------- reads

    def get(self, address: str) -> Grain | None:
        """The grain at ``address``, or None. The blob must hash to the address asked for,
        compared in constant time (§5, §20.4): a store that hands back other bytes is
        ERR_INTEGRITY; an address that is not 64 lowercase hex characters is refused first."""
        check_address_format(address)
        found = self._load(address)
        return None if found is None else self._verified(address, found[0])

    @staticmethod
    def _verified(address: str, blob: bytes) -> Grain:
        if not hmac.compare_digest(address, content_address(blob)):
            raise error_class("ERR_INTEGRITY")(f"the stored blob does not hash to {address}")
        return decode_grain(blob)

    def index_state(self, address: str) -> dict[str, Any]:
        found = self._load(address)
        return {} if found is None else {k: v for k, v in found[1].items() if v is not None}

    def exists(self, address: str) -> bool:
        check_address_format(address)
        return self._load(address) is not None

    def list(self, *, namespace: str | None = None, type: str | None = None,
             current_only: bool = False) -> Iterator[Grain]:
        """Grains, each checked against its address; ``current_only`` leaves out superseded
        and contradicted ones."""
        for address in self.addresses():
            found = self._load(address)
            if found is None or (current_only and (found[1].get("superseded_by")
                                                   or found[1].get("contradicted"))):
                continue
            grain = self._verified(address, found[0])
            if namespace is not None and grain.fields.get("namespace") != namespace:
                continue
            if type is not None and grain.type != type:
                continue
            yield grain

    # ------------------------------------------------------------------------- the policy walk

    def ancestors(self, address: str) -> Iterator[tuple[Grain, bool]]:
        """(ancestor, reached along supersession links only) for every grain ``derived_from``
        reaches from ``address``, breadth first, at most MAX_HOPS hops. A link is a supersession
        when the parent's index names the child as ``superseded_by``. A grain reached both ways
        is given again when a supersession path to it is found after a plain one."""
        start = self.get(address)
        if start is None:
            return
        best: dict[str, bool] = {address: True}
        frontier = [(parent, address, True) for parent in _parents(start)]
        for _ in range(MAX_HOPS):
            following: builtins.list[tuple[str, str, bool]] = []
            for parent, child, chain in frontier:
                found = self._load(parent)
                if found is None:
                    continue
                chain = chain and found[1].get("superseded_by") == child
                if parent in best and (best[parent] or not chain):
                    continue
                best[parent] = chain
                grain = self._verified(parent, found[0])
                yield grain, chain
                following += [(grand, parent, chain) for grand in _parents(grain)]
            frontier = following
            if not frontier:
                return

    def successors(self, address: str) -> Iterator[Grain]:
        """The grains that superseded ``address``, then theirs (``superseded_by``), MAX_HOPS deep."""
        seen = {address}
        current = address
        for _ in range(MAX_HOPS):
            found = self._load(current)
            nxt = None if found is None else found[1].get("superseded_by")
            if not isinstance(nxt, str) or nxt in seen:
                return
            seen.add(nxt)
            grain = self.get(nxt)
            if grain is None:
                return
            yield grain
            current = nxt

    def covering_policies(self, grain: Grain) -> Iterator[tuple[str, Any]]:
        """(address, policy) of every policy that protects ``grain`` (§23.6): its own; that of
        every ancestor (derived_from, MAX_HOPS hops) with scope ``subtree``; that of every
        ancestor it descends from by supersession, and of every grain that superseded it, with
        scope ``lineage``. An unknown scope counts as both (fail closed)."""
        policy = grain.fields.get("invalidation_policy")
        if policy is not None:
            yield grain.address, policy
        for ancestor, by_supersession in self.ancestors(grain.address):
            policy = ancestor.fields.get("invalidation_policy")
            scope = _scope(policy)
            if policy is not None and (scope in ("subtree", "unknown")
                                       or (scope == "lineage" and by_supersession)):
                yield ancestor.address, policy
        for successor in self.successors(grain.address):
            policy = successor.fields.get("invalidation_policy")
            if policy is not None and _scope(policy) in ("lineage", "unknown"):
                yield successor.address, policy

    def check_request(self, grain: Grain, request: Request, *, erase: bool = False) -> None:
        """ERR_INVALIDATION_DENIED unless every policy covering ``grain`` allows ``request``."""
        for address, policy in self.covering_policies(grain):
            try:
                request.check(policy, erase=erase)
            except OMSError as err:
                if address == grain.address:
                    raise
                why = str(err).removeprefix(f"{err.code}: ")
                raise _denied(f"{why} (the policy of {address}, which covers {grain.address})") from None

    def _check_parents(self, new: Grain, request: Request, *, skip: str | None = None) -> None:
        """A grain that derives from stored grains is held to the rules of superseding each
        (§17.2: ``put`` must not let derived_from do what only ``supersede`` may), so a chain
        cannot be injected under a protected grain or subtree (§23.7, bypass 3)."""
        for parent in _parents(new):
            if parent == new.address:
                raise _denied(f"grain {parent} names itself in derived_from")
            if parent == skip:
                continue
            found = self.get(parent) if _is_address(parent) else None
            if found is not None:
                self.check_request(found, request)

    # ----------------------------------------------------------------------------- writes

    def put(self, blob: bytes, *, signer_did: str | None = None,
            cosigners: builtins.list[str] | None = None, now_s: float | None = None) -> str:
        """Store a blob (validated); idempotent. Returns its content address. A grain whose
        ``derived_from`` names stored grains must pass the policies that superseding them would
        (its own ``supersession_justification``, and the signers given here)."""
        new = decode_grain(blob)
        request = Request.for_grain(new, signer_did=signer_did, cosigners=cosigners, now_s=now_s)
        with self.transaction():
            if self._load(new.address) is None:
                self._check_parents(new, request)
                self._write([(new.address, blob)], [])
        return new.address

    def supersede(self, old_address: str, new_blob: bytes, *, justification: str | None = None,
                  signer_did: str | None = None, cosigners: builtins.list[str] | None = None,
                  now_s: float | None = None) -> str:
        """Write ``new_blob`` as the successor of ``old_address`` (§28.4), if every policy
        covering the old grain allows it, and every policy covering the new grain's other
        parents. One unit: the new blob and the old grain's ``superseded_by`` and
        ``system_valid_to`` are written together or not at all."""
        new = decode_grain(new_blob)
        request = Request.for_grain(new, justification=justification, signer_did=signer_did,
                                    cosigners=cosigners, now_s=now_s)
        with self.transaction():
            old = self._target(old_address, new, "supersede")
            state = self.index_state(old_address)
            if state.get("superseded_by") == new.address and self._load(new.address) is not None:
                return new.address  # the same supersession again: already done
            if state.get("superseded_by"):
                raise _denied(f"{old_address} is already superseded by {state['superseded_by']}:"
                              " supersede the current grain instead")
            self.check_request(old, request)
            self._check_parents(new, request, skip=old_address)
            now_ms = int(request.now_s * 1000)
            self._write([(new.address, new_blob)],
                        [(old_address, {"superseded_by": new.address,
                                        "system_valid_to": state.get("system_valid_to", now_ms)})])
        return new.address

    def contradict(self, address: str, new_blob: bytes, *, justification: str | None = None,
                   signer_did: str | None = None, cosigners: builtins.list[str] | None = None,
                   now_s: float | None = None) -> str:
        """Record that the grain ``new_blob`` contradicts the grain at ``address`` (§23.1): under
        the same policies as a supersession, the new grain is written and the old one's index
        gets ``contradicted: true`` and ``system_valid_to`` (its first, if it has one), in one
        unit. The old grain stays readable and keeps any ``superseded_by``."""
        new = decode_grain(new_blob)
        request = Request.for_grain(new, justification=justification, signer_did=signer_did,
                                    cosigners=cosigners, now_s=now_s)
        with self.transaction():
            old = self._target(address, new, "contradict")
            state = self.index_state(address)
            self.check_request(old, request)
            self._check_parents(new, request, skip=address)
            now_ms = int(request.now_s * 1000)
            self._write([(new.address, new_blob)],
                        [(address, {"contradicted": True,
                                    "system_valid_to": state.get("system_valid_to", now_ms)})])
        return new.address

    def _target(self, address: str, new: Grain, verb: str) -> Grain:
        old = self.get(address)
        if old is None:
            raise error_class("ERR_SCHEMA")(f"no grain {address} to {verb}")
        if new.address == address:
            raise _denied(f"a grain cannot {verb} itself ({address})")
        if any(ancestor.address == new.address for ancestor, _ in self.ancestors(address)):
            raise _denied(f"{new.address} is an ancestor of {address}: a {verb} would close a cycle")
        return old

    def delete(self, address: str, *, now_s: float | None = None) -> None:
        """Compliance erasure only; refused under a litigation hold on the grain or on an
        ancestor whose hold covers it (scope subtree or lineage)."""
        grain = self.get(address)
        if grain is None:
            return
        with self.transaction():
            self.check_request(grain, Request(now_s=now_s), erase=True)
            self._remove(address)

    def _write(self, blobs: builtins.list[tuple[str, bytes]],
               index: builtins.list[tuple[str, dict[str, Any]]]) -> None:
        """Save ``blobs`` (those not stored yet) and then set ``index`` fields; if any step
        raises, undo the steps done so far (blobs removed, fields set back) before the error
        goes on, so a store without real transactions is never left half written."""
        undo: builtins.list[tuple[str, dict[str, Any] | None]] = []
        try:
            for address, blob in blobs:
                if self._load(address) is None:
                    undo.append((address, None))
                    self._save(address, blob)
            for address, fields in index:
                before = self._load(address)
                old = {} if before is None else before[1]
                undo.append((address, {name: old.get(name) for name in fields}))
                self._set_index(address, **fields)
        except BaseException:
            for address, previous in reversed(undo):
                with contextlib.suppress(Exception):
                    if previous is None:
                        self._remove(address)
                    else:
                        self._set_index(address, **previous)
            raise


def _is_address(text: str) -> bool:
    try:
        check_address_format(text)
    except Exception:
        return False
    return True


class MemoryGrainStore(GrainStore):
    """Grains in a dict. Writes hold a lock, so one supersession never interleaves another."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._index: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()

    def _load(self, address: str) -> tuple[bytes, dict[str, Any]] | None:
        blob = self._blobs.get(address)
        return None if blob is None else (blob, dict(self._index.get(address, {})))

    def _save(self, address: str, blob: bytes) -> None:
        self._blobs[address] = blob

    def _set_index(self, address: str, **fields: Any) -> None:
        state = self._index.setdefault(address, {})
        for name, value in fields.items():
            if value is None:
                state.pop(name, None)
            else:
                state[name] = value

    def _remove(self, address: str) -> None:
        self._blobs.pop(address, None)
        self._index.pop(address, None)

    def addresses(self) -> Iterator[str]:
        yield from list(self._blobs)

    def transaction(self) -> Any:
        return self._lock


class SqliteGrainStore(GrainStore):
    """Grains in one SQLite file: ``grains(address, blob, superseded_by, system_valid_to,
    verification_status, access_count, last_accessed_at, contradicted)``; a file made before
    ``contradicted`` existed gets the column when opened."""

    _COLUMNS = INDEX_FIELDS

    def __init__(self, path: str | Path) -> None:
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS grains (address TEXT PRIMARY KEY, blob BLOB NOT NULL,"
            " superseded_by TEXT, system_valid_to INTEGER, verification_status TEXT,"
            " access_count INTEGER, last_accessed_at INTEGER, contradicted INTEGER)")
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(grains)")}
        if "contradicted" not in columns:
            self.db.execute("ALTER TABLE grains ADD COLUMN contradicted INTEGER")

    def _load(self, address: str) -> tuple[bytes, dict[str, Any]] | None:
        row = self.db.execute(f"SELECT blob, {', '.join(self._COLUMNS)} FROM grains WHERE address = ?",
                              (address,)).fetchone()
        if row is None:
            return None
        state = {k: v for k, v in zip(self._COLUMNS, row[1:], strict=True) if v is not None}
        if "contradicted" in state:
            state["contradicted"] = bool(state["contradicted"])
        return bytes(row[0]), state

    def _save(self, address: str, blob: bytes) -> None:
        self.db.execute("INSERT OR IGNORE INTO grains (address, blob) VALUES (?, ?)", (address, blob))

    def _set_index(self, address: str, **fields: Any) -> None:
        known = {k: v for k, v in fields.items() if k in self._COLUMNS}
        if not known:
            return
        sets = ", ".join(f"{k} = ?" for k in known)
        self.db.execute(f"UPDATE grains SET {sets} WHERE address = ?", (*known.values(), address))

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

"""Typed results of the commands that look at data: ``inspect``, ``validate``, ``verify``,
``search`` and ``vex grains inspect``/``verify`` (the micro-pack's result is its header,
``vexchange.pack.micropack.Header``, which is also the file's first line).

Each result is a frozen msgspec Struct. ``to_dict()`` gives it as plain builtins (what
``--json`` prints): the same keys, values and order as the dicts these results replaced, so
JSON a user parses did not change. A field that the dict left out in some cases is ``UNSET``
there (msgspec leaves it out when encoding). Every field is described in docs/results.md.

The mapping-style read access (``report["ok"]``, ``.get``, ``keys``, ``items``, ``in``) is kept
for code written against those dicts: it reads ``to_dict()``, so it gives plain builtins (a
nested result as a dict) exactly as the dicts did. New code reads the attributes.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

__all__ = [
    "UNSET", "AgainstCheck", "ChangedRecord", "Check", "ChecksumCheck", "GrainsInspectReport",
    "GrainsVerifyReport", "InspectReport", "KeyReport", "Latency", "NamespaceDifference", "ReceiptCheck",
    "Result", "SearchCheck", "SearchHit", "SearchSide", "SidecarState", "SignReport", "SignatureCheck",
    "UnreadableEntry", "UnsetType", "ValidateError", "ValidateReport", "VerifyCheck", "VerifyReport",
]


class Result(msgspec.Struct, frozen=True, kw_only=True):
    """The base of every result: ``to_dict()``, and dict-style reads kept for older code.

    (msgspec passes ``frozen`` and ``kw_only`` on to subclasses; each subclass says them again
    for type checkers, which do not.)"""

    def to_dict(self) -> dict[str, Any]:
        """The result as plain builtins, as ``--json`` prints it (``UNSET`` fields left out)."""
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]

    # Kept for code that used the dicts these results replaced: reads go through to_dict().
    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)

    def keys(self) -> KeysView[str]:
        return self.to_dict().keys()

    def values(self) -> ValuesView[Any]:
        return self.to_dict().values()

    def items(self) -> ItemsView[str, Any]:
        return self.to_dict().items()

    def __contains__(self, key: object) -> bool:
        return key in self.to_dict()

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


# ------------------------------------------------------------------------------------- inspect


class SidecarState(Result, frozen=True, kw_only=True):
    """A .vmig.jsonl file's sidecar, as ``inspect`` found it. With no sidecar, ``status`` is
    "missing" and every other field is UNSET; else the fields are the sidecar's own values."""

    status: str
    """"missing", or the checksum's state: "ok", "ok-vex-convention", "ok-empty" (Vex's empty-export sidecar,
    and no record), "mismatch", "no-checksum"."""
    record_count: int | UnsetType | None = UNSET
    """The count the sidecar records (None when it records none)."""
    record_count_matches: bool | UnsetType = UNSET
    """Whether that count equals the file's records plus its unreadable lines."""
    exported_at: str | UnsetType | None = UNSET
    source_store: str | UnsetType | None = UNSET
    imported_to: str | UnsetType | None = UNSET
    imported_at: str | UnsetType | None = UNSET


class InspectReport(Result, omit_defaults=True, frozen=True, kw_only=True):
    """What a store or file holds: counts, models, dims, namespaces, sources, time range."""

    location: str
    records: int
    with_vector: int
    without_vector: int
    with_text: int
    without_text: int
    unreadable: dict[str, int]
    """Entries that could not be read, by reason."""
    namespaces: dict[str, int]
    """Records per namespace, most first; "(none)" for records without one."""
    models: dict[str, int]
    """Vectors per model, most first; "(none)" when a vector names none."""
    dims: dict[str, int]
    """Vectors per size, most first: "384", or "name:384" for a named vector."""
    sources: dict[str, int]
    """Records per ``source_store``, most first; "(none)" when a record names none."""
    created_from: str | None
    """The earliest ``created_at`` (ISO-8601 UTC), None when no record has one."""
    created_to: str | None
    sidecar: SidecarState | None = None
    """Only for a .vmig.jsonl file (else None, and absent from ``to_dict()``)."""


# ------------------------------------------------------------------------------------ validate


class ValidateError(Result, frozen=True, kw_only=True):
    line: int
    """The line's number, from 1."""
    id: str | None
    """The record's id, when it could be read."""
    reason: str
    detail: str


class ValidateReport(Result, frozen=True, kw_only=True):
    """Every record of a .vmig.jsonl file checked; ``ok`` is False on any error."""

    file: str
    records: int
    """Lines read (records and unreadable lines)."""
    ok: bool
    error_counts: dict[str, int]
    """Every error, by reason."""
    errors: list[ValidateError]
    """The first 1000 errors, in file order."""
    warnings: dict[str, int]
    """Counts by kind: "text_only_reembeddable" (text but no vector)."""


# -------------------------------------------------------------------------------------- verify


class VerifyCheck(Result, tag_field="check", frozen=True, kw_only=True):
    """One check of ``verify``; its kind is the ``check`` key of ``to_dict()``."""


class ChecksumCheck(VerifyCheck, tag="checksum", frozen=True, kw_only=True):
    """A .vmig.jsonl file against its sidecar."""

    ok: bool
    status: str
    """The checksum's state: "ok", "ok-vex-convention", "ok-empty", "mismatch", "no-sidecar",
    "no-checksum"."""
    records: int
    """Lines in the file."""
    sidecar_record_count: int | None
    """The count the sidecar records (None without one); ``ok`` needs it to equal ``records``."""


class NamespaceDifference(Result, frozen=True, kw_only=True):
    """A receipt namespace whose count or digest the target does not reproduce."""

    namespace: str
    """The receipt's key: the namespace's name, "" for records without one."""
    expected_count: int
    actual_count: int
    digest_matches: bool


class ReceiptCheck(VerifyCheck, tag="receipt", frozen=True, kw_only=True):
    """Counts and order-independent digests per namespace against a run's receipt."""

    receipt: str
    ok: bool
    namespaces: int
    """Namespaces the receipt names."""
    differences: list[NamespaceDifference]


class UnreadableEntry(Result, frozen=True, kw_only=True):
    side: Literal["source", "target"]
    id: str | None
    namespace: str | None
    reason: str


class AgainstCheck(VerifyCheck, tag="against", frozen=True, kw_only=True):
    """Record by record against a source."""

    source: str
    ok: bool
    matched: int
    normalised: int
    """Records whose vectors the target keeps at unit length (same direction): not an error."""
    rounded: int
    """Records whose vectors changed in their last bits only (same direction): not an error."""
    source_records: int
    """Source records compared, the unreadable ones included."""
    missing: int
    changed: int
    extra: int
    source_unreadable: int
    target_unreadable: int
    missing_ids: list[str]
    """The first 50 of each list."""
    changed_ids: list[str]
    extra_ids: list[str]
    unreadable: list[UnreadableEntry]
    """The first 50 unreadable entries of each side."""


class ChangedRecord(Result, frozen=True, kw_only=True):
    """A record line whose hash is not the signed one (docs/signing.md)."""

    index: int
    """Its place among the file's records, from 0 (Vex's "Record i")."""
    line: int
    """Its line number, from 1."""
    id: str | None
    """The line's ``id`` (as JSON text when it is not a string), when it has one."""
    change: Literal["changed", "added", "unreadable"]
    """"changed": its hash differs; "added": beyond the records signed; "unreadable": not a
    JSON record (not UTF-8, a ``#`` comment, not JSON, not an object), so it has no hash."""
    detail: str | None
    """Why an unreadable line is unreadable."""


class SignatureCheck(VerifyCheck, tag="signature", frozen=True, kw_only=True):
    """A .vmig.jsonl file against its .vmig.sig, and the signer against the trusted keys."""

    signature: str
    """The signature file checked."""
    ok: bool
    """True only when ``status`` is "trusted"."""
    status: Literal["trusted", "unknown-key", "invalid"]
    """"trusted": valid and signed by a trusted key; "unknown-key": valid, but the key that
    signed it is not trusted (anyone can re-sign an edited file with a new key); "invalid":
    the file or the signature does not check out (``reasons``)."""
    valid: bool
    """The record count, every record hash, the root and the Ed25519 signature check out."""
    trusted: bool
    """Valid, and signed by one of the trusted keys."""
    public_key: str | None
    """The signer's key as the signature names it (``ed25519:<base64>``)."""
    signer: str | None
    """The trusted key's name (from the keyring line, or "--trusted-key") when ``trusted``."""
    signed_at: str | None
    records: int
    """Record lines in the file (non-blank lines, as Vex counts them)."""
    signed_records: int | None
    """The ``record_count`` the signature records."""
    changed: int
    """Record lines whose hash differs from the signed one, or that have none."""
    changed_records: list[ChangedRecord]
    """The first 50 lines that differ or were added."""
    reasons: list[str]
    """Why the check is not "trusted", one sentence each: record count, changed records, root
    hash, bad signature, unknown key."""


class Latency(Result, frozen=True, kw_only=True):
    """Wall time of one side's queries, in milliseconds (measured, never asserted)."""

    p50: float
    p95: float
    mean: float


class SearchSide(Result, frozen=True, kw_only=True):
    """One side of a search check: how it searches, what it holds, how well it finds."""

    location: str
    method: Literal["query", "exact"]
    """"query": the store's own query API; "exact": a side without one (a file), searched by
    vexchange's exact search, so its recall is 1 by construction."""
    metric: str | None
    """The metric the side declares for the vector (None when it declares none)."""
    searches_by: str
    """The metric its results are ranked by: the declared one (cosine when none is declared),
    the one its query API fixes (``vex search``: cosine), or for an exactly searched side the
    check's reference metric."""
    dims: int | None
    """The size the side declares for the vector."""
    records: int
    """Records with the vector, in the selected namespaces (what exact search scanned)."""
    sizes: dict[str, int]
    """Vectors per size as read, most first."""
    normalised: float | None
    """Fraction of those vectors at unit length (|norm - 1| < 0.001)."""
    zero: int
    """Vectors of all zeros (no direction: every metric but euclidean ranks them arbitrarily)."""
    keeps_normalised: bool
    """The store declares it keeps vectors of this metric L2-normalised (Qdrant cosine)."""
    recall: float | None
    """Mean recall@k of the side's results against exact search over its own records."""
    latency_ms: Latency | None
    """None for an exactly searched side."""


class SearchCheck(VerifyCheck, tag="search", frozen=True, kw_only=True):
    """Search quality: probe queries through each side's query API (docs/search-check.md)."""

    ok: bool
    """The target's recall@k and the overlap (with a source) are at least ``threshold``."""
    k: int
    probes: int
    """Probe queries run (fewer than asked when fewer records have the vector)."""
    probe: Literal["vector", "text"]
    """"vector": sampled records' stored vectors; "text": their texts, embedded."""
    seed: int
    threshold: float
    metric: str
    """The reference metric of exact search: the source's declared metric, else the target's,
    else cosine."""
    vector_name: str
    overlap: float | None
    """Mean overlap@k between source and target results (None without a source)."""
    source: SearchSide | None
    target: SearchSide
    reasons: list[str]
    """Why the check failed, one sentence each (figures below the threshold, then what differs
    between the sides); empty when it passed."""
    notes: list[str]
    """What differs between the sides while the check passed (a metric that ranks the same on
    unit vectors)."""


Check = ChecksumCheck | ReceiptCheck | AgainstCheck | SignatureCheck | SearchCheck
"""Every kind of verify check (a tagged union on ``check``)."""


class VerifyReport(Result, frozen=True, kw_only=True):
    """``ok`` is True when every check is."""

    target: str
    checks: list[Check]
    """In this order, each when it applies: checksum, receipt, against, signature, search."""
    ok: bool


class SignReport(Result, frozen=True, kw_only=True):
    """What ``vex sign`` wrote (the private key is never part of it)."""

    file: str
    signature: str
    records: int
    root_hash: str
    public_key: str
    """``ed25519:<base64>``: what a verifier passes to ``--trusted-key``."""
    signed_at: str


class KeyReport(Result, frozen=True, kw_only=True):
    """A key pair ``vex keygen`` made, or the public half of an existing private key."""

    key: str
    """The private key file (its content is never shown)."""
    public_key: str
    public_key_file: str | None
    """Where the public key was written (None when only reported)."""


# -------------------------------------------------------------------------------------- search


class SearchHit(Result, frozen=True, kw_only=True):
    """One ranked record: the score and the terms that made it (docs/results.md#search)."""

    score: float
    similarity: float
    elo: float
    recency: float
    namespace: str | None
    id: str
    text: str | None
    rank: int
    """1 for the best hit."""


# -------------------------------------------------------------------------------------- grains


class GrainsInspectReport(Result, frozen=True, kw_only=True):
    file: str
    grains: int
    types: dict[str, int]
    namespaces: dict[str, int]
    compressed: bool
    manifest_entries: int


class GrainsVerifyReport(Result, frozen=True, kw_only=True):
    """``error`` and ``detail`` when ``ok`` is False; the four figures of the check when True."""

    file: str
    ok: bool
    error: str | UnsetType = UNSET
    """The OMS error code, e.g. "ERR_INTEGRITY"."""
    detail: str | UnsetType = UNSET
    grains: int | UnsetType = UNSET
    footer: str | UnsetType = UNSET
    addresses: int | UnsetType = UNSET
    vectors: str | UnsetType = UNSET
    """The companion vectors file's check: "ok", or why it was not checked."""

"""Looking at data without moving it: ``inspect``, ``validate`` and ``verify``.

Each returns a typed result (vexchange.results, described in docs/results.md).
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson

from ._canonical import NamespaceDigest, namespace_key, record_digest
from ._json import loads_exact, with_big_ints_as_fragments
from ._atomic import atomic_write_bytes
from ._time import format_timestamp, utc_now_ms
from .api import Location, open_store
from .codecs.vmig import RecordError, decode_object
from .connectors._base import Connector, Reject
from .connectors.vmig import iter_lines
from .engine.receipt import load_receipt
from .errors import UsageError
from .record import MemoryRecord, Vector, nested_keys
from .results import (
    AgainstCheck, Check, InspectReport, NamespaceDifference, ReceiptCheck, SearchCheck, SignatureCheck,
    UnreadableEntry, ValidateError, ValidateReport, VerifyReport,
)
from .search_check import SearchOptions, check_search

__all__ = ["SearchOptions", "inspect", "validate", "verify"]

_PAGE = 1000
_LISTED = 50


def _items(store: Connector) -> Iterator[MemoryRecord | Reject]:
    for page in store.read(batch_size=_PAGE):
        yield from page.items


def inspect(location: Location) -> InspectReport:
    """Counts, models, dims, namespaces, sources, time range, and the sidecar's state."""
    store = open_store(location)
    counts: Counter[str] = Counter()
    models: Counter[str] = Counter()
    dims: Counter[str] = Counter()
    namespaces: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    unreadable: Counter[str] = Counter()
    first: int | None = None
    last: int | None = None
    with store:
        for item in _items(store):
            if isinstance(item, Reject):
                unreadable[item.reason] += 1
                continue
            counts["records"] += 1
            counts["with_vector" if item.vectors else "without_vector"] += 1
            counts["with_text" if item.text else "without_text"] += 1
            namespaces[item.namespace if item.namespace is not None else "(none)"] += 1
            sources[item.source_store or "(none)"] += 1
            for name, vec in item.vectors.items():
                dims[f"{name}:{vec.dims}" if name else str(vec.dims)] += 1
                models[vec.model or "(none)"] += 1
            if item.created_at is not None:
                first = item.created_at if first is None else min(first, item.created_at)
                last = item.created_at if last is None else max(last, item.created_at)
    sidecar = store.sidecar_state(counts["records"] + sum(unreadable.values()))
    return InspectReport(
        location=store.describe()["location"],
        records=counts["records"],
        with_vector=counts["with_vector"], without_vector=counts["without_vector"],
        with_text=counts["with_text"], without_text=counts["without_text"],
        unreadable=dict(unreadable),
        namespaces=dict(namespaces.most_common()), models=dict(models.most_common()),
        dims=dict(dims.most_common()), sources=dict(sources.most_common()),
        created_from=None if first is None else format_timestamp(first),
        created_to=None if last is None else format_timestamp(last),
        sidecar=sidecar,
    )


# ------------------------------------------------------------------------------------ validate


def validate(path: str | Path) -> ValidateReport:
    """Check every record of a .vmig.jsonl file. ``ok`` is False on any error.

    Errors: unreadable line, missing or duplicate id, non-finite or non-numeric vector values,
    ``dims`` disagreeing with the vector or with other records, metadata that is not flat,
    fields of the wrong type. Warning: a record with text but no vector (re-embeddable).
    """
    file = Path(path)
    if not file.exists():
        raise UsageError(f"no such file: {file}")
    errors: list[ValidateError] = []
    error_counts: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    seen: dict[int, int] = {}
    dims: dict[str, tuple[int, int]] = {}
    records = 0

    def error(line: int, reason: str, detail: str, record_id: str | None = None) -> None:
        error_counts[reason] += 1
        if len(errors) < 1000:
            errors.append(ValidateError(line=line, id=record_id, reason=reason, detail=detail))

    for line_no, obj, raw in _lines(file):
        records += 1
        if isinstance(obj, Exception):
            error(line_no, "bad_json", str(obj))
            continue
        try:
            record = decode_object(obj, raw)
        except RecordError as err:
            error(line_no, err.reason, err.detail, err.record_id)
            continue
        key = hash((record.namespace, record.id))
        if key in seen:
            error(line_no, "duplicate_id", f"id {record.id!r} also on line {seen[key]}", record.id)
        else:
            seen[key] = line_no
        raw_meta = obj.get("metadata") if isinstance(obj, dict) else None
        if isinstance(raw_meta, dict) and nested_keys(raw_meta):
            error(line_no, "nested_metadata",
                  f"metadata is not flat: {', '.join(nested_keys(raw_meta))}", record.id)
        for name, vec in record.vectors.items():
            expect = dims.setdefault(name, (vec.dims, line_no))
            if expect[0] != vec.dims:
                error(line_no, "dims_inconsistent",
                      f"{vec.dims} dims; line {expect[1]} has {expect[0]}", record.id)
        if not record.vectors and record.text:
            warnings["text_only_reembeddable"] += 1
    return ValidateReport(file=str(file), records=records, ok=not error_counts,
                          error_counts=dict(error_counts), errors=errors, warnings=dict(warnings))


def _lines(file: Path) -> Iterator[tuple[int, Any, bytes]]:
    for line_no, _, line in iter_lines(file):
        try:
            yield line_no, loads_exact(line), line
        except orjson.JSONDecodeError as err:
            yield line_no, err, line


# -------------------------------------------------------------------------------------- verify


def verify(
    target: Location,
    *,
    receipt: str | Path | None = None,
    against: Location | None = None,
    namespaces: Sequence[str] | None = None,
    signature: str | Path | bool | None = None,
    trusted_keys: Sequence[str | Path] = (),
    keyring: str | Path | None = None,
    search: bool | SearchOptions | None = None,
) -> VerifyReport:
    """Prove a target holds what it should. ``ok`` is False on any difference.

    * a .vmig.jsonl file alone: its checksum and record count against its sidecar;
    * ``receipt``: record counts and order-independent digests per namespace against what the
      receipt says was written;
    * ``against`` a source: record by record, naming ids missing, extra or changed;
    * ``signature`` (True for Vex's place, ``x.vmig.sig``, or a path): the file against its
      Ed25519 signature, and the signer against ``trusted_keys`` and the keyring
      (docs/signing.md). A file signed but without a sidecar is then not failed for lacking one.
    * ``search`` (True for the defaults, or a ``SearchOptions``): probe queries through the
      target's own query API (and the ``against`` source's), overlap@k between them and
      recall@k of each against exact search (docs/search-check.md); fails below the threshold.
      With ``receipt`` too, the figures are added to that receipt's ``verify`` section.
    """
    store = open_store(target)
    checks: list[Check] = []
    own = store.file_check()  # a file with a checksum in its sidecar checks itself
    if own is not None and not (signature and own.status == "no-sidecar"):
        checks.append(own)
    if receipt is not None:
        checks.append(_check_receipt(store, Path(receipt)))
    if against is not None:
        checks.append(_check_against(store, open_store(against), namespaces))
    if signature:
        checks.append(_check_signature(store, signature, trusted_keys, keyring))
    elif trusted_keys or keyring is not None:
        raise UsageError("trusted keys are for checking a signature", hint="add --signature")
    if search:
        options = search if isinstance(search, SearchOptions) else SearchOptions()
        found = check_search(store, None if against is None else open_store(against), options, namespaces)
        checks.append(found)
        if receipt is not None:
            _record_search(Path(receipt), found)
    if not checks:
        raise UsageError("nothing to verify against",
                         hint="give --receipt RECEIPT or --against SOURCE (or verify a .vmig.jsonl file)")
    return VerifyReport(target=store.describe()["location"], checks=checks, ok=all(c.ok for c in checks))


def _record_search(path: Path, found: SearchCheck) -> None:
    """Add the search figures to the receipt's ``verify`` section (``verify.search``, with when
    it ran), rewriting the file atomically; every other key is kept as it was."""
    load_receipt(path)  # a damaged receipt is a DecodeError naming it, before anything is written
    body = loads_exact(path.read_bytes())
    section = body.get("verify")
    section = dict(section) if isinstance(section, dict) else {}
    section["search"] = {"at": format_timestamp(utc_now_ms()), **found.to_dict()}
    body["verify"] = section
    atomic_write_bytes(path, orjson.dumps(with_big_ints_as_fragments(body), option=orjson.OPT_INDENT_2)
                       + b"\n")


def _check_signature(store: Connector, signature: str | Path | bool, trusted_keys: Sequence[str | Path],
                     keyring: str | Path | None) -> SignatureCheck:
    from . import signing  # its crypto packages load only when a signature is checked

    path = store.run_files_base()
    if path is None or not path.name.endswith(".jsonl") or not path.is_file():
        raise UsageError("--signature checks a .vmig.jsonl file, and this target is not one",
                         hint="verify the exported file: vex verify FILE.vmig.jsonl --signature")
    return signing.verify_signature(path, None if isinstance(signature, bool) else Path(signature),
                                    trusted_keys=trusted_keys, keyring=keyring)


def _digests(store: Connector, keys: set[str]) -> dict[str, NamespaceDigest]:
    """Digests per receipt namespace key, for the records whose key is in ``keys``."""
    out: dict[str, NamespaceDigest] = {}
    for item in _items(store):
        if isinstance(item, MemoryRecord) and (key := namespace_key(item.namespace)) in keys:
            out.setdefault(key, NamespaceDigest()).add(record_digest(item))
    return out


def _check_receipt(store: Connector, path: Path) -> ReceiptCheck:
    saved = load_receipt(path)
    with store:
        actual = _digests(store, set(saved.namespaces))
    differences: list[NamespaceDifference] = []
    for ns, pair in saved.namespaces.items():
        expected = NamespaceDigest.from_dict(pair.written)
        got = actual.get(ns, NamespaceDigest())
        if expected.count == 0 and got.count == 0:
            continue
        if got != expected:
            differences.append(NamespaceDifference(namespace=ns, expected_count=expected.count,
                                                   actual_count=got.count,
                                                   digest_matches=got.hex == expected.hex))
    return ReceiptCheck(receipt=str(path), ok=not differences, namespaces=len(saved.namespaces),
                        differences=differences)


def _check_against(target: Connector, source: Connector,
                   namespaces: Sequence[str] | None) -> AgainstCheck:
    """Record by record. A target that keeps some metric's vectors L2-normalised (Qdrant cosine)
    gets a second look at a changed record: when everything but the vectors matches and each
    vector points the same way, the record is counted as "normalised" (unit length now) or
    "rounded" (same length, last bits changed, as Chroma's cosine space does); neither is an
    error, as both are documented behaviours of the store."""
    caps = target.capabilities
    normalises = bool(caps.normalises or caps.rounds)
    expected: dict[tuple[str | None, str], tuple[bytes, bytes | None]] = {}
    unreadable: dict[Literal["source", "target"], list[Reject]] = {"source": [], "target": []}

    def selected(item: MemoryRecord | Reject) -> bool:
        # an unreadable entry of unknown namespace may be in any namespace: it counts
        return not namespaces or item.namespace in namespaces or (
            isinstance(item, Reject) and item.namespace is None)

    with source:
        for item in _items(source):
            if not selected(item):
                continue
            if isinstance(item, Reject):
                unreadable["source"].append(item)  # it cannot be in the target as it should be
                continue
            expected[(item.namespace, item.id)] = (
                record_digest(item)[:16], _direction(item) if normalises else None)
    missing_total = len(expected)
    changed: list[str] = []
    extra: list[str] = []
    normalised = rounded = matched = 0
    with target:
        for item in _items(target):
            if not selected(item):
                continue
            if isinstance(item, Reject):
                unreadable["target"].append(item)
                continue
            want = expected.pop((item.namespace, item.id), None)
            if want is None:
                extra.append(item.id)
            elif want[0] == record_digest(item)[:16]:
                matched += 1
            elif want[1] is not None and (kind := _same_direction(want[1], item)):
                if kind == "normalised":
                    normalised += 1
                else:
                    rounded += 1
            else:
                changed.append(item.id)
    missing = [rid for (_, rid) in list(expected)[:_LISTED]]
    return AgainstCheck(
        source=source.describe()["location"],
        ok=not (expected or changed or extra or unreadable["source"] or unreadable["target"]),
        matched=matched, normalised=normalised, rounded=rounded,
        source_records=missing_total + len(unreadable["source"]), missing=len(expected),
        changed=len(changed), extra=len(extra),
        source_unreadable=len(unreadable["source"]),
        target_unreadable=len(unreadable["target"]),
        missing_ids=missing, changed_ids=changed[:_LISTED], extra_ids=extra[:_LISTED],
        unreadable=[UnreadableEntry(side=side, id=r.id, namespace=r.namespace, reason=r.reason)
                    for side, items in unreadable.items() for r in items[:_LISTED]],
    )


_SKETCH = 8


def _direction(record: MemoryRecord) -> bytes:
    """A small fingerprint of a record: the digest of everything but the vector values, then
    for each vector its length and its unit vector projected on 8 fixed random directions
    (36 bytes a vector; memory stays flat)."""
    parts = [_rest_digest(record)]
    for name in sorted(record.vectors):
        parts.append(_projection(record.vectors[name].array()).tobytes())
    return b"".join(parts)


def _rest_digest(record: MemoryRecord) -> bytes:
    bare = {n: Vector(b"", v.model) for n, v in record.vectors.items()}
    return record_digest(record.replace(vectors=bare))[:16]


def _projection(values: np.ndarray) -> np.ndarray:
    """[length, 8 projections of the unit vector] as float32."""
    wide = values.astype(np.float64)
    norm = float(np.linalg.norm(wide))
    unit = wide / norm if norm else wide
    return np.concatenate([[norm], unit @ _directions(len(values))]).astype("<f4")


@lru_cache(maxsize=32)
def _directions(dims: int) -> np.ndarray:
    """The 8 fixed random unit axes for vectors of ``dims`` values (made once per size, not
    twice per record)."""
    directions = np.random.default_rng(dims).standard_normal((dims, _SKETCH))
    directions /= np.linalg.norm(directions, axis=0)
    directions.setflags(write=False)
    return directions


def _same_direction(fingerprint: bytes, record: MemoryRecord) -> str | None:
    """"normalised" or "rounded" when only the vectors' values differ and each keeps its
    direction; None otherwise."""
    if fingerprint[:16] != _rest_digest(record):
        return None
    size = (_SKETCH + 1) * 4
    kind = "rounded"
    for i, name in enumerate(sorted(record.vectors)):
        got = _projection(record.vectors[name].array())
        want = np.frombuffer(fingerprint[16 + i * size: 16 + (i + 1) * size], dtype="<f4")
        if not np.allclose(got[1:], want[1:], atol=1e-4):
            return None
        if abs(float(got[0]) - 1.0) < 1e-4 and abs(float(want[0]) - 1.0) >= 1e-4:
            kind = "normalised"
        elif not np.isclose(got[0], want[0], rtol=1e-5):
            return None
    return kind

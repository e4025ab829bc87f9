"""OMS v1.3 memory grains: the 9-byte header, canonical payload, content address. docs/formats/oms.md.

``encode_grain`` takes a grain with full field names and returns the canonical blob;
``decode_grain`` takes a blob and returns a :class:`Grain` with full field names again.
Type strings of other versions (``fact``, ``tool``, ``episode`` ...) are accepted and kept as
written, so a blob decodes and re-encodes to the same bytes. Unknown fields pass through.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import string
import struct
from typing import Any

import msgspec

from .._time import parse_timestamp
from .canonical import decode, encode, nfc
from .errors import error_class
from .fields import NESTED, compact_map, expand_map

__all__ = [
    "TYPE_BYTES",
    "Grain",
    "content_address",
    "decode_grain",
    "encode_grain",
    "reencode",
    "verify_address",
]

VERSION = 0x01
TYPE_BYTES = {"belief": 0x01, "event": 0x02, "state": 0x03, "workflow": 0x04, "action": 0x05,
              "observation": 0x06, "goal": 0x07, "reasoning": 0x08, "consensus": 0x09,
              "consent": 0x0A}
TYPE_NAMES = {byte: name for name, byte in TYPE_BYTES.items()}
ALIASES = {"fact": "belief", "episode": "event", "checkpoint": "state", "tool_call": "action",
           "tool": "action"}
"""Type strings of OMS 1.0-1.1 and 1.4-1.6, read as their v1.3 type (digest §15)."""

_FLAG_CONTENT_REFS = 1 << 3
_FLAG_EMBEDDING_REFS = 1 << 4
_FLAG_SIGNED = 1
_SENSITIVITY = (("phi:", 3), ("pii:", 2), ("sec:", 2), ("legal:", 2), ("reg:", 1))
_DATETIME_FIELDS = ("created_at", "valid_from", "valid_to", "system_valid_from", "system_valid_to")
_UNIT_FLOATS = ("confidence", "importance")
_COUNTS = ("success_count", "failure_count", "access_count")
_RANGED = frozenset(_UNIT_FLOATS + _COUNTS)
_INDEX_LAYER = ("superseded_by", "system_valid_to", "verification_status", "access_count",
                "last_accessed_at")
_INDEX_LAYER_SET = frozenset(_INDEX_LAYER)
_HEX = frozenset(string.hexdigits.lower())


class Grain(msgspec.Struct, frozen=True):
    """A decoded grain: header values, the payload with full field names, and the address.
    (A msgspec Struct: made once per decoded grain, it costs a fraction of a frozen dataclass.)"""

    type_byte: int
    flags: int
    namespace_hash: int
    created_at_s: int
    fields: dict[str, Any] = msgspec.field(default_factory=dict)
    address: str = ""

    @property
    def type(self) -> str:
        """The v1.3 type name (``belief`` for a ``fact`` grain), or ``0x..`` when unknown."""
        return TYPE_NAMES.get(self.type_byte, f"0x{self.type_byte:02x}")

    @property
    def sensitivity(self) -> int:
        return (self.flags >> 6) & 3


def type_of(type_string: Any, *, strict: bool = False) -> tuple[str, int]:
    """(v1.3 type name, type byte) for a payload type string. ERR_UNKNOWN_TYPE otherwise;
    with ``strict`` the other versions' strings are refused too."""
    if not isinstance(type_string, str) or not type_string:
        raise error_class("ERR_NO_TYPE")("Missing required field: type")
    name = type_string if strict else ALIASES.get(type_string, type_string)
    if name not in TYPE_BYTES:
        raise error_class("ERR_UNKNOWN_TYPE")(f"Unknown memory type: {type_string}")
    return name, TYPE_BYTES[name]


def content_address(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def verify_address(blob: bytes, address: str) -> None:
    """Check a claimed address: lowercase hex (ERR_HASH_FORMAT), 64 characters
    (ERR_HASH_LENGTH), equal to the blob's SHA-256 in constant time (ERR_INTEGRITY)."""
    if not set(address) <= _HEX:
        raise error_class("ERR_HASH_FORMAT")("a content address is lowercase hex")
    if len(address) != 64:
        raise error_class("ERR_HASH_LENGTH")(f"a content address has 64 characters, not {len(address)}")
    if not hmac.compare_digest(address, content_address(blob)):
        raise error_class("ERR_INTEGRITY")("the blob does not hash to the claimed address")


def minimum_sensitivity(tags: Any) -> int:
    level = 0
    for tag in tags if isinstance(tags, list) else []:
        for prefix, needed in _SENSITIVITY:
            if isinstance(tag, str) and tag.startswith(prefix):
                level = max(level, needed)
    return level


# ----------------------------------------------------------------------------------- encode


def encode_grain(grain: dict[str, Any], *, sensitivity: int | None = None,
                 strict_types: bool = False) -> bytes:
    """The canonical blob of a grain given with full field names (§4.9).

    ``created_at`` and the other datetime fields are epoch milliseconds. ``sensitivity``
    raises the header's level above what ``structural_tags`` require (never below).
    """
    kind, type_byte = type_of(grain.get("type"), strict=strict_types)
    grain = _with_epoch_ms(grain)
    validate(kind, grain, floats_checked=True)  # the encoder refuses other non-finite floats
    if not _INDEX_LAYER_SET.isdisjoint(grain):
        name = next(n for n in _INDEX_LAYER if n in grain)
        raise error_class("ERR_SCHEMA")(f"{name} is index-layer data and never in a blob")
    payload = _compact(kind, grain)
    body = encode(payload)
    level = max(minimum_sensitivity(grain.get("structural_tags")), sensitivity or 0)
    flags = level << 6
    if grain.get("content_refs"):
        flags |= _FLAG_CONTENT_REFS
    if grain.get("embedding_refs"):
        flags |= _FLAG_EMBEDDING_REFS
    return _header(flags, type_byte, grain.get("namespace"), grain["created_at"]) + body


def _with_epoch_ms(grain: dict[str, Any]) -> dict[str, Any]:
    """Datetime fields given as ISO-8601 text become epoch milliseconds (§4.8)."""
    texts = [name for name in _DATETIME_FIELDS if type(grain.get(name)) is str]
    if not texts:
        return grain
    out = dict(grain)
    for name in texts:
        try:
            out[name] = parse_timestamp(grain[name])
        except ValueError as err:
            raise error_class("ERR_SCHEMA")(f"{name}: {err}") from None
    return out


@functools.lru_cache(maxsize=1024)
def _namespace_hash(namespace: str) -> bytes:
    return hashlib.sha256(nfc(namespace).encode()).digest()[:2]


def _header(flags: int, type_byte: int, namespace: Any, created_at_ms: int) -> bytes:
    ns_hash = _namespace_hash(namespace) if isinstance(namespace, str) else b"\0\0"
    seconds = created_at_ms // 1000
    if not 0 <= seconds < 1 << 32:
        raise error_class("ERR_RANGE")(f"created_at {created_at_ms} ms is outside 1970-2106")
    return bytes([VERSION, flags, type_byte]) + ns_hash + struct.pack(">I", seconds)


def _compact(kind: str, grain: dict[str, Any]) -> dict[str, Any]:
    names = compact_map(kind)
    out: dict[str, Any] = {}
    for full, value in grain.items():
        if full in NESTED and isinstance(value, list):
            inner = NESTED[full]
            value = [{inner.get(k, k): v for k, v in entry.items()} if isinstance(entry, dict)
                     else entry for entry in value]
        key = names.get(full, full)
        if key in out:
            raise error_class("ERR_CORRUPT")(f"fields {full!r} and another compact to {key!r}")
        out[key] = value
    return out


def validate(kind: str, grain: dict[str, Any], *, floats_checked: bool = False) -> None:
    """The §8 required fields and the §19.3 value rules, in the order the spec implies
    (a non-finite float is ERR_FLOAT_INVALID before it is ERR_RANGE)."""
    if not floats_checked:
        _check_floats(grain)
    created = grain.get("created_at")
    if not isinstance(created, int) or isinstance(created, bool):
        raise error_class("ERR_SCHEMA")("Missing required field: created_at (int epoch ms)")
    present = grain.keys()
    for name in _UNIT_FLOATS if present & _RANGED else ():
        value = grain.get(name)
        if isinstance(value, float) and not math.isfinite(value):
            raise error_class("ERR_FLOAT_INVALID")(f"{name} {value!r} is not finite")
        if value is not None and (not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0):
            raise error_class("ERR_RANGE")(f"{name} {value!r} is outside [0.0, 1.0]")
    for name in _COUNTS if present & _RANGED else ():
        value = grain.get(name)
        if isinstance(value, int) and value < 0:
            raise error_class("ERR_RANGE")(f"{name} {value} is negative")
    for name, non_empty in _REQUIRED_CHECKS.get(kind, ()):
        value = grain.get(name)
        if value is None:
            if kind == "event" and name == "content" and (
                    "content_blocks" in grain or {"subject", "relation", "object"} <= set(grain)):
                continue
            raise error_class("ERR_SCHEMA")(f"Missing required field: {name}")
        if non_empty and value == "":
            raise error_class("ERR_EMPTY")(f"{name} must not be empty")
    if kind == "consent" and grain.get("is_withdrawal") is True and not grain.get("prior_consent"):
        raise error_class("ERR_SCHEMA")("a consent withdrawal needs prior_consent")
    if kind == "goal" and grain.get("goal_state") not in (None, "active", "satisfied", "failed",
                                                          "suspended"):
        raise error_class("ERR_SCHEMA")(f"goal_state {grain.get('goal_state')!r} is not a goal state")


def _check_floats(value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise error_class("ERR_FLOAT_INVALID")(f"float {value!r} is not finite")
    if isinstance(value, dict):
        for item in value.values():
            _check_floats(item)
    elif isinstance(value, list):
        for item in value:
            _check_floats(item)


_REQUIRED = {
    "belief": ("subject", "relation", "object", "confidence"),
    "event": ("content",),
    "state": ("context",),
    "workflow": ("steps", "trigger"),
    "observation": ("observer_id", "observer_type"),
    "goal": ("description", "goal_state"),
    "consensus": ("participating_observers", "threshold", "agreement_count", "dissent_count"),
    "consent": ("subject_did", "grantee_did", "scope", "is_withdrawal"),
}
_NON_EMPTY = frozenset({"subject", "relation", "content", "trigger", "observer_id",
                        "observer_type", "description"})
_REQUIRED_CHECKS = {kind: tuple((name, name in _NON_EMPTY) for name in names)
                    for kind, names in _REQUIRED.items()}


def reencode(grain: Grain) -> bytes:
    """Serialize a decoded grain again, header included as it was read: the round-trip
    procedure of §21 (serialize, hash, deserialize, serialize again, same bytes). Works for
    grain types this version does not know (their fields pass through as an opaque map)."""
    kind = TYPE_NAMES.get(grain.type_byte, "")
    payload = _compact(kind, grain.fields)
    header = bytes([VERSION, grain.flags, grain.type_byte]) + grain.namespace_hash.to_bytes(
        2, "big") + struct.pack(">I", grain.created_at_s)
    return header + encode(payload)


# ----------------------------------------------------------------------------------- decode


def decode_grain(blob: bytes, *, strict_types: bool = False, validate_fields: bool = True,
                 cose_wrapped: bool = False) -> Grain:
    """Parse and check a blob. Unknown fields are kept; a grain of a type byte this version
    does not know is returned as an opaque map (§19.4)."""
    if len(blob) < 10:
        raise error_class("ERR_TOO_SHORT")("Blob must be at least 10 bytes (9-byte header + payload)")
    if blob[0] != VERSION:
        raise error_class("ERR_VERSION")(f"Unsupported format version: {blob[0]}")
    flags, type_byte = blob[1], blob[2]
    if bool(flags & _FLAG_SIGNED) != cose_wrapped:
        raise error_class("ERR_SIGNED_MISMATCH")(
            "the signed flag says " + ("signed" if flags & _FLAG_SIGNED else "unsigned")
            + " but the grain " + ("is" if cose_wrapped else "is not") + " in a COSE wrapper")
    payload = decode(blob[9:])
    if not isinstance(payload, dict):
        raise error_class("ERR_NOT_MAP")("Payload must be a MessagePack/CBOR map")
    if "t" not in payload:
        raise error_class("ERR_NO_TYPE")("Missing required field: type")
    kind = TYPE_NAMES.get(type_byte, "")
    known = bool(kind)
    if known:
        given = payload["t"]
        named = given if given == kind else type_of(given, strict=strict_types)[0]
        if named != kind:
            raise error_class("ERR_UNKNOWN_TYPE")(
                f"payload type {payload['t']!r} does not match header type 0x{type_byte:02x}")
    fields = _expand(kind, payload)
    if known and validate_fields:
        validate(kind, fields, floats_checked=True)  # the decoder refuses non-finite floats
    if "structural_tags" in fields and (flags >> 6) & 3 < minimum_sensitivity(fields["structural_tags"]):
        raise error_class("ERR_SENSITIVITY_MISMATCH")(
            "the header's sensitivity bits are lower than the structural tags require")
    return Grain(type_byte, flags, int.from_bytes(blob[3:5], "big"), int.from_bytes(blob[5:9], "big"),
                 fields, hashlib.sha256(blob).hexdigest())


_EXPANSION: dict[str, tuple[dict[str, str], frozenset[str]]] = {}


def _expansion(kind: str) -> tuple[dict[str, str], frozenset[str]]:
    """Short key -> full name for a type, and the payload keys (short or full) of the fields
    whose entries are compacted too; made once per type."""
    found = _EXPANSION.get(kind)
    if found is None:
        names = expand_map(kind)
        nested = frozenset(s for s, f in names.items() if f in NESTED) | frozenset(NESTED)
        found = _EXPANSION[kind] = (names, nested)
    return found


def _expand(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    names, nested = _EXPANSION.get(kind) or _expansion(kind)
    if nested.isdisjoint(payload):  # the common case: one comprehension
        out = {names.get(short, short): value for short, value in payload.items()}
        if len(out) == len(payload):
            return out
    out = {}
    for short, value in payload.items():
        full = names.get(short, short)
        if full in NESTED and isinstance(value, list):
            inner = {s: f for f, s in NESTED[full].items()}
            value = [{inner.get(k, k): v for k, v in entry.items()} if isinstance(entry, dict)
                     else entry for entry in value]
        if full in out:
            raise error_class("ERR_CORRUPT")(f"keys {short!r} and another both mean {full!r}")
        out[full] = value
    return out

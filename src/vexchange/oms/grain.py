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
    "check_address_format",
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
_FLAG_ENCRYPTED = 1 << 1
_FLAG_COMPRESSED = 1 << 2
_FLAG_CBOR = 1 << 5
_OPAQUE_PAYLOAD = ((_FLAG_ENCRYPTED, "encrypted (AES-256-GCM): decrypt it first"),
                   (_FLAG_COMPRESSED, "zstd-compressed: decompress it first"),
                   (_FLAG_CBOR, "CBOR, which this Level 2 reader does not read (§16.2)"))
_SENSITIVITY = (("phi:", 3), ("pii:", 2), ("sec:", 2), ("legal:", 2), ("reg:", 1))
_DATETIME_FIELDS = ("created_at", "valid_from", "valid_to", "system_valid_from", "system_valid_to")
_UNIT_FLOATS = ("confidence", "importance")
_FLOAT_FIELDS = ("confidence", "importance", "progress", "compression_ratio")
"""Fields the §6 tables type float64: a writer given an integral value still writes float64
(§4.3; vector 6 reproduces only with ``1.0``), so ``1`` and ``1.0`` are one grain."""
_COUNTS = ("success_count", "failure_count", "access_count", "agreement_count", "dissent_count",
           "threshold")
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


def check_address_format(address: Any) -> None:
    """A content address is 64 lowercase hex characters: ERR_HASH_FORMAT, ERR_HASH_LENGTH (§5)."""
    if not isinstance(address, str) or not set(address) <= _HEX:
        raise error_class("ERR_HASH_FORMAT")("a content address is lowercase hex")
    if len(address) != 64:
        raise error_class("ERR_HASH_LENGTH")(f"a content address has 64 characters, not {len(address)}")


def verify_address(blob: bytes, address: str) -> None:
    """Check a claimed address: lowercase hex (ERR_HASH_FORMAT), 64 characters
    (ERR_HASH_LENGTH), equal to the blob's SHA-256 in constant time (ERR_INTEGRITY)."""
    check_address_format(address)
    if not hmac.compare_digest(address, content_address(blob)):
        raise error_class("ERR_INTEGRITY")("the blob does not hash to the claimed address")


def minimum_sensitivity(tags: Any) -> int:
    """The least header sensitivity ``structural_tags`` require (§13.4). A tuple counts as the
    array it is written as, so the encoder and the decoder agree on it."""
    level = 0
    for tag in tags if isinstance(tags, (list, tuple)) else []:
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
    grain = _as_float64(_with_epoch_ms(grain))
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


def _as_float64(grain: dict[str, Any]) -> dict[str, Any]:
    """Integral values of float64 fields (and of ``related_to`` weights) as floats (§4.3).
    Only the writer does this, from input; a decoded grain is re-encoded as it was read."""
    ints = [name for name in _FLOAT_FIELDS if type(grain.get(name)) is int]
    links = grain.get("related_to")
    weights = isinstance(links, list) and any(
        isinstance(link, dict) and type(link.get("weight")) is int for link in links)
    if not ints and not weights:
        return grain
    out = dict(grain)
    for name in ints:
        out[name] = float(grain[name])
    if weights:
        out["related_to"] = [{**link, "weight": float(link["weight"])}
                             if isinstance(link, dict) and type(link.get("weight")) is int else link
                             for link in links or ()]
    return out


@functools.lru_cache(maxsize=1024)
def _namespace_hash(namespace: str) -> bytes:
    try:
        return hashlib.sha256(nfc(namespace).encode()).digest()[:2]
    except UnicodeEncodeError:
        raise error_class("ERR_CORRUPT")("the namespace is not valid Unicode (a lone surrogate)") from None


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
    """The §8 required fields (present and of their type), the §27.1 Action phase table and the
    §19.3 value rules, in the order the spec implies (a non-finite float is ERR_FLOAT_INVALID
    before it is ERR_RANGE; a negative count is ERR_RANGE before a wrong type is ERR_SCHEMA)."""
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
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                  or not 0.0 <= value <= 1.0):
            raise error_class("ERR_RANGE")(f"{name} {value!r} is outside [0.0, 1.0]")
    for name in _COUNTS if present & _RANGED else ():
        value = grain.get(name)
        if isinstance(value, int) and value < 0:
            raise error_class("ERR_RANGE")(f"{name} {value} is negative (§19.3: a count is >= 0)")
    for name, rule in _REQUIRED_CHECKS.get(kind, ()):
        value = grain.get(name)
        if value is None:
            if kind == "event" and name == "content" and (
                    "content_blocks" in grain or {"subject", "relation", "object"} <= set(grain)):
                continue
            raise error_class("ERR_SCHEMA")(f"Missing required field: {name}")
        rule(kind, name, value)
    tags = grain.get("structural_tags")
    if tags is not None and not (isinstance(tags, (list, tuple)) and all(isinstance(t, str) for t in tags)):
        raise error_class("ERR_SCHEMA")("structural_tags must be an array of strings (§6.1, §13.2)")
    if kind == "consent" and grain.get("is_withdrawal") is True and not grain.get("prior_consent"):
        raise error_class("ERR_SCHEMA")("a consent withdrawal needs prior_consent")
    if kind == "action" and grain.get("type") in _PHASED_ACTION_TYPES:
        _check_action_phase(grain)


def _check_floats(value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise error_class("ERR_FLOAT_INVALID")(f"float {value!r} is not finite")
    if isinstance(value, dict):
        for item in value.values():
            _check_floats(item)
    elif isinstance(value, list):
        for item in value:
            _check_floats(item)


def _wrong(kind: str, name: str, value: Any, wanted: str) -> Exception:
    return error_class("ERR_SCHEMA")(f"{name} of a {kind} grain must be {wanted}, not {type(value).__name__}"
                                     " (§8)")


def _text(kind: str, name: str, value: Any) -> None:
    """A non-empty string: another type is ERR_SCHEMA, the empty string ERR_EMPTY."""
    if not isinstance(value, str):
        raise _wrong(kind, name, value, "a string")
    if not value:
        raise error_class("ERR_EMPTY")(f"{name} must not be empty")


def _string(kind: str, name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise _wrong(kind, name, value, "a string")


def _object(kind: str, name: str, value: Any) -> None:
    if not isinstance(value, (str, dict)):
        raise _wrong(kind, name, value, "a string or a map")


def _number(kind: str, name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _wrong(kind, name, value, "a float64")


def _map(kind: str, name: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise _wrong(kind, name, value, "a map")


def _strings(kind: str, name: str, value: Any) -> None:
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise _wrong(kind, name, value, "an array of strings")


def _steps(kind: str, name: str, value: Any) -> None:
    _strings(kind, name, value)
    if not value:
        raise error_class("ERR_EMPTY")(f"{name} must not be empty (§8.4: a non-empty array)")


def _count(kind: str, name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _wrong(kind, name, value, "an integer")


def _flag(kind: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _wrong(kind, name, value, "a boolean")


def _goal_state(kind: str, name: str, value: Any) -> None:
    if value not in ("active", "satisfied", "failed", "suspended"):
        raise error_class("ERR_SCHEMA")(f"goal_state {value!r} is not a goal state")


_REQUIRED_CHECKS = {
    "belief": (("subject", _text), ("relation", _text), ("object", _object), ("confidence", _number)),
    "event": (("content", _text),),
    "state": (("context", _map),),
    "workflow": (("steps", _steps), ("trigger", _text)),
    "observation": (("observer_id", _text), ("observer_type", _text)),
    "goal": (("description", _text), ("goal_state", _goal_state)),
    "consensus": (("participating_observers", _strings), ("threshold", _count),
                  ("agreement_count", _count), ("dissent_count", _count)),
    "consent": (("subject_did", _string), ("grantee_did", _string), ("scope", _strings),
                ("is_withdrawal", _flag)),
}

_PHASED_ACTION_TYPES = ("action", "tool")
"""Payload strings of the types the §27.1 phase table governs (1.3 ``action``, 1.4+ ``tool``);
a 1.0-1.1 ``tool_call`` grain predates the table and is read as it was written."""
_NO_OUTPUT = ("content", "is_error", "stdout", "stderr", "exit_code", "duration_ms")
_PHASES: dict[str | None, tuple[tuple[str, ...], tuple[str, ...]]] = {
    None: (("tool_name", "input", "content", "is_error"), ("derived_from",)),
    "definition": (("tool_name", "tool_description", "input_schema"), ("input", "tool_call_id", *_NO_OUTPUT)),
    "call": (("tool_name", "input"), _NO_OUTPUT),
    "result": (("tool_call_id", "content", "is_error", "derived_from"), ("tool_name", "input")),
}
"""action_phase -> (fields REQUIRED, fields that MUST be absent), §27.1 (absent phase: complete)."""
_ACTION_TYPES = {"tool_name": _text, "input": _map, "is_error": _flag, "tool_call_id": _string,
                 "tool_description": _string, "input_schema": _map, "derived_from": _strings}


def _check_action_phase(grain: dict[str, Any]) -> None:
    """The §27.1 phase table: ERR_SCHEMA for a missing REQUIRED field, a field the phase says
    MUST be absent, or an unknown phase. A complete call in ``code_exec`` mode needs none of
    tool_name, input, content, is_error (the spec's own CodeAct example has none; digest gap 15)."""
    phase = grain.get("action_phase")
    if phase not in _PHASES:
        raise error_class("ERR_SCHEMA")(
            f"action_phase {phase!r} is not definition, call, result or absent (§27.1)")
    required, absent = _PHASES[phase]
    if phase is None and grain.get("execution_mode") == "code_exec":
        required = ()
    where = f"an Action in the {phase or 'complete'} phase"
    for name in required:
        if grain.get(name) is None:
            raise error_class("ERR_SCHEMA")(f"Missing required field: {name} ({where}, §27.1)")
    for name in absent:
        if grain.get(name) is not None:
            raise error_class("ERR_SCHEMA")(f"{name} must be absent from {where} (§27.1)")
    for name, rule in _ACTION_TYPES.items():
        value = grain.get(name)
        if value is not None:
            rule("action", name, value)
    if phase == "result" and not grain["derived_from"]:
        raise error_class("ERR_SCHEMA")("derived_from of a result names its call grain (§27.1)")


def reencode(grain: Grain) -> bytes:
    """Serialize a decoded grain again, header included as it was read: the round-trip
    procedure of §21 (serialize, hash, deserialize, serialize again, same bytes). Works for
    grain types this version does not know (their fields pass through as an opaque map)."""
    kind = TYPE_NAMES.get(grain.type_byte, "")
    payload = _compact(kind, grain.fields) if kind else grain.fields  # unknown: opaque, as read
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
    for bit, why in _OPAQUE_PAYLOAD:
        if flags & bit:
            raise error_class("ERR_CORRUPT")(
                f"header flag bit {bit.bit_length() - 1} says the payload is {why} (§3)")
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
    expanded = _expand(kind, payload)  # also refuses two keys of one field (ERR_CORRUPT)
    # a type this version does not know is an opaque map (§19.4): its keys stay as written, so
    # that it re-encodes byte for byte (expanded, a full name that the common map compacts,
    # "run_id" say, would come back as its short key)
    fields = expanded if known else dict(payload)
    if known and validate_fields:
        validate(kind, fields, floats_checked=True)  # the decoder refuses non-finite floats
    if "structural_tags" in expanded \
            and (flags >> 6) & 3 < minimum_sensitivity(expanded["structural_tags"]):
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

"""The .vmig.jsonl line codec: one MemoryRecord <-> one JSON line. Pure: no files, no clocks.

A line starts with the twelve keys Vex writes, in Vex's order, so Vex reads our files::

    id, text, vector, model, dims, namespace, metadata, created_at, source_store, modality,
    score, vex_version

then vexchange's extension keys, which a Vex reader ignores, only when they carry something:

    updated_at     ISO-8601 UTC, like created_at
    created_at_ms  (compat "vex") the exact epoch milliseconds; ``created_at`` is epoch seconds
    id_type        "int" when the source's id was an integer (the id itself is always a string)
    vector_name    the name of the named vector written as ``vector`` (see below)
    vectors        named vectors: {"name": {"vector": [...], "model": ..., "dims": n}}
    metadata_json  keys of ``metadata`` whose values are not scalars and are written as JSON text
    metadata_lists keys of ``metadata`` whose lists of strings are written as one comma string
    sparse_vectors {"name": {"indices": [...], "values": [...], "model": ...}}
    text_null      true: ``text`` is "" only so Vex takes the line; the record has no text

and last, any keys the reader did not know, as they were. docs/formats/vmig.md is the reference.

Every line passes Vex 0.8.8's ``validate``: ``metadata`` holds scalars only (Vex calls any
array or object "nesting"), and a line always has ``text`` or ``vector``: a record with neither
gets its first named vector in ``vector`` (``vector_name``), or, with no dense vector at all,
``text: ""`` (``text_null``). ``compat="vex"`` goes further for Vex's database loaders, which
put ``created_at`` into integer columns and read only ``vector``: epoch seconds, and a lone
named vector in ``vector`` even beside text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from .._vector_text import VectorTexts
from .._json import holds_huge_float, loads_exact, with_big_ints_as_fragments

from .._floats import VectorValueError, decode_vector, hazard_free, parse_number_array, vector_json
from .._time import format_timestamp, parse_timestamp
from ..record import DEFAULT_VECTOR, MemoryRecord, SparseVector, Vector, canonical_int, is_flat_value

__all__ = ["COMPAT_MODES", "FORMAT_VERSION", "KNOWN_KEYS", "EncodeError", "RecordError", "decode_object",
           "encode_record", "encode_records", "joinable_strings", "parse_line", "parse_line_and_vector"]

FORMAT_VERSION = "1.0.0"
"""The value of ``vex_version`` in every line: the Vex record format version we follow."""

VEX_KEYS = (
    "id", "text", "vector", "model", "dims", "namespace", "metadata", "created_at",
    "source_store", "modality", "score", "vex_version",
)  # fmt: skip
EXTENSION_KEYS = ("updated_at", "created_at_ms", "id_type", "vector_name", "vectors", "metadata_json",
                  "metadata_lists", "sparse_vectors", "text_null")
COMPAT_MODES = ("vex",)
"""What ``encode_record(compat=...)`` takes besides None: "vex", for the published Vex's loaders."""
KNOWN_KEYS = frozenset(VEX_KEYS + EXTENSION_KEYS)

_DUMP_OPTS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY


class RecordError(ValueError):
    """A line that is valid JSON but not a usable record. ``reason`` is a short stable code."""

    def __init__(self, reason: str, detail: str, record_id: str | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.record_id = record_id


# ---------------------------------------------------------------------------------------- write


def encode_record(record: MemoryRecord, *, compat: str | None = None) -> bytes:
    """One JSON line, newline included, that Vex's ``validate`` accepts and we read back exactly.

    ``compat="vex"``: ``created_at`` as integer epoch seconds (the milliseconds in
    ``created_at_ms``), and a lone named vector written as ``vector`` even when there is text.
    Raises RecordError for a record no line can hold (an empty id; a NaN in metadata).
    """
    if compat is not None and compat not in COMPAT_MODES and record.id != "":
        raise ValueError(f"unknown compat mode {compat!r}; known: {', '.join(COMPAT_MODES)}")
    return _encode(record, compat, False, None, None)


EncodeError = RecordError | TypeError
"""What :func:`encode_records` gives in place of a line: what :func:`encode_record` raises for
a record no line can hold (RecordError), or orjson for a value it cannot write (TypeError)."""


def encode_records(records: Sequence[MemoryRecord], *, compat: str | None = None,
                   texts: VectorTexts | None = None) -> list[bytes | EncodeError]:
    """:func:`encode_record` of each record, byte for byte, with the work that can be done once
    a page done so: the double-rounding screen of every vector in one numpy pass
    (``_floats.hazard_free``; a page that may hold the hazard takes the per-vector test), and
    the ISO text of the timestamps in one numpy call. A record that :func:`encode_record`
    refuses (RecordError, TypeError) gets the error in its place; any other error is raised.

    ``texts``: the JSON text vectors were read from (``_vector_text``); a line's ``vector``
    whose bytes have one is written as that text, not formatted anew: the same float32 bits
    for every reader, but the digits as the source had them (so not always the shortest)."""
    if compat is not None and compat not in COMPAT_MODES:
        raise ValueError(f"unknown compat mode {compat!r}; known: {', '.join(COMPAT_MODES)}")
    chunks = [v.data for r in records for v in r.vectors.values()]
    chunks += [sp.values for r in records for sp in r.sparse.values()]
    screened = hazard_free(chunks)
    created = _iso_page([r.created_at for r in records]) if compat is None else [None] * len(records)
    updated = _iso_page([r.updated_at for r in records])
    out: list[bytes | EncodeError] = []
    for record, created_text, updated_text in zip(records, created, updated, strict=True):
        try:
            out.append(_encode(record, compat, screened, created_text, updated_text, texts))
        except (RecordError, TypeError) as err:
            out.append(err)
    return out


def _encode(record: MemoryRecord, compat: str | None, screened: bool, created_text: str | None,
            updated_text: str | None, texts: VectorTexts | None = None) -> bytes:
    """The line; ``screened``: the vectors are known to hold no double-rounding hazard;
    ``created_text``, ``updated_text``: the timestamps' ISO text when already made (None: make
    it); ``texts``: the JSON text ``vector`` may be written as (:func:`encode_records`)."""
    if record.id == "":
        raise RecordError("missing_id", "record has an empty id, which no reader (ours or Vex's) takes")
    vectors = record.vectors
    default = vectors.get(DEFAULT_VECTOR)
    moved = None if default is not None else _vector_to_move(record, compat)
    if moved is not None:
        default = vectors[moved]
    metadata, json_keys, list_keys = _flatten_metadata(record.metadata)
    text_null = record.text is None and default is None
    created = record.created_at
    as_json = _screened_json if screened else vector_json
    if created is None or compat:
        created_value: Any = None if created is None else created // 1000
    else:
        created_value = created_text if created_text is not None else _iso(created)
    line: dict[str, Any] = {
        "id": record.id,
        "text": "" if text_null else record.text,
        "vector": None if default is None else _vector_value(default.data, as_json, texts),
        "model": default.model if default else None,
        "dims": default.dims if default else None,
        "namespace": record.namespace,
        "metadata": metadata,
        "created_at": created_value,
        "source_store": record.source_store,
        "modality": record.modality,
        "score": record.score,
        "vex_version": FORMAT_VERSION,
    }
    if record.updated_at is not None:
        line["updated_at"] = updated_text if updated_text is not None else _iso(record.updated_at)
    if compat and created is not None:
        line["created_at_ms"] = created
    if record.id_type != "str":
        line["id_type"] = record.id_type
    if moved is not None:
        line["vector_name"] = moved
    if len(vectors) > (default is not None):
        named = {k: v for k, v in vectors.items() if k != DEFAULT_VECTOR and k != moved}
        if named:
            line["vectors"] = {
                name: {"vector": as_json(v.data), "model": v.model, "dims": v.dims}
                for name, v in named.items()
            }
    if json_keys:
        line["metadata_json"] = json_keys
    if list_keys:
        line["metadata_lists"] = list_keys
    if record.sparse:
        line["sparse_vectors"] = {
            name: {"indices": sp.index_array().tolist(), "values": as_json(sp.values),
                   "model": sp.model}
            for name, sp in record.sparse.items()
        }
    if text_null:
        line["text_null"] = True
    if record.extra:
        for key, value in record.extra.items():
            line.setdefault(key, value)
    try:
        return orjson.dumps(line, option=_DUMP_OPTS)
    except TypeError:  # an integer beyond 64 bits: written exactly as a raw fragment
        for key in ("metadata", *record.extra):
            line[key] = with_big_ints_as_fragments(line[key])
        return orjson.dumps(line, option=_DUMP_OPTS)


def _vector_value(data: bytes, as_json: Any, texts: VectorTexts | None) -> Any:
    """What orjson writes for ``vector``: the text the bytes were read from, or the floats."""
    text = None if texts is None else texts.get(data)
    return as_json(data) if text is None else orjson.Fragment(text)


def _screened_json(data: bytes) -> np.ndarray:
    """:func:`vector_json` of a vector already screened for the double-rounding hazard."""
    return np.frombuffer(data, dtype=_F32)


_F32 = np.dtype("<f4")
_FIRST_MS, _LAST_MS = -62_135_596_800_000, 253_402_300_799_999
"""The years 1-9999, where numpy's ISO text is format_timestamp's (tests/test_codec.py)."""


def _iso_page(values: list[int | None]) -> list[str | None]:
    """``_iso`` of each integer timestamp of the years 1-9999, in one numpy call; None for the
    others (None itself, or one that ``_iso`` makes or refuses when the line is encoded)."""
    at = [i for i, v in enumerate(values) if type(v) is int and _FIRST_MS <= v <= _LAST_MS]
    out: list[str | None] = [None] * len(values)
    if len(at) < 8:  # a small page: numpy's set-up costs more than it saves
        return out
    stamps = np.array([values[i] for i in at], dtype=np.int64).astype("datetime64[ms]")
    for i, text in zip(at, np.datetime_as_string(stamps, unit="ms", timezone="UTC").tolist(), strict=True):
        out[i] = text
    return out


_DAY_MS = 86_400_000
_DAYS: dict[int, str] = {}
"""``"YYYY-MM-DDT"`` of the days :func:`_iso` has seen (cleared past ``_DAYS_KEPT``)."""
_DAYS_KEPT = 4096


def _iso(ms: int) -> str:
    """``format_timestamp(ms)``, twice as fast for the two timestamps of every line written: the
    date part is kept per day, the time of day is plain arithmetic. The same text for every
    input (tests/test_speed_paths.py compares them), ValueError outside the years 1-9999."""
    if type(ms) is not int:
        return format_timestamp(ms)
    day, rest = divmod(ms, _DAY_MS)
    prefix = _DAYS.get(day)
    if prefix is None:
        prefix = format_timestamp(day * _DAY_MS)[:11]  # raises outside the years 1-9999
        if len(_DAYS) >= _DAYS_KEPT:
            _DAYS.clear()
        _DAYS[day] = prefix
    seconds, millis = divmod(rest, 1000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{prefix}{hour:02d}:{minute:02d}:{second:02d}.{millis:03d}Z"


def _vector_to_move(record: MemoryRecord, compat: str | None) -> str | None:
    """The named vector to write as ``vector`` for a record without a default one: the first,
    when there is no text (Vex refuses a line with neither text nor vector); with compat
    "vex", also a lone one beside text (Vex's database loaders read ``vector`` only)."""
    if not record.vectors:
        return None
    if record.text is None or (compat == "vex" and len(record.vectors) == 1):
        return next(iter(record.vectors))
    return None


def joinable_strings(value: list[Any]) -> bool:
    """A list that ``",".join`` writes reversibly: strings, none empty, none with a comma.
    (The empty list is "", which reads back as [].)"""
    for v in value:  # noqa: SIM110 - a loop, not all(generator): this runs per record
        if type(v) is not str or not v or "," in v:
            return False
    return True


_SCALARS = frozenset({str, int, bool, type(None)})


def _flatten_metadata(
    metadata: dict[str, Any] | None,
) -> tuple[dict[str, Any] | None, list[str], list[str]]:
    """Metadata as scalars only, which is what Vex's validator takes: a list of strings that
    joins reversibly becomes one comma string (``tags: "a,b"``, as Vex's own examples and its
    VEKTOR loader have it), any other list or object becomes JSON text. Gives the keys of each.

    Raises RecordError for NaN or infinity, which JSON cannot carry (orjson would write null).
    """
    if not metadata:
        return metadata, [], []
    nested: list[str] = []
    lists: list[str] = []
    for key, value in metadata.items():
        kind = type(value)
        if kind in _SCALARS:
            continue
        if kind is float and value - value == 0.0:  # finite (inf - inf and NaN are NaN)
            continue
        if kind is list and joinable_strings(value):  # strings only: nothing to be finite
            lists.append(key)
            continue
        if not _finite(value):
            raise RecordError("bad_metadata", f"metadata {key!r} holds a NaN or infinite number,"
                              " which JSON cannot carry")
        if isinstance(value, list) and joinable_strings(value):
            lists.append(key)
        elif isinstance(value, (list, dict)) or not is_flat_value(value):
            nested.append(key)
    if not nested and not lists:
        return metadata, [], []
    flat = dict(metadata)
    for key in lists:
        flat[key] = ",".join(metadata[key])
    for key in nested:
        flat[key] = orjson.dumps(with_big_ints_as_fragments(metadata[key]),
                                 option=orjson.OPT_SORT_KEYS).decode()
    return flat, nested, lists


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


# ----------------------------------------------------------------------------------------- read

_VECTOR_KEY = b'"vector":'


def parse_line(line: bytes) -> Any:
    """``orjson.loads(line)``, faster for the usual line: the top-level ``vector`` array is cut
    out and parsed straight into a float64 array (see _floats.parse_number_array).

    The fast path is taken only when ``"vector":`` occurs once, is followed by ``[``, and the rest
    parses with the placeholder at the top level; anything else is parsed the ordinary way. (Once
    the array parses as numbers it holds no quote, so "once" is checked before and after it only:
    counting over the whole line cost 1.8 µs a line.)

    A line whose parse holds a float of 2**63 or more is parsed again exactly: orjson makes
    integers beyond 64 bits floats, json keeps them integers.
    """
    return parse_line_and_vector(line)[0]


def parse_line_and_vector(line: bytes) -> tuple[Any, bytes | None]:
    """:func:`parse_line`, and the JSON text of the top-level ``vector`` array when the fast
    path parsed it (else None): the text a writer may write again for the same float32 values
    (see _vector_text.py for when)."""
    start = line.find(_VECTOR_KEY) + len(_VECTOR_KEY)
    if start >= len(_VECTOR_KEY):
        end = line.find(b"]", start)
        if line[start:start + 1] == b"[" and end > 0:
            text = line[start:end + 1]
            wide = parse_number_array(text)
            if wide is not None and line.find(_VECTOR_KEY, end) < 0:
                rest = line[:start] + b"0" + line[end + 1:]
                try:
                    obj = orjson.loads(rest)
                    if holds_huge_float(obj):
                        obj = loads_exact(rest)
                except ValueError:
                    obj = None
                if isinstance(obj, dict) and type(obj.get("vector")) is int and obj["vector"] == 0:
                    obj["vector"] = wide
                    return obj, text
    obj = orjson.loads(line)
    return (loads_exact(line) if holds_huge_float(obj) else obj), None


def decode_object(obj: Any, raw: bytes | None = None) -> MemoryRecord:
    """Build a record from one parsed line. Raises RecordError naming what is wrong.

    ``raw`` is the line's text, used only to settle float32 rounding exactly (see _floats).
    """
    if not isinstance(obj, dict):
        raise RecordError("not_an_object", f"line is a JSON {type(obj).__name__}, not an object")
    record_id, id_type = _decode_id(obj.get("id"))
    declared = obj.get("id_type")
    if declared is not None:
        if declared not in ("int", "str") or (declared == "int" and canonical_int(record_id) is None):
            raise RecordError("bad_field", f"id_type {declared!r} does not fit id {record_id!r}",
                              record_id)
        id_type = declared
    try:
        return _decode_fields(obj, record_id, id_type, raw)
    except RecordError as err:
        err.record_id = record_id
        raise


def _decode_fields(obj: dict[str, Any], record_id: str, id_type: Any, raw: bytes | None) -> MemoryRecord:
    vectors = _decode_vectors(obj, raw)
    metadata = _decode_metadata(obj.get("metadata"), obj.get("metadata_json"), obj.get("metadata_lists"))
    return MemoryRecord(
        id=record_id,
        text=_decode_text(obj),
        vectors=vectors,
        namespace=_optional_str(obj, "namespace"),
        metadata=metadata,
        created_at=_created_at(obj),
        updated_at=_timestamp(obj, "updated_at"),
        source_store=_optional_str(obj, "source_store"),
        score=_optional_number(obj, "score"),
        modality=_optional_str(obj, "modality") if "modality" in obj else "text",
        id_type=id_type,
        extra={} if obj.keys() <= KNOWN_KEYS else {k: v for k, v in obj.items() if k not in KNOWN_KEYS},
        sparse=_decode_sparse(obj.get("sparse_vectors"), raw),
    )


def _decode_sparse(value: Any, raw: bytes | None) -> dict[str, SparseVector]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RecordError("bad_field", "sparse_vectors must be an object of named sparse vectors")
    out: dict[str, SparseVector] = {}
    for name, entry in value.items():
        where = f"sparse_vectors.{name}"
        if not isinstance(entry, dict) or not isinstance(entry.get("indices"), list):
            raise RecordError("bad_vector", f"{where} must be an object with indices and values")
        indices = entry["indices"]
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
            raise RecordError("bad_vector", f"{where}: indices must be integers")
        try:
            values = decode_vector(entry.get("values"), raw) if indices else b""
            sparse = SparseVector.from_values(indices, np.frombuffer(values, dtype="<f4"),
                                              entry.get("model"))
        except (VectorValueError, ValueError) as err:
            raise RecordError("bad_vector", f"{where}: {err}") from None
        if sparse.values != values:
            raise RecordError("bad_vector", f"{where}: indices must be in increasing order")
        out[name] = sparse
    return out


def _decode_id(value: Any) -> tuple[str, Any]:
    if isinstance(value, str) and value != "":
        return value, "str"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value), "int"
    if value is None or value == "":
        raise RecordError("missing_id", "record has no id")
    raise RecordError("bad_id", f"id must be a string or an integer, got {value!r}")


def _decode_text(obj: dict[str, Any]) -> str | None:
    """``text``; None when ``text_null`` says its "" was written only to satisfy Vex."""
    text = _optional_str(obj, "text")
    flag = obj.get("text_null")
    if flag is None or flag is False:
        return text
    if flag is not True or text != "":
        raise RecordError("bad_field", f"text_null {flag!r} needs text \"\" (the line has {text!r})")
    return None


def _created_at(obj: dict[str, Any]) -> int | None:
    """``created_at``, or ``created_at_ms`` when the line has it (compat "vex": ``created_at``
    is its epoch seconds, and a line whose two disagree was edited and is refused)."""
    exact = obj.get("created_at_ms")
    if exact is None:
        return _timestamp(obj, "created_at")
    seconds = obj.get("created_at")
    if type(exact) is not int or type(seconds) is not int or seconds != exact // 1000:
        raise RecordError("bad_timestamp", f"created_at_ms {exact!r} does not fit created_at {seconds!r}"
                          " (epoch seconds of the same moment)")
    try:
        format_timestamp(exact)  # raises ValueError outside the years 1-9999
    except ValueError as err:
        raise RecordError("bad_timestamp", f"created_at_ms: {err}") from None
    return exact


def _decode_vectors(obj: dict[str, Any], raw: bytes | None) -> dict[str, Vector]:
    vectors: dict[str, Vector] = {}
    moved = obj.get("vector_name")
    if moved is not None and (not isinstance(moved, str) or moved == DEFAULT_VECTOR
                              or obj.get("vector") is None):
        raise RecordError("bad_field", f"vector_name {moved!r} must name the vector the line holds in vector")
    if obj.get("vector") is not None:  # a list, or a float64 array from parse_line
        vectors[moved or DEFAULT_VECTOR] = _decode_one_vector(
            obj["vector"], obj.get("model"), obj.get("dims"), "vector", raw
        )
    elif obj.get("model") is not None and not isinstance(obj["model"], str):
        raise RecordError("bad_field", "model must be a string")
    named = obj.get("vectors")
    if named is None:
        return vectors
    if not isinstance(named, dict):
        raise RecordError("bad_field", "vectors must be an object of named vectors")
    for name, entry in named.items():
        if not isinstance(entry, dict) or name in (DEFAULT_VECTOR, moved):
            raise RecordError("bad_vector", f"named vector {name!r} must be an object with a vector"
                              + (" (and is already in vector)" if name == moved else ""))
        vectors[name] = _decode_one_vector(
            entry.get("vector"), entry.get("model"), entry.get("dims"), f"vectors.{name}", raw
        )
    return vectors


def _decode_one_vector(values: Any, model: Any, dims: Any, where: str, raw: bytes | None) -> Vector:
    try:
        data = decode_vector(values, raw)
    except VectorValueError as err:
        raise RecordError("bad_vector", f"{where}: {err}") from None
    if model is not None and not isinstance(model, str):
        raise RecordError("bad_field", f"{where}: model must be a string")
    if dims is not None and dims != len(data) // 4:
        raise RecordError(
            "dims_mismatch", f"{where}: dims says {dims!r} but the vector has {len(data) // 4} values"
        )
    return Vector(data, model)


def _decode_metadata(value: Any, json_keys: Any, list_keys: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RecordError("bad_metadata", f"metadata must be an object, got {type(value).__name__}")
    if not json_keys and not list_keys:
        return value
    for name, keys in (("metadata_json", json_keys), ("metadata_lists", list_keys)):
        if keys and not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
            raise RecordError("bad_field", f"{name} must be a list of metadata keys")
    out = dict(value)
    for key in json_keys or ():
        if not isinstance(out.get(key), str):
            raise RecordError("bad_metadata", f"metadata_json names {key!r}, which is not JSON text")
        try:
            out[key] = loads_exact(out[key])
        except orjson.JSONDecodeError:
            raise RecordError("bad_metadata", f"metadata {key!r} is not valid JSON text") from None
    for key in list_keys or ():
        text = value.get(key)
        if not isinstance(text, str) or (json_keys and key in json_keys):
            raise RecordError("bad_metadata", f"metadata_lists names {key!r}, which is not a comma string")
        out[key] = text.split(",") if text else []
    return out


def _optional_str(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise RecordError("bad_field", f"{key} must be a string or null, got {value!r}")


def _optional_number(obj: dict[str, Any], key: str) -> float | None:
    """A number as the line holds it: an integer stays an integer (``3`` is not ``3.0``), so
    a record reads back with the JSON types it was written with."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    raise RecordError("bad_field", f"{key} must be a number or null, got {value!r}")


def _timestamp(obj: dict[str, Any], key: str) -> int | None:
    try:
        return parse_timestamp(obj.get(key))
    except ValueError as err:
        raise RecordError("bad_timestamp", f"{key}: {err}") from None

"""The .vmig.jsonl line codec: one MemoryRecord <-> one JSON line. Pure: no files, no clocks.

A line starts with the twelve keys Vex writes, in Vex's order, so Vex reads our files::

    id, text, vector, model, dims, namespace, metadata, created_at, source_store, modality,
    score, vex_version

then vexchange's extension keys, which a Vex reader ignores, only when they carry something:

    updated_at     ISO-8601 UTC, like created_at
    id_type        "int" when the source's id was an integer (the id itself is always a string)
    vectors        named vectors: {"name": {"vector": [...], "model": ..., "dims": n}}
    metadata_json  keys of ``metadata`` whose values were nested and are written as JSON text
    sparse_vectors {"name": {"indices": [...], "values": [...], "model": ...}}

and last, any keys the reader did not know, as they were. docs/formats/vmig.md is the reference.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

from .._json import holds_huge_float, loads_exact, with_big_ints_as_fragments

from .._floats import VectorValueError, decode_vector, parse_number_array, vector_json
from .._time import format_timestamp, parse_timestamp
from ..record import DEFAULT_VECTOR, MemoryRecord, SparseVector, Vector, canonical_int, is_flat_value

__all__ = ["FORMAT_VERSION", "KNOWN_KEYS", "RecordError", "decode_object", "encode_record", "parse_line"]

FORMAT_VERSION = "1.0.0"
"""The value of ``vex_version`` in every line: the Vex record format version we follow."""

VEX_KEYS = (
    "id", "text", "vector", "model", "dims", "namespace", "metadata", "created_at",
    "source_store", "modality", "score", "vex_version",
)  # fmt: skip
EXTENSION_KEYS = ("updated_at", "id_type", "vectors", "metadata_json", "sparse_vectors")
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


def encode_record(record: MemoryRecord) -> bytes:
    """One JSON line, newline included."""
    default = record.vectors.get(DEFAULT_VECTOR)
    metadata, json_keys = _flatten_metadata(record.metadata)
    line: dict[str, Any] = {
        "id": record.id,
        "text": record.text,
        "vector": vector_json(default.data) if default else None,
        "model": default.model if default else None,
        "dims": default.dims if default else None,
        "namespace": record.namespace,
        "metadata": metadata,
        "created_at": None if record.created_at is None else format_timestamp(record.created_at),
        "source_store": record.source_store,
        "modality": record.modality,
        "score": record.score,
        "vex_version": FORMAT_VERSION,
    }
    if record.updated_at is not None:
        line["updated_at"] = format_timestamp(record.updated_at)
    if record.id_type != "str":
        line["id_type"] = record.id_type
    named = {k: v for k, v in record.vectors.items() if k != DEFAULT_VECTOR}
    if named:
        line["vectors"] = {
            name: {"vector": vector_json(v.data), "model": v.model, "dims": v.dims}
            for name, v in named.items()
        }
    if json_keys:
        line["metadata_json"] = json_keys
    if record.sparse:
        line["sparse_vectors"] = {
            name: {"indices": sp.index_array().tolist(), "values": vector_json(sp.values),
                   "model": sp.model}
            for name, sp in record.sparse.items()
        }
    for key, value in record.extra.items():
        line.setdefault(key, value)
    try:
        return orjson.dumps(line, option=_DUMP_OPTS)
    except TypeError:  # an integer beyond 64 bits: written exactly as a raw fragment
        for key in ("metadata", *record.extra):
            line[key] = with_big_ints_as_fragments(line[key])
        return orjson.dumps(line, option=_DUMP_OPTS)


def _flatten_metadata(
    metadata: dict[str, Any] | None,
) -> tuple[dict[str, Any] | None, list[str]]:
    """Nested values become JSON text so the line stays flat for Vex; their keys are listed.

    Raises RecordError for NaN or infinity, which JSON cannot carry (orjson would write null).
    """
    if not metadata:
        return metadata, []
    nested: list[str] = []
    for key, value in metadata.items():
        kind = type(value)
        if kind is str or kind is int or kind is bool or value is None:
            continue
        if not _finite(value):
            raise RecordError("bad_metadata", f"metadata {key!r} holds a NaN or infinite number,"
                              " which JSON cannot carry")
        if kind is not float and not is_flat_value(value):
            nested.append(key)
    if not nested:
        return metadata, []
    flat = dict(metadata)
    for key in nested:
        flat[key] = orjson.dumps(with_big_ints_as_fragments(metadata[key]),
                                 option=orjson.OPT_SORT_KEYS).decode()
    return flat, nested


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
    start = line.find(_VECTOR_KEY) + len(_VECTOR_KEY)
    if start >= len(_VECTOR_KEY):
        end = line.find(b"]", start)
        if line[start:start + 1] == b"[" and end > 0:
            wide = parse_number_array(line[start:end + 1])
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
                    return obj
    obj = orjson.loads(line)
    return loads_exact(line) if holds_huge_float(obj) else obj



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
    metadata = _decode_metadata(obj.get("metadata"), obj.get("metadata_json"))
    return MemoryRecord(
        id=record_id,
        text=_optional_str(obj, "text"),
        vectors=vectors,
        namespace=_optional_str(obj, "namespace"),
        metadata=metadata,
        created_at=_timestamp(obj, "created_at"),
        updated_at=_timestamp(obj, "updated_at"),
        source_store=_optional_str(obj, "source_store"),
        score=_optional_number(obj, "score"),
        modality=_optional_str(obj, "modality") if "modality" in obj else "text",
        id_type=id_type,
        extra={k: v for k, v in obj.items() if k not in KNOWN_KEYS},
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


def _decode_vectors(obj: dict[str, Any], raw: bytes | None) -> dict[str, Vector]:
    vectors: dict[str, Vector] = {}
    if obj.get("vector") is not None:  # a list, or a float64 array from parse_line
        vectors[DEFAULT_VECTOR] = _decode_one_vector(
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
        if not isinstance(entry, dict) or name == DEFAULT_VECTOR:
            raise RecordError("bad_vector", f"named vector {name!r} must be an object with a vector")
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


def _decode_metadata(value: Any, json_keys: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RecordError("bad_metadata", f"metadata must be an object, got {type(value).__name__}")
    if not json_keys:
        return value
    if not isinstance(json_keys, list):
        raise RecordError("bad_field", "metadata_json must be a list of metadata keys")
    out = dict(value)
    for key in json_keys:
        if not isinstance(out.get(key), str):
            raise RecordError("bad_metadata", f"metadata_json names {key!r}, which is not JSON text")
        try:
            out[key] = loads_exact(out[key])
        except orjson.JSONDecodeError:
            raise RecordError("bad_metadata", f"metadata {key!r} is not valid JSON text") from None
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

"""How a LangGraph store item and a vexchange record map to each other (docs/connectors/langgraph.md).

Pure data rules, shared by the SQLite, Postgres and in-memory backends, importing no SDK:

* namespace: LangGraph's own ``prefix`` text, the labels joined by ``.`` (labels can hold no
  ``.``, so the join is one to one). A record namespace that is no LangGraph namespace (none,
  ``""``, an empty label, a NUL, a root of ``langgraph``) lives under the reserved root
  ``_vex``: ``("_vex", "none")`` or ``("_vex", "x" + hex of its UTF-8)``, and reads back as it was.
* key <-> id; the value (a JSON object) <-> metadata, exactly; the record's text is a copy of
  the value's ``text_field`` string, so a LangGraph value comes back unchanged, key for key.
* what a value cannot hold as it is (a metadata key named ``_vex``, a value the backend's JSON
  changes, the text when it is not in the value, an integer id's type, vector models, sparse
  vectors, a timestamp the columns cannot hold) goes in one reserved value key ``_vex``, a JSON
  text (so every number in it is exact whatever the backend's JSON does), which wins on read.
* embeddings: one per indexed field of an item (``store_vectors.field_name``). The default
  vector is the ``$`` field's (LangGraph's default: the whole value), else the item's only or
  first field, whose name is kept in ``extra["langgraph"]["field"]``; every other field is a
  named vector of its field name.
* TTL (``ttl_minutes``, ``expires_at``) and the microseconds below a millisecond of the
  timestamps go in ``extra["langgraph"]`` so nothing the store held is lost.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .._json import dumps_exact, loads_exact
from ..record import DEFAULT_VECTOR, MemoryRecord, SparseVector, Vector

__all__ = ["EXTRA_KEY", "RESERVED_ROOT", "VEX_KEY", "Packed", "ValueLayout", "from_micros",
           "namespace_of", "namespace_tuple", "to_micros"]

RESERVED_ROOT = "_vex"
"""The first namespace label vexchange keeps for record namespaces LangGraph cannot spell."""
VEX_KEY = "_vex"
EXTRA_KEY = "langgraph"
"""``record.extra`` key for what the store holds beside the value (TTL, field name, µs)."""
ALL_FIELD = "$"
"""LangGraph's field name for an embedding of the whole value (its default ``fields``)."""
_FORMAT = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)


def _fits(namespace: str) -> bool:
    labels = namespace.split(".")
    return (labels[0] not in ("langgraph", RESERVED_ROOT)
            and all(label and "\x00" not in label for label in labels))


def namespace_tuple(namespace: str | None) -> tuple[str, ...]:
    """The LangGraph namespace a record namespace is written under (see the module doc)."""
    if namespace and _fits(namespace):
        return tuple(namespace.split("."))
    if namespace is None:
        return (RESERVED_ROOT, "none")
    return (RESERVED_ROOT, "x" + namespace.encode("utf-8", "surrogatepass").hex())


def namespace_of(labels: tuple[str, ...]) -> str | None:
    """The record namespace of a LangGraph namespace (the inverse of ``namespace_tuple``)."""
    if len(labels) == 2 and labels[0] == RESERVED_ROOT:
        if labels[1] == "none":
            return None
        if labels[1].startswith("x"):
            try:
                return bytes.fromhex(labels[1][1:]).decode("utf-8", "surrogatepass")
            except ValueError:
                pass
    return ".".join(labels)


def to_micros(moment: datetime) -> int:
    """Epoch microseconds of a datetime, exactly (a naive one is UTC, as LangGraph writes)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return (aware - _EPOCH) // _US


def from_micros(micros: int) -> datetime | None:
    """The aware UTC datetime of epoch microseconds; None outside Python's years 1 to 9999."""
    try:
        return _EPOCH + micros * _US
    except OverflowError:
        return None


@dataclass
class Packed:
    """One record as an item: what the backend writes."""

    labels: tuple[str, ...]
    key: str
    value: dict[str, Any]
    created_us: int
    updated_us: int
    fields: dict[str, bytes]
    """Embeddings by LangGraph field name, float32 little-endian."""
    ttl_minutes: float | None = None
    expires_us: int | None = None


class ValueLayout:
    """One backend's rules: which JSON values its value column keeps exactly."""

    def __init__(self, store: str, *, text_field: str, vector_field: str | None,
                 native: Callable[[Any], bool], inexact: Callable[[Any], bool] = lambda v: False,
                 text_ok: Callable[[str], bool] = lambda t: True) -> None:
        self.store = store
        self.text_field = text_field
        self.vector_field = vector_field
        self.native = native
        self.inexact = inexact
        self.text_ok = text_ok

    # ---------------------------------------------------------------------- record -> item

    def pack(self, record: MemoryRecord, *, now_us: int) -> Packed:
        """The item for a record. Raises ValueError naming what cannot be written."""
        value: dict[str, Any] = {}
        vex: dict[str, Any] = {"v": _FORMAT}
        if record.metadata is None:
            vex["no_metadata"] = True
        else:
            leftover: dict[str, Any] = {}
            for key, item in record.metadata.items():
                if key == VEX_KEY or not self.native(item):
                    leftover[key] = item
                    continue
                value[key] = item
                if self.inexact(item):
                    leftover[key] = item
            if leftover:
                vex["meta"] = leftover
        self._pack_text(record.text, value, vex)
        ours = dict(record.extra.get(EXTRA_KEY) or {}) if isinstance(
            record.extra.get(EXTRA_KEY), dict) else {}
        extra = {k: v for k, v in record.extra.items() if k != EXTRA_KEY or not ours}
        created_us = self._time(record.created_at, ours.get("created_us"), "created_at", vex, now_us)
        updated_us = self._time(record.updated_at, ours.get("updated_us"), "updated_at", vex,
                                created_us)
        if record.id_type != "str":
            vex["id_type"] = record.id_type
        if record.source_store is not None:
            vex["source_store"] = record.source_store
        if record.score is not None:
            vex["score"] = record.score
        if record.modality != "text":
            vex["modality"] = record.modality
        if extra:
            vex["extra"] = extra
        models = {name: vec.model for name, vec in record.vectors.items() if vec.model}
        if models:
            vex["models"] = models
        if record.sparse:
            vex["sparse"] = {name: {"indices": base64.b64encode(sp.indices).decode(),
                                    "values": base64.b64encode(sp.values).decode(), "model": sp.model}
                             for name, sp in record.sparse.items()}
        if set(vex) - {"v", "source_store"} or record.source_store != self.store:
            value[VEX_KEY] = dumps_exact(vex)
        return Packed(namespace_tuple(record.namespace), record.id, value, created_us, updated_us,
                      self._fields(record, ours.get("field")),
                      ours.get("ttl_minutes"), ours.get("expires_us"))

    def _pack_text(self, text: str | None, value: dict[str, Any], vex: dict[str, Any]) -> None:
        field = self.text_field
        held = value.get(field)
        if text is None:
            if isinstance(held, str):
                vex["text"] = None
            return
        if field not in value and field != VEX_KEY:
            value[field] = text if self.text_ok(text) else text.replace("\x00", "\ufffd")
            vex["text_added"] = True
            if not self.text_ok(text):
                vex["text"] = text
        elif held != text or not isinstance(held, str):
            vex["text"] = text

    @staticmethod
    def _time(ms: int | None, sub_us: Any, name: str, vex: dict[str, Any], fallback: int) -> int:
        """The column's microseconds for a record time; a time the column cannot hold (none,
        or beyond the years 1 to 9999) is kept in ``_vex`` and the column gets ``fallback``."""
        if ms is None or from_micros(ms * 1000) is None:
            vex[name] = ms
            return fallback
        extra = sub_us if isinstance(sub_us, int) and 0 <= sub_us < 1000 else 0
        return ms * 1000 + extra

    def _fields(self, record: MemoryRecord, source_field: Any) -> dict[str, bytes]:
        default = self.vector_field or (source_field if isinstance(source_field, str) else ALL_FIELD)
        fields: dict[str, bytes] = {}
        for name, vec in record.vectors.items():
            field = default if name == DEFAULT_VECTOR else name
            if field in fields:
                raise ValueError(f"vector {name!r} and the default vector would both be the"
                                 f" embedding of the LangGraph field {field!r}")
            fields[field] = vec.data
        return fields

    # ---------------------------------------------------------------------- item -> record

    def unpack(self, *, prefix: str, key: str, value: Any, created_us: int | None,
               updated_us: int | None, fields: Mapping[str, bytes],
               ttl_minutes: float | None = None, expires_us: int | None = None) -> MemoryRecord:
        """The record of a stored item. Raises ValueError for a value that is no JSON object."""
        if not isinstance(value, dict):
            raise ValueError(f"the value is a JSON {type(value).__name__}, not an object")
        metadata: dict[str, Any] = dict(value)
        vex = _vex_of(metadata)
        if vex:
            del metadata[VEX_KEY]
        held = metadata.get(self.text_field)
        text: str | None = held if isinstance(held, str) else None
        if vex.get("text_added"):
            metadata.pop(self.text_field, None)
        if "text" in vex:
            text = vex["text"]
        metadata.update(vex.get("meta") or {})
        ours: dict[str, Any] = {}
        created = self._ms(None if "created_at" in vex else created_us, "created_us", ours)
        updated = self._ms(None if "updated_at" in vex else updated_us, "updated_us", ours)
        if ttl_minutes is not None:
            ours["ttl_minutes"] = ttl_minutes
        if expires_us is not None:
            ours["expires_us"] = expires_us
        vectors = self._vectors(fields, vex.get("models") or {}, ours)
        extra: dict[str, Any] = dict(vex.get("extra") or {})
        if ours:
            extra[EXTRA_KEY] = ours
        return MemoryRecord(
            id=key, text=text, vectors=vectors, namespace=namespace_of(tuple(prefix.split("."))),
            metadata=None if vex.get("no_metadata") and not metadata else metadata,
            created_at=vex.get("created_at", created),
            updated_at=vex.get("updated_at", updated),
            source_store=vex.get("source_store") if vex else self.store,
            score=vex.get("score"), modality=vex.get("modality", "text"),
            id_type="int" if vex.get("id_type") == "int" else "str", extra=extra,
            sparse={name: SparseVector(base64.b64decode(sp["indices"]), base64.b64decode(sp["values"]),
                                       sp.get("model"))
                    for name, sp in (vex.get("sparse") or {}).items()})

    @staticmethod
    def _ms(micros: int | None, name: str, ours: dict[str, Any]) -> int | None:
        if micros is None:
            return None
        ms, rest = divmod(micros, 1000)
        if rest:
            ours[name] = rest
        return ms

    def _vectors(self, fields: Mapping[str, bytes], models: Mapping[str, Any],
                 ours: dict[str, Any]) -> dict[str, Vector]:
        if not fields:
            return {}
        if self.vector_field is not None:
            default: str | None = self.vector_field if self.vector_field in fields else None
        elif ALL_FIELD in fields:
            default = ALL_FIELD
        else:
            default = min(fields)
            ours["field"] = default
        out: dict[str, Vector] = {}
        for field, data in sorted(fields.items()):
            name = DEFAULT_VECTOR if field == default else field
            model = models.get(name)
            out[name] = Vector.from_blob(data, model if isinstance(model, str) else None)
        return out


def _vex_of(value: Mapping[str, Any]) -> dict[str, Any]:
    """The value's ``_vex`` when vexchange wrote it (a JSON text of an object with our format
    number); anything else under that key is the user's own data."""
    raw = value.get(VEX_KEY)
    if not isinstance(raw, str):
        return {}
    try:
        parsed = loads_exact(raw)
    except ValueError:
        return {}
    if isinstance(parsed, dict) and parsed.get("v") == _FORMAT:
        return parsed
    return {}

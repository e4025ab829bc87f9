"""How a record's fields live in a store's payload (Qdrant payload, Chroma metadata, a JSONB
column, a Redis hash), shared by every store connector. docs/connectors/stores.md.

A record becomes:

* its metadata keys at the top level, where the store can filter on them, for every value the
  store holds natively (each connector says which values those are);
* its text under ``text`` and its namespace under ``namespace`` (when the namespace is kept as
  a field), both renamable per connector;
* one reserved key, ``_vex``, holding what has no native home: timestamps, the original id when
  the store needed another one, the id's type, the model of each vector, source_store, score,
  modality, unknown extension keys, and metadata values the store cannot hold as they are
  (nested objects in Chroma, nulls, keys that collide with the reserved names).

Reading reverses it. A payload without ``_vex`` (a collection vexchange did not write) reads as
text plus metadata, so any collection can be exported.
"""

from __future__ import annotations

import base64
import math
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Literal

from .._json import dumps_exact, loads_exact
from ..record import MemoryRecord, SparseVector, Vector, canonical_int

__all__ = ["VEX_KEY", "PayloadLayout", "has_float", "json_exact", "scalar_or_scalar_list", "uuid_for"]

VEX_KEY = "_vex"
_FORMAT = 1
_UUID_NAMESPACE = uuid.UUID("6f1c3b8e-6d1a-5a4e-9a57-7665786368e1")
"""Fixed namespace for UUIDv5 ids; changing it would change every mapped id."""


def uuid_for(record_id: str) -> str:
    """The deterministic UUIDv5 a store that needs UUIDs gets for a non-UUID id."""
    return str(uuid.uuid5(_UUID_NAMESPACE, record_id))


def scalar_or_scalar_list(value: Any) -> bool:
    """Values most stores hold natively: str, int, float, bool, and lists of one of those."""
    if isinstance(value, list):
        return bool(value) and all(type(v) is type(value[0]) and _scalar(v) for v in value)
    return _scalar(value)


def json_exact(value: Any) -> bool:
    """Values any JSON store keeps exactly: integers within 64 bits, finite floats, strings,
    booleans, null, and lists and objects of those (at any depth)."""
    if isinstance(value, (str, bool)) or value is None:
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int):
        return bool(-(1 << 63) <= value < 1 << 63)
    if isinstance(value, list):
        for item in value:  # noqa: SIM110 - a loop, not all(generator): it runs for every value written
            if not json_exact(item):
                return False
        return True
    if isinstance(value, dict):
        for key, item in value.items():  # noqa: SIM110 - as above
            if not isinstance(key, str) or not json_exact(item):
                return False
        return True
    return False


def has_float(value: Any) -> bool:
    """A float, or a list or object holding one at any depth."""
    kind = type(value)
    if kind is float:
        return True
    if kind is list:
        items = value
    elif kind is dict:
        items = value.values()
    else:
        return isinstance(value, float)  # a float subclass (numpy's float64)
    for item in items:
        kind = type(item)
        if kind is float or ((kind is list or kind is dict) and has_float(item)):
            return True
    return False


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, bool, int, float)) and not (
        isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 1 << 63)


class PayloadLayout:
    """One connector's payload rules: reserved names and what it holds natively."""

    def __init__(
        self,
        store: str,
        *,
        text_key: str | None = "text",
        # None: the connector keeps the text itself (Chroma documents, a text column)
        namespace_key: str | None = "namespace",
        native: Callable[[Any], bool] = lambda v: True,
        inexact: Callable[[Any], bool] = lambda v: False,
        vex_as_text: bool = False,
    ) -> None:
        """``native``: values the store holds as they are. ``inexact``: native values the store
        may change (Chroma rounds some floats), written natively for filtering *and* kept
        exactly in ``_vex``, which wins on read."""
        self.store = store
        """Named as ``source_store`` of records vexchange did not write (Vex does the same)."""
        self.text_key = text_key
        self.namespace_key = namespace_key
        self.native = native
        self.inexact = inexact
        self.vex_as_text = vex_as_text
        self.reserved = {k for k in (text_key, namespace_key, VEX_KEY) if k}

    def pack(self, record: MemoryRecord, *, store_id: str | None = None,
             native_sparse: frozenset[str] | set[str] = frozenset(),
             store_namespace: str | None = None, extra_vex: Mapping[str, Any] | None = None,
             accept: Callable[[str, Any], bool] | None = None) -> dict[str, Any]:
        """The payload for a record. ``store_id``: the id the store keeps, when not record.id.
        ``store_namespace``: the namespace the store keeps, when it cannot keep record.namespace
        as it is (the original goes into ``_vex``). Sparse vectors the store holds natively are
        named in ``native_sparse``; the others are kept in ``_vex`` (indices and values as
        base64 of their little-endian bytes). ``extra_vex``: a connector's own ``_vex`` keys.
        ``accept``: for stores whose schema fixes each key's type (Weaviate), whether this key
        may hold this value natively; a value it refuses is kept in ``_vex``."""
        payload: dict[str, Any] = {}
        vex: dict[str, Any] = {"v": _FORMAT}
        if record.metadata is not None:
            leftover: dict[str, Any] = {}
            for key, value in record.metadata.items():
                if key in self.reserved or not self.native(value) or (
                        accept is not None and not accept(key, value)):
                    leftover[key] = value
                else:
                    payload[key] = value
                    if self.inexact(value):
                        leftover[key] = value
            vex["metadata"] = leftover
        if record.text is not None and self.text_key:
            payload[self.text_key] = record.text
        if record.namespace is not None and self.namespace_key:
            payload[self.namespace_key] = record.namespace
        if store_id is not None and store_id != record.id:
            vex["id"] = record.id
        if store_namespace is not None and store_namespace != record.namespace:
            vex["namespace"] = record.namespace
        if record.id_type != "str":
            vex["id_type"] = record.id_type
        for name in ("created_at", "updated_at", "source_store", "score"):
            value = getattr(record, name)
            if value is not None:
                vex[name] = value
        if record.modality != "text":
            vex["modality"] = record.modality
        models = {name: vec.model for name, vec in record.vectors.items() if vec.model}
        if models:
            vex["models"] = models
        if record.extra:
            vex["extra"] = record.extra
        kept = {name: {"indices": base64.b64encode(sp.indices).decode(),
                       "values": base64.b64encode(sp.values).decode(), "model": sp.model}
                for name, sp in record.sparse.items() if name not in native_sparse}
        if kept:
            vex["sparse"] = kept
        native_models = {name: sp.model for name, sp in record.sparse.items()
                         if name in native_sparse and sp.model}
        if native_models:
            vex["sparse_models"] = native_models
        if extra_vex:
            vex.update(extra_vex)
        payload[VEX_KEY] = dumps_exact(vex) if self.vex_as_text else vex
        return payload

    def unpack(
        self,
        payload: Mapping[str, Any],
        *,
        store_id: str,
        vectors: Mapping[str, bytes],
        namespace: str | None = None,
        id_type: str | None = None,
        sparse: Mapping[str, tuple[bytes, bytes]] | None = None,
    ) -> MemoryRecord:
        """The record a payload describes. ``vectors``: float32 bytes by vector name.

        ``namespace`` is given when the store keeps it outside the payload (a collection or
        partition name). ``id_type`` is the type the store's own id has, for foreign data.
        ``sparse``: sparse vectors the store holds natively, as (indices, values) bytes.
        Raises ValueError for a reserved field that is not what vexchange writes.
        """
        rest = dict(payload)
        vex = _vex_of(rest.pop(VEX_KEY, None))
        text = rest.pop(self.text_key, None) if self.text_key else None
        if self.namespace_key and self.namespace_key in rest:
            namespace = rest.pop(self.namespace_key)
        if "namespace" in vex:  # the store could not keep it as it is
            namespace = vex["namespace"]
        metadata: dict[str, Any] | None = None
        if rest or "metadata" in vex:
            metadata = {**rest, **(vex.get("metadata") or {})}
        models = vex.get("models") or {}
        record_id = str(vex.get("id", store_id))
        kind: Literal["str", "int"] = "str"
        declared = vex.get("id_type", "str") if vex else id_type  # foreign data: the store's type
        if declared == "int" and canonical_int(record_id) is not None:
            kind = "int"
        return MemoryRecord(
            id=record_id,
            text=text if isinstance(text, str) else (None if text is None else str(text)),
            vectors={name: Vector(data, models.get(name)) for name, data in vectors.items()},
            namespace=namespace if namespace is None else str(namespace),
            metadata=metadata,
            created_at=vex.get("created_at"),
            updated_at=vex.get("updated_at"),
            source_store=vex.get("source_store") if vex else self.store,
            score=vex.get("score"),
            modality=vex.get("modality", "text"),
            id_type=kind,
            extra=vex.get("extra") or {},
            sparse=_sparse(vex, sparse or {}),
        )


def _sparse(vex: dict[str, Any], native: Mapping[str, tuple[bytes, bytes]]) -> dict[str, SparseVector]:
    models = vex.get("sparse_models") or {}
    out = {name: SparseVector(idx, val, models.get(name)) for name, (idx, val) in native.items()}
    for name, entry in (vex.get("sparse") or {}).items():
        out[name] = SparseVector(base64.b64decode(entry["indices"]), base64.b64decode(entry["values"]),
                                 entry.get("model"))
    return out


def _vex_of(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, (str, bytes)):
        try:
            value = loads_exact(value)
        except ValueError:
            raise ValueError(f"reserved field {VEX_KEY!r} is not JSON") from None
    if not isinstance(value, dict):
        raise ValueError(f"reserved field {VEX_KEY!r} is not an object")
    return value

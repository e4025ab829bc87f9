"""What the Qdrant server/local connector and the Qdrant Edge connector share (no SDK import):
metric names, the payload layout, id mapping, and turning a point into a record."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._json import loads_exact
from ..record import MemoryRecord, canonical_int
from ._base import Reject
from ._payload import VEX_KEY, PayloadLayout, has_float, json_exact, uuid_for

__all__ = ["LAYOUT", "METRICS", "held_by", "point_id", "record_from_point", "refuse_taken"]

METRICS = {"cosine": "Cosine", "dot": "Dot", "euclidean": "Euclid", "manhattan": "Manhattan"}
LAYOUT = PayloadLayout("qdrant", native=json_exact, inexact=has_float, vex_as_text=True)
"""Qdrant parses payload floats with serde_json's fast (not always correctly rounded) parser:
90.28571428571429 comes back as 90.28571428571428 from the Edge engine. Floats are written for
filtering and kept exactly in ``_vex`` too."""


def point_id(record_id: str) -> int | str:
    """The Qdrant id for a record id: itself when Qdrant can hold it, else a UUIDv5."""
    value = canonical_int(record_id)
    if value is not None and 0 <= value < 1 << 64:
        return value
    try:
        if str(uuid.UUID(record_id)) == record_id:
            return record_id
    except ValueError:
        pass
    return uuid_for(record_id)


def record_from_point(pid: Any, raw: Any, payload: dict[str, Any] | None) -> MemoryRecord | Reject:
    """A point (id, vector as a list or a dict by name, payload) as a record."""
    vectors: dict[str, bytes] = {}
    sparse: dict[str, tuple[bytes, bytes]] = {}
    named = raw if isinstance(raw, dict) else ({"": raw} if raw is not None else {})
    for name, values in named.items():
        if hasattr(values, "indices") and hasattr(values, "values"):
            order = np.argsort(np.asarray(values.indices, dtype=np.int64), kind="stable")
            sparse[name] = (np.asarray(values.indices, dtype="<u4")[order].tobytes(),
                            np.asarray(values.values, dtype="<f4")[order].tobytes())
        elif isinstance(values, list) and values and not isinstance(values[0], list):
            vectors[name] = np.asarray(values, dtype="<f4").tobytes()
        else:
            return Reject(reason="unsupported_vector", id=str(pid),
                          detail=f"vector {name!r} is a multivector; vexchange keeps dense and"
                                 " sparse vectors")
    try:
        return LAYOUT.unpack(payload or {}, store_id=str(pid), vectors=vectors, sparse=sparse,
                             id_type="int" if isinstance(pid, int) else "str")
    except ValueError as err:
        return Reject(reason="bad_payload", detail=str(err), id=str(pid), record=payload)


def held_by(pid: Any, payload: Mapping[str, Any] | None) -> str:
    """The record id a stored point holds: the original kept in ``_vex`` when the point id is
    a mapped UUID, else the point id itself (foreign points, ids Qdrant keeps as they are)."""
    raw = (payload or {}).get(VEX_KEY)
    if isinstance(raw, str):
        try:
            vex = loads_exact(raw)
        except ValueError:
            vex = None
        if isinstance(vex, dict) and "id" in vex:
            return str(vex["id"])
    return str(pid)


def refuse_taken(rows: list[tuple[Any, MemoryRecord]], holders: Mapping[Any, str]
                 ) -> tuple[list[tuple[Any, MemoryRecord]], list[Reject]]:
    """Split off the records whose point another record id already holds (``holders``: point
    id -> record id, from the store) or takes earlier in the batch: two ids that map to one
    point (a UUID and the UUIDv5 of another id) would otherwise merge silently."""
    taken = dict(holders)
    kept: list[tuple[Any, MemoryRecord]] = []
    rejects: list[Reject] = []
    for key, record in rows:
        holder = taken.setdefault(key, record.id)
        if holder == record.id:
            kept.append((key, record))
            continue
        rejects.append(Reject(
            reason="id_conflict", id=record.id, namespace=record.namespace,
            detail=f"id {record.id!r} maps to Qdrant point {key!r}, which record {holder!r}"
                   " holds; it is not overwritten"))
    return kept, rejects

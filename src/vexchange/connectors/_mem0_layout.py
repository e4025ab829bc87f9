"""How a Mem0 memory and a vexchange record map to each other (docs/connectors/mem0.md).

Pure functions, no Mem0 import, so the mapping is testable and reusable by both backends.

A Mem0 memory is one vector-store point whose payload is flat: ``data`` (the text), ``hash``,
``created_at``/``updated_at`` (ISO-8601 strings), ``text_lemmatized``, the scope ids
``user_id``/``agent_id``/``run_id``, and every other key as metadata (``actor_id``, ``role``,
the caller's metadata). The record keeps:

* ``id``: the memory id; ``text``: ``data``; the default vector: the raw stored vector;
* ``namespace``: the scope, in Mem0's own session-scope form (``agent_id=a&user_id=u``: keys
  sorted, ``%``, ``&`` and ``=`` escaped), so digests and ``verify`` work per scope;
* ``metadata``: the other payload keys, as they are;
* ``created_at``/``updated_at``: epoch ms, with the exact ISO strings, ``hash``,
  ``text_lemmatized`` and the history rows under ``extra["mem0"]``.

What Mem0's payload cannot say (an id the store had to replace, a namespace that is not a
scope, a vector's model, another format's extra keys, metadata keys that collide with Mem0's
own fields) goes into one ``_vex`` key holding JSON text; Mem0 shows it as metadata.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from .._json import dumps_exact, loads_exact
from .._time import parse_timestamp
from ..record import MemoryRecord, Vector

__all__ = [
    "CORE_KEYS",
    "EXTRA_KEY",
    "SCOPE_KEYS",
    "is_canonical_uuid",
    "iso_for",
    "namespace_of",
    "payload_for",
    "record_from",
    "scope_of",
    "scope_string",
]

SCOPE_KEYS = ("agent_id", "run_id", "user_id")
"""Mem0's session scope, in the sorted order its ``_build_session_scope`` uses."""
CORE_KEYS = frozenset({"data", "hash", "created_at", "updated_at", "text_lemmatized", *SCOPE_KEYS})
"""Payload keys Mem0 writes itself; never metadata, never overwritten by a record's metadata."""
VEX_KEY = "_vex"
EXTRA_KEY = "mem0"
"""The record's ``extra`` key holding what only Mem0 has (hash, ISO timestamps, history)."""


def _escape(value: str) -> str:
    return value.replace("%", "%25").replace("&", "%26").replace("=", "%3D")


def _unescape(value: str) -> str:
    return value.replace("%3D", "=").replace("%26", "&").replace("%25", "%")


def scope_string(scope: Mapping[str, str]) -> str:
    """Mem0's session-scope string for the given ids (empty ids left out)."""
    return "&".join(f"{key}={_escape(scope[key])}" for key in SCOPE_KEYS if scope.get(key))


def scope_of(namespace: str | None) -> dict[str, str] | None:
    """The scope ids a namespace spells, or None when it is not a scope string (written back
    exactly by ``scope_string``)."""
    if not namespace:
        return None
    scope: dict[str, str] = {}
    for part in namespace.split("&"):
        key, sep, value = part.partition("=")
        if not sep or key not in SCOPE_KEYS or key in scope or not value:
            return None
        scope[key] = _unescape(value)
    return scope if scope_string(scope) == namespace else None


def is_canonical_uuid(text: str) -> bool:
    """A UUID in the form Qdrant gives back (lower-case, hyphenated), kept as the point id."""
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def iso_for(ms: int | None, kept: Any) -> str | None:
    """The ISO string to store: Mem0's own string when it still says the record's time (to the
    millisecond), else the record's time in UTC."""
    if ms is None:
        return None
    if isinstance(kept, str) and _ms(kept) == ms:
        return kept
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="microseconds")


def _vex_of(payload: Mapping[str, Any]) -> dict[str, Any]:
    raw = payload.get(VEX_KEY)
    if not isinstance(raw, str):
        return {}
    try:
        value = loads_exact(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def namespace_of(payload: Mapping[str, Any]) -> str | None:
    """The namespace a stored memory belongs to: the one vexchange kept, else its scope."""
    vex = _vex_of(payload)
    if "namespace" in vex:
        kept = vex["namespace"]
        return None if kept is None else str(kept)
    scope = {key: str(payload[key]) for key in SCOPE_KEYS if payload.get(key) not in (None, "")}
    return scope_string(scope) or None


def record_from(store_id: str, payload: Mapping[str, Any], vector: bytes,
                history: list[dict[str, Any]]) -> MemoryRecord:
    """The record for one stored memory; ``vector`` is its float32 bytes."""
    vex = _vex_of(payload)
    mem0: dict[str, Any] = {key: payload[key] for key in
                            ("hash", "created_at", "updated_at", "text_lemmatized") if key in payload}
    if history:
        mem0["history"] = history
    metadata = {k: v for k, v in payload.items() if k not in CORE_KEYS and k != VEX_KEY}
    metadata.update(vex.get("metadata") or {})
    extra = dict(vex.get("extra") or {})
    if mem0:
        extra[EXTRA_KEY] = mem0
    text = payload.get("data")
    models = vex.get("models") or {}
    return MemoryRecord(
        id=str(vex.get("id", store_id)),
        text=text if isinstance(text, str) else None,
        vectors={"": Vector(vector, models.get(""))},
        namespace=namespace_of(payload),
        metadata=metadata or (None if not vex.get("has_metadata") else {}),
        created_at=_ms(payload.get("created_at")),
        updated_at=_ms(payload.get("updated_at")),
        source_store=vex.get("source_store"),
        score=vex.get("score"),
        modality=vex.get("modality", "text"),
        id_type="int" if vex.get("id_type") == "int" else "str",
        extra=extra,
    )


def _ms(value: Any) -> int | None:
    """Epoch ms of a Mem0 ISO string; None for anything else (the string stays in extra)."""
    if not isinstance(value, str):
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


def payload_for(record: MemoryRecord, *, store_id: str, scope: Mapping[str, str],
                native: Callable[[str, Any], bool], inexact: Callable[[Any], bool],
                lemmatize: Callable[[str], str]) -> dict[str, Any]:
    """The Mem0 payload for a record (its text is not None). ``scope``: the scope ids it goes
    under; ``native``: the metadata keys and values the backend holds as they are;
    ``inexact``: native values it may change (Chroma's floats), also kept exactly in ``_vex``."""
    text = record.text or ""
    mem0 = record.extra.get(EXTRA_KEY)
    kept: Mapping[str, Any] = mem0 if isinstance(mem0, dict) else {}
    payload: dict[str, Any] = {}
    vex: dict[str, Any] = {}
    leftover: dict[str, Any] = {}
    for key, value in (record.metadata or {}).items():
        if key in CORE_KEYS or key == VEX_KEY or not native(key, value):
            leftover[key] = value
        else:
            payload[key] = value
            if inexact(value):
                leftover[key] = value
    if leftover:
        vex["metadata"] = leftover
    if record.metadata == {}:
        vex["has_metadata"] = True
    payload.update({key: scope[key] for key in SCOPE_KEYS if scope.get(key)})
    payload["data"] = text
    payload["hash"] = kept.get("hash") if isinstance(kept.get("hash"), str) else \
        hashlib.md5(text.encode()).hexdigest()
    for name in ("created_at", "updated_at"):
        iso = iso_for(getattr(record, name), kept.get(name))
        if iso is not None:
            payload[name] = iso
    lemmas = kept.get("text_lemmatized")
    payload["text_lemmatized"] = lemmas if isinstance(lemmas, str) else lemmatize(text)
    if store_id != record.id:
        vex["id"] = record.id
    if record.id_type != "str":
        vex["id_type"] = record.id_type
    if scope_string(scope) != (record.namespace or ""):
        vex["namespace"] = record.namespace
    for name in ("source_store", "score"):
        if getattr(record, name) is not None:
            vex[name] = getattr(record, name)
    if record.modality != "text":
        vex["modality"] = record.modality
    models = {name: vec.model for name, vec in record.vectors.items() if vec.model}
    if models:
        vex["models"] = models
    others = {k: v for k, v in record.extra.items() if k != EXTRA_KEY}
    if others:
        vex["extra"] = others
    if vex:
        payload[VEX_KEY] = dumps_exact(vex)
    return payload

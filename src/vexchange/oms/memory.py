"""Memory records as OMS grains, and back, losslessly. docs/formats/oms.md has the table.

A record becomes a **Belief** grain (the seed guidance for vector-store memories)::

    subject     the record id                relation  "remembers"
    object      the text ("" when none)      confidence 1.0
    created_at  created_at (ms; 0 when none) namespace the namespace (absent when none)
    embedding_refs  one entry per vector: vector_id "<id>#<name>", model, dimensions,
                    distance_metric, modality_source "text", chunk_index 0, chunk_text
    vexchange   (an unknown field to other readers, kept by every conformant one) what the
                Belief fields cannot say: id type, metadata, updated_at, source_store, score,
                modality, unknown keys, sparse vectors, whether text/created_at were absent,
                the names of the vectors

A conversation message (a record whose metadata names its ``role`` and ``conversation_id``, as
the claude-export and chatgpt-export sources write them) becomes an **Event** grain instead, a
timestamped message: ``content`` the text, ``role``, ``session_id`` the conversation id,
``timestamp_ms`` the created_at, ``model_id`` the metadata's ``model``, ``subject`` the record
id (a message without text says ``relation`` "remembers" and ``object`` "" instead of
``content``, which an Event needs one way or the other); ``vexchange`` carries it exactly, as
for a Belief.

Memories of agent frameworks get the type that says what they are (:func:`typed_fields`): a
Letta core-memory block or agent a **State**, a Letta tool an **Action** definition, a message
that is one tool call an **Action** in the call phase, a Mem0 memory a Belief about its scope's
``user_id``, a LangGraph item a Belief whose object is its value. Every type is read back
exactly from ``vexchange``.

Grains reference vectors and never embed them (OMS "references, not blobs"), so the vectors go
to a companion file ``<file>.vectors``, one entry per vector in grain order, keyed by
``vector_id``: ``u32 key length, key (UTF-8), u32 dims, dims float32 LE``. Reading a grain
without our ``vexchange`` field gives a record whose id is the grain's content address, text
its content/object/description, and metadata its other fields.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Iterator
from typing import Any, BinaryIO

from .._json import dumps_exact, loads_exact
from ..record import MemoryRecord, SparseVector, Vector
from .canonical import MAX_DEPTH, nfc
from .errors import error_class
from .grain import Grain
from .shapes import RELATION, letta_agent, letta_block, letta_tool, mem0_scope, single_tool_call

__all__ = ["VectorFileReader", "VectorFileWriter", "grain_from_record", "is_conversation",
           "record_from_grain", "typed_fields"]

VEX_FIELD = "vexchange"


def _safe(text: str) -> str:
    """A string a grain can carry: NFC, no leading BOM (§4.4), never empty."""
    return _clean(text) or "-"


def grain_from_record(record: MemoryRecord, metrics: dict[str, str | None] | None = None) -> dict[str, Any]:
    """The full-name Belief grain of a record (vectors referenced, not embedded).

    The grain's own string fields carry NFC, BOM-free forms (the canonical rules); the record
    itself travels exactly in ``vexchange``, as JSON bytes, which no normalisation touches."""
    refs = []
    for name, vec in record.vectors.items():
        ref: dict[str, Any] = {"vector_id": vector_id(record, name),
                               "model": _safe(vec.model or "unknown"), "dimensions": vec.dims,
                               "modality_source": "text", "chunk_index": 0}
        metric = (metrics or {}).get(name)
        if metric:
            ref["distance_metric"] = metric
        if record.text:
            ref["chunk_text"] = _safe(record.text)
        refs.append(ref)
    exact: dict[str, Any] = {
        "v": 2, "id": record.id, "id_type": record.id_type, "text": record.text,
        "namespace": record.namespace, "metadata": record.metadata,
        "created_at": record.created_at, "updated_at": record.updated_at,
        "source_store": record.source_store, "score": record.score, "modality": record.modality,
        "extra": record.extra,
        "vectors": [[name, vec.model] for name, vec in record.vectors.items()],
        "sparse": {n: [base64.b64encode(sp.indices).decode(), base64.b64encode(sp.values).decode(),
                       sp.model] for n, sp in record.sparse.items()},
    }
    grain = typed_fields(record)
    grain.update({"created_at": _grain_time(record.created_at), "source_type": "imported",
                  VEX_FIELD: dumps_exact(exact).encode()})
    if record.namespace is not None:
        grain["namespace"] = _safe(record.namespace) if record.namespace else ""
    if refs:
        grain["embedding_refs"] = refs
    return grain


def is_conversation(record: MemoryRecord) -> bool:
    """A message of a conversation: its metadata names a ``role`` and a ``conversation_id``."""
    metadata = record.metadata
    return (isinstance(metadata, dict) and isinstance(metadata.get("role"), str)
            and isinstance(metadata.get("conversation_id"), str))


def typed_fields(record: MemoryRecord) -> dict[str, Any]:
    """The type and type-specific fields of a record's grain (the caller adds the common ones
    and the exact record): the grain type that says what the memory is, decided from what the
    record itself says, first rule that fits (docs/formats/oms.md, "Memory records as grains"):

    1. a Letta object (``metadata.letta_kind`` and the object in ``metadata.letta``): a block
       or an agent is a State, a tool an Action definition (the ``letta_*`` shapes);
    2. a conversation message (:func:`is_conversation`): an Action in the call phase when it is
       exactly one tool call with object arguments (:func:`~vexchange.oms.shapes.single_tool_call`
       on ``metadata.tool_calls``, or the Letta message's), else an Event; a row of Mem0's
       message log (``extra.mem0.kind`` "message") is an Event too;
    3. everything else a Belief: a LangGraph item's object is its value map (a key-value memory),
       any other record's its text.

    A record whose namespace is a Mem0 session scope (``user_id=alice&agent_id=helper``) also
    gets ``user_id`` and ``run_id`` (and ``context.agent_id`` when the grain has no context).
    The type is derived, never stored in the record, so no record changes for it (digests,
    ``vex verify`` and every other target see the same record). Nested values are made
    portable (:func:`_portable`): the exact values travel in the ``vexchange`` field."""
    metadata = record.metadata if isinstance(record.metadata, dict) else {}
    grain = _letta_object(record, metadata) or _message(record, metadata) or _belief(record, metadata)
    scope = _mem0_scope(record.namespace)
    if scope is not None:
        given = mem0_scope(scope.get("user_id"), None, scope.get("run_id"))
        grain.update({k: _safe(v) for k, v in given.items() if v is not None})
        if "agent_id" in scope and "context" not in grain:
            grain["context"] = {"agent_id": _safe(scope["agent_id"])}
    return grain


_LETTA = {"block": ("value", letta_block), "agent": ("system", letta_agent),
          "tool": ("description", letta_tool)}
"""letta_kind -> (the object's field lifted into the record's text, its shape's converter)."""


def _letta_object(record: MemoryRecord, metadata: dict[str, Any]) -> dict[str, Any] | None:
    kind = metadata.get("letta_kind")
    letta = metadata.get("letta")
    if kind not in _LETTA or not isinstance(letta, dict):
        return None
    lifted, convert = _LETTA[kind]
    obj = dict(letta)
    if record.text is not None:
        obj[lifted] = record.text
    try:
        fields = convert(obj)
    except (KeyError, ValueError):  # not the object Letta writes (no value, name, schema): a Belief
        return None
    fields = {k: _portable(v) for k, v in fields.items() if v is not None}
    fields["subject"] = _safe(record.id)
    if kind == "tool":
        fields["tool_name"] = _safe(fields["tool_name"])
    return fields


def _message(record: MemoryRecord, metadata: dict[str, Any]) -> dict[str, Any] | None:
    if not is_conversation(record):
        extra = record.extra.get("mem0")
        if not (isinstance(extra, dict) and extra.get("kind") == "message"
                and isinstance(extra.get("role"), str) and record.text):
            return None
        return {"type": "event", "subject": _safe(record.id), "role": _safe(extra["role"]),
                "content": _safe(record.text), "session_id": _safe(record.namespace or "-"),
                **({"timestamp_ms": record.created_at} if record.created_at is not None else {})}
    letta = metadata.get("letta")
    calls = metadata.get("tool_calls", letta.get("tool_calls") if isinstance(letta, dict) else None)
    call = single_tool_call(calls)
    common: dict[str, Any] = {"subject": _safe(record.id), "role": _safe(metadata["role"]),
                              "session_id": _safe(metadata["conversation_id"])}
    if record.created_at is not None:
        common["timestamp_ms"] = record.created_at
    if call is not None:
        name, arguments, call_id = call
        grain = {"type": "action", "action_phase": "call", "tool_name": _safe(name),
                 "input": _portable(arguments), **common}
        if call_id is not None:
            grain["tool_call_id"] = _safe(call_id)
        return grain
    grain = {"type": "event", **common}
    if record.text:
        grain["content"] = _safe(record.text)
    else:
        grain.update(relation=RELATION, object="")
    if isinstance(metadata.get("model"), str) and metadata["model"]:
        grain["model_id"] = _safe(metadata["model"])
    return grain


def _belief(record: MemoryRecord, metadata: dict[str, Any]) -> dict[str, Any]:
    if record.source_store == "langgraph" and isinstance(record.metadata, dict):
        obj: Any = _portable(record.metadata)  # the item's value: key-value memory
    else:
        obj = _safe(record.text) if record.text else ""
    return {"type": "belief", "subject": _safe(record.id), "relation": RELATION, "object": obj,
            "confidence": 1.0}


def _mem0_scope(namespace: str | None) -> dict[str, str] | None:
    if not namespace or "=" not in namespace:
        return None
    from ..connectors._mem0_layout import scope_of  # pure rules, no SDK; late: no import cycle

    return scope_of(namespace)


_INT_RANGE = (-(1 << 63), 1 << 64)
_PORTABLE_DEPTH = MAX_DEPTH - 4
"""Nested values deeper than this become JSON text: the grain's own nesting (the field, a list
of refs) stays inside the 32 levels the codec allows."""


def _portable(value: Any, depth: int = 0) -> Any:
    """A JSON value as a grain can carry it whatever it holds: strings (and keys) NFC without a
    leading BOM and with lone surrogates replaced, integers beyond 64 bits and non-finite
    floats as text, two keys that are one NFC form kept once (the first), nesting beyond the
    codec's depth as JSON text. A readable view for other OMS tools; the exact value is in the
    ``vexchange`` field."""
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, bool) or value is None or isinstance(value, bytes):
        return value
    if isinstance(value, int):
        return value if _INT_RANGE[0] <= value < _INT_RANGE[1] else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth >= _PORTABLE_DEPTH and isinstance(value, (dict, list, tuple)):
        return dumps_exact(value)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.setdefault(_clean(str(key)), _portable(item, depth + 1))
        return out
    if isinstance(value, (list, tuple)):
        return [_portable(item, depth + 1) for item in value]
    return str(value)


def _clean(text: str) -> str:
    if text.isascii():
        return text
    return nfc(text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")).lstrip("\ufeff")


GRAIN_TIME_MAX_MS = ((1 << 32) - 1) * 1000
"""The latest ``created_at`` a grain header holds (u32 seconds: early 2106)."""


def _grain_time(created_at: int | None) -> int:
    """The grain's ``created_at``: the record's, clamped into 1970-2106 (what the header's u32
    seconds hold), 0 when it has none. The exact value (before 1970, after 2106, or none)
    travels in ``vexchange`` and is what vexchange reads back."""
    if created_at is None:
        return 0
    return min(max(created_at, 0), GRAIN_TIME_MAX_MS)


def vector_id(record: MemoryRecord, name: str) -> str:
    """The key of a vector in the companion file, as the grain carries it."""
    return _safe(f"{record.id}#{name}")


def record_from_grain(grain: Grain, vectors: dict[str, bytes]) -> MemoryRecord:
    """The record a grain holds; ``vectors`` by vector_id, from the companion file."""
    fields = grain.fields
    packed = fields.get(VEX_FIELD)
    if not isinstance(packed, bytes):
        return _foreign(grain, vectors)
    try:
        exact = loads_exact(packed)
    except ValueError as err:
        raise error_class("ERR_CORRUPT")(f"the {VEX_FIELD} field is not JSON: {err}") from None
    if not isinstance(exact, dict) or not isinstance(exact.get("id"), str):
        raise error_class("ERR_CORRUPT")(f"the {VEX_FIELD} field does not hold a record")
    refs = fields.get("embedding_refs") or []
    named: dict[str, Vector] = {}
    for (name, model), ref in zip(exact.get("vectors", []), refs, strict=False):
        data = vectors.get(ref.get("vector_id"))
        if data is None:
            raise error_class("ERR_INTEGRITY")(f"vector {ref.get('vector_id')!r} is not in the vector file")
        named[name] = Vector(data, model)
    return MemoryRecord(
        id=exact["id"], id_type=exact.get("id_type", "str"), text=exact.get("text"),
        vectors=named, namespace=exact.get("namespace"), metadata=exact.get("metadata"),
        created_at=exact.get("created_at"), updated_at=exact.get("updated_at"),
        source_store=exact.get("source_store"), score=exact.get("score"),
        modality=exact.get("modality"), extra=exact.get("extra") or {},
        sparse={n: SparseVector(base64.b64decode(i), base64.b64decode(v), m)
                for n, (i, v, m) in (exact.get("sparse") or {}).items()},
    )


def _foreign(grain: Grain, vectors: dict[str, bytes]) -> MemoryRecord:
    fields = dict(grain.fields)
    text = next((fields[k] for k in ("content", "object", "description", "conclusion")
                 if isinstance(fields.get(k), str)), None)
    named: dict[str, Vector] = {}
    for i, ref in enumerate(fields.get("embedding_refs") or []):
        data = vectors.get(str(ref.get("vector_id"))) if isinstance(ref, dict) else None
        if data is not None:
            named["" if i == 0 else str(ref.get("vector_id"))] = Vector(data, ref.get("model"))
    metadata = {k: _jsonable(v) for k, v in fields.items()
                if k not in ("created_at", "namespace", "embedding_refs")}
    return MemoryRecord(id=grain.address, text=text, vectors=named,
                        namespace=fields.get("namespace"), metadata=metadata,
                        created_at=fields.get("created_at"), source_store="oms")


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


class VectorFileWriter:
    """The companion vector file, written in grain order."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle  # anything with write(bytes): a file, an AtomicOutput

    def add(self, key: str, data: bytes) -> None:
        raw = key.encode()
        self.handle.write(struct.pack(">I", len(raw)) + raw + struct.pack(">I", len(data) // 4) + data)


class VectorFileReader:
    """Entries of a companion vector file, in order."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        while True:
            head = self.handle.read(4)
            if not head:
                return
            key = self._take(struct.unpack(">I", self._whole(head, 4))[0]).decode()
            dims = struct.unpack(">I", self._take(4))[0]
            yield key, self._take(4 * dims)

    def _take(self, n: int) -> bytes:
        return self._whole(self.handle.read(n), n)

    @staticmethod
    def _whole(data: bytes, n: int) -> bytes:
        if len(data) != n:
            raise error_class("ERR_CORRUPT")("the vector file is truncated")
        return data

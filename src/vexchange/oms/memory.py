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

Grains reference vectors and never embed them (OMS "references, not blobs"), so the vectors go
to a companion file ``<file>.vectors``, one entry per vector in grain order, keyed by
``vector_id``: ``u32 key length, key (UTF-8), u32 dims, dims float32 LE``. Reading a grain
without our ``vexchange`` field gives a record whose id is the grain's content address, text
its content/object/description, and metadata its other fields.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from typing import Any, BinaryIO

from .._json import dumps_exact, loads_exact
from ..record import MemoryRecord, SparseVector, Vector
from .canonical import nfc
from .errors import error_class
from .grain import Grain

__all__ = ["VectorFileReader", "VectorFileWriter", "grain_from_record", "is_conversation",
           "record_from_grain"]

RELATION = "remembers"
VEX_FIELD = "vexchange"


def _safe(text: str) -> str:
    """A string a grain can carry: NFC, no leading BOM (§4.4), never empty."""
    return nfc(text).lstrip("\ufeff") or "-"


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
    grain: dict[str, Any] = _event(record) if is_conversation(record) else {
        "type": "belief", "subject": _safe(record.id), "relation": RELATION,
        "object": _safe(record.text) if record.text else "", "confidence": 1.0}
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


def _event(record: MemoryRecord) -> dict[str, Any]:
    """The Event fields of a conversation message (the caller adds the common ones)."""
    metadata = record.metadata or {}
    grain: dict[str, Any] = {"type": "event", "subject": _safe(record.id),
                             "role": _safe(metadata["role"]),
                             "session_id": _safe(metadata["conversation_id"])}
    if record.text:
        grain["content"] = _safe(record.text)
    else:
        grain.update(relation=RELATION, object="")
    if record.created_at is not None:
        grain["timestamp_ms"] = record.created_at
    if isinstance(metadata.get("model"), str) and metadata["model"]:
        grain["model_id"] = _safe(metadata["model"])
    return grain


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
    if not isinstance(packed, bytes) or grain.type not in ("belief", "event"):
        return _foreign(grain, vectors)
    try:
        exact = loads_exact(packed)
    except ValueError as err:
        raise error_class("ERR_CORRUPT")(f"the {VEX_FIELD} field is not JSON: {err}") from None
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

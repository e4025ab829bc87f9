"""The micro-pack: the top-K memories for one query, as a small JSONL a language model can read.

Line 1 is the header; each further line is one memory, best first::

    {"micropack":1,"query":"...","embedder":"sentence-transformers/all-MiniLM-L6-v2","vector":"",
     "dims":384,"metric":"cosine","quantization":"int8","k":5,"records":5,"source":"..."}
    {"rank":1,"score":0.8312,"id":"m42","ns":"work","text":"...","meta":{...},"t":"2025-01-01T00:00:00.000Z",
     "vec":"<base64>","scale":0.0123}

Selection is exact (cosine over every record's vector, streamed at flat memory) and
deterministic: by score (float64 of the float32 vectors), then namespace, then id. Vectors are
quantized: ``int8`` (one scale per vector: ``x ~= q * scale``, each component within
``scale / 2``) or ``float16`` (each component within ``2**-11`` relative, for normal values).
The schema is strict and versioned: readers refuse unknown keys and versions.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
from pathlib import Path
from typing import Any, Literal

import msgspec
import numpy as np

from .._atomic import atomic_write_bytes
from .._json import loads_exact
from .._time import format_timestamp, parse_timestamp
from ..embed import query_vector
from ..errors import DecodeError, UsageError
from ..record import MemoryRecord, Vector
from ..results import Result
from .cartridge import nskey

__all__ = ["MICROPACK_VERSION", "Header", "Item", "micropack", "read_micropack"]

MICROPACK_VERSION = 1


class Header(Result, forbid_unknown_fields=True, omit_defaults=True, frozen=True, kw_only=True):
    """The micro-pack's first line, and what ``micropack`` returns (a typed result: its
    ``to_dict()`` is the line as JSON; docs/results.md)."""

    micropack: int
    vector: str
    dims: int
    metric: str
    quantization: Literal["int8", "float16"]
    k: int
    records: int
    source: str
    query: str | None = None
    query_sha256: str | None = None
    embedder: str | None = None
    unreadable: int | None = None
    """Source entries that could not be read, so were not candidates (their reasons are what
    ``vex validate`` or a migrate's rejects file gives)."""


class Item(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    rank: int
    score: float
    id: str
    vec: str
    ns: str | None = None
    text: str | None = None
    meta: dict[str, Any] | None = None
    t: str | None = None
    scale: float | None = None


def quantize(vector: np.ndarray, kind: str) -> tuple[str, float | None]:
    if kind == "float16":
        return base64.b64encode(vector.astype("<f2").tobytes()).decode(), None
    peak = float(np.max(np.abs(vector))) if vector.size else 0.0
    scale = peak / 127.0 if peak > 0 else 1.0
    q = np.clip(np.rint(vector.astype(np.float64) / scale), -127, 127).astype("<i1")
    return base64.b64encode(q.tobytes()).decode(), scale


def dequantize(data: str, scale: float | None, kind: str, dims: int) -> np.ndarray:
    raw = base64.b64decode(data, validate=True)
    if kind == "float16":
        values = np.frombuffer(raw, dtype="<f2").astype(np.float32)
    else:
        if scale is None:
            raise ValueError("an int8 vector needs its scale")
        values = (np.frombuffer(raw, dtype="<i1").astype(np.float64) * scale).astype(np.float32)
    if values.size != dims:
        raise ValueError(f"vector has {values.size} values, the header says {dims}")
    return values


def micropack(source: Any, output: str | Path, *, query: str | None = None,
              vector: list[float] | None = None, k: int = 20, embed_model: str | None = None,
              vector_name: str = "", quantization: str = "int8",
              namespaces: list[str] | None = None) -> Header:
    """Write the top ``k`` records of ``source`` for a query (text, embedded with
    ``embed_model``, or a vector) to ``output``; returns the header."""
    from ..connectors._registry import open_store

    if quantization not in ("int8", "float16"):
        raise UsageError("quantization must be int8 or float16")
    if k < 1:
        raise UsageError("k must be at least 1")
    q, embedder_model = query_vector(query, vector, embed_model)

    unreadable = 0

    def scored(records: Any) -> Any:
        nonlocal unreadable
        for page in records:
            for item in page.items:
                if not isinstance(item, MemoryRecord):
                    unreadable += 1
                    continue
                if namespaces and item.namespace not in namespaces:
                    continue
                vec = item.vectors.get(vector_name)
                if vec is None:
                    continue
                if vec.dims != q.size:
                    raise UsageError(f"record {item.id!r} has a {vec.dims}-dim vector;"
                                     f" the query has {q.size}")
                a = vec.array().astype(np.float64)
                n = np.linalg.norm(a)
                yield (-(float(a @ q / n) if n else 0.0), nskey(item.namespace), item.id, item)

    store = open_store(source)
    with store:
        # streamed: only the k best are held; best first, ties by namespace (none first), then id
        best = heapq.nsmallest(k, scored(store.read(batch_size=2000)), key=lambda e: e[:3])
        location = str(store.describe()["location"])
    header = Header(micropack=MICROPACK_VERSION, vector=vector_name, dims=int(q.size), metric="cosine",
                    quantization=quantization, k=k, records=len(best), source=location,  # type: ignore[arg-type]
                    query=query, query_sha256=hashlib.sha256(q.astype("<f8").tobytes()).hexdigest(),
                    embedder=embedder_model, unreadable=unreadable or None)
    lines = [msgspec.json.encode(header)]
    for rank, (negated, _, _, record) in enumerate(best, 1):
        score = -negated
        data, scale = quantize(record.vectors[vector_name].array(), quantization)
        lines.append(msgspec.json.encode(Item(
            rank=rank, score=round(score, 6), id=record.id, ns=record.namespace, text=record.text,
            meta=record.metadata,
            t=None if record.created_at is None else format_timestamp(record.created_at),
            vec=data, scale=scale)))
    atomic_write_bytes(Path(output), b"\n".join(lines) + b"\n")
    return header


def read_micropack(path: str | Path) -> tuple[Header, list[MemoryRecord]]:
    """The header and the records (vectors dequantized, float32) of a micro-pack."""
    where = str(path)
    try:
        lines = Path(path).read_bytes().splitlines()
    except FileNotFoundError:
        raise UsageError(f"no micro-pack at {path}") from None
    if not lines:
        raise DecodeError("empty micro-pack", location=where)
    try:
        header = msgspec.convert(loads_exact(lines[0]), type=Header)  # bounded nesting
    except ValueError as err:  # not JSON, too deep, or not a header (msgspec's errors are ValueErrors)
        raise DecodeError(f"not a micro-pack header ({err})", location=f"{where}:1") from None
    if header.micropack != MICROPACK_VERSION:
        raise DecodeError(f"micro-pack version {header.micropack} is not {MICROPACK_VERSION}",
                          location=f"{where}:1")
    records = []
    for number, line in enumerate(lines[1:], 2):
        try:
            item = msgspec.convert(loads_exact(line), type=Item)
            values = dequantize(item.vec, item.scale, header.quantization, header.dims)
        except ValueError as err:
            raise DecodeError(f"not a micro-pack record ({err})", location=f"{where}:{number}") from None
        records.append(MemoryRecord(
            id=item.id, namespace=item.ns, text=item.text, metadata=item.meta,
            created_at=None if item.t is None else parse_timestamp(item.t), score=item.score,
            vectors={header.vector: Vector(values.astype("<f4").tobytes(), header.embedder)}))
    if len(records) != header.records:
        raise DecodeError(f"the header says {header.records} records, the file holds {len(records)}",
                          location=where)
    return header, records

"""The canonical byte form of a record, and the digests built on it. Only this module hashes records.

Record digest (documented normatively in docs/formats/canonical.md)::

    SHA-256( JSON array, UTF-8, no whitespace, object keys sorted at every depth:
             ["vxr1", id, namespace, NFC(text), metadata, created_at_ms, updated_at_ms,
              [[vector_name, model, dims, hex(SHA-256(float32 little-endian bytes))], ...]] )

A record with sparse vectors appends one more element (records without keep their digest)::

              [[name, model, nnz, hex(SHA-256(uint32 LE indices)), hex(SHA-256(float32 LE values))], ...]

Vectors are listed by name in code-point order. JSON numbers are written as orjson writes them:
integers in decimal, floats in the shortest form that reads back to the same float64.
``score``, ``source_store``, ``modality``, ``id_type`` and unknown keys are not content and are
left out, so a record keeps its digest when it moves between stores.

Content id (VectorPack): SHA-256 of ``["vxc1", NFC(text), modality, metadata]`` in the same
form, as 64 hex digits.

Namespace digest: the sum of the record digests, read as big-endian 256-bit integers, modulo
2**256, as 64 hex digits. A sum does not depend on order, and unlike XOR a duplicate record does
not cancel itself out.
"""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Any

import orjson

from ._json import with_big_ints_as_fragments

from .record import MemoryRecord

__all__ = ["NamespaceDigest", "canonical_bytes", "column_digests", "content_id", "namespace_key",
           "record_digest"]

_MOD = 1 << 256
_OPTS = orjson.OPT_SORT_KEYS


def canonical_bytes(record: MemoryRecord) -> bytes:
    named = record.vectors
    vectors = [
        [name, vec.model, vec.dims, hashlib.sha256(vec.data).hexdigest()]
        for name, vec in (named.items() if len(named) < 2 else sorted(named.items()))
    ]
    sparse = [
        [name, sp.model, sp.nnz, hashlib.sha256(sp.indices).hexdigest(),
         hashlib.sha256(sp.values).hexdigest()]
        for name, sp in sorted(record.sparse.items())
    ] if record.sparse else None
    return _body_bytes(record.id, record.namespace, record.text, record.metadata, record.created_at,
                       record.updated_at, vectors, sparse)


def _body_bytes(record_id: str, namespace: str | None, text: str | None, metadata: Any,
                created_at: int | None, updated_at: int | None, vectors: list[list[Any]],
                sparse: list[list[Any]] | None = None) -> bytes:
    """The canonical bytes of a record's content, its vectors already as
    ``[name, model, dims, hex]`` entries in name order."""
    if text is not None and not text.isascii():
        text = unicodedata.normalize("NFC", text)
    body = ["vxr1", record_id, namespace, text, metadata, created_at, updated_at, vectors]
    if sparse:
        body.append(sparse)
    try:
        return orjson.dumps(body, option=_OPTS)
    except TypeError:  # an integer beyond 64 bits
        return orjson.dumps(with_big_ints_as_fragments(body), option=_OPTS)


def column_digests(ids: list[str], namespaces: list[str | None], texts: list[str | None],
                   metadata: list[Any], created: list[int | None], updated: list[int | None],
                   vectors: list[tuple[str, list[str | None], int, memoryview]]) -> list[bytes]:
    """``record_digest`` of each row of a page held as columns, without making records: the
    same bytes from the same values. ``vectors``: per vector, in name order, its name, each
    row's model, its dims and the float32 little-endian bytes of every row's vector, one after
    the other (every row has it)."""
    sha256 = hashlib.sha256
    out: list[bytes] = []
    for i, rid in enumerate(ids):
        entries = [[name, models[i], dims, sha256(data[i * 4 * dims:(i + 1) * 4 * dims]).hexdigest()]
                   for name, models, dims, data in vectors]
        out.append(sha256(_body_bytes(rid, namespaces[i], texts[i], metadata[i], created[i], updated[i],
                                      entries)).digest())
    return out


def content_id(record: MemoryRecord) -> str:
    """A record's content id (VectorPack): hex SHA-256 of ``["vxc1", NFC(text), modality,
    metadata]`` in the canonical JSON form above. What the memory says, not where it lives or
    which vectors were derived from it: the same memory from two stores has one content id."""
    text = record.text
    if text is not None and not text.isascii():
        text = unicodedata.normalize("NFC", text)
    body = ["vxc1", text, record.modality, record.metadata]
    try:
        raw = orjson.dumps(body, option=_OPTS)
    except TypeError:
        raw = orjson.dumps(with_big_ints_as_fragments(body), option=_OPTS)
    return hashlib.sha256(raw).hexdigest()


def namespace_key(namespace: str | None) -> str:
    """How receipts name a namespace: itself, and ``""`` for records that have none."""
    return namespace or ""


def record_digest(record: MemoryRecord) -> bytes:
    """The 32-byte SHA-256 digest of a record's canonical bytes."""
    return hashlib.sha256(canonical_bytes(record)).digest()


class NamespaceDigest:
    """Order-independent digest of a multiset of records, with its count."""

    __slots__ = ("_sum", "count")

    def __init__(self, count: int = 0, hexsum: str | None = None) -> None:
        self.count = count
        self._sum = int(hexsum, 16) if hexsum else 0

    def add(self, digest: bytes) -> None:
        self.count += 1
        self._sum = (self._sum + int.from_bytes(digest, "big")) % _MOD

    def add_all(self, digests: list[bytes]) -> None:
        """``add`` of every digest, at one big-integer step: the digests are summed as sixteen
        16-bit columns by numpy (no carry is lost below 2**48 digests), then those sums are
        put together. A page's digests cost microseconds instead of a microsecond each."""
        import numpy as np

        joined = b"".join(digests)
        if len(joined) != 32 * len(digests):
            raise ValueError("a record digest is 32 bytes")
        if len(digests) < 64:  # numpy's fixed cost is more than a few big-integer steps
            self.count += len(digests)
            self._sum = (self._sum + sum(int.from_bytes(d, "big") for d in digests)) % _MOD
            return
        columns = np.frombuffer(joined, dtype=">u2").reshape(-1, 16).sum(axis=0, dtype=np.uint64)
        total = 0
        for column in columns.tolist():
            total = (total << 16) + column
        self.count += len(digests)
        self._sum = (self._sum + total) % _MOD

    @property
    def hex(self) -> str:
        return f"{self._sum:064x}"

    def to_dict(self) -> dict[str, object]:
        return {"count": self.count, "digest": self.hex}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> NamespaceDigest:
        return cls(int(data["count"]), str(data["digest"]))  # type: ignore[call-overload]

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, NamespaceDigest)
            and self.count == other.count
            and self._sum == other._sum
        )

    def __repr__(self) -> str:
        return f"NamespaceDigest(count={self.count}, digest={self.hex[:16]}...)"

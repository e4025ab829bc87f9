"""Deterministic sample records for connector tests and benchmarks.

The set is built to exercise what stores get wrong: several namespaces (and records with none),
integer-looking and unicode ids, every metadata type (str, int, float, bool, null, lists,
nested objects, a key named like a reserved field), text with emoji, newlines and quotes,
missing text, timestamps with milliseconds, named vectors, records without vectors.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..record import MemoryRecord, SparseVector, Vector

__all__ = ["every_metadata_type", "sample_records"]

_NAMESPACES = ("alpha", "beta", "", None)
_BASE_MS = 1_735_689_600_123


def every_metadata_type() -> dict[str, object]:
    """One metadata value of every kind a record may hold."""
    return {
        "s": "text value", "empty": "", "i": 42, "neg": -7, "big": 2**53 + 1, "huge": 2**70,
        "neg_zero": -0.0, "f": 0.1,
        "whole_float": 2.0, "t": True, "no": False, "null": None, "tags": ["a", "b"],
        "nums": [1, 2, 3], "floats": [0.5, 1.5], "empty_list": [],
        "nested": {"k": [1, {"deep": "x"}]}, "text": "a metadata key named like a field",
        "uni": "naïve café 東京 🚀",
    }


def sample_records(
    n: int,
    *,
    dims: int = 8,
    named: tuple[str, ...] = (),
    null_vectors: bool = True,
    namespaces: bool = True,
    seed: int = 11,
    unit: bool = False,
    model: str | None = "test-model",
    sparse: bool = False,
) -> Iterator[MemoryRecord]:
    """``n`` records; the first ones are edge cases, the rest are ordinary.

    ``named``: extra vector names each record also carries. ``unit``: L2-normalised vectors
    (for stores that keep cosine vectors normalised). ``sparse``: every third record also
    carries a sparse vector named ``bm25``.
    """
    rng = np.random.default_rng(seed)

    def vec(size: int) -> Vector:
        values = rng.standard_normal(size).astype("<f4")
        if unit:
            values = (values / np.linalg.norm(values)).astype("<f4")
        return Vector(values.tobytes(), model)

    for i in range(n):
        ns = _NAMESPACES[i % len(_NAMESPACES)] if namespaces else None
        vectors = {"": vec(dims)}
        for name in named:
            vectors[name] = vec(dims + 4)
        record = MemoryRecord(
            id=str(1000 + i) if i % 3 == 0 else f"mem-{i:06d}",
            id_type="int" if i % 3 == 0 else "str",
            text=f"memory {i}: the user prefers \"dark mode\"\nline two",
            vectors=vectors,
            namespace=ns,
            metadata={"n": i, "score_hint": i / 7, "tag": ["x", "y"][i % 2], "pinned": i % 2 == 0},
            created_at=_BASE_MS + i * 1001,
            updated_at=_BASE_MS + i * 2003 if i % 2 else None,
            source_store="sample",
            sparse=_sparse(rng) if sparse and i % 3 == 0 else {},
        )
        edge = _edge(i, record, null_vectors)
        yield edge if edge is not None else record


def _sparse(rng: np.random.Generator) -> dict[str, SparseVector]:
    indices = np.sort(rng.choice(30_000, size=int(rng.integers(1, 12)), replace=False))
    return {"bm25": SparseVector.from_values(indices, rng.random(len(indices)), model="bm25-test")}


def _edge(i: int, record: MemoryRecord, null_vectors: bool) -> MemoryRecord | None:
    if i == 1:
        return record.replace(id="ünï-cødé ✓ 🚀", text="emoji 🚀 and quotes \" ' and tabs\t",
                              metadata=every_metadata_type())
    if i == 2:
        return record.replace(text=None, metadata=None, updated_at=None, created_at=None,
                              source_store=None)
    if i == 4 and null_vectors:
        return record.replace(vectors={}, text="a memory with no vector yet")
    if i == 5:
        return record.replace(text="", metadata={}, extra={"custom_key": {"kept": True}})
    if i == 7:
        return record.replace(text="long " + "x" * 100_000 + " end")
    return None

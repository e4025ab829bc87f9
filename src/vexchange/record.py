"""MemoryRecord: the one data model every format and connector maps to and from.

Vectors are held as raw float32 little-endian bytes rather than arrays. That makes a record a
plain value: two records are equal exactly when every vector is equal bit for bit, and the bytes
are what the canonical digest hashes. :meth:`Vector.array` gives a zero-copy numpy view.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import msgspec

if TYPE_CHECKING:
    import numpy as np

__all__ = ["DEFAULT_VECTOR", "MemoryRecord", "SparseVector", "Vector", "canonical_int",
           "is_flat_value"]

DEFAULT_VECTOR = ""
"""The name of the unnamed default vector (``vector`` in a .vmig.jsonl line)."""

_np: Any = None
_F32: Any = "<f4"  # numpy dtypes once numpy is imported (_numpy)
_U32: Any = "<u4"


def _numpy() -> Any:
    """numpy, imported by the first method that needs it, not with this module: every command
    imports the record model, and ``vex --help`` should not pay numpy's 0.1-0.2 s start-up."""
    global _np, _F32, _U32
    if _np is None:
        import numpy

        _F32, _U32 = numpy.dtype("<f4"), numpy.dtype("<u4")
        _np = numpy
    return _np


class Vector(msgspec.Struct, frozen=True, gc=False):
    """A dense float32 vector and the model that produced it."""

    data: bytes
    model: str | None = None

    @property
    def dims(self) -> int:
        return len(self.data) // 4

    def array(self) -> np.ndarray:
        """A read-only float32 view of the bytes (no copy)."""
        np = _numpy()
        return np.frombuffer(self.data, dtype=_F32)  # type: ignore[no-any-return]

    def tolist(self) -> list[float]:
        return self.array().tolist()  # type: ignore[no-any-return]

    @classmethod
    def from_values(cls, values: Iterable[float] | np.ndarray, model: str | None = None) -> Vector:
        """Build from numbers; raises ValueError for an empty or non-finite vector."""
        np = _numpy()
        arr = np.asarray(values, dtype=_F32)
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError("a vector must be a non-empty list of numbers")
        if not np.isfinite(arr).all():
            raise ValueError(_non_finite_message(arr))
        return cls(arr.tobytes(), model)

    @classmethod
    def from_blob(cls, blob: bytes, model: str | None = None) -> Vector:
        """Build from raw float32 little-endian bytes; refuses a length that is not 4*dims."""
        np = _numpy()
        if len(blob) == 0 or len(blob) % 4:
            raise ValueError(
                f"vector blob of {len(blob)} bytes is not a whole number of float32 values"
            )
        arr = np.frombuffer(blob, dtype=_F32)
        if not np.isfinite(arr).all():
            raise ValueError(_non_finite_message(arr))
        return cls(bytes(blob), model)


class SparseVector(msgspec.Struct, frozen=True, gc=False):
    """A sparse vector (BM25, SPLADE): strictly increasing uint32 indices and their float32
    values, both little-endian bytes, so equality is bit-exact like ``Vector``."""

    indices: bytes
    values: bytes
    model: str | None = None

    @property
    def nnz(self) -> int:
        return len(self.indices) // 4

    def index_array(self) -> np.ndarray:
        np = _numpy()
        return np.frombuffer(self.indices, dtype=_U32)  # type: ignore[no-any-return]

    def value_array(self) -> np.ndarray:
        np = _numpy()
        return np.frombuffer(self.values, dtype=_F32)  # type: ignore[no-any-return]

    @classmethod
    def from_values(cls, indices: Iterable[int] | np.ndarray, values: Iterable[float] | np.ndarray,
                    model: str | None = None) -> SparseVector:
        """Build from numbers; sorts by index. ValueError for negative, too large or repeated
        indices, non-finite values, or lengths that differ."""
        np = _numpy()
        idx = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices)
        val = np.asarray(values, dtype=_F32)
        if idx.ndim != 1 or val.ndim != 1 or len(idx) != len(val):
            raise ValueError("a sparse vector needs as many values as indices")
        if len(idx) and (not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0
                         or idx.max() >= 1 << 32):
            raise ValueError("sparse indices must be integers from 0 to 2**32-1")
        if not np.isfinite(val).all():
            raise ValueError(_non_finite_message(val))
        order = np.argsort(idx, kind="stable")
        idx, val = idx[order].astype(_U32), val[order]
        if len(idx) > 1 and (np.diff(idx.astype(np.int64)) == 0).any():
            raise ValueError("sparse indices must not repeat")
        return cls(idx.tobytes(), val.tobytes(), model)


def _non_finite_message(arr: np.ndarray) -> str:
    np = _numpy()
    bad = np.flatnonzero(~np.isfinite(arr))
    return f"vector has {len(bad)} non-finite value(s) (NaN or infinity), first at index {bad[0]}"


class MemoryRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One memory: id, text, named vectors, namespace, metadata and timestamps.

    ``id`` is always a string; ``id_type`` records that the source used an integer so that it can
    be restored. Timestamps are UTC epoch milliseconds. ``vectors`` maps a name to a vector; the
    unnamed default vector has the name ``""``. ``metadata`` keeps JSON types (str, int, float,
    bool, None, lists of scalars; nested values are allowed here and are encoded by each format as
    its documentation says). ``extra`` carries keys a format does not know, so they survive a
    read-write round trip. ``sparse`` holds named sparse vectors.

    Records are not tracked by Python's cycle collector (``gc=False``): a run makes hundreds of
    thousands of them, and tracking them cost 20-30 % of a pack read in collections that never
    find anything. A record can only take part in a reference cycle if its metadata holds the
    record itself, which JSON data cannot.
    """

    id: str
    text: str | None = None
    vectors: dict[str, Vector] = {}
    namespace: str | None = None
    metadata: dict[str, Any] | None = None
    created_at: int | None = None
    updated_at: int | None = None
    source_store: str | None = None
    score: float | None = None
    modality: str | None = "text"
    id_type: Literal["str", "int"] = "str"
    extra: dict[str, Any] = {}
    sparse: dict[str, SparseVector] = {}

    @property
    def vector(self) -> Vector | None:
        """The default (unnamed) vector, if any."""
        return self.vectors.get(DEFAULT_VECTOR)

    def replace(self, **changes: Any) -> MemoryRecord:
        return msgspec.structs.replace(self, **changes)


def canonical_int(text: str) -> int | None:
    """The integer a string id spells in canonical decimal ("42", "-7"; not "042", "+1", "¹").

    ASCII digits only: ``str.isdigit`` also accepts digits such as "¹" that ``int`` refuses.
    """
    body = text[1:] if text.startswith("-") else text
    if not (body.isascii() and body.isdigit()):
        return None
    value = int(text)
    return value if str(value) == text else None


def is_flat_value(value: Any) -> bool:
    """True for a JSON scalar or a list of scalars: what "flat metadata" allows."""
    if isinstance(value, list):
        return all(_is_scalar(v) for v in value)
    return _is_scalar(value)


def _is_scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, (str, bool, int))


def nested_keys(metadata: Mapping[str, Any] | None) -> list[str]:
    """Keys whose values are not flat (objects, lists holding objects or lists)."""
    if not metadata:
        return []
    return [k for k, v in metadata.items() if not is_flat_value(v)]


if sys.byteorder != "little":  # pragma: no cover - every supported platform is little-endian
    raise ImportError("vexchange assumes a little-endian platform for zero-copy float32 views")

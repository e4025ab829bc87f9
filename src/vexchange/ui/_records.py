"""One record as the record view shows it, finding records by key, and the field-level diff.

Values go to the browser as exact JSON *text* (``dumps_exact``) beside their type: JavaScript
numbers would silently round an integer beyond 2**53, and the page must show what the store
holds. Vectors are summarised (size, norm, range, the first values as float32 prints them).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .._json import dumps_exact
from .._time import format_timestamp
from ..api import Location, open_store
from ..codecs.vmig import encode_record
from ..connectors._base import Reject
from ..record import MemoryRecord, SparseVector, Vector

__all__ = ["Key", "diff_records", "find_records", "json_type", "record_key", "record_view"]

Key = tuple[str | None, str]
_HEAD = 8
_PAGE = 1000


def record_key(record: MemoryRecord) -> Key:
    return (record.namespace, record.id)


def json_type(value: Any) -> str:
    """The JSON type a metadata value has in the file (bool before int: Python's bool is one)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def _stamp(ms: int | None) -> dict[str, Any] | None:
    return None if ms is None else {"ms": str(ms), "iso": format_timestamp(ms)}


def vector_summary(name: str, vec: Vector) -> dict[str, Any]:
    values = vec.array()
    wide = values.astype(np.float64)
    return {"name": name, "model": vec.model, "dims": vec.dims, "bytes": len(vec.data),
            "norm": float(np.linalg.norm(wide)), "min": float(wide.min()), "max": float(wide.max()),
            "mean": float(wide.mean()), "head": [str(v) for v in values[:_HEAD]]}


def _sparse_summary(name: str, vec: SparseVector) -> dict[str, Any]:
    return {"name": name, "model": vec.model, "nnz": vec.nnz,
            "head": [[int(i), str(v)] for i, v in zip(vec.index_array()[:_HEAD],
                                                       vec.value_array()[:_HEAD], strict=False)]}


def record_view(record: MemoryRecord) -> dict[str, Any]:
    """Every field of a record: scalars, metadata with its types, vectors summarised, and the
    record as its ``.vmig.jsonl`` line (the exact interchange form)."""
    meta = record.metadata or {}
    return {
        "key": [record.namespace, record.id],
        "fields": {
            "id": record.id, "id_type": record.id_type, "namespace": record.namespace,
            "text": record.text, "created_at": _stamp(record.created_at),
            "updated_at": _stamp(record.updated_at), "source_store": record.source_store,
            "score": None if record.score is None else dumps_exact(record.score),
            "modality": record.modality,
        },
        "metadata": [{"key": k, "type": json_type(v), "value": dumps_exact(v)} for k, v in meta.items()],
        "metadata_is_null": record.metadata is None,
        "extra": [{"key": k, "type": json_type(v), "value": dumps_exact(v)} for k, v in record.extra.items()],
        "vectors": [vector_summary(n, v) for n, v in record.vectors.items()],
        "sparse": [_sparse_summary(n, v) for n, v in record.sparse.items()],
        "line": encode_record(record).decode("utf-8", "replace")[:20_000],
    }


def find_records(location: Location, keys: Iterable[Key] = (), ids: Iterable[str] = (),
                 ) -> dict[Key, MemoryRecord]:
    """The records of ``location`` with these keys, or these ids in any namespace, by one
    streamed read that stops once every key is found (ids can be in several namespaces, so a
    search by id reads to the end)."""
    wanted, by_id = set(keys), set(ids)
    found: dict[Key, MemoryRecord] = {}
    if not wanted and not by_id:
        return found
    store = open_store(location)
    with store:
        for page in store.read(batch_size=_PAGE):
            for item in page.items:
                if isinstance(item, Reject):
                    continue
                key = record_key(item)
                if key in wanted or item.id in by_id:
                    found[key] = item
            if not by_id and wanted <= found.keys():
                break
    return found


_FIELDS = ("text", "id_type", "created_at", "updated_at", "source_store", "score", "modality")


def diff_records(left: MemoryRecord, right: MemoryRecord) -> list[dict[str, Any]]:
    """What differs between two records with the same key, field by field: scalar fields,
    each metadata and extra key (value and type), each vector (size, model, the largest
    difference of a value, how many values differ bit for bit)."""
    out: list[dict[str, Any]] = []

    def add(field: str, a: Any, b: Any) -> None:
        out.append({"field": field, "left": None if a is _ABSENT else dumps_exact(a),
                    "right": None if b is _ABSENT else dumps_exact(b),
                    "left_type": None if a is _ABSENT else json_type(a),
                    "right_type": None if b is _ABSENT else json_type(b)})

    for field in _FIELDS:
        a, b = getattr(left, field), getattr(right, field)
        if a != b or type(a) is not type(b):
            add(field, a, b)
    for kind, lm, rm in (("metadata", left.metadata or {}, right.metadata or {}),
                         ("extra", left.extra, right.extra)):
        for k in sorted(set(lm) | set(rm)):
            a, b = lm.get(k, _ABSENT), rm.get(k, _ABSENT)
            if a is _ABSENT or b is _ABSENT or dumps_exact(a) != dumps_exact(b):
                add(f"{kind}.{k}", a, b)
    if (left.metadata is None) != (right.metadata is None) and not (left.metadata or right.metadata):
        add("metadata", left.metadata, right.metadata)
    for name in sorted(set(left.vectors) | set(right.vectors)):
        out.extend(_vector_diff(name, left.vectors.get(name), right.vectors.get(name)))
    for name in sorted(set(left.sparse) | set(right.sparse)):
        if left.sparse.get(name) != right.sparse.get(name):
            out.append({"field": f"sparse.{name}", "left": _sparse_text(left.sparse.get(name)),
                        "right": _sparse_text(right.sparse.get(name)), "left_type": "sparse",
                        "right_type": "sparse"})
    return out


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


_ABSENT: Any = _Absent()


def _sparse_text(vec: SparseVector | None) -> str | None:
    return None if vec is None else f"{vec.nnz} non-zero values, model {vec.model}"


def _vector_diff(name: str, a: Vector | None, b: Vector | None) -> list[dict[str, Any]]:
    field = f"vectors.{name or '(default)'}"
    if a == b:
        return []
    if a is None or b is None:
        return [{"field": field, "left": None if a is None else f"{a.dims} dims",
                 "right": None if b is None else f"{b.dims} dims", "left_type": "vector",
                 "right_type": "vector"}]
    rows = []
    if a.model != b.model:
        rows.append({"field": f"{field}.model", "left": dumps_exact(a.model), "right": dumps_exact(b.model),
                     "left_type": json_type(a.model), "right_type": json_type(b.model)})
    if a.dims != b.dims:
        rows.append({"field": f"{field}.dims", "left": str(a.dims), "right": str(b.dims),
                     "left_type": "int", "right_type": "int"})
    elif a.data != b.data:
        x, y = a.array(), b.array()
        differ = int(np.count_nonzero(x.view("<u4") != y.view("<u4")))
        delta = float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64))))
        rows.append({"field": f"{field}.values", "left": f"norm {np.linalg.norm(x):.6g}",
                     "right": f"norm {np.linalg.norm(y):.6g}", "left_type": "vector",
                     "right_type": "vector", "note": f"{differ} of {a.dims} values differ; largest"
                                                     f" difference {delta:.3g}"})
    return rows

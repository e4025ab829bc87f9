"""The Arrow table shape the ``lance`` and ``lancedb`` connectors share.

Both write the same columns (so either reads what the other wrote) and read foreign tables
the same way. This module imports only pyarrow and numpy, never ``lance`` or ``lancedb``, so
each connector needs only its own extra::

    id string not null, namespace string, text string,
    vector fixed_size_list<float32>[N]          the default vector
    "vector_<name>" fixed_size_list<float32>[M] one per named vector
    metadata string (JSON), vex string (JSON), created_at timestamp[ms, UTC], updated_at ...
    schema metadata "vexchange": which column holds which vector, and each vector's metric

The layout (whose name each connector keeps, "lance" or "lancedb") is passed in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from .._json import dumps_exact, loads_exact
from ..record import MemoryRecord
from ._arrow import fixed_vectors
from ._base import VectorSpace
from ._payload import PayloadLayout

__all__ = ["SCHEMA_KEY", "Shape", "fields", "misfit", "table", "vector_columns"]

SCHEMA_KEY = b"vexchange"
_TS = pa.timestamp("ms", tz="UTC")


class Shape:
    """How a table's columns map to record fields: the saved vector map when vexchange
    wrote the table, else every fixed-size float list column as a vector."""

    def __init__(self, schema: pa.Schema, layout: PayloadLayout) -> None:
        self.schema, self.layout = schema, layout
        saved = orjson.loads((schema.metadata or {}).get(SCHEMA_KEY, b"null"))
        self.own = isinstance(saved, dict)
        vector_cols = [f.name for f in schema if pa.types.is_fixed_size_list(f.type)
                       and pa.types.is_floating(f.type.value_type)]
        self.dims = {f.name: f.type.list_size for f in schema if f.name in vector_cols}
        if isinstance(saved, dict):
            self.names = {c: n for n, c in saved["vectors"].items()}
            self.metrics: dict[str, str | None] = dict(saved.get("metrics", {}))
        else:
            single = len(vector_cols) == 1
            self.names = {c: ("" if single or c == "vector" else c) for c in vector_cols}
            self.metrics = {}

    def spaces(self) -> dict[str, VectorSpace]:
        return {self.names[c]: VectorSpace(dims=d, metric=self.metrics.get(self.names[c]))
                for c, d in self.dims.items()}

    def rows(self, data: pa.Table) -> Iterator[tuple[dict[str, Any], dict[str, bytes]]]:
        """Each row's plain cells (Python values) and its non-null vectors (float32 bytes)."""
        vectors = {name: _float32_rows(data.column(column)) for column, name in self.names.items()}
        plain = {name: data.column(name).to_pylist() for name in data.column_names
                 if name not in self.names}
        for i in range(data.num_rows):
            yield ({k: v[i] for k, v in plain.items()},
                   {name: cell for name, rows in vectors.items() if (cell := rows[i]) is not None})

    def unpack(self, row: dict[str, Any], vectors: dict[str, bytes], position: int) -> MemoryRecord:
        """One row as a record; raises ValueError, KeyError, TypeError or JSONDecodeError
        for a row that cannot be one (each connector turns that into its Reject). A foreign
        row's id, text and namespace are popped from ``row``."""
        if self.own:
            meta = row.get("metadata")
            payload = loads_exact(meta) if meta else {}
            payload["_vex"] = row.get("vex")
            record = self.layout.unpack(payload, store_id=row["id"], vectors=vectors,
                                        namespace=row.get("namespace"))
            return record.replace(text=row.get("text"))
        rid = row.pop("id", None)
        text = row.pop("text", None)
        namespace = row.pop("namespace", None)
        payload = {k: (v.isoformat() if isinstance(v, (dt.datetime, dt.date)) else v) for k, v in row.items()}
        record = self.layout.unpack(payload, store_id=str(position if rid is None else rid),
                                    vectors=vectors, namespace=namespace,
                                    id_type="int" if rid is None or isinstance(rid, int) else "str")
        return record.replace(text=text) if isinstance(text, str) else record


def _float32_rows(column: pa.ChunkedArray) -> list[bytes | None]:
    """Each row of a fixed-size float list column as float32 bytes (None for a null row)."""
    out: list[bytes | None] = []
    for chunk in column.chunks:
        size = chunk.type.list_size
        flat = chunk.values.slice(chunk.offset * size, len(chunk) * size)  # null rows hold values too
        values = np.asarray(flat.to_numpy(zero_copy_only=False), dtype="<f4").reshape(len(chunk), size)
        valid = chunk.is_valid().to_numpy(zero_copy_only=False)
        out.extend(values[i].tobytes() if valid[i] else None for i in range(len(chunk)))
    return out


def vector_columns(names: Any) -> dict[str, str]:
    """The column of each vector name: ``vector`` for the default, ``vector_<name>`` else."""
    return {name: ("vector" if name == "" else f"vector_{name}") for name in sorted(names)}


def fields(columns: dict[str, str], dims: dict[str, int]) -> list[pa.Field]:
    """The table's fields, a fixed-size float32 list column per vector (``columns``: name ->
    column, ``dims``: name -> size)."""
    return [pa.field("id", pa.string(), nullable=False), pa.field("namespace", pa.string()),
            pa.field("text", pa.string()),
            *[pa.field(c, pa.list_(pa.float32(), dims[n])) for n, c in columns.items()],
            pa.field("metadata", pa.string()), pa.field("vex", pa.string()),
            pa.field("created_at", _TS), pa.field("updated_at", _TS)]


def misfit(record: MemoryRecord, columns: dict[str, str], dims: dict[str, int],
           holder: str) -> tuple[str, str] | None:
    """Why a record's vectors do not fit the table's columns (reason, detail), or None."""
    for name, vec in record.vectors.items():
        column = columns.get(name)
        if column is None:
            return "unknown_vector", f"the {holder} has no column for vector {name!r}"
        if vec.dims != dims[column]:
            return "dims_mismatch", f"vector {name!r} has {vec.dims} dims; its column holds {dims[column]}"
    return None


def table(records: list[MemoryRecord], shape: Shape, schema: pa.Schema | None = None) -> pa.Table:
    """The records as rows of ``schema`` (the shape's own schema unless given)."""
    data: dict[str, Any] = {"id": [r.id for r in records], "namespace": [r.namespace for r in records],
                            "text": [r.text for r in records]}
    for column, name in shape.names.items():
        data[column] = fixed_vectors(records, name, shape.dims[column])
    packed = [shape.layout.pack(r) for r in records]
    data["metadata"] = [dumps_exact({k: v for k, v in p.items() if k != "_vex"})
                        if r.metadata is not None else None for p, r in zip(packed, records, strict=True)]
    data["vex"] = [p["_vex"] for p in packed]
    data["created_at"] = pa.array([r.created_at for r in records], type=pa.int64()).cast(_TS)
    data["updated_at"] = pa.array([r.updated_at for r in records], type=pa.int64()).cast(_TS)
    return pa.table(data, schema=schema if schema is not None else shape.schema)

"""The checks the engine makes of a page that travels as its Arrow table (``ColumnarPage``).

Why: a Parquet source written by vexchange and a Parquet target of the same layout need no
records in between; the reading child takes the records' digests and duplicate-id keys, and
the engine checks the vectors column by column here, as ``_problem`` (run.py) checks them
record by record. A page that fails any check is not refused here: the engine makes its
records and checks them one by one, so each refusal has its reason and its record.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..connectors._base import Capabilities

__all__ = ["table_vectors_fit"]


def table_vectors_fit(table: Any, vectors: dict[str, str], *, pinned: dict[str, int],
                      normalising: dict[str, bool], caps: Capabilities) -> bool:
    """Whether every record of ``table`` passes the engine's vector checks: each has every
    vector of ``vectors`` (name -> column), whole, finite float32 of the size the target
    holds, and the target needs no normalising (that check looks at each vector's norm).
    Pins the sizes a ``fixed_dims`` target has not yet fixed, as the record checks do."""
    import pyarrow as pa

    if not vectors or any(normalising.values()):
        return False
    sizes: dict[str, int] = {}
    for name, column_name in vectors.items():
        if name and not caps.named_vectors:
            return False
        column = table.column(column_name)
        kind = column.type
        if not (pa.types.is_fixed_size_list(kind) and pa.types.is_float32(kind.value_type)) \
                or kind.list_size < 1 or column.null_count:
            return False
        want = pinned.get(name)
        if want is not None and want != kind.list_size:
            return False
        for chunk in column.chunks:
            values = chunk.flatten()
            if values.null_count or not np.isfinite(values.to_numpy(zero_copy_only=True)).all():
                return False
        sizes[name] = kind.list_size
    if caps.fixed_dims:
        for name, size in sizes.items():
            pinned.setdefault(name, size)
    return True

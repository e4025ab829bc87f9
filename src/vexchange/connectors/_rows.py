"""Row helpers of the table-backed stores (sqlite-vec, DuckDB, FAISS's payload table, OMS).

Their own tables hold the same columns (``id, namespace, text, metadata, vex``), so the row
layout, the query hits built from such rows and the keyset paging loop live here, in a module
that imports no store's SDK, rather than in one store's connector that the others import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import orjson

from .._json import dumps_exact, loads_exact
from ..record import MemoryRecord
from ._base import Page, QueryHit, Reject
from ._payload import PayloadLayout, json_exact

__all__ = ["TEXT_COLUMNS", "keyset_pages", "layout_for", "query_hits", "quote", "record_row", "row_record"]

TEXT_COLUMNS = ("text", "content", "document", "page_content")
"""The columns a foreign table's text is looked for in, in this order."""

K = TypeVar("K")


def quote(name: str) -> str:
    """A SQL identifier, double-quoted (SQLite and DuckDB both)."""
    return '"' + name.replace('"', '""') + '"'


def layout_for(store: str) -> PayloadLayout:
    """The payload rules of the SQL-table stores: metadata as JSON text (every JSON-exact value
    native), the rest in ``vex``; text and namespace have columns of their own."""
    return PayloadLayout(store, text_key=None, namespace_key=None, native=json_exact, vex_as_text=True)


def record_row(layout: PayloadLayout, record: MemoryRecord) -> tuple[str | None, str]:
    """The ``metadata`` and ``vex`` columns of a record (JSON text, exact: integers beyond 64
    bits, -0.0 and reserved keys go to ``vex``, which wins on read)."""
    packed = layout.pack(record)
    vex = packed.pop("_vex")
    return (dumps_exact(packed) if record.metadata is not None else None), vex


def row_record(layout: PayloadLayout, *, store_id: str, namespace: str | None, text: str | None,
               metadata: str | None, vex: str | None, vectors: dict[str, bytes]) -> MemoryRecord | Reject:
    """The record a row of an own table describes, or a ``bad_row`` Reject."""
    try:
        payload = loads_exact(metadata) if metadata else {}
        if not isinstance(payload, dict):
            raise ValueError("the metadata column is not a JSON object")
        payload["_vex"] = vex
        record = layout.unpack(payload, store_id=store_id, vectors=vectors, namespace=namespace)
    except (ValueError, orjson.JSONDecodeError) as err:
        return Reject(reason="bad_row", detail=str(err), id=store_id, namespace=namespace)
    return record.replace(text=text)


def query_hits(layout: PayloadLayout, found: Iterable[tuple[Any, Any]],
               rows: dict[Any, Any]) -> list[QueryHit]:
    """The hits of a nearest-neighbour search: ``found`` is (row key, distance) nearest first,
    ``rows`` each key's ``(id, namespace, text, metadata, vex)``. A key without a row (deleted
    since the index was built) or a row that is no record is skipped."""
    hits: list[QueryHit] = []
    for key, distance in found:
        if key not in rows:
            continue
        rid, ns, text, meta, vex = rows[key]
        item = row_record(layout, store_id=rid, namespace=ns, text=text, metadata=meta, vex=vex, vectors={})
        if isinstance(item, MemoryRecord):
            hits.append(QueryHit(item.id, float(distance), item.namespace))
    return hits


def keyset_pages(fetch: Callable[[K], tuple[list[K], list[MemoryRecord | Reject]]], position: K,
                 batch_size: int) -> Iterator[Page]:
    """Pages read by key (``WHERE key > position ORDER BY key LIMIT batch_size``): ``fetch``
    returns the page's keys and its items. The cursor is the last key read; a short page is
    the last (its cursor None), so rows added behind the cursor are read and none twice."""
    while True:
        keys, items = fetch(position)
        if keys:
            position = keys[-1]
        more = len(keys) == batch_size
        yield Page(items, str(position) if more else None)
        if not more:
            return

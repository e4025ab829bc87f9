"""``lancedb``: a LanceDB table (embedded; LanceDB has no open-source server).
docs/connectors/lancedb.md.

URL form: ``lancedb:///abs/dir?table=memories`` (or ``lancedb:relative/dir?table=...``).

Tables the connector creates::

    id string not null, namespace string, text string,
    vector fixed_size_list<float32>[N]          the default vector
    "vector_<name>" fixed_size_list<float32>[M] one per named vector
    metadata string (JSON), vex string (JSON), created_at timestamp[ms, UTC], updated_at ...
    schema metadata "vexchange": which column holds which vector, and each vector's metric

LanceDB chooses the metric at query or index time, not per table, so the metric lives in the
schema metadata. Writes are ``merge_insert`` on ``id`` (upserts: a re-run never duplicates).
Any other table can be read: an ``id`` column (else the row position), every fixed-size float
list column as a vector, ``text``/``namespace`` when present, other columns as metadata.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import orjson
import pyarrow as pa

from ..errors import UsageError
from ..record import MemoryRecord
from ..spec import StoreSpec
from ._base import AtPath, Capabilities, Connector, Page, QueryHit, Reject, VectorSpace, Writer
from ._lance_table import SCHEMA_KEY, Shape, fields, vector_columns
from ._lance_table import table as table_of
from ._payload import PayloadLayout, json_exact
from ._store import StoreWriter, metric_for, translated

__all__ = ["LanceDBConnector"]

_METRICS = {"cosine": "cosine", "dot": "dot", "euclidean": "l2"}
_LAYOUT = PayloadLayout("lancedb", text_key=None, namespace_key=None, native=json_exact, vex_as_text=True)


def _shape(schema: pa.Schema) -> Shape:
    return Shape(schema, _LAYOUT)


class LanceDBConnector(AtPath, Connector):
    name = "lancedb"
    url_options = frozenset({'table'})
    takes_path = True
    extra = "lancedb"
    capabilities = Capabilities(read=True, write=True, named_vectors=True, fixed_dims=True,
                                preferred_batch=5000)
    """Large batches: each write is a commit, and each looks up the batch's ids in the table."""

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if not spec.path:
            raise UsageError("lancedb needs a directory: lancedb:///path/dir?table=NAME")
        self.path = Path(spec.path)
        self.table_name = spec.params.get("table", "memories")
        self._db: Any = None

    def describe(self) -> dict[str, Any]:
        return {"connector": "lancedb", "location": f"{self.path.resolve()}#{self.table_name}"}

    def _translated(self, operation: str) -> Any:
        return translated("lancedb", operation, transient=(TimeoutError,),
                          permanent=(OSError, RuntimeError, ValueError, pa.ArrowException))

    def db(self) -> Any:
        if self._db is None:
            if self.path.exists() and not self.path.is_dir():
                raise UsageError(f"{self.path} is a file; a LanceDB database is a directory")
            with self._translated("connect"):
                self._db = lancedb.connect(str(self.path))
        return self._db

    def open_table(self) -> Any | None:
        if not self.path.exists():
            return None
        db = self.db()
        with self._translated("open table"):
            if self.table_name not in db.list_tables().tables:
                return None
            return db.open_table(self.table_name)

    def _require(self) -> Any:
        table = self.open_table()
        if table is None:
            raise UsageError(f"LanceDB has no table {self.table_name!r} at {self.path}")
        return table

    def count(self) -> int | None:
        table = self._require()
        with self._translated("count"):
            return int(table.count_rows())

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return _shape(self._require().schema).spaces()

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        table = self._require()
        shape = _shape(table.schema)
        offset = int(after) if after else 0
        while True:
            with self._translated("read"):
                batch = table.search().offset(offset).limit(batch_size).to_arrow()
            items = _items(shape, batch, offset)
            offset += batch.num_rows
            more = batch.num_rows == batch_size
            yield Page(items, str(offset) if more else None)
            if not more:
                return

    def query(self, vector: Any, k: int, *, namespace: str | None = None,
              vector_name: str = "") -> list[QueryHit]:
        """LanceDB's vector search (its ANN index when the table has one, else a flat scan)
        with the metric kept in the schema metadata (LanceDB's default, l2, for a foreign
        table), prefiltered on ``namespace``; rows decoded as ``read`` decodes them."""
        table = self._require()
        shape = _shape(table.schema)
        column = next((c for c, n in shape.names.items() if n == vector_name), None)
        if column is None or (namespace is not None and "namespace" not in table.schema.names):
            return []
        if "id" not in table.schema.names:
            raise UsageError(f"LanceDB table {self.table_name!r} has no id column, so its search hits"
                             " cannot be matched with records (read names them by row position)")
        metric = _METRICS.get(shape.metrics.get(vector_name) or "", "l2")
        with self._translated("query"):
            search = table.search(np.asarray(vector, dtype=np.float32), vector_column_name=column)
            search = search.distance_type(metric).limit(k)
            if namespace is not None:
                search = search.where("namespace = '" + namespace.replace("'", "''") + "'", prefilter=True)
            batch = search.to_arrow()
        distances = batch.column("_distance").to_pylist()
        batch = batch.drop_columns(["_distance"])
        hits: list[QueryHit] = []
        for i, item in enumerate(_items(shape, batch, 0)):
            if isinstance(item, MemoryRecord):
                hits.append(QueryHit(item.id, float(distances[i]), item.namespace))
        return hits

    def query_metric(self, vector_name: str = "") -> str | None:
        """A table that records no metric is searched by LanceDB's default, l2."""
        return _shape(self._require().schema).metrics.get(vector_name) or "euclidean"

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        return LanceDBWriter(self, dry_run=dry_run, spaces=spaces or {})

    def close(self) -> None:
        self._db = None


def _items(shape: Shape, data: pa.Table, position: int) -> list[MemoryRecord | Reject]:
    out: list[MemoryRecord | Reject] = []
    for i, (row, vectors) in enumerate(shape.rows(data)):
        try:
            out.append(shape.unpack(row, vectors, position + i))
        except (ValueError, KeyError, orjson.JSONDecodeError) as err:
            out.append(Reject(reason="bad_row", detail=str(err), id=str(row.get("id", position + i))))
    return out


class LanceDBWriter(StoreWriter):
    def __init__(self, store: LanceDBConnector, *, dry_run: bool,
                 spaces: dict[str, VectorSpace]) -> None:
        super().__init__(store, dry_run=dry_run, spaces=spaces, metrics=_METRICS)
        self.table = store.open_table()
        self.shape = _shape(self.table.schema) if self.table is not None else None
        if self.shape is not None and not self.shape.own:
            raise UsageError(f"table {store.table_name!r} was not created by vexchange;"
                             " writing into it could break its schema",
                             hint="choose a new table with ?table=NAME")

    def target_dims(self) -> dict[str, int]:
        return {s.names[c]: d for s in [self.shape] if s for c, d in s.dims.items()}

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return self.shape.spaces() if self.shape else {}

    def create(self, batch: list[MemoryRecord]) -> None:
        wanted = self.spaces_to_create(batch)
        columns = vector_columns(wanted)
        metrics = {name: metric_for("lancedb", s.metric, _METRICS) and (s.metric or "cosine")
                   for name, s in wanted.items()}
        meta = orjson.dumps({"vectors": columns, "metrics": metrics, "format": 1})
        schema = pa.schema(fields(columns, {n: s.dims or 0 for n, s in wanted.items()}),
                           metadata={SCHEMA_KEY: meta})
        with self.store._translated("create table"):
            self.table = self.store.db().create_table(
                self.store.table_name, schema=schema)
        self.shape = _shape(self.table.schema)

    def created(self) -> bool:
        return self.table is not None

    def store_id(self, record: MemoryRecord) -> str:
        return record.id

    def namespaces_of(self, ids: list[Any]) -> dict[Any, str | None]:
        assert self.table is not None
        quoted = ", ".join("'" + str(i).replace("'", "''") + "'" for i in ids)
        with self.store._translated("read"):
            found = (self.table.search().where(f"id IN ({quoted})")
                     .select(["id", "namespace"]).limit(len(ids) + 1).to_arrow())
        return dict(zip(found.column("id").to_pylist(), found.column("namespace").to_pylist(), strict=False))

    def upsert(self, rows: list[tuple[Any, MemoryRecord]]) -> list[Reject]:
        assert self.shape is not None and self.table is not None
        columns_of = {n: c for c, n in self.shape.names.items()}
        rejects: list[Reject] = []
        kept: list[MemoryRecord] = []
        for _, record in rows:
            unknown = [n for n in record.vectors if n not in columns_of]
            if unknown:
                rejects.append(Reject(reason="unknown_vector", id=record.id,
                                      namespace=record.namespace,
                                      detail=f"the table has no column for vector {unknown[0]!r}"))
            else:
                kept.append(record)
        if not kept:
            return rejects
        table = table_of(kept, self.shape, self.table.schema)
        # ids the table does not hold are appended (cheap); the others are merged by id
        # (a commit that joins on the key). A retried batch finds its rows held and merges them.
        again = np.array([r.id in self.held_ids for r in kept], dtype=bool)
        with self.store._translated("upsert"):
            if not again.any():  # the whole batch is new (a table this run created): no copy
                self.table.add(table, on_bad_vectors="null")
            elif not again.all():
                self.table.add(table.filter(pa.array(~again)), on_bad_vectors="null")
            if again.any():
                (self.table.merge_insert("id").when_matched_update_all()
                 .when_not_matched_insert_all().execute(table.filter(pa.array(again)),
                                                        on_bad_vectors="null"))
        return rejects


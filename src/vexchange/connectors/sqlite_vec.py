"""``sqlite-vec``: a SQLite file with sqlite-vec ``vec0`` tables. docs/connectors/sqlite-vec.md.

URL form: ``sqlite-vec:///abs/file.db?table=memories`` (or ``sqlite-vec:relative/file.db``).

Tables the connector creates (``T`` is ``?table=``, default ``memories``)::

    T           rowid INTEGER PRIMARY KEY, id TEXT NOT NULL, namespace TEXT, text TEXT,
                metadata TEXT (JSON), vex TEXT (JSON), created_at INTEGER, updated_at INTEGER (epoch ms)
    T_vec       vec0(embedding float[N] distance_metric=cosine|l2|l1)   the default vector
    T_vec_NAME  vec0(embedding float[M] ...)                             one per named vector
    vex_layout  tbl TEXT PRIMARY KEY, layout TEXT: which vec0 table holds which vector, metrics

A ``vec0`` row has the rowid of its ``T`` row, so ``SELECT ... FROM T_vec WHERE embedding MATCH ?
AND k = 10`` joins back to ``T`` by rowid; a record without a vector has no ``vec0`` row.
sqlite-vec has no inner-product distance, so ``dot`` is refused before any write. Records are
keyed by (namespace, id), so one id may live in several namespaces. Any ``vec0`` table can be
read: its rowid is the id, its ``float[N]`` columns the vectors, a ``text``/``content`` column
the text, other columns metadata.

The SQLite module must be able to load extensions. Python's ``sqlite3`` can when its SQLite was
built so; where it cannot (pyenv and some distributions build without it), the connector uses
``pysqlite3`` (the ``pysqlite3-binary`` wheel), which can.

The row layout (``record_row`` and ``row_record``, in ``_rows.py``) is shared with the DuckDB
and FAISS connectors: their tables hold the same columns.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ..errors import UsageError
from ..record import MemoryRecord
from ..spec import StoreSpec
from ._base import AtPath, Capabilities, Connector, Page, QueryHit, Reject, VectorSpace, Writer
from ._payload import PayloadLayout
from ._rows import TEXT_COLUMNS, keyset_pages, layout_for, query_hits, quote, record_row, row_record
from ._store import StoreWriter, Verdict, metric_for, metric_from, translated

__all__ = ["SqliteVecConnector", "layout_for", "record_row", "row_record", "sqlite_module"]

_METRICS = {"cosine": "cosine", "euclidean": "l2", "manhattan": "l1"}
_META_TABLE = "vex_layout"
_FLOAT_COLUMN = re.compile(r"^\+?\s*\"?([^\s\"]+)\"?\s+float\[(\d+)\](.*)$", re.IGNORECASE | re.DOTALL)
_KNN_LIMIT = 4096
"""The largest ``k`` sqlite-vec's KNN query takes."""
_METRIC_OPTION = re.compile(r"distance_metric\s*=\s*(\w+)", re.IGNORECASE)


def sqlite_module() -> Any:
    """A DB-API SQLite module that can load extensions: ``sqlite3`` when its build allows it,
    else ``pysqlite3``."""
    import sqlite3

    if hasattr(sqlite3.Connection, "enable_load_extension"):
        return sqlite3
    try:
        pysqlite = importlib.import_module("pysqlite3.dbapi2")
    except ImportError:
        from ..errors import MissingDependencyError

        # this Python's sqlite3 cannot load extensions: pysqlite3-binary (in the extra) can
        raise MissingDependencyError("sqlite-vec", "pysqlite3", "sqlite-vec") from None
    return pysqlite


def _vec_table(table: str, name: str) -> str:
    if name == "":
        return f"{table}_vec"
    if re.fullmatch(r"[A-Za-z0-9_]+", name):
        return f"{table}_vec_{name}"
    return f"{table}_vec_x{name.encode().hex()}"


class _Shape:
    """What the table at a location is: ours (with its layout), a foreign ``vec0`` table, or
    nothing yet."""

    def __init__(self, conn: Any, table: str) -> None:
        row = conn.execute("SELECT type, sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()
        self.exists = row is not None
        self.own = False
        self.vectors: dict[str, str] = {}
        """vector name -> its vec0 table (own) or column (foreign)"""
        self.dims: dict[str, int] = {}
        self.metrics: dict[str, str | None] = {}
        self.columns: list[str] = []
        if row is None:
            return
        kind, sql = row
        has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                (_META_TABLE,)).fetchone()
        saved = conn.execute(f"SELECT layout FROM {_META_TABLE} WHERE tbl = ?",
                             (table,)).fetchone() if has_meta else None
        if saved and kind == "table":
            layout = orjson.loads(saved[0])
            self.own = True
            self.vectors = dict(layout["vectors"])
            self.dims = {n: int(d) for n, d in layout["dims"].items()}
            self.metrics = dict(layout["metrics"])
            return
        if kind != "table" or not re.search(r"using\s+vec0\s*\(", sql or "", re.IGNORECASE):
            raise UsageError(f"{table!r} is a {kind} that is neither a vexchange table nor a vec0 table",
                             hint="name a vec0 table, or a new table, with ?table=NAME")
        body = sql[sql.index("(") + 1:sql.rindex(")")]
        floats = []
        for part in body.split(","):
            match = _FLOAT_COLUMN.match(part.strip())
            name = part.strip().lstrip("+").split()[0].strip('"') if part.strip() else ""
            if match:
                option = _METRIC_OPTION.search(match.group(3))
                floats.append((match.group(1), int(match.group(2)),
                               metric_from(_METRICS, option.group(1) if option else "l2")))
            elif name:
                self.columns.append(name)
        single = len(floats) == 1
        for column, dims, metric in floats:
            key = "" if single or column == "embedding" else column
            self.vectors[key], self.dims[key], self.metrics[key] = column, dims, metric

    def spaces(self) -> dict[str, VectorSpace]:
        return {n: VectorSpace(dims=self.dims.get(n), metric=self.metrics.get(n)) for n in self.vectors}


class SqliteVecConnector(AtPath, Connector):
    name = "sqlite-vec"
    url_options = frozenset({"table"})
    takes_path = True
    extra = "sqlite-vec"
    capabilities = Capabilities(read=True, write=True, named_vectors=True, fixed_dims=True,
                                preferred_batch=2000)

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if not spec.path:
            raise UsageError("sqlite-vec needs a file: sqlite-vec:///path/file.db?table=NAME")
        self.path = Path(spec.path)
        self.table = spec.params.get("table", "memories")
        if not self.table or "\x00" in self.table:
            raise UsageError("?table= needs a table name")
        self._conn: Any = None
        self._module: Any = None

    def describe(self) -> dict[str, Any]:
        return {"connector": self.name, "location": f"{self.path.resolve()}#{self.table}"}

    def translated(self, operation: str) -> Any:
        return translated(self.name, operation, classify=self._classify)

    def _classify(self, err: BaseException) -> Verdict | None:
        module = self._module
        if module is None or not isinstance(err, module.Error):
            return None
        text = str(err).lower()
        if isinstance(err, module.OperationalError) and ("locked" in text or "busy" in text):
            return ("transient", None)
        return ("permanent", f"check that {self.path} is a SQLite database vexchange may read")

    def conn(self, *, create: bool = False) -> Any:
        if self._conn is None:
            if self.path.is_dir():
                raise UsageError(f"{self.path} is a directory; a sqlite-vec store is one SQLite file")
            if not create and not self.path.exists():
                raise UsageError(f"no sqlite-vec database at {self.path}")
            import sqlite_vec  # type: ignore[import-untyped]

            self._module = module = sqlite_module()
            with self.translated("open"):
                conn = module.connect(str(self.path), isolation_level=None, timeout=30)
                conn.enable_load_extension(True)
                sqlite_vec.load(conn)
                conn.enable_load_extension(False)
            self._conn = conn
        return self._conn

    def shape(self) -> _Shape:
        with self.translated("describe"):
            return _Shape(self.conn(), self.table)

    def _readable(self) -> _Shape:
        shape = self.shape()
        if not shape.exists:
            raise UsageError(f"no table {self.table!r} in {self.path}")
        return shape

    def count(self) -> int | None:
        self._readable()
        with self.translated("count"):
            return int(self.conn().execute(f"SELECT count(*) FROM {quote(self.table)}").fetchone()[0])

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return self._readable().spaces()

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        shape = self._readable()
        position = int(after) if after else None
        layout = layout_for(self.name)

        def fetch(after: int | None) -> tuple[list[int | None], list[MemoryRecord | Reject]]:
            with self.translated("read"):
                rows = self._page(shape, after, batch_size)
                items = self._own_items(shape, rows, layout) if shape.own else self._foreign_items(
                    shape, rows, layout)
            return [row[0] for row in rows], items

        yield from keyset_pages(fetch, position, batch_size)

    def _page(self, shape: _Shape, after: int | None, size: int) -> list[Any]:
        columns = ("id, namespace, text, metadata, vex" if shape.own else
                   ", ".join(quote(c) for c in [*shape.vectors.values(), *shape.columns]))
        where = "" if after is None else f"WHERE rowid > {int(after)}"
        sql = f"SELECT rowid, {columns} FROM {quote(self.table)} {where} ORDER BY rowid LIMIT {int(size)}"
        return list(self.conn().execute(sql).fetchall())

    def _own_items(self, shape: _Shape, rows: list[Any],
                   layout: PayloadLayout) -> list[MemoryRecord | Reject]:
        vectors: dict[int, dict[str, bytes]] = {}
        if rows:
            marks = ",".join("?" * len(rows))
            for name, vec_table in shape.vectors.items():
                for rowid, blob in self.conn().execute(
                        f"SELECT rowid, embedding FROM {quote(vec_table)} WHERE rowid IN ({marks})",
                        [r[0] for r in rows]):
                    vectors.setdefault(rowid, {})[name] = bytes(blob)
        return [row_record(layout, store_id=rid, namespace=ns, text=text, metadata=meta, vex=vex,
                           vectors=vectors.get(rowid, {}))
                for rowid, rid, ns, text, meta, vex in rows]

    def _foreign_items(self, shape: _Shape, rows: list[Any],
                       layout: PayloadLayout) -> list[MemoryRecord | Reject]:
        items: list[MemoryRecord | Reject] = []
        names = list(shape.vectors)
        text_column = next((c for c in TEXT_COLUMNS if c in shape.columns), None)
        for row in rows:
            vectors = {n: bytes(v) for n, v in zip(names, row[1:1 + len(names)], strict=True)
                       if v is not None}
            payload = dict(zip(shape.columns, row[1 + len(names):], strict=True))
            text = payload.pop(text_column, None) if text_column else None
            payload = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in payload.items()}
            record = layout.unpack(payload, store_id=str(row[0]), vectors=vectors, id_type="int")
            items.append(record.replace(text=text if text is None else str(text)))
        return items

    def query(self, vector: Any, k: int, *, namespace: str | None = None,
              vector_name: str = "") -> list[QueryHit]:
        """sqlite-vec's KNN query (``embedding MATCH ? AND k = ?``, by the vec0 table's own
        metric). vec0 tables here hold no namespace, so for a namespace the KNN's ``k`` grows
        fourfold until ``k`` hits are in it, or every row (sqlite-vec's limit: 4096) was asked."""
        shape = self._readable()
        target = shape.vectors.get(vector_name)
        if target is None:
            return []
        blob = np.asarray(vector, dtype="<f4").tobytes()
        total = min(self.count() or 0, _KNN_LIMIT)
        fetch = min(k, total) if namespace is not None else k
        layout = layout_for(self.name)
        while True:
            with self.translated("query"):
                hits = self._knn(shape, target, blob, max(fetch, 1), layout)
            kept = [h for h in hits if namespace is None or h.namespace == namespace]
            if namespace is None or len(kept) >= k or fetch >= total:
                return kept[:k]
            fetch = min(total, fetch * 4)

    def _knn(self, shape: _Shape, target: str, blob: bytes, k: int, layout: PayloadLayout) -> list[QueryHit]:
        conn = self.conn()
        if not shape.own:  # a foreign vec0 table: the column is the vector, the rowid the id
            found = conn.execute(f"SELECT rowid, distance FROM {quote(self.table)} WHERE {quote(target)}"
                                 f" MATCH ? AND k = ? ORDER BY distance", (blob, k)).fetchall()
            return [QueryHit(str(rowid), float(distance)) for rowid, distance in found]
        found = conn.execute(f"SELECT rowid, distance FROM {quote(target)} WHERE embedding MATCH ?"
                             " AND k = ? ORDER BY distance", (blob, k)).fetchall()
        if not found:
            return []
        marks = ",".join("?" * len(found))
        rows = {row[0]: row[1:] for row in conn.execute(
            f"SELECT rowid, id, namespace, text, metadata, vex FROM {quote(self.table)}"
            f" WHERE rowid IN ({marks})", [r[0] for r in found])}
        return query_hits(layout, found, rows)

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        return SqliteVecWriter(self, dry_run=dry_run, spaces=spaces or {})

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class SqliteVecWriter(StoreWriter):
    namespaced_ids = True
    """Rows are keyed by (namespace, id): the same id in two namespaces is two rows."""

    def __init__(self, store: SqliteVecConnector, *, dry_run: bool,
                 spaces: dict[str, VectorSpace]) -> None:
        super().__init__(store, dry_run=dry_run, spaces=spaces, metrics=_METRICS)
        self.connector = store
        self.layout = layout_for(store.name)
        self.shape: _Shape | None = None
        if store.path.exists() or not dry_run:
            if store.path.parent and not store.path.parent.exists():
                raise UsageError(f"no directory {store.path.parent} for the sqlite-vec file")
            self.shape = store.shape() if store.path.exists() else None
        if self.shape is not None and self.shape.exists and not self.shape.own:
            raise UsageError(f"table {store.table!r} in {store.path} was not created by vexchange;"
                             " writing into it could break its schema",
                             hint="choose a new table with ?table=NAME")

    def target_dims(self) -> dict[str, int]:
        return dict(self.shape.dims) if self.shape and self.shape.exists else {}

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return self.shape.spaces() if self.shape and self.shape.exists else {}

    def created(self) -> bool:
        return self.shape is not None and self.shape.exists

    def create(self, batch: list[MemoryRecord]) -> None:
        wanted = self.spaces_to_create(batch)
        table = self.connector.table
        vectors = {name: _vec_table(table, name) for name in sorted(wanted)}
        metrics = {name: s.metric or "cosine" for name, s in wanted.items()}
        conn = self.connector.conn(create=True)
        with self.connector.translated("create table"):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(f"CREATE TABLE {quote(table)} (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL,"
                         " namespace TEXT, text TEXT, metadata TEXT, vex TEXT, created_at INTEGER,"
                         " updated_at INTEGER)")
            conn.execute(f"CREATE INDEX {quote(table + '_key')} ON {quote(table)} (id, namespace)")
            for name, vec_table in vectors.items():
                store_metric = metric_for(self.connector.name, metrics[name], _METRICS)
                conn.execute(f"CREATE VIRTUAL TABLE {quote(vec_table)} USING vec0(embedding"
                             f" float[{int(wanted[name].dims or 0)}] distance_metric={store_metric})")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {_META_TABLE} (tbl TEXT PRIMARY KEY, layout TEXT)")
            conn.execute(f"INSERT INTO {_META_TABLE} VALUES (?, ?)", (table, orjson.dumps({
                "format": 1, "vectors": vectors, "metrics": metrics,
                "dims": {n: wanted[n].dims for n in vectors}}).decode()))
            conn.execute("COMMIT")
        self.shape = self.connector.shape()

    def store_id(self, record: MemoryRecord) -> str:
        return record.id

    def namespaces_of(self, ids: list[Any]) -> dict[Any, str | None]:  # pragma: no cover
        return {}

    def upsert(self, rows: list[tuple[Any, MemoryRecord]]) -> list[Reject]:
        """One transaction per batch: each record replaces the row of its (namespace, id), and
        its vec0 rows, so a retried batch leaves one copy."""
        assert self.shape is not None
        rejects: list[Reject] = []
        table = quote(self.connector.table)
        conn = self.connector.conn()
        with self.connector.translated("write"):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for _, record in rows:
                    unknown = [n for n in record.vectors if n not in self.shape.vectors]
                    if unknown:
                        rejects.append(Reject(
                            reason="unknown_vector", id=record.id, namespace=record.namespace,
                            detail=f"the table has no vec0 table for vector {unknown[0]!r}"))
                        continue
                    metadata, vex = record_row(self.layout, record)
                    values = (record.id, record.namespace, record.text, metadata, vex,
                              record.created_at, record.updated_at)
                    held = conn.execute(f"SELECT rowid FROM {table} WHERE id = ? AND namespace IS ?",
                                        (record.id, record.namespace)).fetchone()
                    if held:
                        rowid = held[0]
                        conn.execute(f"UPDATE {table} SET id = ?, namespace = ?, text = ?, metadata = ?,"
                                     " vex = ?, created_at = ?, updated_at = ? WHERE rowid = ?",
                                     (*values, rowid))
                        for vec_table in self.shape.vectors.values():
                            conn.execute(f"DELETE FROM {quote(vec_table)} WHERE rowid = ?", (rowid,))
                    else:
                        rowid = conn.execute(f"INSERT INTO {table} (id, namespace, text, metadata, vex,"
                                             " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                             values).lastrowid
                    for name, vec in record.vectors.items():
                        conn.execute(f"INSERT INTO {quote(self.shape.vectors[name])} (rowid, embedding)"
                                     " VALUES (?, ?)", (rowid, vec.data))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return rejects

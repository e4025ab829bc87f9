"""``duckdb``: a DuckDB table with ``FLOAT[N]`` vector columns and ``vss`` HNSW indexes.
docs/connectors/duckdb.md.

URL form: ``duckdb:///abs/file.duckdb?table=memories&index=auto`` (or ``duckdb:relative/file``).

Tables the connector creates::

    id VARCHAR NOT NULL, namespace VARCHAR, text VARCHAR,
    vector FLOAT[N]                     the default vector (NULL: none)
    "vector_<name>" FLOAT[M]            one per named vector
    metadata JSON, vex VARCHAR (JSON), created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ
    + a table comment recording which column holds which vector and each vector's metric
    + one HNSW index per vector column (the ``vss`` extension), built when the run finishes

``?index=``: ``auto`` (the default) builds the HNSW indexes when the ``vss`` extension can be
loaded and says so in a warning when it cannot; ``hnsw`` requires it; ``none`` builds none. The
columns are searchable without ``vss`` too (``array_cosine_distance`` and friends are core).
DuckDB downloads extensions from its own repository at ``INSTALL``; where that cannot be reached
the connector loads the binary the ``duckdb-extension-vss`` wheel ships for this DuckDB version.

Rows are keyed by (namespace, id): a batch deletes the rows it replaces and inserts the new ones
in one transaction, so a retried batch leaves one copy. Any table can be read: fixed-size float
array columns are vectors (one: the default vector), ``id`` (else the row number), ``text`` (or
``content``, ``document``) and ``namespace`` when present, every other column metadata.
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa

from ..errors import UsageError
from ..record import MemoryRecord
from ..spec import StoreSpec
from ._base import AtPath, Capabilities, Connector, Page, QueryHit, Reject, VectorSpace, Writer
from ._payload import PayloadLayout
from ._store import StoreWriter, Verdict, metric_for, translated
from ._rows import TEXT_COLUMNS, keyset_pages, layout_for, quote, record_row, row_record

__all__ = ["DuckDBConnector"]

log = logging.getLogger(__name__)

_METRICS = {"cosine": "cosine", "dot": "ip", "euclidean": "l2sq"}
_TS = pa.timestamp("ms", tz="UTC")
_MS_RANGE = (-62_135_596_800_000, 253_402_300_799_999)
"""Years 1 to 9999: the timestamps the ``created_at`` columns show; the exact value is in ``vex``."""


def load_vss(conn: Any) -> str | None:
    """Load the ``vss`` extension: from DuckDB's extension directory when installed there, else
    from the ``duckdb-extension-vss`` wheel. Returns None when loaded, else why not."""
    try:
        conn.execute("LOAD vss")
        return None
    except duckdb.Error as err:
        first = str(err).splitlines()[0]
    try:
        import duckdb_extension_vss  # type: ignore[import-untyped]
    except ImportError:
        return (f"{first}; and the duckdb-extension-vss package (the binary on PyPI) is not"
                " installed")
    binary = (Path(duckdb_extension_vss.__file__).parent / "extensions" / f"v{duckdb.__version__}"
              / "vss.duckdb_extension")
    if not binary.exists():
        return f"duckdb-extension-vss has no build for DuckDB {duckdb.__version__}"
    try:
        conn.execute(f"LOAD '{binary}'")
    except duckdb.Error as err:
        return str(err).splitlines()[0]
    return None


class _Shape:
    """What a table holds: our layout (from its comment) or a foreign table's columns."""

    def __init__(self, conn: Any, table: str) -> None:
        found = conn.execute("SELECT comment FROM duckdb_tables() WHERE table_name = ? AND"
                             " schema_name = current_schema()", [table]).fetchall()
        self.exists = bool(found)
        self.columns: dict[str, str] = {}
        self.vectors: dict[str, str] = {}
        """vector name -> column"""
        self.dims: dict[str, int] = {}
        self.metrics: dict[str, str | None] = {}
        self.saved: dict[str, Any] = {}
        if not found:
            self.own = False
            return
        for name, kind in conn.execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? AND"
                " schema_name = current_schema() ORDER BY column_index", [table]).fetchall():
            self.columns[name] = kind
        try:
            saved = orjson.loads(found[0][0]) if found[0][0] else None
        except orjson.JSONDecodeError:
            saved = None
        self.own = isinstance(saved, dict) and saved.get("vexchange") == 1
        if self.own and isinstance(saved, dict):
            self.saved = saved
            self.vectors = dict(saved["vectors"])
            self.metrics = dict(saved["metrics"])
        else:
            arrays = [c for c, k in self.columns.items() if _array_dims(k) is not None]
            self.vectors = {("" if len(arrays) == 1 or c == "vector" else c): c for c in arrays}
            self.metrics = {n: None for n in self.vectors}
        self.dims = {n: d for n, c in self.vectors.items()
                     if (d := _array_dims(self.columns.get(c, ""))) is not None}

    def spaces(self) -> dict[str, VectorSpace]:
        return {n: VectorSpace(dims=self.dims.get(n), metric=self.metrics.get(n)) for n in self.vectors}


def _array_dims(kind: str) -> int | None:
    """N of a ``FLOAT[N]`` or ``DOUBLE[N]`` column type."""
    for base in ("FLOAT[", "DOUBLE["):
        if kind.startswith(base) and kind.endswith("]") and kind[len(base):-1].isdigit():
            return int(kind[len(base):-1])
    return None


class DuckDBConnector(AtPath, Connector):
    name = "duckdb"
    url_options = frozenset({"table", "index"})
    takes_path = True
    extra = "duckdb"
    suffixes = (".duckdb",)
    capabilities = Capabilities(read=True, write=True, named_vectors=True, fixed_dims=True,
                                preferred_batch=5000)

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if not spec.path:
            raise UsageError("duckdb needs a file: duckdb:///path/file.duckdb?table=NAME")
        self.path = Path(spec.path)
        self.table = spec.params.get("table", "memories")
        self.index = spec.params.get("index", "auto")
        if self.index not in ("auto", "hnsw", "none"):
            raise UsageError(f"?index={self.index} is not one of auto, hnsw, none")
        self._conn: Any = None
        self._writable = False

    def describe(self) -> dict[str, Any]:
        return {"connector": self.name, "location": f"{self.path.resolve()}#{self.table}"}

    def translated(self, operation: str) -> Any:
        return translated(self.name, operation, classify=_classify)

    def conn(self, *, write: bool = False) -> Any:
        if self._conn is not None and write and not self._writable:
            self.close()
        if self._conn is None:
            if self.path.is_dir():
                raise UsageError(f"{self.path} is a directory; a DuckDB database is one file")
            if not write and not self.path.exists():
                raise UsageError(f"no DuckDB database at {self.path}")
            with self.translated("open"):
                self._conn = duckdb.connect(str(self.path), read_only=not write)
            self._writable = write
        return self._conn

    def shape(self, *, write: bool = False) -> _Shape:
        with self.translated("describe"):
            return _Shape(self.conn(write=write), self.table)

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
        position = int(after) if after is not None else -1
        layout = layout_for(self.name)

        def fetch(after: int) -> tuple[list[int], list[MemoryRecord | Reject]]:
            with self.translated("read"):
                batch = self.conn().execute(
                    f"SELECT rowid AS vex_rowid, * FROM {quote(self.table)} WHERE rowid > ?"
                    " ORDER BY rowid LIMIT ?", [after, batch_size]).arrow()
            if isinstance(batch, pa.RecordBatchReader):
                batch = batch.read_all()
            rowids = batch.column("vex_rowid").to_pylist()
            vectors = _vectors(batch, shape)
            rows = batch.drop_columns(["vex_rowid", *shape.vectors.values()]).to_pylist()
            return rowids, [_own(layout, row, vecs) if shape.own else _foreign(layout, row, vecs, rowid)
                            for row, vecs, rowid in zip(rows, vectors, rowids, strict=True)]

        yield from keyset_pages(fetch, position, batch_size)

    def query(self, vector: Any, k: int, *, namespace: str | None = None,
              vector_name: str = "") -> list[QueryHit]:
        """``ORDER BY array_<metric>_distance(column, query) LIMIT k``: DuckDB answers it from
        the column's HNSW index when ``vss`` loads, else by a scan; rows decoded as ``read``
        decodes them. A table that records no metric: cosine. The HNSW scan applies a
        ``WHERE namespace = ?`` after taking its LIMIT nearest rows (so a namespace gets fewer
        than ``k``), so a short answer is asked again with a LIMIT four times larger."""
        shape = self._readable()
        column = shape.vectors.get(vector_name)
        dims = shape.dims.get(vector_name)
        if column is None or dims is None or (namespace is not None and "namespace" not in shape.columns):
            return []
        function = {"cosine": "array_cosine_distance", "dot": "array_negative_inner_product",
                    "euclidean": "array_distance"}[shape.metrics.get(vector_name) or "cosine"]
        conn = self.conn()
        load_vss(conn)  # the HNSW index answers only with vss loaded; without it, a scan
        where = "" if namespace is None else " WHERE namespace = ?"
        excluded = ", ".join(quote(c) for c in shape.vectors.values())
        statement = (f"SELECT rowid AS vex_rowid, * EXCLUDE ({excluded}), {function}({quote(column)},"
                     f" ?::FLOAT[{int(dims)}]) AS vex_distance FROM {quote(self.table)}{where}"
                     " ORDER BY vex_distance LIMIT ?")
        values = np.asarray(vector, dtype=np.float32).tolist()
        total = self.count() or 0
        limit = k
        while True:  # vss's HNSW scan filters after its LIMIT: a namespace may get fewer than k
            args = [values, *([] if namespace is None else [namespace]), limit]
            with self.translated("query"):
                batch = conn.execute(statement, args).arrow()
            if isinstance(batch, pa.RecordBatchReader):
                batch = batch.read_all()
            if namespace is None or batch.num_rows >= k or limit >= total:
                break
            limit = min(total, limit * 4)
        batch = batch.slice(0, k)
        rowids = batch.column("vex_rowid").to_pylist()
        distances = batch.column("vex_distance").to_pylist()
        layout = layout_for(self.name)
        hits: list[QueryHit] = []
        for row, rowid, distance in zip(batch.drop_columns(["vex_rowid", "vex_distance"]).to_pylist(),
                                        rowids, distances, strict=True):
            item = _own(layout, row, {}) if shape.own else _foreign(layout, row, {}, rowid)
            if isinstance(item, MemoryRecord):
                hits.append(QueryHit(item.id, float(distance), item.namespace))
        return hits

    def query_metric(self, vector_name: str = "") -> str | None:
        return self._readable().metrics.get(vector_name) or "cosine"

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        return DuckDBWriter(self, dry_run=dry_run, spaces=spaces or {})

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _classify(err: BaseException) -> Verdict | None:
    """A lock held by another process may pass; anything else DuckDB raises will not."""
    if not isinstance(err, duckdb.Error):
        return None
    if "lock" in str(err).lower() or isinstance(err, duckdb.TransactionException):
        return ("transient", None)
    return ("permanent", "check the DuckDB file and the ?table= name")


def _vectors(batch: pa.Table, shape: _Shape) -> list[dict[str, bytes]]:
    out: list[dict[str, bytes]] = [{} for _ in range(batch.num_rows)]
    for name, column in shape.vectors.items():
        values = batch.column(column).combine_chunks()
        for i, cell in enumerate(values):
            if cell.is_valid:
                out[i][name] = np.asarray(cell.values.to_numpy(zero_copy_only=False), dtype="<f4").tobytes()
    return out


def _own(layout: PayloadLayout, row: dict[str, Any], vectors: dict[str, bytes]) -> MemoryRecord | Reject:
    return row_record(layout, store_id=row["id"], namespace=row["namespace"], text=row["text"],
                      metadata=row["metadata"], vex=row["vex"], vectors=vectors)


def _foreign(layout: PayloadLayout, row: dict[str, Any], vectors: dict[str, bytes],
             rowid: int) -> MemoryRecord | Reject:
    raw_id = row.pop("id", None)
    text_column = next((c for c in TEXT_COLUMNS if isinstance(row.get(c), str)), None)
    text = row.pop(text_column) if text_column else None
    namespace = row.pop("namespace", None)
    payload = {k: _jsonable(v) for k, v in row.items()}
    try:
        record = layout.unpack(payload, store_id=str(rowid if raw_id is None else raw_id),
                               vectors=vectors, namespace=None if namespace is None else str(namespace),
                               id_type="int" if raw_id is None or isinstance(raw_id, int) else "str")
    except ValueError as err:
        return Reject(reason="bad_row", detail=str(err), id=str(raw_id))
    return record.replace(text=text) if text is not None else record


def _jsonable(value: Any) -> Any:
    """A DuckDB value as JSON metadata: times as ISO text, decimals as floats, JSON text parsed
    where the column is JSON, bytes as hex."""
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


class DuckDBWriter(StoreWriter):
    namespaced_ids = True
    """Rows are keyed by (namespace, id): the same id in two namespaces is two rows."""

    def __init__(self, store: DuckDBConnector, *, dry_run: bool, spaces: dict[str, VectorSpace]) -> None:
        super().__init__(store, dry_run=dry_run, spaces=spaces, metrics=_METRICS)
        self.connector = store
        self.layout = layout_for(store.name)
        self.shape = store.shape(write=not dry_run) if store.path.exists() or not dry_run else None
        if self.shape is not None and self.shape.exists and not self.shape.own:
            raise UsageError(f"table {store.table!r} in {store.path} was not created by vexchange;"
                             " writing into it could break its schema",
                             hint="choose a new table with ?table=NAME")
        self.vss_missing: str | None = None
        if not dry_run:
            self.vss_missing = load_vss(store.conn(write=True)) if store.index != "none" else "?index=none"
            if self.vss_missing and store.index == "hnsw":
                raise UsageError(f"?index=hnsw needs DuckDB's vss extension, which did not load:"
                                 f" {self.vss_missing}", hint="pip install duckdb-extension-vss"
                                 " (for this DuckDB version), or use ?index=auto or none")

    def target_dims(self) -> dict[str, int]:
        return dict(self.shape.dims) if self.shape and self.shape.exists else {}

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return self.shape.spaces() if self.shape and self.shape.exists else {}

    def created(self) -> bool:
        return self.shape is not None and self.shape.exists

    def create(self, batch: list[MemoryRecord]) -> None:
        wanted = self.spaces_to_create(batch)
        columns = {name: ("vector" if name == "" else f"vector_{name}") for name in sorted(wanted)}
        metrics = {name: s.metric or "cosine" for name, s in wanted.items()}
        for metric in metrics.values():
            metric_for(self.connector.name, metric, _METRICS)
        vector_defs = "".join(f"{quote(c)} FLOAT[{int(wanted[n].dims or 0)}], " for n, c in columns.items())
        comment = orjson.dumps({"vexchange": 1, "vectors": columns, "metrics": metrics,
                                "pending_indexes": sorted(columns)}).decode()
        table = quote(self.connector.table)
        conn = self.connector.conn(write=True)
        with self.connector.translated("create table"):
            conn.execute(f"CREATE TABLE {table} (id VARCHAR NOT NULL, namespace VARCHAR, text VARCHAR,"
                         f" {vector_defs}metadata JSON, vex VARCHAR, created_at TIMESTAMPTZ,"
                         " updated_at TIMESTAMPTZ)")
            conn.execute(f"COMMENT ON TABLE {table} IS '{comment.replace(chr(39), chr(39) * 2)}'")
        self.shape = self.connector.shape(write=True)

    def store_id(self, record: MemoryRecord) -> str:
        return record.id

    def namespaces_of(self, ids: list[Any]) -> dict[Any, str | None]:  # pragma: no cover
        return {}

    def upsert(self, rows: list[tuple[Any, MemoryRecord]]) -> list[Reject]:
        assert self.shape is not None
        rejects: list[Reject] = []
        kept: list[MemoryRecord] = []
        for _, record in rows:
            unknown = [n for n in record.vectors if n not in self.shape.vectors]
            if unknown:
                rejects.append(Reject(reason="unknown_vector", id=record.id, namespace=record.namespace,
                                      detail=f"the table has no column for vector {unknown[0]!r}"))
            else:
                kept.append(record)
        # the last record of each (namespace, id) wins, as a store's upsert would
        kept = list({(r.namespace, r.id): r for r in kept}.values())
        if not kept:
            return rejects
        data: dict[str, Any] = {"id": [r.id for r in kept], "namespace": [r.namespace for r in kept],
                                "text": [r.text for r in kept]}
        for name, column in self.shape.vectors.items():
            dims = self.shape.dims[name]
            flat = np.zeros((len(kept), dims), dtype="<f4")
            valid = np.zeros(len(kept), dtype=bool)
            for i, record in enumerate(kept):
                vec = record.vectors.get(name)
                if vec is not None:
                    flat[i], valid[i] = vec.array(), True
            data[column] = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), dims,
                                                             mask=pa.array(~valid))
        packed = [record_row(self.layout, r) for r in kept]
        data["metadata"] = [m for m, _ in packed]
        data["vex"] = [v for _, v in packed]
        for name in ("created_at", "updated_at"):
            data[name] = pa.array([_shown(getattr(r, name)) for r in kept], type=pa.int64()).cast(_TS)
        staged = pa.table(data)
        names = ", ".join(quote(c) for c in staged.column_names)
        table = quote(self.connector.table)
        conn = self.connector.conn(write=True)
        with self.connector.translated("write"):
            conn.register("vex_batch", staged)
            try:
                conn.begin()
                conn.execute(f"DELETE FROM {table} t USING vex_batch b WHERE t.id = b.id AND"
                             " t.namespace IS NOT DISTINCT FROM b.namespace")
                conn.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM vex_batch")
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                conn.unregister("vex_batch")
        return rejects

    def finish(self, summary: dict[str, Any]) -> None:
        """Build the HNSW indexes once the table is loaded (faster than row by row, and a run
        that stops first leaves them pending in the comment for the next run)."""
        if self.dry_run or self.shape is None or not self.shape.exists:
            return
        pending = list(self.shape.saved.get("pending_indexes", []))
        if not pending:
            return
        if self.vss_missing:
            if self.connector.index == "auto":
                log.warning("duckdb: no HNSW index built (%s); the FLOAT[N] columns are searchable"
                            " with array_cosine_distance and friends", self.vss_missing)
            return
        conn = self.connector.conn(write=True)
        table = self.connector.table
        with self.connector.translated("create index"):
            conn.execute("SET hnsw_enable_experimental_persistence = true")
            for name in pending:
                column = self.shape.vectors[name]
                metric = _METRICS[self.shape.metrics.get(name) or "cosine"]
                conn.execute(f"CREATE INDEX IF NOT EXISTS {quote(f'{table}_{column}_hnsw')} ON"
                             f" {quote(table)} USING HNSW ({quote(column)}) WITH (metric = '{metric}')")
            saved = orjson.dumps({**self.shape.saved, "pending_indexes": []}).decode()
            conn.execute(f"COMMENT ON TABLE {quote(table)} IS '{saved.replace(chr(39), chr(39) * 2)}'")
            conn.execute("CHECKPOINT")
        self.shape = self.connector.shape(write=True)


def _shown(ms: int | None) -> int | None:
    return ms if ms is not None and _MS_RANGE[0] <= ms <= _MS_RANGE[1] else None

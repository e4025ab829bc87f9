"""``pgvector``: a PostgreSQL table with pgvector columns. docs/connectors/pgvector.md.

URL form::

    pgvector://host:5432/dbname?table=memories&user=postgres&schema=public
    pgvector://user:password@host:5432/dbname?table=memories
    (password: in the URL, or --target-secret password=..., or VEX_PGVECTOR_PASSWORD;
    ?sslmode=require)

Tables the connector creates::

    id text PRIMARY KEY, namespace text, text text, embedding vector(N),
    "embedding_<name>" vector(M) per named vector, metadata jsonb, vex json,
    created_at timestamptz, updated_at timestamptz
    + an HNSW index per vector column with the source's metric (when dims <= 2000)
    + a table comment recording which column holds which named vector

Any other table with vector columns can be read: the single-column primary key is the id, each
``vector`` column a vector (one column: the default vector), ``namespace``/``text`` (or
``content``, ``document``) columns are used when present, a ``metadata`` jsonb column is spread
into metadata and every other column becomes a metadata key.

Writes go through binary ``COPY`` straight into the table, one transaction a batch, as long
as no batch meets an id the table holds; from the first that does (a re-run, a resumed run),
batches go through ``COPY`` into a temporary staging table, then one ``INSERT ... ON CONFLICT
(id) DO UPDATE``, in one transaction: a failed batch leaves the table as it was either way.
Several writers (a parallel run's workers) each hold a shared advisory lock on the table while
they write; the HNSW indexes of a table the run created are built by the last one to finish.
Vectors travel in pgvector's binary form, so float32 bits are exact.
``metadata`` is jsonb (filterable); what jsonb cannot hold (NUL characters) or hands back changed
(-0.0, floats from 1e16, which it prints as integers), a text with a NUL character and
everything else without a column are kept in ``vex``, a ``json`` column, which keeps its text.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import orjson
import psycopg
from pgvector.psycopg import register_vector
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.types.json import Json, Jsonb

from ..errors import UsageError
from ..record import MemoryRecord
from ..spec import StoreSpec
from ._base import Capabilities, Connector, Page, QueryHit, Reject, VectorSpace, Writer
from ._payload import PayloadLayout, json_exact
from ._store import StoreWriter, Verdict, metric_from, translated

__all__ = ["PgvectorConnector"]

_OPS = {"cosine": "vector_cosine_ops", "dot": "vector_ip_ops", "euclidean": "vector_l2_ops",
        "manhattan": "vector_l1_ops"}
_HNSW_MAX_DIMS = 2000
_TEXT_COLUMNS = ("text", "content", "document", "page_content")


def _pg_exact(value: Any) -> bool:
    """What jsonb can hold: JSON without NUL characters (in strings or keys), finite floats
    and integers within 64 bits. Some of it comes back changed (see ``_jsonb_changes``)."""
    if isinstance(value, str):
        return "\x00" not in value
    if isinstance(value, list):
        return all(_pg_exact(v) for v in value)
    if isinstance(value, dict):
        return all("\x00" not in k and _pg_exact(v) for k, v in value.items())
    return json_exact(value)


_JSONB_INTEGRAL = 1e16
"""From here on a float's JSON text has an exponent (``1e+16``), which jsonb's numeric keeps
with no fractional digits and prints as an integer, so it would come back an int."""


def _jsonb_changes(value: Any) -> bool:
    """A value jsonb holds but hands back changed: a float it prints as an integer (1e16,
    1e300) or ``-0.0`` (jsonb keeps 0.0), at any depth. Such values stay in ``metadata`` for
    filtering (jsonb compares them by number) and are kept exactly in ``vex``, which wins."""
    kind = type(value)
    if kind is float:
        return abs(value) >= _JSONB_INTEGRAL or (value == 0.0 and math.copysign(1, value) < 0)
    if kind is list:
        return any(_jsonb_changes(v) for v in value)
    if kind is dict:
        return any(_jsonb_changes(v) for v in value.values())
    return False


def _jsonb_key(key: str, value: Any) -> bool:
    """A key jsonb can hold (no NUL): a key that has one is kept in ``vex``."""
    return "\x00" not in key


_LAYOUT = PayloadLayout("pgvector", text_key=None, namespace_key=None, native=_pg_exact,
                        inexact=_jsonb_changes)
_VEX_TEXT = "text"
"""The ``vex`` key of a text the ``text`` column cannot hold (it has a NUL character)."""
CHANGE_MARGIN = "5 minutes"
"""How far before the previous run's mark an incremental run reads changes again."""
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


class _Table:
    """What a table holds, read from the catalog: columns, vector columns, metrics, key."""

    def __init__(self, conn: psycopg.Connection[Any], schema: str, table: str) -> None:
        rows = conn.execute(
            """SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typname
                 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = a.atttypid
                WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
                ORDER BY a.attnum""", (schema, table)).fetchall()
        self.exists = bool(rows)
        self.columns = [r[0] for r in rows]
        self.types = {r[0]: r[2] for r in rows}
        self.vector_dims = {r[0]: _dims_of(r[1]) for r in rows if r[2] == "vector"}
        key = conn.execute(
            """SELECT a.attname FROM pg_index i JOIN pg_attribute a
                   ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                WHERE i.indrelid = to_regclass(%s) AND i.indisprimary""",
            (f'"{schema}"."{table}"',)).fetchall() if rows else []
        self.key = key[0][0] if len(key) == 1 else None
        comment = conn.execute("SELECT obj_description(to_regclass(%s), 'pg_class')",
                               (f'"{schema}"."{table}"',)).fetchone() if rows else None
        saved = _json_or_none(comment[0] if comment else None)
        self.own = isinstance(saved, dict) and saved.get("vexchange") == 1
        self.saved: dict[str, Any] = saved if self.own else {}
        self.pending_indexes: list[str] = list(self.saved.get("pending_indexes", []))
        if self.own and isinstance(saved, dict):
            self.vector_names: dict[str, str] = {c: n for n, c in saved["vectors"].items()}
        elif len(self.vector_dims) == 1:
            self.vector_names = {next(iter(self.vector_dims)): ""}
        else:
            self.vector_names = {c: ("" if c == "embedding" else c) for c in self.vector_dims}
        self.metrics: dict[str, str | None] = {c: None for c in self.vector_dims}
        if rows:
            for column, opclass in conn.execute(
                    """SELECT a.attname, o.opcname FROM pg_index i
                         JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                         JOIN pg_opclass o ON o.oid = i.indclass[0]
                        WHERE i.indrelid = to_regclass(%s) AND am.amname IN ('hnsw', 'ivfflat')""",
                    (f'"{schema}"."{table}"',)).fetchall():
                if column in self.metrics:
                    self.metrics[column] = metric_from(_OPS, opclass)
        for name, metric in self.saved.get("metrics", {}).items():
            column = self.saved["vectors"].get(name)
            if column in self.metrics and self.metrics[column] is None:
                self.metrics[column] = metric
        self.text_column = next((c for c in _TEXT_COLUMNS if self.types.get(c) in ("text", "varchar")), None)

    def spaces(self) -> dict[str, VectorSpace]:
        return {self.vector_names[c]: VectorSpace(dims=d, metric=self.metrics.get(c))
                for c, d in self.vector_dims.items()}


def _dims_of(type_text: str) -> int | None:
    if "(" not in type_text:
        return None
    return int(type_text.split("(", 1)[1].rstrip(")"))


def _json_or_none(text: str | None) -> Any:
    if not text:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


class PgvectorConnector(Connector):
    name = "pgvector"
    url_options = frozenset({'schema', 'sslmode', 'table', 'user'})
    url_userinfo = "user"
    extra = "pgvector"
    capabilities = Capabilities(read=True, write=True, named_vectors=True, fixed_dims=True)

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if not spec.host:
            raise UsageError("pgvector needs a server: pgvector://host:5432/dbname?table=NAME")
        self.dbname = (spec.path or "").strip("/") or "postgres"
        self.schema = spec.params.get("schema", "public")
        self.table = spec.params.get("table", "memories")
        self._conn: psycopg.Connection[Any] | None = None

    @property
    def user(self) -> str:
        """The role: the URL's user (``pgvector://alice@host/db``), else ``?user=``, else postgres."""
        return self.spec.user or self.spec.params.get("user", "postgres")

    def describe(self) -> dict[str, Any]:
        return {"connector": "pgvector", "location": f"postgresql://{self.user}@{self.spec.host}:"
                f"{self.spec.port or 5432}/{self.dbname}#{self.schema}.{self.table}"}

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.table)

    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            with translated_pg("connect"):
                self._conn = psycopg.connect(
                    host=self.spec.host, port=self.spec.port or 5432, dbname=self.dbname,
                    user=self.user, password=self.spec.secret("password"),
                    sslmode=self.spec.params.get("sslmode", "prefer"), connect_timeout=10,
                    autocommit=True)
                try:
                    register_vector(self._conn)
                except psycopg.ProgrammingError as err:
                    raise UsageError(f"the database {self.dbname!r} has no pgvector extension",
                                     hint="run CREATE EXTENSION vector; in it") from err
        return self._conn

    def describe_table(self) -> _Table:
        with translated_pg("describe"):
            return _Table(self.conn(), self.schema, self.table)

    def _readable(self) -> _Table:
        table = self.describe_table()
        if not table.exists:
            raise UsageError(f"no table {self.schema}.{self.table} in {self.describe()['location']}")
        if table.key is None:
            raise UsageError(f"table {self.schema}.{self.table} needs a single-column primary key"
                             " to be read in pages")
        return table

    def count(self) -> int | None:
        self._readable()
        with translated_pg("count"):
            row = self.conn().execute(sql.SQL("SELECT count(*) FROM {}").format(self.ident)).fetchone()
        return int(row[0]) if row else 0

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return self._readable().spaces()

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        return self._read(batch_size, after)

    def _read(self, batch_size: int, after: str | None, where: sql.Composable | None = None,
              args: tuple[Any, ...] = ()) -> Iterator[Page]:
        """Pages in key order after the cursor ``after``, of the rows ``where`` selects (an
        incremental run's changed rows; ``args`` are its parameters)."""
        table = self._readable()
        assert table.key is not None
        key = sql.Identifier(table.key)
        also = sql.SQL("") if where is None else sql.SQL(" AND ({})").format(where)
        query = sql.SQL("SELECT * FROM {t} WHERE {k} > %s{also} ORDER BY {k} LIMIT %s").format(
            t=self.ident, k=key, also=also)
        first = sql.SQL("SELECT * FROM {t} WHERE TRUE{also} ORDER BY {k} LIMIT %s").format(
            t=self.ident, k=key, also=also)
        cursor: Any = orjson.loads(after) if after else None
        while True:
            with translated_pg("read"), self.conn().cursor(binary=True) as cur:
                if cursor is None:
                    cur.execute(first, (*args, batch_size))
                else:
                    cur.execute(query, (cursor, *args, batch_size))
                names = [d.name for d in cur.description or []]
                rows = cur.fetchall()
            if rows:
                cursor = rows[-1][names.index(table.key)]
            items = [_item(table, dict(zip(names, row, strict=False))) for row in rows]
            more = len(rows) == batch_size
            yield Page(items, orjson.dumps(cursor).decode() if more else None)
            if not more:
                return

    # ------------------------------------------------------------------ incremental runs

    def change_mark(self) -> str | None:
        """The newest ``updated_at`` of a table whose ``updated_at`` is a timestamptz, never
        later than the server's clock (ISO-8601); None for any other table."""
        table = self._readable()
        if table.types.get("updated_at") != "timestamptz":
            return None
        with translated_pg("read"):
            row = self.conn().execute(sql.SQL(
                "SELECT LEAST(coalesce(max(updated_at), now()), now()) FROM {}"
            ).format(self.ident)).fetchone()
        assert row is not None
        return str(row[0].isoformat())

    def read_changed(self, mark: str, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        """Rows whose ``updated_at`` is at or after ``mark`` less ``CHANGE_MARGIN`` (a
        transaction that stamped its rows with ``now()`` before the previous run read and
        committed after it), and every row whose ``updated_at`` is NULL, in key order."""
        where = sql.SQL("updated_at IS NULL OR updated_at >= %s::timestamptz - %s::interval")
        return self._read(batch_size, after, where, (mark, CHANGE_MARGIN))

    def list_ids(self, *, batch_size: int) -> Iterator[list[tuple[str | None, str]]]:
        """``(namespace, id)`` of every row, as the reader gives them: the key as text, the
        ``namespace`` column where the table has one."""
        table = self._readable()
        assert table.key is not None
        key = sql.Identifier(table.key)
        namespace = sql.Identifier("namespace") if "namespace" in table.columns else sql.SQL("NULL")
        first = sql.SQL("SELECT {k}, {n} FROM {t} ORDER BY {k} LIMIT %s").format(
            k=key, n=namespace, t=self.ident)
        after = sql.SQL("SELECT {k}, {n} FROM {t} WHERE {k} > %s ORDER BY {k} LIMIT %s").format(
            k=key, n=namespace, t=self.ident)
        cursor: Any = None
        while True:
            with translated_pg("read"):
                rows = (self.conn().execute(first, (batch_size,)) if cursor is None
                        else self.conn().execute(after, (cursor, batch_size))).fetchall()
            if rows:
                yield [(ns, str(k)) for k, ns in rows]
                cursor = rows[-1][0]
            if len(rows) < batch_size:
                return

    def query(self, vector: Any, k: int, *, namespace: str | None = None,
              vector_name: str = "") -> list[QueryHit]:
        """``ORDER BY column <op> query LIMIT k`` with the operator of the column's metric (its
        index's, else the one vexchange saved, else cosine), so PostgreSQL uses the HNSW or
        IVFFlat index where there is one; rows decoded as ``read`` decodes them."""
        table = self._readable()
        column = next((c for c, n in table.vector_names.items() if n == vector_name), None)
        if column is None or (namespace is not None and "namespace" not in table.columns):
            return []
        op = {"cosine": "<=>", "dot": "<#>", "euclidean": "<->", "manhattan": "<+>"}[
            table.metrics.get(column) or "cosine"]
        plain = [sql.Identifier(c) for c in table.columns if c not in table.vector_dims]
        where = sql.SQL("") if namespace is None else sql.SQL(" WHERE {} = %s").format(
            sql.Identifier("namespace"))
        statement = sql.SQL("SELECT {cols}, {v} {op} %s AS vex_distance FROM {t}{w} ORDER BY vex_distance"
                            " LIMIT %s").format(cols=sql.SQL(", ").join(plain), v=sql.Identifier(column),
                                                op=sql.SQL(op), t=self.ident, w=where)
        from pgvector import Vector as PgVector

        args = (PgVector(np.asarray(vector, dtype=np.float32)),
                *(() if namespace is None else (namespace,)), k)
        with translated_pg("query"), self.conn().cursor() as cur:
            cur.execute(statement, args)
            names = [d.name for d in cur.description or []]
            rows = [dict(zip(names, row, strict=False)) for row in cur.fetchall()]
        hits: list[QueryHit] = []
        for row in rows:
            distance = float(row.pop("vex_distance"))
            item = _item(table, row)
            if isinstance(item, MemoryRecord):
                hits.append(QueryHit(item.id, distance, item.namespace))
        return hits

    @contextlib.contextmanager
    def parallel_writes(self) -> Iterator[None]:
        """The coordinator's own share of the table's lock (``PgvectorWriter``) while the
        workers write: none of them can then take it alone and build the indexes while a
        peer still has rows to load (or has not started); the coordinator builds them once
        every shard is written, as the last writer to finish."""
        writer = PgvectorWriter(self, dry_run=False, spaces={})
        try:
            yield
        except BaseException:
            writer.abort()
            raise
        writer.finish({})

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        return PgvectorWriter(self, dry_run=dry_run, spaces=spaces or {})

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


_PERMANENT_STATES = ("28", "3D", "42")  # auth, no such database, syntax or missing object
_PG_HINT = ("check the host, database, user, password (in the URL, --*-secret password=... or"
            " VEX_PGVECTOR_PASSWORD) and table")


def _classify_pg(err: BaseException) -> Verdict | None:
    """Connection trouble is transient; a refused login or a schema error is not."""
    if not isinstance(err, psycopg.Error):
        return None
    text, state = str(err), err.sqlstate or ""
    if isinstance(err, psycopg.OperationalError) and not (
            state.startswith(_PERMANENT_STATES) or "password" in text or "does not exist" in text):
        return ("transient", None)
    return ("permanent", _PG_HINT)


def translated_pg(operation: str) -> Any:
    return translated("pgvector", operation, classify=_classify_pg)


def _item(table: _Table, row: dict[str, Any]) -> MemoryRecord | Reject:
    key = table.key or "id"
    vectors: dict[str, bytes] = {}
    for column in table.vector_dims:
        value = row.pop(column, None)
        if value is not None:
            vectors[table.vector_names[column]] = np.asarray(value.to_numpy(), dtype="<f4").tobytes()
    raw_id = row.pop(key)
    store_id = str(raw_id)
    times: dict[str, int | None] = {}
    if table.own:
        payload = row.pop("metadata", None) or {}
        payload["_vex"] = vex = row.pop("vex", None)
        text, namespace = row.pop("text", None), row.pop("namespace", None)
        if isinstance(vex, dict) and _VEX_TEXT in vex:
            text = vex[_VEX_TEXT]
    else:
        payload = {}
        meta = row.pop("metadata", None)
        if isinstance(meta, dict):
            payload.update(meta)
        text = row.pop(table.text_column, None) if table.text_column else None
        namespace = row.pop("namespace", None)
        times = {"created_at": _ms(row.pop("created_at", None)),
                 "updated_at": _ms(row.pop("updated_at", None))}
        payload.update({k: _jsonable(v) for k, v in row.items()})
    try:
        record = _LAYOUT.unpack(payload, store_id=store_id, vectors=vectors, namespace=namespace,
                                id_type="int" if isinstance(raw_id, int) else "str")
    except ValueError as err:
        return Reject(reason="bad_row", detail=str(err), id=store_id)
    if text is not None:
        record = record.replace(text=text)
    return record.replace(**times) if times else record


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (int, float, str, bool, list, dict)) or value is None:
        return value
    return str(value)


def _ms(value: Any) -> int | None:
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return (aware - _EPOCH) // _MS  # exact: timestamp() goes through a float
    if isinstance(value, int):
        return value if value >= 10**11 else value * 1000
    return None


def _ts(ms: int | None) -> datetime | None:
    """The ``timestamptz`` of epoch milliseconds, exactly; None beyond the years 1 to 9999
    Python's datetime spans (the exact value is in ``vex`` either way)."""
    if ms is None:
        return None
    try:
        return _EPOCH + ms * _MS
    except OverflowError:
        return None


def _comment(conn: psycopg.Connection[Any], ident: sql.Identifier, value: dict[str, Any]) -> None:
    conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(
        ident, sql.Literal(orjson.dumps(value).decode())))


class PgvectorWriter(StoreWriter):
    namespaced_ids = True  # conflicts are caught by the upsert itself (see upsert)

    def __init__(self, store: PgvectorConnector, *, dry_run: bool,
                 spaces: dict[str, VectorSpace]) -> None:
        super().__init__(store, dry_run=dry_run, spaces=spaces, metrics=_OPS)
        self.table = store.describe_table()
        if self.table.exists and not self.table.own:
            raise UsageError(
                f"table {store.schema}.{store.table} exists and was not created by vexchange;"
                " writing into it could break its schema",
                hint="choose a new table name with ?table=NAME")
        self.direct = True
        """COPY straight into the table, until a batch meets an id the table holds."""
        self.lock_key = f"vexchange:{store.schema}.{store.table}"
        self.locked = False
        if not dry_run:
            self._share_lock()

    def _share_lock(self) -> None:
        """Hold a shared session advisory lock on the table while writing, so that the writer
        that finishes last (it alone gets the lock exclusively) builds the pending indexes,
        never one whose peers still load rows. A killed writer's lock goes with its session."""
        with translated_pg("lock"):
            self.store.conn().execute("SELECT pg_advisory_lock_shared(hashtext(%s))", (self.lock_key,))
        self.locked = True

    def target_dims(self) -> dict[str, int]:
        return {self.table.vector_names[c]: d for c, d in self.table.vector_dims.items() if d}

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return self.table.spaces() if self.table.exists else {}

    def create(self, batch: list[MemoryRecord]) -> None:
        wanted = self.spaces_to_create(batch)
        columns = {name: ("embedding" if name == "" else f"embedding_{name}") for name in wanted}
        vector_defs = [sql.SQL("{} vector({})").format(sql.Identifier(c), sql.Literal(wanted[n].dims))
                       for n, c in sorted(columns.items())]
        conn = self.store.conn()
        with translated_pg("create table"), conn.transaction():
            conn.execute(sql.SQL(
                "CREATE TABLE {t} (id text PRIMARY KEY, namespace text, text text, {vectors}"
                " metadata jsonb, vex json, created_at timestamptz, updated_at timestamptz)").format(
                t=self.store.ident,
                vectors=sql.SQL("").join(sql.SQL("{}, ").format(d) for d in vector_defs)))
            metrics = {name: (space.metric or "cosine")
                       for name, space in wanted.items()}
            pending = [columns[n] for n in sorted(columns) if (wanted[n].dims or 0) <= _HNSW_MAX_DIMS]
            _comment(conn, self.store.ident, {"vexchange": 1, "vectors": columns, "metrics": metrics,
                                             "pending_indexes": pending})
        self.table = self.store.describe_table()

    def finish(self, summary: dict[str, Any]) -> None:
        """Build the HNSW indexes of a table this connector created, now that it is loaded
        (pgvector builds an index much faster over loaded data than row by row). A run that
        stops first leaves them pending in the table comment; the next run builds them."""
        if self.dry_run:
            return
        conn = self.store.conn()
        with translated_pg("lock"):
            self._unlock("pg_advisory_unlock_shared")
            last = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (self.lock_key,)).fetchone()
        if not (last and last[0]):
            return  # another writer still loads rows: it builds the indexes when it finishes
        try:
            self.table = self.store.describe_table()  # a peer may have created or indexed it
            if self.table.exists and self.table.pending_indexes:
                self._build_indexes(conn)
        finally:
            with translated_pg("lock"):
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (self.lock_key,))

    def abort(self) -> None:
        """Leave the indexes pending (the next run builds them) and let the other writers on.
        A connection that is gone has taken its lock with it: nothing to raise over the error
        that stopped the run."""
        with contextlib.suppress(psycopg.Error):
            self._unlock("pg_advisory_unlock_shared")

    def _unlock(self, function: str) -> None:
        if self.locked and self.store._conn is not None:
            self.locked = False
            self.store.conn().execute(sql.SQL("SELECT {}(hashtext(%s))").format(sql.Identifier(function)),
                                      (self.lock_key,))

    def _build_indexes(self, conn: psycopg.Connection[Any]) -> None:
        by_column = {c: n for n, c in self.table.saved["vectors"].items()}
        with translated_pg("create index"), conn.transaction():
            conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
            for column in self.table.pending_indexes:
                metric = self.table.saved.get("metrics", {}).get(by_column[column]) or "cosine"
                conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw ({} {})").format(
                    sql.Identifier(f"{self.store.table}_{column}_hnsw"[:63]), self.store.ident,
                    sql.Identifier(column), sql.SQL(_OPS[metric])))
            _comment(conn, self.store.ident, {**self.table.saved, "pending_indexes": []})
        self.table = self.store.describe_table()

    def created(self) -> bool:
        return self.table.exists

    def delete(self, keys: list[tuple[str | None, str]]) -> None:
        """Delete the rows of these ``(namespace, id)`` pairs in one transaction; a row of
        another namespace with one of these ids is left alone."""
        if self.dry_run or not self.table.exists:
            return
        by_namespace: dict[str | None, list[str]] = {}
        for namespace, record_id in keys:
            by_namespace.setdefault(namespace, []).append(record_id)
        conn = self.store.conn()
        with translated_pg("delete"), conn.transaction():
            for namespace, ids in by_namespace.items():
                conn.execute(sql.SQL("DELETE FROM {} WHERE id = ANY(%s) AND namespace IS NOT DISTINCT"
                                     " FROM %s").format(self.store.ident), (ids, namespace))

    def store_id(self, record: MemoryRecord) -> str:
        return record.id

    def namespaces_of(self, ids: list[Any]) -> dict[Any, str | None]:  # pragma: no cover
        return {}

    def upsert(self, rows: list[tuple[Any, MemoryRecord]]) -> list[Reject]:
        """COPY the batch into a staging table, then upsert it; a row whose id another
        namespace holds is left alone (the WHERE of DO UPDATE) and reported as id_conflict."""
        columns_of = {n: c for c, n in self.table.vector_names.items()}
        vector_columns = sorted(self.table.vector_dims)
        rejects: list[Reject] = []
        staged: list[tuple[MemoryRecord, list[Any]]] = []
        in_batch: dict[str, str | None] = {}
        for _, record in rows:
            problem = _refusal(record, columns_of)
            if problem is None and record.id in in_batch:
                problem = ("id_conflict", f"id {record.id!r} is also in this batch for namespace"
                           f" {in_batch[record.id]!r}; the table keeps one row per id")
            in_batch.setdefault(record.id, record.namespace)
            if problem:
                rejects.append(Reject(reason=problem[0], detail=problem[1], id=record.id,
                                      namespace=record.namespace))
                continue
            text, kept = _text_column(record.text)
            payload = _LAYOUT.pack(record, accept=_jsonb_key, extra_vex=kept)
            vex = payload.pop("_vex")
            by_column = {columns_of[n]: v.array() for n, v in record.vectors.items()}
            staged.append((record, [
                record.id, record.namespace, text,
                *[by_column.get(c) for c in vector_columns],
                Jsonb(payload) if record.metadata is not None else None, Json(vex),
                _ts(record.created_at), _ts(record.updated_at)]))
        if not staged:
            return rejects
        names = ["id", "namespace", "text", *vector_columns, "metadata", "vex", "created_at",
                 "updated_at"]
        types = ["text", "text", "text", *["vector"] * len(vector_columns), "jsonb", "json",
                 "timestamptz", "timestamptz"]
        idents = sql.SQL(", ").join(map(sql.Identifier, names))
        updates = sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in names[1:])
        conn = self.store.conn()
        if self.direct and self._copy_direct(staged, idents, types):
            return rejects
        with translated_pg("upsert"), conn.transaction(), conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS vex_stage (LIKE {} INCLUDING DEFAULTS)"
                                " ON COMMIT DELETE ROWS").format(self.store.ident))
            copy_in = sql.SQL("COPY vex_stage ({}) FROM STDIN WITH (FORMAT BINARY)").format(idents)
            with cur.copy(copy_in) as copy:
                copy.set_types(types)
                for _, values in staged:
                    copy.write_row(values)
            cur.execute(sql.SQL(
                "INSERT INTO {t} AS t ({cols}) SELECT {cols} FROM vex_stage ON CONFLICT (id) DO UPDATE"
                " SET {updates} WHERE t.namespace IS NOT DISTINCT FROM EXCLUDED.namespace"
                " RETURNING t.id").format(t=self.store.ident, cols=idents, updates=updates))
            done = {r[0] for r in cur.fetchall()}
        for record, _ in staged:
            if record.id not in done:
                rejects.append(Reject(
                    reason="id_conflict", id=record.id, namespace=record.namespace,
                    detail=f"id {record.id!r} is already held by a row of another namespace;"
                           " the table keeps one row per id, so it is not overwritten"))
        return rejects


    def _copy_direct(self, staged: list[tuple[MemoryRecord, list[Any]]], idents: sql.Composable,
                     types: list[str]) -> bool:
        """COPY the batch straight into the table, as PostgreSQL's own bulk load does; False
        (nothing written: the transaction rolled back whole) when the table holds one of its
        ids, and every later batch of this writer merges through the staging table."""
        conn = self.store.conn()
        with translated_pg("upsert"):
            try:
                with conn.transaction(), conn.cursor() as cur, cur.copy(
                        sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT BINARY)").format(
                            self.store.ident, idents)) as copy:
                    copy.set_types(types)
                    for _, values in staged:
                        copy.write_row(values)
                return True
            except pg_errors.UniqueViolation:
                self.direct = False
                return False


def _text_column(text: str | None) -> tuple[str | None, dict[str, str] | None]:
    """The ``text`` column's value, and what ``vex`` keeps of the text. PostgreSQL text cannot
    hold a NUL character: such a text is kept exactly in ``vex`` (a json column keeps
    ``\\u0000`` as written), and the column holds it with each NUL as U+FFFD, so it can still
    be searched and shown."""
    if text is None or "\x00" not in text:
        return text, None
    return text.replace("\x00", "\ufffd"), {_VEX_TEXT: text}


def _refusal(record: MemoryRecord, columns_of: dict[str, str]) -> tuple[str, str] | None:
    unknown = [n for n in record.vectors if n not in columns_of]
    if unknown:
        return "unknown_vector", f"the table has no column for vector {unknown[0]!r}"
    if "\x00" in record.id or (record.namespace and "\x00" in record.namespace):
        return "nul_in_id", "PostgreSQL text cannot hold a NUL character"
    return None

"""``langgraph-postgres``: a LangGraph ``PostgresStore`` (``langgraph-checkpoint-postgres``).
docs/connectors/langgraph.md.

Its own module because it imports psycopg: the SQLite and in-memory stores need no Postgres
driver. The tables are LangGraph's (``store``: prefix, key, value jsonb, timestamps, TTL;
``store_vectors``: one pgvector embedding per indexed field), in the schema ``?schema=``
names (LangGraph's tables are unqualified: the connection's ``search_path`` is that schema,
then ``public`` where the ``vector`` type usually lives).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from ..errors import UsageError
from ..spec import StoreSpec
from ._base import Capabilities, VectorSpace, Writer
from ._langgraph_map import Packed, ValueLayout, from_micros, to_micros
from ._payload import json_exact
from ._store import Verdict, translated
from .langgraph import (_OPTIONS, METRICS, STORE, LangGraphWriter, StoredItem, _LangGraphConnector,
                        never_embed)

__all__ = ["LangGraphPostgresConnector"]

_OPS = {"vector_cosine_ops": "cosine", "vector_ip_ops": "dot", "vector_l2_ops": "euclidean",
        "halfvec_cosine_ops": "cosine", "halfvec_ip_ops": "dot", "halfvec_l2_ops": "euclidean"}
_HNSW_MAX_DIMS = 2000
_KEY_BYTES = 2600
"""The primary key (prefix, key) is a btree entry, which PostgreSQL caps near 2,700 bytes."""


def _jsonb_exact(value: Any) -> bool:
    """What jsonb holds: JSON with no NUL in a string or key, integers within 64 bits."""
    if isinstance(value, str):
        return "\x00" not in value
    if isinstance(value, list):
        return all(_jsonb_exact(v) for v in value)
    if isinstance(value, dict):
        return all("\x00" not in k and _jsonb_exact(v) for k, v in value.items())
    return json_exact(value)


def _jsonb_changes(value: Any) -> bool:
    """A value jsonb hands back changed: ``-0.0`` (it keeps 0) and floats of 1e16 or more
    (it prints them as integers), at any depth. Written natively, for LangGraph's filters, and
    exactly in ``_vex``, which wins on read (the same rule as the pgvector connector)."""
    if type(value) is float:
        return abs(value) >= 1e16 or (value == 0.0 and math.copysign(1, value) < 0)
    if isinstance(value, list):
        return any(_jsonb_changes(v) for v in value)
    if isinstance(value, dict):
        return any(_jsonb_changes(v) for v in value.values())
    return False


def _classify(err: BaseException) -> Verdict | None:
    if not isinstance(err, psycopg.Error):
        return None
    text, state = str(err), getattr(err, "sqlstate", None) or ""
    if isinstance(err, psycopg.OperationalError) and not (
            state.startswith(("28", "3D", "42")) or "password" in text or "does not exist" in text):
        return ("transient", None)
    return ("permanent", "check the host, database, user, password (in the URL, --*-secret"
            " password=... or VEX_LANGGRAPH_POSTGRES_PASSWORD) and ?schema=")


def _op(operation: str) -> Any:
    return translated("langgraph-postgres", operation, classify=_classify)


class LangGraphPostgresConnector(_LangGraphConnector):
    name = "langgraph-postgres"
    url_options = _OPTIONS | {"schema", "sslmode", "user"}
    url_userinfo = "user"
    extra = "langgraph-postgres"
    capabilities = Capabilities(read=True, write=True, named_vectors=True, fixed_dims=True)

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if not spec.host:
            raise UsageError("langgraph-postgres needs a server: langgraph-postgres://user@host:5432/db")
        self.dbname = (spec.path or "").strip("/") or "postgres"
        self.schema = spec.params.get("schema", "public")
        self._conn: psycopg.Connection[Any] | None = None

    @staticmethod
    def make_layout(text_field: str, vector_field: str | None) -> ValueLayout:
        return ValueLayout(STORE, text_field=text_field, vector_field=vector_field or None,
                           native=_jsonb_exact, inexact=_jsonb_changes,
                           text_ok=lambda t: "\x00" not in t)

    @property
    def user(self) -> str:
        return self.spec.user or self.spec.params.get("user", "postgres")

    def describe(self) -> dict[str, Any]:
        return {"connector": self.name, "location": f"postgresql://{self.user}@{self.spec.host}:"
                f"{self.spec.port or 5432}/{self.dbname}#{self.schema}"}

    def connect(self, **extra: Any) -> psycopg.Connection[Any]:
        with _op("connect"):
            return psycopg.connect(
                host=self.spec.host, port=self.spec.port or 5432, dbname=self.dbname, user=self.user,
                password=self.spec.secret("password"), sslmode=self.spec.params.get("sslmode", "prefer"),
                connect_timeout=10, autocommit=True,
                options=f"-c search_path={_search_path(self.schema)}", **extra)

    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            self._conn = self.connect()
        return self._conn

    def tables(self) -> set[str]:
        with _op("describe"):
            rows = self.conn().execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relname IN ('store', 'store_vectors')",
                (self.schema,)).fetchall()
        return {r[0] for r in rows}

    def _readable(self) -> set[str]:
        tables = self.tables()
        if "store" not in tables:
            raise UsageError(f"no LangGraph store in {self.describe()['location']} (no table"
                             f" {self.schema}.store)", hint="a PostgresStore creates it in setup()")
        return tables

    def count(self) -> int | None:
        self._readable()
        with _op("count"):
            row = self.conn().execute("SELECT count(*) FROM store").fetchone()
        return int(row[0]) if row else 0

    def vector_spaces(self) -> dict[str, VectorSpace]:
        if "store_vectors" not in self.tables():
            return {}
        with _op("describe"):
            dims = self.conn().execute(
                "SELECT a.atttypmod FROM pg_attribute a WHERE a.attrelid = to_regclass(%s)"
                " AND a.attname = 'embedding'", (f'"{self.schema}".store_vectors',)).fetchone()
            ops = self.conn().execute(
                "SELECT o.opcname FROM pg_index i JOIN pg_opclass o ON o.oid = i.indclass[0]"
                " WHERE i.indrelid = to_regclass(%s) AND NOT i.indisprimary",
                (f'"{self.schema}".store_vectors',)).fetchone()
        size = int(dims[0]) if dims and dims[0] and dims[0] > 0 else None
        return {"": VectorSpace(dims=size, metric=_OPS.get(ops[0]) if ops else None)}

    def items_after(self, after: tuple[str, str] | None, limit: int) -> list[StoredItem]:
        self._readable()
        base = ("SELECT prefix, key, value::text, created_at, updated_at, expires_at, ttl_minutes"
                " FROM store {} ORDER BY prefix, key LIMIT %s")
        with _op("read"):
            if after is None:
                rows = self.conn().execute(base.format(""), (limit,)).fetchall()
            else:
                rows = self.conn().execute(base.format("WHERE (prefix, key) > (%s, %s)"),
                                           (*after, limit)).fetchall()
        return [StoredItem(prefix, key, value, _us(created), _us(updated), ttl, _us(expires))
                for prefix, key, value, created, updated, expires, ttl in rows]

    def fields_of(self, first: tuple[str, str], last: tuple[str, str]) -> dict[tuple[str, str],
                                                                            dict[str, bytes]]:
        out: dict[tuple[str, str], dict[str, bytes]] = {}
        if "store_vectors" not in self.tables():
            return out
        with _op("read vectors"), self.conn().cursor(binary=True) as cur:
            cur.execute("SELECT prefix, key, field_name, embedding::real[] FROM store_vectors"
                        " WHERE (prefix, key) >= (%s, %s) AND (prefix, key) <= (%s, %s)",
                        (*first, *last))
            for prefix, key, field, values in cur:
                if values is not None:
                    out.setdefault((prefix, key), {})[field] = np.asarray(values, dtype="<f4").tobytes()
        return out

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        return PostgresWriter(self, dry_run=dry_run, spaces=spaces or {})

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _search_path(schema: str) -> str:
    quoted = '"' + schema.replace('"', '""') + '"'
    return quoted if schema == "public" else f"{quoted},public"


def _us(moment: Any) -> int | None:
    return to_micros(moment) if isinstance(moment, datetime) else None


class PostgresWriter(LangGraphWriter):
    """Creates the tables with ``PostgresStore.setup()`` (LangGraph's migrations, its vector
    table sized and indexed for the source's metric: HNSW up to 2,000 dims, no index above),
    then upserts each batch in one transaction."""

    store: LangGraphPostgresConnector

    def __init__(self, store: LangGraphPostgresConnector, *, dry_run: bool,
                 spaces: dict[str, VectorSpace]) -> None:
        super().__init__(store, dry_run=dry_run, spaces=spaces)
        self.ready: set[str] = set()

    def stored_dims(self) -> int | None:
        space = self.store.vector_spaces().get("")
        return space.dims if space else None

    def prepare(self, dims: int | None, metric: str) -> None:
        need = {"store"} | ({"store_vectors"} if dims else set())
        if need <= self.ready:
            return
        self.ready = self.store.tables()
        if need <= self.ready:
            return
        from langgraph.store.postgres import PostgresStore
        from psycopg.rows import dict_row

        conn = self.store.conn()
        with _op("create schema"):
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.store.schema)))
        index: Any = None
        if dims:
            index = {"dims": dims, "embed": never_embed, "distance_type": METRICS[metric],
                     "ann_index_config": {"kind": "hnsw" if dims <= _HNSW_MAX_DIMS else "flat"}}
        setup_conn = self.store.connect(prepare_threshold=0, row_factory=dict_row)
        try:
            with _op("setup"):
                PostgresStore(setup_conn, index=index).setup()  # LangGraph's own migrations
        finally:
            setup_conn.close()
        self.ready = self.store.tables()

    def refusal(self, packed: Packed) -> tuple[str, str] | None:
        prefix = ".".join(packed.labels)
        if "\x00" in packed.key:
            return ("nul_in_id", "PostgreSQL text cannot hold a NUL character")
        if len(prefix.encode("utf-8", "surrogatepass")) + len(packed.key.encode(
                "utf-8", "surrogatepass")) > _KEY_BYTES:
            return ("id_too_long", f"namespace and id exceed {_KEY_BYTES} bytes, more than"
                    " PostgreSQL's index on (prefix, key) can hold")
        return None

    def put(self, items: list[Packed]) -> None:
        from psycopg.types.json import Jsonb

        conn = self.store.conn()
        with _op("write"), _transaction(conn) as cur:
            cur.executemany(
                "INSERT INTO store (prefix, key, value, created_at, updated_at, expires_at, ttl_minutes)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (prefix, key) DO UPDATE SET"
                " value = EXCLUDED.value, created_at = EXCLUDED.created_at,"
                " updated_at = EXCLUDED.updated_at, expires_at = EXCLUDED.expires_at,"
                " ttl_minutes = EXCLUDED.ttl_minutes",
                [(".".join(p.labels), p.key, Jsonb(p.value), from_micros(p.created_us),
                  from_micros(p.updated_us),
                  None if p.expires_us is None else from_micros(p.expires_us),
                  None if p.ttl_minutes is None else round(p.ttl_minutes)) for p in items])
            if "store_vectors" in self.ready:
                cur.executemany("DELETE FROM store_vectors WHERE prefix = %s AND key = %s",
                                [(".".join(p.labels), p.key) for p in items])
            rows = [(".".join(p.labels), p.key, field, np.frombuffer(data, dtype="<f4").tolist(),
                     from_micros(p.created_us), from_micros(p.updated_us))
                    for p in items for field, data in p.fields.items()]
            if rows:
                cur.executemany(
                    "INSERT INTO store_vectors (prefix, key, field_name, embedding, created_at,"
                    " updated_at) VALUES (%s, %s, %s, %s::real[]::vector, %s, %s)", rows)

    def finish(self, summary: dict[str, Any]) -> None:
        pass

    def abort(self) -> None:
        pass


@contextmanager
def _transaction(conn: psycopg.Connection[Any]) -> Iterator[psycopg.Cursor[Any]]:
    with conn.transaction(), conn.cursor() as cur:
        yield cur


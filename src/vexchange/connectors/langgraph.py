"""LangGraph stores (``BaseStore``): SQLite, Postgres and in-memory. docs/connectors/langgraph.md.

Locations::

    langgraph-sqlite:///abs/path/store.db     (or langgraph-sqlite:relative.db)
    langgraph-postgres://user@host:5432/db?schema=public&sslmode=prefer
    (password: in the URL, --*-secret password=... or VEX_LANGGRAPH_POSTGRES_PASSWORD)
    LangGraphMemoryConnector(store)            an InMemoryStore, from Python only

(``langgraph-postgres`` is ``_langgraph_pg.LangGraphPostgresConnector``, beside psycopg.)

Both URL forms take ``?text_field=`` (the value key whose string is the record's text,
``text`` by default) and ``?vector_field=`` (the indexed field whose embedding is the record's
default vector; by default ``$``, LangGraph's own default, else an item's only field).

Items are read from the store's own tables (``store``, ``store_vectors``) or structures, the
stored embeddings with them, so a move between backends never re-embeds. Writing creates the
tables with LangGraph's own migrations (``setup()``), then writes rows with their values,
timestamps, TTL and embeddings in one transaction per batch. How items and records map:
``_langgraph_map``.
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import orjson

from .._json import loads_exact
from ..errors import UsageError
from ..record import MemoryRecord
from ..spec import StoreSpec
from ._base import AtPath, Capabilities, Connector, Page, Reject, VectorSpace, Writer
from ._langgraph_map import Packed, ValueLayout, from_micros, to_micros
from ._payload import json_exact
from ._store import StoreWriter, translated

__all__ = ["LangGraphMemoryConnector", "LangGraphSqliteConnector", "StoredItem"]

STORE = "langgraph"
"""``source_store`` of items vexchange did not write."""
METRICS = {"cosine": "cosine", "dot": "inner_product", "euclidean": "l2"}
"""vexchange metric -> LangGraph ``distance_type``."""
_OPTIONS = frozenset({"text_field", "vector_field"})
_CAPABILITIES = Capabilities(read=True, write=True, named_vectors=True, fixed_dims=True)


class StoredItem(NamedTuple):
    """One row of the ``store`` table (or an in-memory item), as the backend holds it."""

    prefix: str
    key: str
    value: Any
    created_us: int | None
    updated_us: int | None
    ttl_minutes: float | None
    expires_us: int | None


def never_embed(texts: Sequence[str]) -> list[list[float]]:
    """The embedding function vexchange gives LangGraph's ``setup()``: it only creates the
    tables; vexchange writes the stored vectors and never embeds."""
    raise UsageError("vexchange does not embed LangGraph items; it moves the stored embeddings")


class _LangGraphConnector(Connector):
    """What the backends share: the mapping options and the paged read."""

    capabilities = _CAPABILITIES
    extra = "langgraph"

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        self.layout = self.make_layout(spec.params.get("text_field", "text"),
                                       spec.params.get("vector_field"))
        if not self.layout.text_field:
            raise UsageError(f"{self.name}: ?text_field= needs a value key name")

    @staticmethod
    def make_layout(text_field: str, vector_field: str | None) -> ValueLayout:
        return ValueLayout(STORE, text_field=text_field, vector_field=vector_field or None,
                           native=json_exact)

    @abstractmethod
    def items_after(self, after: tuple[str, str] | None, limit: int) -> list[StoredItem]:
        """Up to ``limit`` items in (prefix, key) order after ``after``."""

    @abstractmethod
    def fields_of(self, first: tuple[str, str], last: tuple[str, str]) -> dict[tuple[str, str],
                                                                            dict[str, bytes]]:
        """The embeddings of the items from ``first`` to ``last``, by field name."""

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        position: tuple[str, str] | None = tuple(orjson.loads(after)) if after else None
        while True:
            rows = self.items_after(position, batch_size)
            fields = self.fields_of((rows[0].prefix, rows[0].key),
                                    (rows[-1].prefix, rows[-1].key)) if rows else {}
            items = [self.record_of(row, fields.get((row.prefix, row.key), {})) for row in rows]
            more = len(rows) == batch_size
            if rows:
                position = (rows[-1].prefix, rows[-1].key)
            yield Page(items, orjson.dumps(list(position)).decode() if more and position else None)
            if not more:
                return

    def record_of(self, row: StoredItem, fields: dict[str, bytes]) -> MemoryRecord | Reject:
        try:
            value = loads_exact(row.value) if isinstance(row.value, (str, bytes)) else row.value
            return self.layout.unpack(prefix=row.prefix, key=row.key, value=value,
                                      created_us=row.created_us, updated_us=row.updated_us,
                                      fields=fields, ttl_minutes=row.ttl_minutes,
                                      expires_us=row.expires_us)
        except ValueError as err:
            return Reject(reason="bad_row", detail=f"item {row.prefix!r}/{row.key!r}: {err}",
                          id=row.key, record={"prefix": row.prefix, "key": row.key,
                                              "value": _text(row.value)})


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class LangGraphWriter(StoreWriter):
    """Upserts items by (namespace, key): LangGraph keeps namespaces apart, so an id may be in
    several. Each batch is one transaction: the items, then their embeddings (the old ones of
    each item deleted first, so a record written again holds exactly its vectors)."""

    namespaced_ids = True

    def __init__(self, store: _LangGraphConnector, *, dry_run: bool,
                 spaces: dict[str, VectorSpace]) -> None:
        super().__init__(store, dry_run=dry_run, spaces=spaces, metrics=METRICS)
        self.layout = store.layout
        self.dims: int | None = None

    def store_id(self, record: MemoryRecord) -> str:
        return record.id

    def namespaces_of(self, ids: list[Any]) -> dict[Any, str | None]:  # pragma: no cover
        return {}

    @abstractmethod
    def stored_dims(self) -> int | None:
        """The embedding size the store fixes (None while it holds no vector table)."""

    @abstractmethod
    def prepare(self, dims: int | None, metric: str) -> None:
        """Create the tables (LangGraph's migrations), with the vector table when ``dims``."""

    @abstractmethod
    def put(self, items: list[Packed]) -> None:
        """Write the items and their embeddings in one transaction."""

    def refusal(self, packed: Packed) -> tuple[str, str] | None:
        """A backend's own limits (Postgres: NUL, key length); None when it can be written."""
        return None

    def target_dims(self) -> dict[str, int]:
        dims = self.stored_dims()
        return {"": dims} if dims else {}

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return self.store.vector_spaces()  # type: ignore[no-any-return]

    def created(self) -> bool:
        return False  # prepare() is cheap and idempotent: checked on each batch

    def create(self, batch: list[MemoryRecord]) -> None:
        pass

    def upsert(self, rows: list[tuple[Any, MemoryRecord]]) -> list[Reject]:
        rejects: list[Reject] = []
        packed: list[Packed] = []
        now = to_micros(datetime.now().astimezone())
        self.dims = self.dims or self.stored_dims()
        wanted = self.dims or self.spaces.get("", VectorSpace()).dims
        for _, record in rows:
            try:
                item = self.layout.pack(record, now_us=now)
            except ValueError as err:
                rejects.append(Reject(reason="vector_name_conflict", detail=str(err), id=record.id,
                                      namespace=record.namespace))
                continue
            sizes = {len(data) // 4 for data in item.fields.values()}
            wanted = wanted or (min(sizes) if sizes else None)
            problem = self.refusal(item)
            if problem is None and sizes - {wanted}:
                problem = ("dims_mismatch", f"a LangGraph store holds embeddings of one size"
                           f" ({wanted}); this record has vectors of {sorted(sizes)}")
            if problem:
                rejects.append(Reject(reason=problem[0], detail=problem[1], id=record.id,
                                      namespace=record.namespace))
                continue
            packed.append(item)
        if packed:
            metric = (self.spaces.get("") or VectorSpace()).metric or "cosine"
            self.prepare(wanted if any(p.fields for p in packed) else None, metric)
            self.dims = self.stored_dims()
            self.put(packed)
        return rejects


def micros_of(text: Any) -> int | None:
    """Epoch microseconds of a SQLite timestamp text (``2024-01-02 03:04:05[.ffffff][+00:00]``)."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        return int(text * 1_000_000)
    return to_micros(datetime.fromisoformat(str(text)))


def sqlite_time(micros: int) -> str:
    """The text LangGraph's SQLite columns hold (``CURRENT_TIMESTAMP``'s form, UTC), with the
    fraction only when there is one, so LangGraph's text comparisons order it correctly."""
    moment = from_micros(micros)
    assert moment is not None  # the layout keeps out-of-range times in _vex
    spec = "seconds" if not moment.microsecond else (
        "milliseconds" if moment.microsecond % 1000 == 0 else "microseconds")
    return moment.replace(tzinfo=None).isoformat(sep=" ", timespec=spec)


def _classify_sqlite(err: BaseException) -> Any:
    if not isinstance(err, sqlite3.Error):
        return None
    text = str(err).lower()
    if isinstance(err, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return ("transient", None)
    return ("permanent", "check that the file is a LangGraph SqliteStore database")


def _sqlite_op(operation: str) -> Any:
    return translated("langgraph-sqlite", operation, classify=_classify_sqlite)


class LangGraphSqliteConnector(AtPath, _LangGraphConnector):
    """A ``SqliteStore`` database file (``langgraph-checkpoint-sqlite``)."""

    name = "langgraph-sqlite"
    url_options = _OPTIONS
    takes_path = True

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if not spec.path or spec.host:
            raise UsageError("langgraph-sqlite needs a file: langgraph-sqlite:///path/store.db")
        self.path = Path(spec.path)
        self._conn: sqlite3.Connection | None = None

    def describe(self) -> dict[str, Any]:
        return {"connector": self.name, "location": f"langgraph-sqlite://{self.path.resolve()}"}

    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            if not self.path.is_file():
                raise UsageError(f"no LangGraph SQLite store at {self.path}")
            with _sqlite_op("open"):
                uri = f"file:{urllib.parse.quote(str(self.path.resolve()))}?mode=ro"
                self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
                tables = {r[0] for r in self._conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "store" not in tables:
                raise UsageError(f"{self.path} holds no LangGraph store (no 'store' table)",
                                 hint="a SqliteStore creates it in setup()")
            self.vector_table = "store_vectors" in tables
            self.metric = _saved_metric(self._conn) if "vex_index" in tables else None
        return self._conn

    def count(self) -> int | None:
        with _sqlite_op("count"):
            return int(self.conn().execute("SELECT count(*) FROM store").fetchone()[0])

    def vector_spaces(self) -> dict[str, VectorSpace]:
        conn = self.conn()
        if not self.vector_table:
            return {}
        with _sqlite_op("describe"):
            row = conn.execute("SELECT length(embedding) FROM store_vectors"
                               " WHERE embedding IS NOT NULL LIMIT 1").fetchone()
        return {"": VectorSpace(dims=row[0] // 4, metric=self.metric)} if row else {}

    def items_after(self, after: tuple[str, str] | None, limit: int) -> list[StoredItem]:
        base = ("SELECT prefix, key, value, created_at, updated_at, expires_at, ttl_minutes"
                " FROM store {} ORDER BY prefix, key LIMIT ?")
        with _sqlite_op("read"):
            if after is None:
                rows = self.conn().execute(base.format(""), (limit,)).fetchall()
            else:
                rows = self.conn().execute(base.format("WHERE (prefix, key) > (?, ?)"),
                                           (*after, limit)).fetchall()
        out = []
        for prefix, key, value, created, updated, expires, ttl in rows:
            try:
                times = (micros_of(created), micros_of(updated), micros_of(expires))
            except ValueError:
                times = (None, None, None)
            out.append(StoredItem(prefix, key, value, times[0], times[1], ttl, times[2]))
        return out

    def fields_of(self, first: tuple[str, str], last: tuple[str, str]) -> dict[tuple[str, str],
                                                                            dict[str, bytes]]:
        out: dict[tuple[str, str], dict[str, bytes]] = {}
        if not self.vector_table:
            return out
        with _sqlite_op("read vectors"):
            rows = self.conn().execute(
                "SELECT prefix, key, field_name, embedding FROM store_vectors"
                " WHERE (prefix, key) >= (?, ?) AND (prefix, key) <= (?, ?)", (*first, *last))
            for prefix, key, field, blob in rows:
                if blob is not None:
                    out.setdefault((prefix, key), {})[field] = bytes(blob)
        return out

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        return SqliteWriter(self, dry_run=dry_run, spaces=spaces or {})

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _saved_metric(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT value FROM vex_index WHERE name = 'metric'").fetchone()
    return str(row[0]) if row and row[0] in METRICS else None


class SqliteWriter(LangGraphWriter):
    """SQLite keeps no index configuration (the distance is a runtime option of SqliteStore),
    so the metric the data was embedded for is kept in a small table of its own, ``vex_index``,
    which LangGraph ignores."""

    def __init__(self, store: LangGraphSqliteConnector, *, dry_run: bool,
                 spaces: dict[str, VectorSpace]) -> None:
        super().__init__(store, dry_run=dry_run, spaces=spaces)
        self.path = store.path
        self._conn: sqlite3.Connection | None = None
        self.ready = False

    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            if not self.path.parent.is_dir():
                raise UsageError(f"no directory {self.path.parent} for the store {self.path.name}")
            with _sqlite_op("open"):
                self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                             timeout=30)
        return self._conn

    def _tables(self) -> set[str]:
        if not self.path.exists():
            return set()
        return {r[0] for r in self.conn().execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def stored_dims(self) -> int | None:
        if "store_vectors" not in self._tables():
            return None
        row = self.conn().execute("SELECT length(embedding) FROM store_vectors"
                                  " WHERE embedding IS NOT NULL LIMIT 1").fetchone()
        return row[0] // 4 if row else self.dims

    def vector_spaces(self) -> dict[str, VectorSpace]:
        dims = self.stored_dims()
        if not dims:
            return {}
        return {"": VectorSpace(dims=dims, metric=_saved_metric(self.conn())
                                if "vex_index" in self._tables() else None)}

    def prepare(self, dims: int | None, metric: str) -> None:
        from langgraph.store.sqlite import SqliteStore

        conn = self.conn()
        with _sqlite_op("setup"):
            if not self.ready:
                SqliteStore(conn).setup()  # LangGraph's own migrations for the item table
                self.ready = True
            if dims and "store_vectors" not in self._tables():
                # SqliteStore.setup() runs these only after loading sqlite-vec, which a Python
                # built without loadable extensions cannot; the migrations need no extension,
                # so they run here with the same bookkeeping (vector_migrations) as setup()
                conn.execute("CREATE TABLE IF NOT EXISTS vector_migrations (v INTEGER PRIMARY KEY)")
                row = conn.execute("SELECT max(v) FROM vector_migrations").fetchone()
                done = -1 if row[0] is None else int(row[0])
                for version, sql in enumerate(SqliteStore.VECTOR_MIGRATIONS):
                    if version > done:
                        conn.executescript(sql)
                        conn.execute("INSERT INTO vector_migrations (v) VALUES (?)", (version,))
                conn.execute("CREATE TABLE IF NOT EXISTS vex_index (name TEXT PRIMARY KEY, value TEXT)")
                conn.execute("INSERT OR IGNORE INTO vex_index VALUES ('metric', ?)", (metric,))

    def put(self, items: list[Packed]) -> None:
        conn = self.conn()
        store_rows = [(".".join(p.labels), p.key, orjson.dumps(p.value), sqlite_time(p.created_us),
                       sqlite_time(p.updated_us),
                       None if p.expires_us is None else str(from_micros(p.expires_us)),
                       p.ttl_minutes) for p in items]
        vector_rows = [(".".join(p.labels), p.key, field, data, sqlite_time(p.created_us),
                        sqlite_time(p.updated_us)) for p in items for field, data in p.fields.items()]
        with _sqlite_op("write"):
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT OR REPLACE INTO store (prefix, key, value, created_at, updated_at,"
                    " expires_at, ttl_minutes) VALUES (?, ?, ?, ?, ?, ?, ?)", store_rows)
                if "store_vectors" in self._tables():
                    conn.executemany("DELETE FROM store_vectors WHERE prefix = ? AND key = ?",
                                     [row[:2] for row in store_rows])
                if vector_rows:
                    conn.executemany(
                        "INSERT INTO store_vectors (prefix, key, field_name, embedding, created_at,"
                        " updated_at) VALUES (?, ?, ?, ?, ?, ?)", vector_rows)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def refusal(self, packed: Packed) -> tuple[str, str] | None:
        if any(_unencodable(t) for t in (packed.key, *packed.labels)):
            return ("bad_id", "the id or namespace holds a lone surrogate, which UTF-8 cannot store")
        return None

    def finish(self, summary: dict[str, Any]) -> None:
        self.abort()

    def abort(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _unencodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class LangGraphMemoryConnector(_LangGraphConnector):
    """An ``InMemoryStore`` object, from Python (it has no location to name in a URL)::

        store = InMemoryStore(index={...})
        vexchange.migrate(LangGraphMemoryConnector(store), "memory.vmig.jsonl")

    Its embeddings are Python floats (what the embedding function returned); vexchange keeps
    float32, so a float64 embedding is rounded to float32 when it is read."""

    name = "langgraph-memory"
    url_options = _OPTIONS

    def __init__(self, store: Any, *, text_field: str = "text", vector_field: str | None = None) -> None:
        params = {"text_field": text_field, **({"vector_field": vector_field} if vector_field else {})}
        super().__init__(StoreSpec("langgraph-memory", path=f"0x{id(store):x}", params=params))
        self.store = store

    def describe(self) -> dict[str, Any]:
        return {"connector": self.name, "location": f"langgraph-memory:0x{id(self.store):x}"}

    def count(self) -> int | None:
        return sum(len(items) for items in self.store._data.values())

    def _sorted(self) -> list[tuple[str, str]]:
        return sorted((".".join(ns), key) for ns, items in self.store._data.items() for key in items)

    def items_after(self, after: tuple[str, str] | None, limit: int) -> list[StoredItem]:
        keys = [k for k in self._sorted() if after is None or k > after][:limit]
        out = []
        for prefix, key in keys:
            item = self.store._data[tuple(prefix.split("."))][key]
            out.append(StoredItem(prefix, key, item.value, to_micros(item.created_at),
                                  to_micros(item.updated_at), None, None))
        return out

    def fields_of(self, first: tuple[str, str], last: tuple[str, str]) -> dict[tuple[str, str],
                                                                            dict[str, bytes]]:
        out: dict[tuple[str, str], dict[str, bytes]] = {}
        for ns, by_key in self.store._vectors.items():
            prefix = ".".join(ns)
            for key, fields in by_key.items():
                if first <= (prefix, key) <= last and fields:
                    out[(prefix, key)] = {f: np.asarray(v, dtype="<f4").tobytes()
                                          for f, v in fields.items()}
        return out

    def vector_spaces(self) -> dict[str, VectorSpace]:
        config = getattr(self.store, "index_config", None) or {}
        return {"": VectorSpace(dims=config["dims"], metric="cosine")} if config.get("dims") else {}

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        return MemoryWriter(self, dry_run=dry_run, spaces=spaces or {})


class MemoryWriter(LangGraphWriter):
    """Sets items and their embeddings in the store's own dicts (``_data``, ``_vectors``), the
    structures its ``search`` reads; the embeddings as the float32 values, as Python floats."""

    def stored_dims(self) -> int | None:
        config = getattr(self.store.store, "index_config", None) or {}
        return config.get("dims") or self.dims

    def prepare(self, dims: int | None, metric: str) -> None:
        pass

    def put(self, items: list[Packed]) -> None:
        from langgraph.store.base import Item

        store = self.store.store
        for p in items:
            created, updated = from_micros(p.created_us), from_micros(p.updated_us)
            assert created is not None and updated is not None  # the layout keeps others in _vex
            store._data[p.labels][p.key] = Item(value=p.value, key=p.key, namespace=p.labels,
                                                created_at=created, updated_at=updated)
            store._vectors[p.labels].pop(p.key, None)
            if p.fields:
                store._vectors[p.labels][p.key] = {
                    f: np.frombuffer(d, dtype="<f4").astype(float).tolist() for f, d in p.fields.items()}

    def finish(self, summary: dict[str, Any]) -> None:
        pass

    def abort(self) -> None:
        pass


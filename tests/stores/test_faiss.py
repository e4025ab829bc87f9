"""FAISS index files (faiss-cpu, the real library) with a SQLite side table of payloads."""

from __future__ import annotations

import sqlite3
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vexchange.api import migrate
from vexchange.errors import UsageError
from vexchange.testing.conformance import ConnectorConformance, NativeRow, read_all, write_vmig
from vexchange.testing.records import sample_records

faiss = pytest.importorskip("faiss")


def faiss_rows(location: str) -> list[NativeRow]:
    """Every payload row's text, and its default vector as faiss itself hands it back (by the
    row's fid through the index's id map)."""
    directory = Path(urllib.parse.urlsplit(location).path)
    conn = sqlite3.connect(directory / "payloads.sqlite")
    rows = conn.execute("SELECT fid, text FROM payloads").fetchall()
    conn.close()
    index = faiss.read_index(str(directory / "index.faiss"))
    held = set(faiss.vector_to_array(index.id_map).tolist())
    out = []
    for fid, text in rows:
        vector = np.asarray(index.reconstruct(fid), dtype="<f4").tobytes() if fid in held else None
        out.append(NativeRow(text, vector))
    return out


class TestFaiss(ConnectorConformance):
    same_id_in_namespaces = True
    expect_normalised = True  # cosine: IndexFlatIP over unit vectors

    @pytest.fixture
    def native_rows(self) -> Any:
        return faiss_rows

    @pytest.fixture
    def new_location(self, tmp_path: Path) -> Any:
        return lambda name: f"faiss://{tmp_path}/{name}.faiss"

    @pytest.fixture
    def broken_location(self, tmp_path: Path) -> str:
        (tmp_path / "not-an-index").write_text("a file that is no FAISS index")
        return f"faiss://{tmp_path}/not-an-index"


def test_vexchange_index_answers_faiss_search(tmp_path: Path) -> None:
    """faiss searches the index vexchange wrote; the ids it returns are rows of the side table."""
    records = list(sample_records(80, dims=8, named=(), null_vectors=False, seed=6))
    source = write_vmig(tmp_path / "s.vmig.jsonl", records, metric="euclidean")
    target = tmp_path / "m.faiss"
    migrate(source, f"faiss://{target}", receipt=tmp_path / "r.json", rejects=tmp_path / "r.rejects")
    index = faiss.read_index(str(target / "index.faiss"))
    assert index.metric_type == faiss.METRIC_L2 and index.ntotal == 80
    probe = records[13]
    assert probe.vector is not None
    distances, ids = index.search(probe.vector.array().reshape(1, -1), 3)
    conn = sqlite3.connect(target / "payloads.sqlite")
    found = conn.execute("SELECT id FROM payloads WHERE fid = ?", (int(ids[0][0]),)).fetchone()[0]
    conn.close()
    assert found == probe.id and distances[0][0] == 0.0


def test_an_index_written_by_faiss_reads(tmp_path: Path) -> None:
    """A plain faiss index file with an id map, and one without, read as records."""
    vectors = np.random.default_rng(3).standard_normal((6, 5)).astype("<f4")
    mapped = faiss.IndexIDMap2(faiss.IndexFlatIP(5))
    mapped.add_with_ids(vectors, np.arange(100, 106, dtype=np.int64))
    faiss.write_index(mapped, str(tmp_path / "mapped.index"))
    plain = faiss.IndexFlatL2(5)
    plain.add(vectors)
    (tmp_path / "langchain").mkdir()
    faiss.write_index(plain, str(tmp_path / "langchain" / "index.faiss"))
    got = read_all(f"faiss://{tmp_path}/mapped.index", batch_size=4)
    assert sorted(got) == [(None, str(i)) for i in range(100, 106)]
    assert got[(None, "102")].vector.data == vectors[2].tobytes()  # type: ignore[union-attr]
    assert got[(None, "102")].id_type == "int"
    plain_got = read_all(f"faiss://{tmp_path}/langchain")
    assert plain_got[(None, "5")].vector.data == vectors[5].tobytes()  # type: ignore[union-attr]
    out = tmp_path / "out.vmig.jsonl"
    receipt = migrate(f"faiss://{tmp_path}/mapped.index", out, receipt=tmp_path / "e.json",
                      rejects=tmp_path / "e.rejects")
    assert receipt.counts.written == 6
    assert receipt.vector_spaces["source"][""]["metric"] == "dot"
    with pytest.raises(UsageError, match="did not write"):
        migrate(out, f"faiss://{tmp_path}/mapped.index", receipt=tmp_path / "w.json",
                rejects=tmp_path / "w.rejects")


def test_named_vectors_get_their_own_index_file(tmp_path: Path) -> None:
    records = list(sample_records(10, dims=4, named=("title",), null_vectors=True, seed=8))
    source = write_vmig(tmp_path / "s.vmig.jsonl", records, metric="dot")
    target = tmp_path / "n.faiss"
    migrate(source, f"faiss://{target}", receipt=tmp_path / "r.json", rejects=tmp_path / "r.rejects")
    titled = sum(1 for r in records if "title" in r.vectors)
    assert faiss.read_index(str(target / "index.title.faiss")).ntotal == titled

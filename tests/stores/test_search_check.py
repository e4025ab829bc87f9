"""``verify --search`` on every store with a query API, through each store's own query code:
two stores filled alike agree (overlap@k 1.0, recall 1.0 at this size), and a target whose
metric was changed on purpose fails the threshold and names both metrics."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vexchange.api import migrate
from vexchange.checks import SearchOptions, verify
from vexchange.record import MemoryRecord, Vector
from vexchange.results import SearchCheck
from vexchange.testing.conformance import write_vmig

DIMS = 16
OPTIONS = SearchOptions(k=10, probes=40, seed=11)

Factory = Callable[[str], str]


def _servers(request: pytest.FixtureRequest, kind: str) -> Any:
    return request.getfixturevalue("store_servers")[kind]


def _run() -> str:
    return uuid.uuid4().hex[:8]


def chroma_server(request: pytest.FixtureRequest, tmp: Path) -> Factory:
    pytest.importorskip("chromadb")
    server, run = _servers(request, "chroma"), _run()
    return lambda name: f"chroma://{server.host}:{server.port}/s{run}-{name}"


def pgvector(request: pytest.FixtureRequest, tmp: Path) -> Factory:
    pytest.importorskip("psycopg")
    server, run = _servers(request, "postgres"), _run()
    return lambda name: f"pgvector://{server.host}:{server.port}/postgres?table=s_{run}_{name}&user=postgres"


def qdrant_local(request: pytest.FixtureRequest, tmp: Path) -> Factory:
    pytest.importorskip("qdrant_client")
    return lambda name: f"qdrant://{tmp}/qdrant-{name}?collection=c-{name}"


def qdrant_edge(request: pytest.FixtureRequest, tmp: Path) -> Factory:
    pytest.importorskip("qdrant_edge")
    return lambda name: f"qdrant-edge://{tmp}/edge-{name}"


def lancedb(request: pytest.FixtureRequest, tmp: Path) -> Factory:
    pytest.importorskip("lancedb")
    return lambda name: f"lancedb://{tmp}/lance-{name}?table=t_{name}"


def milvus(request: pytest.FixtureRequest, tmp: Path) -> Factory:
    pytest.importorskip("pymilvus")
    server, run = _servers(request, "milvus"), _run()
    return lambda name: f"milvus://{server.host}:{server.port}/s{run}_{name}"


def redis(request: pytest.FixtureRequest, tmp: Path) -> Factory:
    pytest.importorskip("redis")
    server, run = _servers(request, "redis"), _run()
    return lambda name: f"redis://{server.host}:{server.port}/0?index=s{run}{name}"


def pinecone(request: pytest.FixtureRequest, tmp: Path) -> Factory:
    """The project's emulator of Pinecone's documented API, through the official SDK."""
    pytest.importorskip("pinecone")
    emulator = request.getfixturevalue("pinecone_emulator")
    request.getfixturevalue("monkeypatch").setenv("VEX_PINECONE_API_KEY", "emulator-key")
    run = _run()
    return lambda name: f"pinecone://s{run}-{name}?controller={emulator.url}&create=true"


def cartridge(request: pytest.FixtureRequest, tmp: Path) -> Factory:
    return lambda name: f"cartridge://{tmp}/{name}.db"


def vectorpack(request: pytest.FixtureRequest, tmp: Path) -> Factory:
    return lambda name: f"vectorpack://{tmp}/{name}.vpack"


def sqlite_vec(request: pytest.FixtureRequest, tmp: Path) -> Factory:
    pytest.importorskip("sqlite_vec")
    return lambda name: f"sqlite-vec://{tmp}/vec-{name}.db?table=t_{name}"


def duckdb(request: pytest.FixtureRequest, tmp: Path) -> Factory:
    pytest.importorskip("duckdb")
    return lambda name: f"duckdb://{tmp}/duck-{name}.duckdb?table=t_{name}"


def faiss(request: pytest.FixtureRequest, tmp: Path) -> Factory:
    pytest.importorskip("faiss")
    return lambda name: f"faiss://{tmp}/{name}.faiss"


STORES: dict[str, tuple[Callable[[pytest.FixtureRequest, Path], Factory], str]] = {
    # name: (location factory, the metric the target is changed to)
    "cartridge": (cartridge, "euclidean"),
    "chroma": (chroma_server, "euclidean"),
    "duckdb": (duckdb, "euclidean"),
    "faiss": (faiss, "euclidean"),
    "lancedb": (lancedb, "euclidean"),
    "milvus": (milvus, "euclidean"),
    "pgvector": (pgvector, "euclidean"),
    "pinecone": (pinecone, "euclidean"),
    "qdrant": (qdrant_local, "euclidean"),
    "redis": (redis, "euclidean"),
    "sqlite-vec": (sqlite_vec, "euclidean"),
    "vectorpack": (vectorpack, "euclidean"),
    "qdrant-edge": (qdrant_edge, "euclidean"),
}


def corpus(n: int = 200) -> list[MemoryRecord]:
    """Two namespaces; vector lengths that vary tenfold, so cosine and euclidean (and dot)
    rank differently and a changed metric shows in the figures."""
    rng = np.random.default_rng(5)
    return [MemoryRecord(id=f"m{i}", text=f"memory {i}", namespace=("a", "b")[i % 2],
                         vectors={"": Vector.from_values(
                             (rng.standard_normal(DIMS) * rng.uniform(0.2, 5.0)).astype(np.float32))})
            for i in range(n)]


SLOW = {"qdrant"}
"""qdrant-client's local mode filters payloads in Python: over 10 s a test here."""


@pytest.fixture(params=[pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name
                        for name in sorted(STORES)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Factory, str, Path]:
    factory, changed = STORES[request.param]
    source = write_vmig(tmp_path / "source.vmig.jsonl", corpus(), metric="cosine")
    return factory(request, tmp_path), changed, source


def _search(report: Any) -> SearchCheck:
    found = [c for c in report.checks if isinstance(c, SearchCheck)]
    assert len(found) == 1
    return found[0]


def test_identical_stores_agree(store: tuple[Factory, str, Path]) -> None:
    location, _, source = store
    one, two = location("one"), location("two")
    migrate(source, one)
    migrate(source, two)
    got = _search(verify(two, against=one, search=OPTIONS))
    assert got.ok, got.reasons
    assert got.overlap == 1.0
    assert got.source is not None and got.source.method == got.target.method == "query"
    assert got.source.recall == got.target.recall == 1.0
    assert got.target.records == 200 and got.target.metric == "cosine" and got.metric == "cosine"
    assert got.target.latency_ms is not None and got.probes == 40


def test_a_changed_metric_fails_and_says_why(store: tuple[Factory, str, Path]) -> None:
    location, changed, source = store
    one, other = location("ref"), location("changed")
    migrate(source, one)
    migrate(source, other, metric=changed)  # type: ignore[arg-type]
    report = verify(other, against=one, search=OPTIONS)
    got = _search(report)
    if got.target.searches_by == "cosine":  # vex search on a cartridge or pack: cosine whatever it records
        assert got.ok and got.overlap == 1.0 and got.target.metric == changed
        assert f"the target declares {changed}, but its query API ranks by cosine" in got.notes
        alone = _search(verify(other, search=OPTIONS))
        assert not alone.ok and alone.metric == changed
        assert f"the target searches by cosine, the exact search by {changed}" in alone.reasons
        return
    assert not got.ok and not report.ok
    assert got.overlap is not None and got.overlap < 0.85
    assert got.target.metric == changed
    why = f"the source searches by cosine, the target by {changed}"
    assert any(why in r for r in got.reasons), got.reasons
    # the target alone: its own index against exact search by its own metric is fine
    alone = _search(verify(other, search=OPTIONS))
    assert alone.ok and alone.metric == changed and alone.target.recall == 1.0

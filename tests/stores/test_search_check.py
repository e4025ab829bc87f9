"""``verify --search`` on every store with a query API, through each store's own query code
(namespaces in one collection, and held as separate collections or tenants where the store can):
two stores filled alike agree (overlap@k 1.0, recall 1.0 at this size), a target whose metric was
changed on purpose fails the threshold and names both metrics, and after ``--adapter`` rewrote the
vectors the target's own search is judged instead of the overlap."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
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
CHANGED = "euclidean"
"""The metric a target is created with on purpose (the source's is cosine)."""
OPTIONS = SearchOptions(k=10, probes=40, seed=11)

Factory = Callable[[str], str]


@dataclass(frozen=True)
class Store:
    """How to make a fresh location ``{name}`` of one store: the Python module it needs, the
    test server or emulator it runs on (its address fills ``{host}``/``{port}``, an emulator's
    ``{url}``, ``{http_port}``, ``{grpc_port}``), and the URL."""

    module: str | None
    url: str
    server: str | None = None
    emulator: str | None = None
    slow: bool = False


_PINECONE = "pinecone://s{run}-{name}?controller={url}&create=true"
_WEAVIATE = "weaviate://127.0.0.1:{http_port}/S{run}{name}?grpc_port={grpc_port}"
STORES: dict[str, Store] = {
    "cartridge": Store(None, "cartridge://{tmp}/{name}.db"),
    "chroma": Store("chromadb", "chroma://{host}:{port}/s{run}-{name}", server="chroma"),
    "chroma-collections": Store("chromadb", "chroma://{host}:{port}/s{run}-{name}?namespaces=collections",
                                server="chroma"),
    "duckdb": Store("duckdb", "duckdb://{tmp}/duck-{name}.duckdb?table=t_{name}"),
    "faiss": Store("faiss", "faiss://{tmp}/{name}.faiss"),
    "lancedb": Store("lancedb", "lancedb://{tmp}/lance-{name}?table=t_{name}"),
    "milvus": Store("pymilvus", "milvus://{host}:{port}/s{run}_{name}", server="milvus"),
    "milvus-collections": Store("pymilvus", "milvus://{host}:{port}/s{run}_{name}?namespaces=collections",
                                server="milvus"),
    "pgvector": Store("psycopg", "pgvector://{host}:{port}/postgres?table=s_{run}_{name}&user=postgres",
                      server="postgres"),
    "pinecone": Store("pinecone", _PINECONE, emulator="pinecone"),
    # qdrant-client's local mode filters payloads in Python: over 10 s a test here
    "qdrant": Store("qdrant_client", "qdrant://{tmp}/qdrant-{name}?collection=c-{name}", slow=True),
    "qdrant-collections": Store("qdrant_client",
                                "qdrant://{tmp}/qdrantc-{name}?collection=c-{name}&namespaces=collections",
                                slow=True),
    "qdrant-edge": Store("qdrant_edge", "qdrant-edge://{tmp}/edge-{name}"),
    "redis": Store("redis", "redis://{host}:{port}/0?index=s{run}{name}", server="redis"),
    "sqlite-vec": Store("sqlite_vec", "sqlite-vec://{tmp}/vec-{name}.db?table=t_{name}"),
    "vectorpack": Store(None, "vectorpack://{tmp}/{name}.vpack"),
    "weaviate": Store("weaviate", _WEAVIATE, emulator="weaviate"),
    "weaviate-tenants": Store("weaviate", _WEAVIATE + "&namespaces=tenants", emulator="weaviate"),
}
"""Every store whose connector has ``query``, in each namespace layout it offers."""


def locations(request: pytest.FixtureRequest, tmp: Path, store: Store) -> Factory:
    """The store's location factory; skips when its client or server is missing."""
    if store.module:
        pytest.importorskip(store.module)
    fields: dict[str, Any] = {"tmp": tmp, "run": uuid.uuid4().hex[:8]}
    if store.server:
        server = request.getfixturevalue("store_servers")[store.server]
        fields.update(host=server.host, port=server.port)
    if store.emulator:
        emulator = request.getfixturevalue(f"{store.emulator}_emulator")
        request.getfixturevalue("monkeypatch").setenv(f"VEX_{store.emulator.upper()}_API_KEY",
                                                      emulator.api_key)
        fields.update(url=getattr(emulator, "url", None), http_port=getattr(emulator, "http_port", None),
                      grpc_port=getattr(emulator, "grpc_port", None))
    return lambda name: store.url.format(name=name, **fields)


def corpus(n: int = 200) -> list[MemoryRecord]:
    """Two namespaces; vector lengths that vary tenfold, so cosine and euclidean (and dot)
    rank differently and a changed metric shows in the figures."""
    rng = np.random.default_rng(5)
    return [MemoryRecord(id=f"m{i}", text=f"memory {i}", namespace=("a", "b")[i % 2],
                         vectors={"": Vector.from_values(
                             (rng.standard_normal(DIMS) * rng.uniform(0.2, 5.0)).astype(np.float32))})
            for i in range(n)]


@pytest.fixture(params=[pytest.param(name, marks=pytest.mark.slow) if STORES[name].slow else name
                        for name in sorted(STORES)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Factory, Path]:
    source = write_vmig(tmp_path / "source.vmig.jsonl", corpus(), metric="cosine")
    return locations(request, tmp_path, STORES[request.param]), source


def search(target: str, against: str | Path | None = None) -> SearchCheck:
    """``verify TARGET [--against SOURCE] --search``'s search check."""
    found = [c for c in verify(target, against=against, search=OPTIONS).checks if isinstance(c, SearchCheck)]
    assert len(found) == 1
    return found[0]


def filled(location: Factory, name: str, source: Path, **options: Any) -> str:
    """A fresh location of the store, migrated from ``source``."""
    where = location(name)
    migrate(source, where, **options)
    return where


def test_identical_stores_agree(store: tuple[Factory, Path]) -> None:
    location, source = store
    got = search(filled(location, "two", source), against=filled(location, "one", source))
    assert got.ok, got.reasons
    assert got.overlap == 1.0
    assert got.source is not None and got.source.method == got.target.method == "query"
    assert got.source.recall == got.target.recall == 1.0
    assert got.target.records == 200 and got.target.metric == "cosine" and got.metric == "cosine"
    assert got.target.latency_ms is not None and got.probes == 40


def test_a_changed_metric_fails_and_says_why(store: tuple[Factory, Path]) -> None:
    location, source = store
    other = filled(location, "changed", source, metric=CHANGED)
    got = search(other, against=filled(location, "ref", source))
    alone = search(other)
    assert got.target.metric == CHANGED and alone.metric == CHANGED
    if got.target.searches_by == "cosine":  # vex search on a cartridge or pack: cosine whatever it records
        assert got.ok and got.overlap == 1.0
        assert f"the target declares {CHANGED}, but its query API ranks by cosine" in got.notes
        assert not alone.ok
        assert f"the target searches by cosine, the exact search by {CHANGED}" in alone.reasons
        return
    assert not got.ok
    assert got.overlap is not None and got.overlap < 0.85
    why = f"the source searches by cosine, the target by {CHANGED}"
    assert any(why in r for r in got.reasons), got.reasons
    # the target alone: its own index against exact search by its own metric is fine
    assert alone.ok and alone.target.recall == 1.0


# ---------------------------------------------------------------------------- after --adapter

ADAPTED = ("cartridge", "chroma", "pgvector", "weaviate")
"""Stores the adapter case runs on: an exact one, and three with an HNSW index built over what
was written."""


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real adapter (``vex adapter train`` from pairs): 16 dims into 12 through a fixed linear
    map, which keeps each space's neighbourhoods only roughly (so source and target results
    differ) while the fit itself is near exact."""
    from vexchange.adapters import train_adapter

    root = tmp_path_factory.mktemp("adapter")
    rng = np.random.default_rng(2)
    projection = rng.standard_normal((DIMS, 12))
    with open(root / "pairs.jsonl", "w") as handle:
        for _ in range(600):
            x = rng.standard_normal(DIMS)
            handle.write(json.dumps({"source": x.tolist(), "target": (x @ projection).tolist()}) + "\n")
    card = train_adapter(root / "a.npz", pairs=root / "pairs.jsonl", methods=("ridge",))
    assert card["evaluation"]["mean_cosine"] > 0.99
    return root / "a.npz"


@pytest.mark.parametrize("name", ADAPTED)
def test_after_an_adapter_the_targets_own_search_is_judged(
        name: str, adapter: Path, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    location = locations(request, tmp_path, STORES[name])
    source = write_vmig(tmp_path / "source.vmig.jsonl", corpus(), metric="cosine")
    reference, adapted = filled(location, "ref", source), filled(location, "adapted", source, adapter=adapter)
    got = search(adapted, against=reference)
    assert got.ok, got.reasons
    assert got.overlap is None and got.source is None  # not the question: the vectors differ on purpose
    assert got.target.recall == 1.0 and got.target.dims in (12, None) and got.target.sizes == {"12": 200}
    assert got.metric == "cosine" and got.probes == 40
    assert got.notes[0].startswith("the target's vectors are not the source's (40 of 40 probe records")
    assert "its own stored vectors, with probes sampled from the target" in got.notes[0]
    # without that switch the figures would compare two spaces: the adapter, not the target
    plain = search(adapted)
    assert plain.ok and plain.target.recall == 1.0 and not plain.notes

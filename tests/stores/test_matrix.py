"""Every pair of connectors: source file -> A -> B -> file, and `verify` passes for each.

The dataset is what every store here can hold (one vector per record, no record without a
vector, the "dot" metric so no store normalises), with every metadata type, unicode, long
text, missing text and namespaces. For each A the data is loaded once, then copied into
every other B; each B is exported and verified against the original file and against A.
Pinecone and Weaviate run against the project's emulators of their APIs (none runs here).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vexchange import migrate, verify
from vexchange.testing.conformance import read_all, write_vmig
from vexchange.testing.records import sample_records

STORES = ("vektor", "chroma", "qdrant", "qdrant-edge", "pgvector", "lancedb", "milvus", "redis",
          "pinecone", "weaviate")
_MODULES = {"chroma": "chromadb", "qdrant": "qdrant_client", "qdrant-edge": "qdrant_edge",
            "pgvector": "psycopg", "lancedb": "lancedb", "milvus": "pymilvus", "redis": "redis",
            "pinecone": "pinecone", "weaviate": "weaviate"}


def locations(tmp_path: Path, servers: Any, pinecone: Any,
              weaviate: Any) -> dict[str, Callable[[str], str]]:
    run = uuid.uuid4().hex[:6]

    def server(kind: str) -> Any:
        return servers[kind]

    return {
        "vektor": lambda n: f"vektor://{tmp_path}/{n}.db",
        "chroma": lambda n: f"chroma://{tmp_path}/chroma-{n}?collection=c-{n}",
        "qdrant": lambda n: f"qdrant://{tmp_path}/qdrant-{n}?collection={n}",
        "qdrant-edge": lambda n: f"qdrant-edge://{tmp_path}/edge-{n}",
        "pgvector": lambda n: (f"pgvector://{server('postgres').host}:{server('postgres').port}"
                               f"/postgres?table=m{run}_{n.replace('-', '_')}"),
        "lancedb": lambda n: f"lancedb://{tmp_path}/lance?table={n}",
        "milvus": lambda n: (f"milvus://{server('milvus').host}:{server('milvus').port}"
                             f"/m{run}_{n.replace('-', '_')}"),
        "redis": lambda n: (f"redis://{server('redis').host}:{server('redis').port}/0"
                            f"?index=m{run}{n}"),
        "pinecone": lambda n: (f"pinecone://m{run}-{n}?controller={pinecone.url}&create=true"
                               f"&blobs={tmp_path}/blobs"),
        "weaviate": lambda n: (f"weaviate://127.0.0.1:{weaviate.http_port}/M{run}_{n.replace('-', '_')}"
                               f"?grpc_port={weaviate.grpc_port}"),
    }


@pytest.mark.parametrize("first", STORES)
def test_every_pair_moves_the_data_unchanged(first: str, tmp_path: Path, store_servers: Any,
                                             pinecone_emulator: Any, weaviate_emulator: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for kind in STORES:
        if kind in _MODULES:
            pytest.importorskip(_MODULES[kind])
    monkeypatch.setenv("VEX_PINECONE_API_KEY", pinecone_emulator.api_key)
    monkeypatch.setenv("VEX_WEAVIATE_API_KEY", weaviate_emulator.api_key)
    records = list(sample_records(25, dims=8, null_vectors=False, seed=5, sparse=True))
    source = write_vmig(tmp_path / "source.vmig.jsonl", records, metric="dot")
    where = locations(tmp_path, store_servers, pinecone_emulator, weaviate_emulator)
    a = where[first](f"a-{first}")
    receipt = migrate(source, a, receipt=tmp_path / "a.json", rejects=tmp_path / "a.rejects.jsonl")
    assert receipt.counts.written == len(records), (first, receipt.counts)
    failures = []
    for second in STORES:
        if second == first:
            continue
        b = where[second](f"b-{first}-{second}")
        out = tmp_path / f"{first}-{second}.vmig.jsonl"
        migrate(a, b, receipt=tmp_path / f"{second}.json", rejects=tmp_path / f"{second}.rej.jsonl")
        migrate(b, out, receipt=tmp_path / f"{second}.out.json",
                rejects=tmp_path / f"{second}.out.rej.jsonl")
        report = verify(out, against=source)
        if not report["ok"]:
            failures.append((second, report["checks"]))
            continue
        back = verify(b, against=a)
        if not back["ok"]:
            failures.append((second, back["checks"]))
        assert len(read_all(out)) == len(records)
    assert not failures, failures


CHAIN = ("vektor", "cartridge", "vectorpack", "mg", "chroma", "qdrant", "qdrant-edge", "pgvector",
         "lancedb", "milvus", "redis", "pinecone", "weaviate")


def _file_locations(tmp_path: Path) -> dict[str, Callable[[str], str]]:
    return {"cartridge": lambda n: f"cartridge://{tmp_path}/{n}.db",
            "vectorpack": lambda n: f"{tmp_path}/{n}.vpack",
            "mg": lambda n: f"{tmp_path}/{n}.mg"}


def _refusals() -> dict[str, dict[str, str]]:
    """What each store's conformance class declares it refuses of the corpus (its docs page
    says why): the only records allowed to drop out of the chain. Pinecone's location here has
    a blob directory (``blobs=``), which holds what its metadata limit refuses otherwise."""
    from .test_weaviate import TestWeaviate

    return {"weaviate": dict(TestWeaviate.tricky_refused)}


def test_the_tricky_corpus_survives_a_chain_through_every_store(
        tmp_path: Path, store_servers: Any, pinecone_emulator: Any, weaviate_emulator: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """file -> VEKTOR -> cartridge -> VectorPack -> .mg -> Chroma -> Qdrant -> Qdrant Edge ->
    pgvector -> LanceDB -> Milvus -> Redis -> Pinecone -> Weaviate -> file: the corpus every one
    of them can hold (one vector per record, every record with one, each id in one namespace,
    the dot metric so no store normalises) comes out unchanged, JSON types included; a record
    leaves the chain only where a store's conformance class declares the refusal."""
    from vexchange.testing.conformance import ConnectorConformance
    from vexchange.testing.tricky import tricky_records

    for kind in CHAIN:
        if kind in _MODULES:
            pytest.importorskip(_MODULES[kind])
    monkeypatch.setenv("VEX_PINECONE_API_KEY", pinecone_emulator.api_key)
    monkeypatch.setenv("VEX_WEAVIATE_API_KEY", weaviate_emulator.api_key)
    seen: set[str] = set()
    corpus = []
    for record in tricky_records(dims=8, null_vectors=False):
        if record.id not in seen:  # stores that hold one record per id refuse the twins
            seen.add(record.id)
            corpus.append(record)
    where = {**locations(tmp_path, store_servers, pinecone_emulator, weaviate_emulator),
             **_file_locations(tmp_path)}
    refusals = _refusals()
    previous: str = str(write_vmig(tmp_path / "source.vmig.jsonl", corpus, metric="dot"))
    expected = corpus
    for hop, kind in enumerate(CHAIN):
        here = where[kind](f"chain-{hop}")
        receipt = migrate(previous, here, receipt=tmp_path / f"{hop}.json",
                          rejects=tmp_path / f"{hop}.rejects.jsonl")
        allowed = refusals.get(kind, {})
        dropped = [r for r in expected if r.id in allowed]
        assert receipt.counts.skipped == dict(Counter(allowed[r.id] for r in dropped)), (
            kind, receipt.counts)
        expected = [r for r in expected if r.id not in allowed]
        previous = here
    out = tmp_path / "chain-end.vmig.jsonl"
    migrate(previous, out, receipt=tmp_path / "end.json", rejects=tmp_path / "end.rejects.jsonl")
    ConnectorConformance.assert_strictly_same(expected, read_all(out))

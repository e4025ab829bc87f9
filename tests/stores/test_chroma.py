"""Chroma 1.x, embedded and as a real `chroma run` server, through the conformance suite."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from vexchange.testing.conformance import ConnectorConformance, NativeRow

pytest.importorskip("chromadb")


def chroma_rows(location: str) -> list[NativeRow]:
    """Every row of the collection(s) at a location, through chromadb itself."""
    import urllib.parse

    import chromadb
    import numpy as np

    parts = urllib.parse.urlsplit(location)
    params = dict(urllib.parse.parse_qsl(parts.query))
    if parts.port:
        client: Any = chromadb.HttpClient(host=parts.hostname, port=parts.port)
        names = [parts.path.strip("/")]
    else:
        client = chromadb.PersistentClient(path=parts.path)
        names = [params.get("collection", "memories")]
    if params.get("namespaces") == "collections":
        names = [c.name for c in client.list_collections()]
    rows: list[NativeRow] = []
    for name in names:
        got = client.get_collection(name, embedding_function=None).get(
            include=["documents", "embeddings"])
        for doc, emb in zip(got["documents"], got["embeddings"]):
            rows.append(NativeRow(doc, np.asarray(emb, dtype="<f4").tobytes()))
    return rows


class _ChromaNative:
    @pytest.fixture
    def native_rows(self) -> Any:
        return chroma_rows


class TestChromaEmbedded(_ChromaNative, ConnectorConformance):
    named_vectors = ()
    null_vectors = False

    @pytest.fixture
    def new_location(self, tmp_path: Path) -> Any:
        return lambda name: f"chroma://{tmp_path}/chroma-{name}?collection=c-{name}"

    @pytest.fixture
    def broken_location(self, tmp_path: Path) -> str:
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("a file where the database directory should be")
        return f"chroma://{blocker}?collection=memories"


class TestChromaServer(_ChromaNative, ConnectorConformance):
    named_vectors = ()
    null_vectors = False
    bulk = 3000

    @pytest.fixture
    def new_location(self, store_servers: Any) -> Any:
        server = store_servers["chroma"]
        run = uuid.uuid4().hex[:10]
        return lambda name: f"chroma://{server.host}:{server.port}/t{run}-{name}"

    @pytest.fixture
    def broken_location(self) -> str:
        from vexchange.testing.servers import free_port

        return f"chroma://127.0.0.1:{free_port()}/memories"


class TestChromaCollectionPerNamespace(_ChromaNative, ConnectorConformance):
    named_vectors = ()
    null_vectors = False
    same_id_in_namespaces = True
    bulk = 2000

    @pytest.fixture
    def new_location(self, tmp_path: Path) -> Any:
        return lambda name: f"chroma://{tmp_path}/chroma-{name}?collection=c-{name}&namespaces=collections"

    @pytest.fixture
    def broken_location(self) -> str:
        from vexchange.testing.servers import free_port

        return f"chroma://127.0.0.1:{free_port()}/memories?namespaces=collections"

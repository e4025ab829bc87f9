"""Qdrant through qdrant-client's local mode (the same client calls as a server). A Qdrant
server cannot run here; the server path differs only in how the client is built."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vexchange.testing.conformance import ConnectorConformance

pytest.importorskip("qdrant_client")


class TestQdrantLocal(ConnectorConformance):
    bulk = 3000

    @pytest.fixture
    def new_location(self, tmp_path: Path) -> Any:
        return lambda name: f"qdrant://{tmp_path}/qdrant-{name}?collection=c-{name}"

    @pytest.fixture
    def broken_location(self) -> str:
        from vexchange.testing.servers import free_port

        return f"qdrant://127.0.0.1:{free_port()}/memories"


class TestQdrantEdge(ConnectorConformance):
    """The real Qdrant engine (segments, WAL, normalising cosine vectors), in-process."""

    expect_normalised = True

    @pytest.fixture
    def new_location(self, tmp_path: Path) -> Any:
        pytest.importorskip("qdrant_edge")
        return lambda name: f"qdrant-edge://{tmp_path}/edge-{name}"

    @pytest.fixture
    def broken_location(self, tmp_path: Path) -> str:
        (tmp_path / "not-a-shard").mkdir()
        (tmp_path / "not-a-shard" / "stray.txt").write_text("not a shard")
        return f"qdrant-edge://{tmp_path}/not-a-shard"


class TestQdrantCollectionPerNamespace(ConnectorConformance):
    """?namespaces=collections: each namespace in its own collection."""

    same_id_in_namespaces = True
    bulk = 2000

    @pytest.fixture
    def new_location(self, tmp_path: Path) -> Any:
        return lambda name: f"qdrant://{tmp_path}/qdrant-{name}?collection=c{name}&namespaces=collections"

    @pytest.fixture
    def broken_location(self) -> str:
        from vexchange.testing.servers import free_port

        return f"qdrant://127.0.0.1:{free_port()}/memories?namespaces=collections"

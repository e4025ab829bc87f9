"""Milvus: the Milvus Lite 2.5.1 C++ engine (knowhere), as a TCP server for the session."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from vexchange.testing.conformance import ConnectorConformance

pytest.importorskip("pymilvus")


class TestMilvus(ConnectorConformance):
    null_vectors = False

    @pytest.fixture
    def new_location(self, store_servers: Any) -> Any:
        server = store_servers["milvus"]
        run = uuid.uuid4().hex[:8]
        return lambda name: f"milvus://{server.host}:{server.port}/c{run}_{name}"

    @pytest.fixture
    def broken_location(self) -> str:
        from vexchange.testing.servers import free_port

        return f"milvus://127.0.0.1:{free_port()}/memories"


class TestMilvusCollectionPerNamespace(ConnectorConformance):
    null_vectors = False
    same_id_in_namespaces = True
    bulk = 2000

    @pytest.fixture
    def new_location(self, store_servers: Any) -> Any:
        server = store_servers["milvus"]
        run = uuid.uuid4().hex[:8]
        return lambda name: (f"milvus://{server.host}:{server.port}/c{run}_{name}"
                             "?namespaces=collections")

    @pytest.fixture
    def broken_location(self) -> str:
        from vexchange.testing.servers import free_port

        return f"milvus://127.0.0.1:{free_port()}/memories?namespaces=collections"


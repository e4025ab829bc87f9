"""Chroma 1.x, embedded and as a real `chroma run` server, through the conformance suite."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from vexchange.testing.conformance import ConnectorConformance

pytest.importorskip("chromadb")


class TestChromaEmbedded(ConnectorConformance):
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


class TestChromaServer(ConnectorConformance):
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


class TestChromaCollectionPerNamespace(ConnectorConformance):
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

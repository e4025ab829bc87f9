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


def test_http_statuses_decide_what_is_retried() -> None:
    """The server path's error handling (no Qdrant server runs here): 429 and 5xx are retried,
    401/403 name the API key, other 4xx name the schema."""
    import httpx
    from qdrant_client.http.exceptions import UnexpectedResponse

    from vexchange.connectors.qdrant import QdrantConnector
    from vexchange.errors import PermanentError, TransientError
    from vexchange.spec import StoreSpec

    store = QdrantConnector(StoreSpec.parse("qdrant://qdrant.example:6333/memories"))

    def failing(status: int) -> Exception:
        with pytest.raises((TransientError, PermanentError)) as caught:
            with store.translated("upsert"):
                raise UnexpectedResponse(status, "reason", b"{}", httpx.Headers())
        return caught.value

    assert isinstance(failing(429), TransientError) and isinstance(failing(503), TransientError)
    assert "VEX_QDRANT_API_KEY" in str(failing(401))
    assert "schema" in str(failing(400))

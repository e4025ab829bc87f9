"""Redis 8 with the RediSearch module, a real server started for the session."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from vexchange.testing.conformance import ConnectorConformance

pytest.importorskip("redis")


class TestRedis(ConnectorConformance):
    @pytest.fixture
    def new_location(self, store_servers: Any) -> Any:
        server = store_servers["redis"]
        run = uuid.uuid4().hex[:8]
        return lambda name: f"redis://{server.host}:{server.port}/0?index=i{run}{name}"

    @pytest.fixture
    def broken_location(self) -> str:
        from vexchange.testing.servers import free_port

        return f"redis://127.0.0.1:{free_port()}/0?index=memories"

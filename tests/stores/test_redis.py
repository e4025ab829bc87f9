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


def test_wrong_password_is_a_clear_error_and_never_written_down(tmp_path: Any) -> None:
    import json

    from vexchange import VexError, migrate
    from vexchange.testing import servers
    from vexchange.testing.conformance import read_all, write_vmig
    from vexchange.testing.records import sample_records

    server = servers.start("redis", tmp_path, password="right-secret")
    try:
        url = f"redis://{server.host}:{server.port}/0?index=auth"
        source = write_vmig(tmp_path / "s.vmig.jsonl", list(sample_records(3)))
        with pytest.raises(VexError) as caught:
            migrate(source, url, target_secrets={"password": "wrong-secret"},
                    receipt=tmp_path / "r.json", rejects=tmp_path / "r.rej")
        assert "password" in str(caught.value).lower()
        with pytest.raises(VexError):
            read_all(url)
        receipt = migrate(source, url, target_secrets={"password": "right-secret"},
                          receipt=tmp_path / "ok.json", rejects=tmp_path / "ok.rej")
        assert receipt.counts.written == 3
        for path in tmp_path.rglob("*.json"):
            assert "secret" not in path.read_text(), path
        assert json.loads((tmp_path / "ok.json").read_text())["target"]["location"].endswith("#auth")
    finally:
        server.stop()

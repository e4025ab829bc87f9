"""Redis 8 with the RediSearch module, a real server started for the session."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from vexchange.testing.conformance import ConnectorConformance, NativeRow

pytest.importorskip("redis")


def redis_rows(location: str) -> list[NativeRow]:
    """Every hash under the index's prefix, through redis-py: the ``text`` and ``vector``
    fields as stored (the vector is float32 little-endian bytes already)."""
    import urllib.parse

    import redis

    parts = urllib.parse.urlsplit(location)
    params = dict(urllib.parse.parse_qsl(parts.query))
    prefix = params.get("prefix", params["index"] + ":")
    glob = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
    client = redis.Redis(host=parts.hostname or "", port=parts.port or 6379,
                         db=int(parts.path.strip("/") or 0))
    try:
        rows: list[NativeRow] = []
        for key in client.scan_iter(match=glob, count=1000):
            text, vector = client.hmget(key, ["text", "vector"])
            rows.append(NativeRow(None if text is None else text.decode(), vector))
        return rows
    finally:
        client.close()


class TestRedis(ConnectorConformance):
    @pytest.fixture
    def native_rows(self) -> Any:
        return redis_rows

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


def _load(tmp_path: Any, url: str, records: list[Any]) -> Any:
    from vexchange import migrate
    from vexchange.testing.conformance import write_vmig

    source = write_vmig(tmp_path / f"s{len(list(tmp_path.iterdir()))}.vmig.jsonl", records)
    return migrate(source, url, receipt=tmp_path / "r.json", rejects=tmp_path / "r.rej")


def test_a_namespace_is_one_exact_tag(store_servers: Any, tmp_path: Any) -> None:
    """The namespace TAG splits on no ordinary character (a namespace with a comma is one tag)
    and is case-sensitive, so an escaped ``@namespace:{...}`` filter finds exactly its own."""
    import redis
    from redis.commands.search.query import Query

    from vexchange.record import MemoryRecord

    server, run = store_servers["redis"], uuid.uuid4().hex[:8]
    namespaces = ["a,b", "Docs", "docs", "q'\"\\|{}", "名前 空間/α"]  # noqa: RUF001 - non-Latin on purpose
    records = [MemoryRecord(id=f"r{i}", namespace=ns) for i, ns in enumerate(namespaces)]
    _load(tmp_path, f"redis://{server.host}:{server.port}/0?index=tag{run}", records)
    client = redis.Redis(host=server.host, port=server.port)
    try:
        for record in records:
            assert record.namespace is not None
            escaped = "".join(c if c.isalnum() or c == "_" else "\\" + c for c in record.namespace)
            found = client.ft(f"tag{run}").search(
                Query(f"@namespace:{{{escaped}}}").no_content().dialect(2))
            assert [d.id for d in found.docs] == [f"tag{run}:{record.id}"], record.namespace
    finally:
        client.close()


def test_keys_under_the_prefix_that_are_not_records(store_servers: Any, tmp_path: Any) -> None:
    """When the prefix covers vexchange's note of the index (an index named "vexchange", or a
    ?prefix= like this one), the record whose key would overwrite the note is refused as
    id_reserved, and reading skips keys that hold no hash instead of failing."""
    import redis

    from vexchange.record import MemoryRecord
    from vexchange.testing.conformance import read_all

    server, run = store_servers["redis"], uuid.uuid4().hex[:8]
    url = f"redis://{server.host}:{server.port}/0?index=n{run}x&prefix=vexchange:index:n{run}"
    records = [MemoryRecord(id="x", text="would overwrite the note"),
               MemoryRecord(id="kept", text="kept")]
    receipt = _load(tmp_path, url, records)
    assert receipt.counts.written == 1 and receipt.counts.skipped == {"id_reserved": 1}
    client = redis.Redis(host=server.host, port=server.port)
    try:
        client.set(f"vexchange:index:n{run}-a-string", "another tool's value")
        assert list(read_all(url)) == [(None, "kept")]
        again = _load(tmp_path, url, records)
        assert again.counts.written == 1 and again.counts.skipped == {"id_reserved": 1}
    finally:
        client.delete(f"vexchange:index:n{run}-a-string")
        client.close()

"""Milvus: the Milvus Lite 2.5.1 C++ engine (knowhere), as a TCP server for the session."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from vexchange.testing.conformance import ConnectorConformance, read_all

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




def test_pymilvus_public_insert_and_upsert_as_the_fallback(
        tmp_path: Path, store_servers: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The connector builds its own column requests; with another pymilvus it falls back to the
    public insert and upsert, which must write the same records."""
    from vexchange.connectors import milvus

    monkeypatch.setattr(milvus._ColumnSender, "for_client", classmethod(lambda cls, client: False))
    server, run = store_servers["milvus"], uuid.uuid4().hex[:8]
    suite = TestMilvus()
    location = lambda name: f"milvus://{server.host}:{server.port}/f{run}_{name}"  # noqa: E731
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    suite.test_round_trip_is_exact(tmp_path / "a", location)
    suite.test_rerun_writes_no_duplicates(tmp_path / "b", location)  # insert, then upsert


def test_a_server_that_stops_answering_mid_write_is_retried(
        tmp_path: Path, store_servers: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The connector's own requests fail as gRPC errors, not pymilvus's: an unreachable server
    must still be a transient error (retried, counted), never a traceback."""
    import grpc
    from pymilvus.grpc_gen import milvus_pb2_grpc

    from vexchange.connectors import milvus
    from vexchange.testing.servers import free_port

    dead = milvus_pb2_grpc.MilvusServiceStub(grpc.insecure_channel(f"127.0.0.1:{free_port()}"))
    real = milvus._ColumnSender.for_client

    def first_insert_unreachable(cls: Any, client: Any) -> Any:
        sender = real(client)
        live, failed = sender.calls[False], []

        def insert(*args: Any, **kwargs: Any) -> Any:
            if not failed:
                failed.append(True)
                return dead.Insert(*args, **kwargs)
            return live(*args, **kwargs)

        sender.calls[False] = insert
        return sender

    monkeypatch.setattr(milvus._ColumnSender, "for_client", classmethod(first_insert_unreachable))
    server, run = store_servers["milvus"], uuid.uuid4().hex[:8]
    suite = TestMilvus()
    records = suite.records(12)
    target = f"milvus://{server.host}:{server.port}/g{run}"
    receipt = suite.load(tmp_path, target, records, batch_size=5)
    assert receipt.retries == 1 and receipt.counts.written == 12, receipt
    suite.assert_same(records, read_all(target))

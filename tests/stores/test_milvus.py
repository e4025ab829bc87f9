"""Milvus: the Milvus Lite 2.5.1 C++ engine (knowhere), as a TCP server for the session."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from vexchange.testing.conformance import ConnectorConformance, NativeRow, read_all

pytest.importorskip("pymilvus")


def milvus_rows(location: str) -> list[NativeRow]:
    """Every row of the collection(s) at a location, through pymilvus's MilvusClient: the text
    is the ``text`` array's pieces joined ([] for no text), the vector the ``vector`` field."""
    import urllib.parse

    import numpy as np
    from pymilvus import MilvusClient

    parts = urllib.parse.urlsplit(location)
    params = dict(urllib.parse.parse_qsl(parts.query))
    base = parts.path.strip("/")
    client = MilvusClient(uri=f"http://{parts.hostname}:{parts.port}")
    try:
        names = [base]
        if params.get("namespaces") == "collections":
            names = [n for n in client.list_collections() if n == base or n.startswith(base + "__")]
        rows: list[NativeRow] = []
        for name in names:
            pages = client.query_iterator(name, batch_size=500, filter="",
                                          output_fields=["text", "vector"])
            while batch := pages.next():
                for row in batch:
                    rows.append(NativeRow("".join(row["text"]) if row["text"] else None,
                                          np.asarray(row["vector"], dtype="<f4").tobytes()))
            pages.close()
        return rows
    finally:
        client.close()


class _MilvusNative:
    @pytest.fixture
    def native_rows(self) -> Any:
        return milvus_rows


class TestMilvus(_MilvusNative, ConnectorConformance):
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


class TestMilvusCollectionPerNamespace(_MilvusNative, ConnectorConformance):
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


def test_ids_with_quotes_backslashes_and_line_breaks_are_updated_in_place(
        tmp_path: Path, store_servers: Any) -> None:
    """Such ids used to fail an update ("internal error": Milvus Lite's upsert puts the key
    into an expression unescaped) or, for a tab or a line break, be looked up with JSON escapes
    Milvus does not decode, so a rerun added the row again. They are kept under a hex key, the
    id itself in vex; reading pages past them one by one."""
    from vexchange.testing.tricky import strict_form

    server, run = store_servers["milvus"], uuid.uuid4().hex[:8]
    suite = TestMilvus()
    ids = ["O'Brien", 'say "hi"', "back\\slash", "line\nbreak", "cr\rhere", "tab\there",
           "vex-hex:41", "A", "plain"]
    base = suite.records(len(ids))
    records = [r.replace(id=rid, id_type="str") for r, rid in zip(base, ids, strict=False)]
    target = f"milvus://{server.host}:{server.port}/q{run}"
    suite.load(tmp_path, target, records, batch_size=4)
    changed = [r.replace(text=f"changed {r.id}") for r in records]
    receipt = suite.load(tmp_path, target, changed, batch_size=4)
    assert receipt.counts.written == len(ids) and not receipt.counts.skipped, receipt.counts
    back = read_all(target, batch_size=1)
    assert {k: strict_form(v) for k, v in back.items()} == {
        (r.namespace, r.id): strict_form(r) for r in changed}
    assert len(milvus_rows(target)) == len(ids)  # updated, not added


def test_a_foreign_collection_with_quoted_keys_is_read_in_pages(store_servers: Any) -> None:
    """Paging puts the last key into ``id > '...'``: quotes and backslashes are escaped the way
    Milvus decodes them; a key with a line break, which no filter can spell, is a clear error."""
    from pymilvus import DataType, MilvusClient

    from vexchange.errors import VexError

    server, name = store_servers["milvus"], f"foreign{uuid.uuid4().hex[:8]}"
    client = MilvusClient(uri=f"http://{server.host}:{server.port}")
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("pk", DataType.VARCHAR, max_length=200, is_primary=True)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=2)
    index = MilvusClient.prepare_index_params()
    index.add_index("embedding", index_type="AUTOINDEX", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=index)
    keys = ["O'Brien", "a\\b", 'q"x', "tab\tx", "\\'", "é"]
    client.insert(name, [{"pk": k, "embedding": [1.0, 2.0], "lang": "en"} for k in keys])
    try:
        url = f"milvus://{server.host}:{server.port}/{name}"
        got = read_all(url, batch_size=1)
        assert sorted(i for _, i in got) == sorted(keys)
        client.insert(name, [{"pk": "line\nbreak", "embedding": [1.0, 2.0]}])
        with pytest.raises(VexError, match="line break"):
            read_all(url, batch_size=1)
    finally:
        client.drop_collection(name)
        client.close()


def test_ids_beyond_the_key_length_are_refused_by_name(tmp_path: Path, store_servers: Any) -> None:
    """The VARCHAR primary key holds 65,535 bytes: an id that long lands (and is updated in
    place), a longer one is refused as id_too_long, as is one kept in hex that becomes longer."""
    import orjson

    server, run = store_servers["milvus"], uuid.uuid4().hex[:8]
    suite = TestMilvus()
    base = suite.records(3)
    records = [base[0].replace(id="x" * 65_535, id_type="str"),
               base[1].replace(id="y" * 65_536, id_type="str"),
               base[2].replace(id="'" + "z" * 40_000, id_type="str")]
    target = f"milvus://{server.host}:{server.port}/l{run}"
    for _ in range(2):
        receipt = suite.load(tmp_path, target, records)
        assert receipt.counts.written == 1 and receipt.counts.skipped == {"id_too_long": 2}
    rejects = [orjson.loads(line) for line in (tmp_path / "load.rejects.jsonl").read_bytes().splitlines()]
    assert {r["id"][:1] for r in rejects} == {"y", "'"} and "hex" in rejects[-1]["detail"]
    suite.assert_same(records[:1], read_all(target))

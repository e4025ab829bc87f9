"""Weaviate, through weaviate-client v4 (REST schema, gRPC objects), against the project's
emulator of the API that client uses (no Weaviate runs here): the conformance suite in both
namespace modes, injected faults, and collections vexchange did not create."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("weaviate")

from vexchange import VexError, migrate
from vexchange.testing.conformance import (
    ConnectorConformance,
    NativeRow,
    read_all,
    write_vmig,
)
from vexchange.testing.emulators.weaviate import WeaviateEmulator
from vexchange.testing.faults import FaultConformance
from vexchange.testing.records import sample_records


@pytest.fixture
def emulator(weaviate_emulator: WeaviateEmulator, monkeypatch: pytest.MonkeyPatch,
             ) -> Iterator[WeaviateEmulator]:
    monkeypatch.setenv("VEX_WEAVIATE_API_KEY", weaviate_emulator.api_key)
    weaviate_emulator.faults.clear()
    yield weaviate_emulator
    weaviate_emulator.faults.clear()


def collection_url(emulator: WeaviateEmulator, name: str, **params: str) -> str:
    query = {"grpc_port": str(emulator.grpc_port), **params}
    name = "C" + name.replace("-", "_") + uuid.uuid4().hex[:8]
    return (f"weaviate://127.0.0.1:{emulator.http_port}/{name}?"
            + "&".join(f"{k}={v}" for k, v in query.items()))


def weaviate_rows(location: str, api_key: str) -> list[NativeRow]:
    """Every object of the collection at a location, through weaviate-client itself (every
    tenant of a multi-tenant one): its ``text`` property and its ``default`` vector."""
    import urllib.parse

    import numpy as np
    import weaviate
    from weaviate.classes.init import Auth

    parts = urllib.parse.urlsplit(location)
    params = dict(urllib.parse.parse_qsl(parts.query))
    rows: list[NativeRow] = []
    with weaviate.connect_to_custom(
            http_host=str(parts.hostname), http_port=int(parts.port or 8080), http_secure=False,
            grpc_host=str(parts.hostname), grpc_port=int(params["grpc_port"]), grpc_secure=False,
            auth_credentials=Auth.api_key(api_key), skip_init_checks=True) as client:
        collection = client.collections.get(parts.path.strip("/"))
        tenants = (sorted(collection.tenants.get()) if collection.config.get().multi_tenancy_config.enabled
                   else [None])
        for tenant in tenants:
            handle = collection.with_tenant(tenant) if tenant else collection
            for obj in handle.iterator(include_vector=True):
                vector = (obj.vector or {}).get("default")
                rows.append(NativeRow(obj.properties.get("text"),  # type: ignore[arg-type]
                                      None if vector is None else np.asarray(vector, dtype="<f4").tobytes()))
    return rows


class TestWeaviate(ConnectorConformance):
    same_id_in_namespaces = True
    expect_normalised = True

    @pytest.fixture
    def new_location(self, emulator: WeaviateEmulator) -> Any:
        return lambda name: collection_url(emulator, name)

    @pytest.fixture
    def native_rows(self, emulator: WeaviateEmulator) -> Any:
        return lambda location: weaviate_rows(location, emulator.api_key)

    @pytest.fixture
    def broken_location(self) -> str:
        from vexchange.testing.servers import free_port

        return f"weaviate://127.0.0.1:{free_port()}/Gone?grpc_port={free_port()}&timeout=2"


class TestWeaviateTenants(TestWeaviate):
    """Each namespace is a tenant of a multi-tenant collection."""

    @pytest.fixture
    def new_location(self, emulator: WeaviateEmulator) -> Any:
        return lambda name: collection_url(emulator, name, namespaces="tenants")


class TestWeaviateFaults(FaultConformance):
    """RESOURCE_EXHAUSTED with retry-after, INTERNAL, UNAVAILABLE, timeouts, a persistent
    outage, and objects refused one by one (Weaviate's per-object batch errors)."""

    write_op, read_op = "batch", "search"
    persistent_status = 500  # the client itself waits 1, 2, 4 ... s on UNAVAILABLE
    named_vectors = ("title",)

    @pytest.fixture
    def new_location(self, emulator: WeaviateEmulator) -> Any:
        return lambda name, **params: collection_url(emulator, name, **params)

    def store_key(self, record: Any) -> str:
        from vexchange.connectors.weaviate import object_uuid

        return object_uuid(record, tenants=False)


def records(n: int, **options: Any) -> list[Any]:
    return list(sample_records(n, dims=8, named=("title",), sparse=True, **options))


def load(tmp_path: Path, target: str, data: list[Any], **options: Any) -> Any:
    source = write_vmig(tmp_path / f"in-{uuid.uuid4().hex[:6]}.vmig.jsonl", data, metric="dot")
    return migrate(source, target, receipt=tmp_path / "r.json", rejects=tmp_path / "r.rejects.jsonl",
                   **options)


def test_a_key_whose_type_changes_keeps_later_values_exactly(tmp_path: Path,
                                                             emulator: WeaviateEmulator) -> None:
    base = records(4)
    data = [base[0].replace(metadata={"n": 3, "Upper": 1, "tags": ["a"], "big": 2**60}),
            base[1].replace(metadata={"n": "three", "tags": [1, 2], "vector": "x", "id": 5}),
            base[2].replace(metadata={"n": 4.5, "empty": [], "nested": {"a": [1, {"b": None}]}})]
    target = collection_url(emulator, "types")
    assert load(tmp_path, target, data).counts.written == 3
    ConnectorConformance.assert_same(data, read_all(target))


def test_a_collection_vexchange_did_not_create_is_exported_and_never_written(
        tmp_path: Path, emulator: WeaviateEmulator) -> None:
    import weaviate
    from weaviate.classes.config import Configure, DataType, Property
    from weaviate.classes.data import DataObject
    from weaviate.classes.init import Auth

    name = "Foreign" + uuid.uuid4().hex[:8]
    client = weaviate.connect_to_custom(
        http_host="127.0.0.1", http_port=emulator.http_port, http_secure=False,
        grpc_host="127.0.0.1", grpc_port=emulator.grpc_port, grpc_secure=False,
        auth_credentials=Auth.api_key(emulator.api_key), skip_init_checks=True)
    try:
        articles = client.collections.create(
            name, vector_config=[Configure.Vectors.self_provided(name="body"),
                                 Configure.Vectors.self_provided(name="summary")],
            properties=[Property(name="text", data_type=DataType.TEXT),
                        Property(name="year", data_type=DataType.INT),
                        Property(name="scores", data_type=DataType.NUMBER_ARRAY)])
        articles.data.insert_many([
            DataObject(properties={"text": f"article {i}", "year": 2000 + i, "scores": [0.5, i]},
                       uuid=uuid.UUID(int=i + 1), vector={"body": [1.0, float(i)], "summary": [0.0, 1.0]})
            for i in range(130)])
    finally:
        client.close()
    url = f"weaviate://127.0.0.1:{emulator.http_port}/{name}?grpc_port={emulator.grpc_port}"
    back = read_all(url, batch_size=50)
    assert len(back) == 130
    one = back[(None, str(uuid.UUID(int=8)))]
    assert one.text == "article 7" and one.metadata == {"year": 2007, "scores": [0.5, 7.0]}
    assert set(one.vectors) == {"body", "summary"} and one.source_store == "weaviate"
    source = write_vmig(tmp_path / "s.vmig.jsonl", records(2))
    with pytest.raises(VexError) as caught:
        migrate(source, url, receipt=tmp_path / "f.json", rejects=tmp_path / "f.rej")
    assert "not created by vexchange" in str(caught.value)


SHAPES = {"list_of_lists": [[1, 2], [3]], "mixed": [1, "a", True, None, 1.5], "empty_obj": {},
          "deep": {"a": {"b": {"c": {"d": [{"e": None}]}}}}, "objs": [{"k": 1}, {"k": "2"}],
          "i64": 1 << 64, "i_huge": 10**30, "ints_big": [1, 1 << 60], "$dollar": 1, "#hash": 2,
          "": "empty key", "a.b": "dotted", "with space": True, "ключ": "unicode", "UPPER": 3,
          "_id": "reserved", "x" * 232: "too long a name", "ok": [[]], "neg_zero": -0.0}


def test_metadata_weaviate_cannot_hold_as_properties_is_kept_exactly(
        tmp_path: Path, emulator: WeaviateEmulator) -> None:
    """Lists of lists (once a traceback part-way through the run), mixed lists, empty and
    deep objects, integers beyond 2**53, keys that are not GraphQL names: kept in ``_vex``,
    the run completes, and no property is made for any of them."""
    import weaviate
    from weaviate.classes.init import Auth

    data = [r.replace(metadata=dict(SHAPES)) for r in records(2)]
    target = collection_url(emulator, "shapes")
    receipt = load(tmp_path, target, data)
    assert receipt.status == "completed" and receipt.counts.written == 2, receipt.counts
    assert (tmp_path / "r.json").exists()
    ConnectorConformance.assert_strictly_same(data, read_all(target))
    name = target.split("/")[3].split("?")[0]
    with weaviate.connect_to_custom(
            http_host="127.0.0.1", http_port=emulator.http_port, http_secure=False,
            grpc_host="127.0.0.1", grpc_port=emulator.grpc_port, grpc_secure=False,
            auth_credentials=Auth.api_key(emulator.api_key), skip_init_checks=True) as client:
        properties = {p.name for p in client.collections.get(name).config.get().properties}
    assert properties == {"text", "_vex", "namespace", "neg_zero"}, properties


def test_a_key_the_server_refuses_as_a_property_is_kept_in_vex(
        tmp_path: Path, emulator: WeaviateEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server may refuse a property name vexchange thought valid (a reserved word of a
    newer version): the key's values go to ``_vex`` and the records land exactly."""
    original = WeaviateEmulator._property

    def refusing(body: dict[str, Any]) -> dict[str, Any]:
        if body.get("name") == "colour":
            raise ValueError("'colour' is a reserved property name")
        return original(body)

    monkeypatch.setattr(WeaviateEmulator, "_property", staticmethod(refusing))
    data = [r.replace(metadata={"colour": f"c{i}", "size": i}) for i, r in enumerate(records(3))]
    target = collection_url(emulator, "refusedkey")
    receipt = load(tmp_path, target, data)
    assert receipt.counts.written == 3 and receipt.counts.skipped == {}, receipt.counts
    ConnectorConformance.assert_strictly_same(data, read_all(target))


def test_the_emulator_refuses_property_names_weaviate_refuses(emulator: WeaviateEmulator) -> None:
    """Through weaviate-client: names outside /[_A-Za-z][_0-9A-Za-z]{0,230}/ and the
    reserved ``id``, ``_id``, ``_additional`` are refused (422), as by the server."""
    import weaviate
    from weaviate.classes.config import DataType, Property
    from weaviate.classes.init import Auth
    from weaviate.exceptions import UnexpectedStatusCodeError

    name = "Names" + uuid.uuid4().hex[:8]
    with weaviate.connect_to_custom(
            http_host="127.0.0.1", http_port=emulator.http_port, http_secure=False,
            grpc_host="127.0.0.1", grpc_port=emulator.grpc_port, grpc_secure=False,
            auth_credentials=Auth.api_key(emulator.api_key), skip_init_checks=True) as client:
        collection = client.collections.create(name)
        for bad in ("$dollar", "#hash", "a.b", "with space", "ключ", "1st", "id", "_additional",
                    "x" * 232):
            with pytest.raises(UnexpectedStatusCodeError) as caught:
                collection.config.add_property(Property(name=bad, data_type=DataType.TEXT))
            assert caught.value.status_code == 422, bad
        collection.config.add_property(Property(name="_ok_" + "x" * 227, data_type=DataType.TEXT))


def _client(emulator: WeaviateEmulator) -> Any:
    import weaviate
    from weaviate.classes.init import Auth

    return weaviate.connect_to_custom(
        http_host="127.0.0.1", http_port=emulator.http_port, http_secure=False,
        grpc_host="127.0.0.1", grpc_port=emulator.grpc_port, grpc_secure=False,
        auth_credentials=Auth.api_key(emulator.api_key), skip_init_checks=True)


@pytest.mark.parametrize("distance", ["cosine", "dot", "l2-squared", "manhattan"])
def test_near_vector_ranks_by_the_index_distance_as_weaviate_documents(
        emulator: WeaviateEmulator, distance: str) -> None:
    """``query.near_vector`` through weaviate-client: nearest first by the vector index's
    distance (cosine ``1 - cos``, dot ``-a.b``, l2-squared ``sum (a-b)^2``, manhattan ``sum |a-b|``),
    that distance in the metadata, ``certainty = 1 - d/2`` for cosine only, ``distance`` as a
    threshold, a property filter, and the named vector searched."""
    import numpy as np
    from weaviate.classes.config import Configure, DataType, Property, VectorDistances
    from weaviate.classes.data import DataObject
    from weaviate.classes.query import Filter, MetadataQuery
    from weaviate.exceptions import WeaviateQueryError

    rng = np.random.default_rng(3)
    vectors = (rng.standard_normal((60, 6)) * rng.uniform(0.2, 5.0, (60, 1))).astype(np.float32)
    query = rng.standard_normal(6).astype(np.float32)
    with _client(emulator) as client:
        collection = client.collections.create(
            "Near" + uuid.uuid4().hex[:8], properties=[Property(name="group", data_type=DataType.TEXT)],
            vector_config=[Configure.Vectors.self_provided(
                name=n, vector_index_config=Configure.VectorIndex.hnsw(
                    distance_metric=VectorDistances(distance))) for n in ("body", "title")])
        collection.data.insert_many([
            DataObject(properties={"group": "ab"[i % 2]}, uuid=uuid.UUID(int=i + 1),
                       vector={"body": v.tolist(), "title": v[::-1].tolist()})
            for i, v in enumerate(vectors)])
        got = collection.query.near_vector(query.tolist(), limit=7, target_vector="body",
                                           return_metadata=MetadataQuery(distance=True)).objects
        stored = vectors / np.linalg.norm(vectors, axis=1)[:, None] if distance == "cosine" else vectors
        expected = {"cosine": 1 - stored @ (query / np.linalg.norm(query)), "dot": -(stored @ query),
                    "l2-squared": ((stored - query) ** 2).sum(1),
                    "manhattan": np.abs(stored - query).sum(1)}[distance]
        order = np.argsort(expected, kind="stable")[:7]
        assert [o.uuid.int - 1 for o in got] == order.tolist()
        assert [o.metadata.distance for o in got] == pytest.approx(expected[order].tolist(), rel=1e-4,
                                                                   abs=1e-5)
        limit = float(expected[order[3]])
        within = collection.query.near_vector(query.tolist(), distance=limit, limit=50, target_vector="body")
        assert len(within.objects) == 4
        only_a = collection.query.near_vector(query.tolist(), limit=5, target_vector="body",
                                              filters=Filter.by_property("group").equal("a")).objects
        assert [o.uuid.int - 1 for o in only_a] == [int(i) for i in np.argsort(expected, kind="stable")
                                                    if i % 2 == 0][:5]
        if distance == "cosine":
            sure = collection.query.near_vector(query.tolist(), limit=3, target_vector="body",
                                                return_metadata=MetadataQuery(certainty=True)).objects
            assert [o.metadata.certainty for o in sure] == pytest.approx(
                [1 - float(d) / 2 for d in expected[order[:3]]], rel=1e-4)
        else:
            with pytest.raises(WeaviateQueryError, match="certainty"):
                collection.query.near_vector(query.tolist(), target_vector="body",
                                             return_metadata=MetadataQuery(certainty=True))
        with pytest.raises(WeaviateQueryError, match="target vector"):
            collection.query.near_vector(query.tolist())  # two named vectors: which one?
        with pytest.raises(WeaviateQueryError, match="vector lengths don't match"):
            collection.query.near_vector([1.0, 2.0], target_vector="title")
        with pytest.raises(WeaviateQueryError, match="does not implement"):
            collection.query.near_vector(query.tolist(), target_vector="body", auto_limit=2)

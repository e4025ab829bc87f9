"""A Weaviate emulator: the REST schema API and the gRPC data API that ``weaviate-client`` v4
uses, in memory, on loopback.

The gRPC half is served with the client's own generated stubs (``weaviate.proto.v1``), so the
messages are exactly the ones the client sends and parses. It follows Weaviate 1.32's
documented behaviour for what vexchange uses:

* REST: ``GET /v1/meta``, ``/v1/.well-known/ready``, ``GET/POST /v1/schema``,
  ``GET/DELETE /v1/schema/{Class}``, ``POST /v1/schema/{Class}/properties``,
  ``GET/POST/DELETE /v1/schema/{Class}/tenants``; a class comes back with every default the
  server fills in (inverted index, sharding, replication, HNSW settings);
* gRPC: ``Search`` (cursor pagination with ``after``, ids in UUID order; properties with their
  schema types; vectors by name; ``near_vector`` on one target vector by the index's distance,
  exactly, with ``distance``/``certainty`` in the metadata and as thresholds; ``where`` filters
  with AND, OR, NOT and comparisons; parts it does not implement are refused with
  UNIMPLEMENTED), ``BatchObjects`` (per-object errors), ``TenantsGet``,
  ``Aggregate`` (the object count only) and the health check;
* auto-schema: a property the class lacks is added with the type its first value implies
  (numbers arrive as doubles over gRPC and become ``number``); a value that does not fit its
  property's type is a per-object error, as on the server;
* cosine vectors are kept L2-normalised, as the server keeps them;
* ``Authorization: Bearer <key>`` is checked on both halves.

Faults (see :mod:`._http`): REST operations are named ``schema``, ``tenants``, ``meta``;
gRPC ones ``search``, ``batch``, ``tenants_get``, ``aggregate``. On gRPC a 429 becomes RESOURCE_EXHAUSTED
(with a ``retry-after`` trailer when given), 500 INTERNAL, 503 UNAVAILABLE, 504
DEADLINE_EXCEEDED; a ``batch`` fault with ``ids`` fails only those objects, with the fault's
message as their per-object error, the way Weaviate reports a partial batch failure.
"""

from __future__ import annotations

import copy
import re
import struct
import threading
import time
import uuid as uuid_lib
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc
import numpy as np
from google.protobuf.json_format import MessageToDict
from weaviate.proto.v1 import (
    aggregate_pb2,
    base_pb2,
    batch_pb2,
    health_weaviate_pb2,
    properties_pb2,
    search_get_pb2,
    tenants_pb2,
    weaviate_pb2_grpc,
)

from ._http import Answer, Fault, FaultSwitch, JsonServer, Request

__all__ = ["Fault", "WeaviateEmulator"]

VERSION = "1.32.4"
_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,230}")
_GRPC_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
               403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
               422: grpc.StatusCode.INVALID_ARGUMENT, 429: grpc.StatusCode.RESOURCE_EXHAUSTED,
               500: grpc.StatusCode.INTERNAL, 503: grpc.StatusCode.UNAVAILABLE,
               504: grpc.StatusCode.DEADLINE_EXCEEDED}
_HNSW_DEFAULTS: dict[str, Any] = {
    "skip": False, "cleanupIntervalSeconds": 300, "maxConnections": 32, "efConstruction": 128,
    "ef": -1, "dynamicEfMin": 100, "dynamicEfMax": 500, "dynamicEfFactor": 8,
    "vectorCacheMaxObjects": 1000000000000, "flatSearchCutoff": 40000, "distance": "cosine",
    "pq": {"enabled": False, "bitCompression": False, "segments": 0, "centroids": 256,
           "trainingLimit": 100000, "encoder": {"type": "kmeans", "distribution": "log-normal"}},
    "bq": {"enabled": False}, "sq": {"enabled": False, "trainingLimit": 100000, "rescoreLimit": 20},
    "rq": {"enabled": False, "bits": 8, "rescoreLimit": 20},
    "filterStrategy": "sweeping",
    "multivector": {"enabled": False, "aggregation": "maxSim",
                    "muvera": {"enabled": False, "ksim": 4, "dprojections": 16, "repetitions": 10}},
}
_CLASS_DEFAULTS: dict[str, Any] = {
    "description": None,
    "invertedIndexConfig": {"bm25": {"b": 0.75, "k1": 1.2}, "cleanupIntervalSeconds": 60,
                            "stopwords": {"preset": "en", "additions": None, "removals": None},
                            "indexTimestamps": False, "indexNullState": False,
                            "indexPropertyLength": False, "usingBlockMaxWAND": True},
    "multiTenancyConfig": {"enabled": False, "autoTenantCreation": False, "autoTenantActivation": False},
    "replicationConfig": {"factor": 1, "asyncEnabled": False, "deletionStrategy": "NoAutomatedResolution"},
    "shardingConfig": {"virtualPerPhysical": 128, "desiredCount": 1, "actualCount": 1,
                       "desiredVirtualCount": 128, "actualVirtualCount": 128, "key": "_id",
                       "strategy": "hash", "function": "murmur3"},
    "moduleConfig": {},
}
_PROPERTY_DEFAULTS: dict[str, Any] = {"description": None, "indexFilterable": True,
                                      "indexSearchable": True, "indexRangeFilters": False,
                                      "tokenization": "word", "moduleConfig": {}}


@dataclass
class _Object:
    properties: dict[str, Any]
    vectors: dict[str, np.ndarray]
    created: int = field(default_factory=lambda: int(time.time() * 1000))


@dataclass
class _Class:
    schema: dict[str, Any]
    tenants: dict[str, dict[str, _Object]] = field(default_factory=dict)
    """Objects by tenant ("" when the class is not multi-tenant), then by UUID."""

    @property
    def name(self) -> str:
        return str(self.schema["class"])

    @property
    def multi_tenant(self) -> bool:
        return bool(self.schema["multiTenancyConfig"]["enabled"])

    def prop(self, name: str) -> dict[str, Any] | None:
        return next((p for p in self.schema["properties"] if p["name"] == name), None)

    def distance(self, vector: str) -> str:
        config = self.schema.get("vectorConfig") or {}
        if vector in config:
            return str(config[vector]["vectorIndexConfig"]["distance"])
        return str((self.schema.get("vectorIndexConfig") or {}).get("distance", "cosine"))


def _rest_error(status: int, message: str) -> dict[str, Any]:
    return {"error": [{"message": message}]}


class WeaviateEmulator:
    """``WeaviateEmulator(api_key=...)``; connect with ``weaviate.connect_to_custom(http_host=
    "127.0.0.1", http_port=emu.http_port, grpc_port=emu.grpc_port, ...)``."""

    def __init__(self, api_key: str = "emulator-key") -> None:
        self.api_key = api_key
        self.faults = FaultSwitch()
        self.classes: dict[str, _Class] = {}
        self._lock = threading.RLock()
        self.rest = JsonServer(self._route, name_of=self._rest_op, faults=self.faults,
                               error_body=_rest_error, ids_of=lambda op, r: set())
        self.http_port = self.rest.port
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                                options=[("grpc.max_receive_message_length", 104858000)])
        weaviate_pb2_grpc.add_WeaviateServicer_to_server(  # type: ignore[no-untyped-call]
            _Servicer(self), self.grpc)
        self.grpc.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(
                self._health,
                request_deserializer=health_weaviate_pb2.WeaviateHealthCheckRequest.FromString,
                response_serializer=health_weaviate_pb2.WeaviateHealthCheckResponse.SerializeToString)}),))
        self.grpc_port = self.grpc.add_insecure_port("127.0.0.1:0")
        self.grpc.start()

    def __enter__(self) -> WeaviateEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.rest.stop()
        self.grpc.stop(grace=None)

    def objects(self, collection: str) -> int:
        found = self.classes.get(collection)
        return sum(len(t) for t in found.tenants.values()) if found else 0

    def _health(self, request: Any, context: grpc.ServicerContext) -> Any:
        return health_weaviate_pb2.WeaviateHealthCheckResponse(
            status=health_weaviate_pb2.WeaviateHealthCheckResponse.SERVING)

    # ----------------------------------------------------------------------------------- REST

    @staticmethod
    def _rest_op(request: Request) -> str:
        if "/tenants" in request.path:
            return "tenants"
        if request.path.startswith("/v1/schema"):
            return "schema"
        return "meta"

    def _route(self, request: Request) -> tuple[str, Answer]:
        op = self._rest_op(request)
        parts = [p for p in request.path.split("/") if p]
        if parts[:2] == ["v1", ".well-known"]:
            return op, Answer(404 if parts[-1] == "openid-configuration" else 200, {})
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return op, Answer(401, {"code": 401, "message": "anonymous access not enabled, please"
                                    " provide an auth scheme such as OIDC"})
        if parts == ["v1", "meta"]:
            return op, Answer(200, {"hostname": "http://[::]:8080", "version": VERSION,
                                    "modules": {}, "grpcMaxMessageSize": 104858000})
        if parts[:2] != ["v1", "schema"]:
            return op, Answer(404, _rest_error(404, f"no route {request.path}"))
        try:
            with self._lock:
                return op, self._schema(parts, request)
        except ValueError as err:
            return op, Answer(422, _rest_error(422, str(err)))

    def _schema(self, parts: list[str], request: Request) -> Answer:
        if len(parts) == 2:
            if request.method == "POST":
                return self._create(request.json())
            return Answer(200, {"classes": [c.schema for c in self.classes.values()]})
        found = self.classes.get(parts[2])
        if found is None:
            return Answer(404, None)
        if len(parts) == 3:
            if request.method == "DELETE":
                del self.classes[found.name]
                return Answer(200, None)
            return Answer(200, found.schema)
        if parts[3] == "properties" and request.method == "POST":
            return self._add_property(found, request.json())
        if parts[3] == "tenants":
            return self._tenants(found, request)
        return Answer(404, _rest_error(404, f"no route {request.path}"))

    def _create(self, body: dict[str, Any]) -> Answer:
        name = body.get("class")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            return Answer(422, _rest_error(422, f"invalid class name {name!r}"))
        name = name[0].upper() + name[1:]
        if name in self.classes:
            return Answer(422, _rest_error(422, f"class name {name!r} already exists"))
        schema = {**copy.deepcopy(_CLASS_DEFAULTS), **body, "class": name}
        for key in ("invertedIndexConfig", "multiTenancyConfig", "replicationConfig", "shardingConfig"):
            schema[key] = {**_CLASS_DEFAULTS[key], **(body.get(key) or {})}
        schema["properties"] = [self._property(p) for p in body.get("properties") or []]
        vectors = schema.get("vectorConfig") or {}
        for config in vectors.values():
            config.setdefault("vectorizer", {"none": {}})
            config.setdefault("vectorIndexType", "hnsw")
            config["vectorIndexConfig"] = {**copy.deepcopy(_HNSW_DEFAULTS),
                                           **(config.get("vectorIndexConfig") or {})}
        if not vectors:
            schema.setdefault("vectorizer", "none")
            schema.setdefault("vectorIndexType", "hnsw")
            schema["vectorIndexConfig"] = {**copy.deepcopy(_HNSW_DEFAULTS),
                                           **(schema.get("vectorIndexConfig") or {})}
        created = _Class(schema)
        if not created.multi_tenant:
            created.tenants[""] = {}
        self.classes[name] = created
        return Answer(200, schema)

    @staticmethod
    def _property(body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name in ("id", "_id", "_additional"):
            raise ValueError(f"invalid property name {name!r}")
        prop = {**_PROPERTY_DEFAULTS, **body}
        prop["name"] = name[0].lower() + name[1:]  # the server lowercases the first letter
        if prop["dataType"][0] not in ("text", "text[]"):
            prop["tokenization"] = None
            prop["indexSearchable"] = False
        return prop

    def _add_property(self, found: _Class, body: dict[str, Any]) -> Answer:
        prop = self._property(body)
        if found.prop(prop["name"]) is not None:
            return Answer(422, _rest_error(422, f"property {prop['name']!r} already exists"))
        found.schema["properties"].append(prop)
        return Answer(200, prop)

    def _tenants(self, found: _Class, request: Request) -> Answer:
        if not found.multi_tenant:
            return Answer(422, _rest_error(422, f"multi-tenancy is not enabled for class {found.name!r}"))
        if request.method == "GET":
            return Answer(200, [{"name": n, "activityStatus": "HOT"} for n in sorted(found.tenants)])
        body = request.json()
        if request.method == "DELETE":
            for name in body:
                found.tenants.pop(name, None)
            return Answer(200, None)
        for tenant in body:
            name = tenant.get("name")
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9\-_]{1,64}", name):
                return Answer(422, _rest_error(422, f"invalid tenant name {name!r}"))
            found.tenants.setdefault(name, {})
        return Answer(200, body)

    # ----------------------------------------------------------------------------------- gRPC

    def grpc_call(self, op: str, context: grpc.ServicerContext, ids: set[str] | None = None) -> Fault | None:
        """Check auth and apply a fault; returns a per-object fault (a batch with ids)."""
        headers = dict(context.invocation_metadata())
        if headers.get("authorization") != f"Bearer {self.api_key}":
            self.faults.record(op, 401)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid api key")
        fault = self.faults.match(op, ids)
        if fault is None:
            return None
        if fault.ids and op == "batch":
            return fault
        if fault.delay:
            time.sleep(fault.delay)
        if fault.status is None:
            return None
        self.faults.record(op, fault.status)
        if fault.retry_after is not None:
            context.set_trailing_metadata((("retry-after", f"{fault.retry_after:g}"),))
        context.abort(_GRPC_CODES.get(fault.status, grpc.StatusCode.UNKNOWN), fault.message)
        return None  # pragma: no cover - abort raises

    def batch(self, request: Any, context: grpc.ServicerContext) -> Any:
        started = time.monotonic()
        fault = self.grpc_call("batch", context, {o.uuid for o in request.objects})
        errors = []
        with self._lock:
            for index, obj in enumerate(request.objects):
                if fault is not None and obj.uuid in fault.ids:
                    errors.append(batch_pb2.BatchObjectsReply.BatchError(index=index, error=fault.message))
                    continue
                try:
                    self._store(obj)
                except ValueError as err:
                    errors.append(batch_pb2.BatchObjectsReply.BatchError(index=index, error=str(err)))
        self.faults.record("batch", 200)
        return batch_pb2.BatchObjectsReply(took=time.monotonic() - started, errors=errors)

    def _store(self, obj: Any) -> None:
        found = self.classes.get(obj.collection)
        if found is None:
            raise ValueError(f"class {obj.collection!r} not found")
        if found.multi_tenant and obj.tenant not in found.tenants:
            raise ValueError(f"tenant not found: {obj.tenant!r}")
        if not found.multi_tenant and obj.tenant:
            raise ValueError(f"class {found.name} has multi-tenancy disabled, but request was with tenant")
        try:
            key = str(uuid_lib.UUID(obj.uuid))
        except ValueError:
            raise ValueError(f"invalid id {obj.uuid!r}") from None
        properties = self._typed(found, obj.properties)
        vectors: dict[str, np.ndarray] = {}
        config = found.schema.get("vectorConfig") or {}
        if obj.vector_bytes:
            vectors["default" if config else ""] = np.frombuffer(obj.vector_bytes, dtype="<f4").copy()
        for vec in obj.vectors:
            if vec.name not in config:
                raise ValueError(f"target vector {vec.name!r} not found in class {found.name}")
            vectors[vec.name] = np.frombuffer(vec.vector_bytes, dtype="<f4").copy()
        for name, array in vectors.items():
            if found.distance(name) == "cosine" and np.any(array):
                vectors[name] = (array / np.linalg.norm(array)).astype(np.float32)
        found.tenants[obj.tenant if found.multi_tenant else ""][key] = _Object(properties, vectors)

    def _typed(self, found: _Class, props: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        plain = MessageToDict(props.non_ref_properties) if props.HasField("non_ref_properties") else {}
        values: list[tuple[str, Any, str]] = [(k, v, _implied(v)) for k, v in plain.items()]
        values += [(a.prop_name, list(a.values), "text[]") for a in props.text_array_properties]
        values += [(a.prop_name, list(a.values), "int[]") for a in props.int_array_properties]
        values += [(a.prop_name, list(a.values), "boolean[]") for a in props.boolean_array_properties]
        values += [(a.prop_name, list(struct.unpack(f"<{len(a.values_bytes) // 8}d", a.values_bytes))
                    if a.values_bytes else list(a.values), "number[]") for a in props.number_array_properties]
        if props.object_properties or props.object_array_properties:
            raise ValueError("the emulator does not hold object properties")
        for name, value, implied in values:
            if value is None:
                continue
            prop = found.prop(name)
            if prop is None:  # auto-schema
                prop = self._property({"name": name, "dataType": [implied]})
                found.schema["properties"].append(prop)
            out[prop["name"]] = _coerce(found.name, prop, value)
        return out

    def search(self, request: Any, context: grpc.ServicerContext) -> Any:
        started = time.monotonic()
        self.grpc_call("search", context)
        with self._lock:
            found = self.classes.get(request.collection)
            if found is None:
                _abort(context, grpc.StatusCode.NOT_FOUND, f"could not find class {request.collection}")
            if found.multi_tenant and request.tenant not in found.tenants:
                _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                       f"tenant not found: {request.tenant!r}" if request.tenant else
                       "has multi-tenancy enabled, but request was without tenant")
            held = found.tenants[request.tenant if found.multi_tenant else ""]
            _refuse_unsupported(request, context)
            keys = sorted(held, key=lambda k: uuid_lib.UUID(k).int)
            if request.HasField("filters"):
                keys = [k for k in keys if _matches(found, held[k], request.filters, context)]
            if request.HasField("near_vector"):
                results = self._near_vector(found, held, keys, request, context)
            else:
                if request.after:
                    after = uuid_lib.UUID(request.after).int
                    keys = [k for k in keys if uuid_lib.UUID(k).int > after]
                keys = keys[:request.limit or _DEFAULT_LIMIT]
                results = [self._result(found, key, held[key], request) for key in keys]
        self.faults.record("search", 200)
        return search_get_pb2.SearchReply(took=time.monotonic() - started, results=results)

    def _near_vector(self, found: _Class, held: dict[str, _Object], keys: list[str], request: Any,
                     context: grpc.ServicerContext) -> list[Any]:
        """``near_vector``: every object that has the target vector (after the filters), by
        the vector index's distance, nearest first (equal distances in UUID order), then
        ``distance``/``certainty`` thresholds, ``offset`` and ``limit``. The search is exact:
        the emulator has no HNSW graph, so it finds what an exact (flat) index would."""
        near = request.near_vector
        name = _target_vector(found, near, context)
        query = _query_vector(near, context)
        metric = found.distance(name)
        if (near.HasField("certainty") or request.metadata.certainty) and metric != "cosine":
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                   f"can't compute and return certainty when vector index is configured with {metric}"
                   " distance")
        pool = [k for k in keys if name in held[k].vectors]
        for key in pool:
            if held[key].vectors[name].size != query.size:
                _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                       f"vector search: knn search: vector lengths don't match:"
                       f" {held[key].vectors[name].size} vs {query.size}")
        distances = _distances(query, [held[k].vectors[name] for k in pool], metric)
        order = sorted(range(len(pool)), key=lambda i: (float(distances[i]), uuid_lib.UUID(pool[i]).int))
        hits = [(pool[i], float(distances[i])) for i in order]
        if near.HasField("distance"):
            hits = [(k, d) for k, d in hits if d <= near.distance]
        if near.HasField("certainty"):
            hits = [(k, d) for k, d in hits if 1 - d / 2 >= near.certainty]
        hits = hits[request.offset:request.offset + (request.limit or _DEFAULT_LIMIT)]
        results = []
        for key, dist in hits:
            result = self._result(found, key, held[key], request)
            if request.metadata.distance:
                result.metadata.distance, result.metadata.distance_present = dist, True
            if request.metadata.certainty:
                result.metadata.certainty, result.metadata.certainty_present = 1 - dist / 2, True
            results.append(result)
        return results

    @staticmethod
    def _result(found: _Class, key: str, obj: _Object, request: Any) -> Any:
        wanted = set(request.properties.non_ref_properties)
        every = request.properties.return_all_nonref_properties or not request.HasField("properties")
        fields = {name: _value(found.prop(name), value) for name, value in obj.properties.items()
                  if every or name in wanted}
        meta = search_get_pb2.MetadataResult(id=key, id_as_bytes=uuid_lib.UUID(key).bytes,
                                             creation_time_unix=obj.created,
                                             creation_time_unix_present=True)
        names = list(request.metadata.vectors) or (list(obj.vectors) if request.metadata.vector else [])
        for name in names:
            if name not in obj.vectors:
                continue
            if name == "":
                meta.vector_bytes = obj.vectors[name].astype("<f4").tobytes()
            else:
                meta.vectors.append(base_pb2.Vectors(
                    name=name, vector_bytes=obj.vectors[name].astype("<f4").tobytes(),
                    type=base_pb2.Vectors.VECTOR_TYPE_SINGLE_FP32))
        return search_get_pb2.SearchResult(
            properties=search_get_pb2.PropertiesResult(
                non_ref_props=properties_pb2.Properties(fields=fields), target_collection=found.name),
            metadata=meta)

    def aggregate(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Only the object count (``aggregate.over_all(total_count=True)``)."""
        self.grpc_call("aggregate", context)
        with self._lock:
            found = self.classes.get(request.collection)
            if found is None:
                _abort(context, grpc.StatusCode.NOT_FOUND, f"could not find class {request.collection}")
            held = found.tenants.get(request.tenant if found.multi_tenant else "", {})
            count = len(held)
        self.faults.record("aggregate", 200)
        return aggregate_pb2.AggregateReply(single_result=aggregate_pb2.AggregateReply.Single(
            objects_count=count))

    def tenants_get(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.grpc_call("tenants_get", context)
        with self._lock:
            found = self.classes.get(request.collection)
            if found is None or not found.multi_tenant:
                _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "multi-tenancy is not enabled")
            names = sorted(found.tenants)
        self.faults.record("tenants_get", 200)
        return tenants_pb2.TenantsGetReply(tenants=[
            tenants_pb2.Tenant(name=n, activity_status=tenants_pb2.TENANT_ACTIVITY_STATUS_HOT)
            for n in names])


class _Servicer(weaviate_pb2_grpc.WeaviateServicer):
    def __init__(self, emulator: WeaviateEmulator) -> None:
        self.emulator = emulator

    def Search(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.emulator.search(request, context)

    def BatchObjects(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.emulator.batch(request, context)

    def TenantsGet(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.emulator.tenants_get(request, context)

    def Aggregate(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.emulator.aggregate(request, context)


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    """``context.abort`` raises; said here so that type checkers know it."""
    context.abort(code, message)
    raise AssertionError("grpc context.abort returned")


_DEFAULT_LIMIT = 10
"""Weaviate's ``QUERY_DEFAULTS_LIMIT``: results of a search that gives no limit."""
_UNSUPPORTED = ("group_by", "hybrid_search", "bm25_search", "near_object", "near_text",
                "near_image", "near_audio", "near_video", "near_depth", "near_thermal", "near_imu",
                "generative", "rerank", "boost")


def _refuse_unsupported(request: Any, context: grpc.ServicerContext) -> None:
    """A search part the emulator does not implement is an error, never silently ignored."""
    parts = [name for name in _UNSUPPORTED if request.HasField(name)]
    if request.sort_by:
        parts.append("sort_by")
    if request.autocut:
        parts.append("autocut")
    if parts:
        _abort(context, grpc.StatusCode.UNIMPLEMENTED, f"the Weaviate emulator does not implement {parts}")


def _target_vector(found: _Class, near: Any, context: grpc.ServicerContext) -> str:
    """The named vector a ``near_vector`` searches: the one named, else the class's only
    named vector, else its legacy unnamed vector (``""``)."""
    named = list(near.targets.target_vectors) or list(near.target_vectors)
    config = found.schema.get("vectorConfig") or {}
    if len(named) > 1:
        _abort(context, grpc.StatusCode.UNIMPLEMENTED,
               "the Weaviate emulator searches one target vector at a time")
    if near.HasField("selection") or near.vector_for_targets or near.vector_per_target:
        _abort(context, grpc.StatusCode.UNIMPLEMENTED,
               "the Weaviate emulator takes near_vector with one vector and no diversity selection")
    if named:
        if named[0] not in config:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                   f"target vector {named[0]!r} not found in class {found.name}")
        return str(named[0])
    if len(config) > 1:
        _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
               f"multiple vectors configured for class {found.name}: a target vector must be given")
    return next(iter(config), "")


def _query_vector(near: Any, context: grpc.ServicerContext) -> np.ndarray:
    """The query vector, in whichever field the client's version sends it: ``vectors`` (1.29
    and later), ``vector_bytes`` (before), or the deprecated repeated ``vector``."""
    if near.vectors:
        if len(near.vectors) > 1 or near.vectors[0].type == base_pb2.Vectors.VECTOR_TYPE_MULTI_FP32:
            _abort(context, grpc.StatusCode.UNIMPLEMENTED,
                   "the Weaviate emulator searches with one single vector")
        return np.frombuffer(near.vectors[0].vector_bytes, dtype="<f4")
    if near.vector_bytes:
        return np.frombuffer(near.vector_bytes, dtype="<f4")
    if near.vector:
        return np.asarray(near.vector, dtype=np.float32)
    _abort(context, grpc.StatusCode.UNIMPLEMENTED,
           "the Weaviate emulator takes near_vector with a single vector (not vector_for_targets)")


def _distances(query: np.ndarray, vectors: list[np.ndarray], metric: str) -> np.ndarray:
    """Weaviate's distances (docs: config-refs/distances), in float32 as the server computes
    them: cosine ``1 - cos`` (vectors and query at unit length), dot ``-a.b``, l2-squared
    ``sum((a-b)^2)``, manhattan ``sum|a-b|``, hamming the count of differing dimensions."""
    if not vectors:
        return np.zeros(0, dtype=np.float32)
    matrix = np.stack(vectors).astype(np.float32)
    q = query.astype(np.float32)
    if metric == "cosine":
        norm = float(np.linalg.norm(q))
        unit = q / norm if norm else q
        out: np.ndarray = 1 - matrix @ unit
    elif metric == "dot":
        out = -(matrix @ q)
    elif metric == "l2-squared":
        out = ((matrix - q) ** 2).sum(axis=1)
    elif metric == "manhattan":
        out = np.abs(matrix - q).sum(axis=1)
    elif metric == "hamming":
        out = (matrix != q).sum(axis=1).astype(np.float32)
    else:
        raise ValueError(f"unknown distance {metric!r}")
    return out.astype(np.float32)


_COMPARE = {
    base_pb2.Filters.OPERATOR_EQUAL: lambda a, b: a == b,
    base_pb2.Filters.OPERATOR_NOT_EQUAL: lambda a, b: a != b,
    base_pb2.Filters.OPERATOR_GREATER_THAN: lambda a, b: a > b,
    base_pb2.Filters.OPERATOR_GREATER_THAN_EQUAL: lambda a, b: a >= b,
    base_pb2.Filters.OPERATOR_LESS_THAN: lambda a, b: a < b,
    base_pb2.Filters.OPERATOR_LESS_THAN_EQUAL: lambda a, b: a <= b,
}


def _matches(found: _Class, obj: _Object, flt: Any, context: grpc.ServicerContext) -> bool:
    """Weaviate's ``where`` filter on object properties: AND, OR, NOT, and the comparisons
    against one scalar value (on a list property, any item may match). Other operators (LIKE,
    geo, contains, ...), references and counts are refused."""
    op = flt.operator
    if op == base_pb2.Filters.OPERATOR_AND:
        return all(_matches(found, obj, sub, context) for sub in flt.filters)
    if op == base_pb2.Filters.OPERATOR_OR:
        return any(_matches(found, obj, sub, context) for sub in flt.filters)
    if op == base_pb2.Filters.OPERATOR_NOT:
        return not _matches(found, obj, flt.filters[0], context)
    target = flt.target.property if flt.HasField("target") else (flt.on[0] if len(flt.on) == 1 else "")
    kind = flt.WhichOneof("test_value")
    if op == base_pb2.Filters.OPERATOR_IS_NULL and target and kind == "value_boolean":
        return bool((obj.properties.get(target) is None) == flt.value_boolean)
    compare = _COMPARE.get(op)
    if compare is None or not target or kind not in ("value_text", "value_int", "value_boolean",
                                                      "value_number"):
        _abort(context, grpc.StatusCode.UNIMPLEMENTED,
               f"the Weaviate emulator does not implement this filter: {MessageToDict(flt)}")
    if found.prop(target) is None:
        _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
               f"no such prop with name '{target}' found in class '{found.name}' in the schema")
    want = getattr(flt, kind)
    value = obj.properties.get(target)
    if value is None:
        return bool(op == base_pb2.Filters.OPERATOR_NOT_EQUAL)
    values = value if isinstance(value, list) else [value]
    if op == base_pb2.Filters.OPERATOR_NOT_EQUAL:
        return all(compare(v, want) for v in values)
    return any(compare(v, want) for v in values)


def _implied(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "text[]" if all(isinstance(v, str) for v in value) else "number[]"
    return "object"


def _coerce(collection: str, prop: dict[str, Any], value: Any) -> Any:
    kind = prop["dataType"][0]
    bad = ValueError(f"invalid {kind} property {prop['name']!r} on class {collection!r}:"
                     f" {value!r:.60}")
    if kind == "text":
        if not isinstance(value, str):
            raise bad
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise bad
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
            raise bad
        return int(value)
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if kind.endswith("[]"):
        item = {"text[]": str, "int[]": int, "boolean[]": bool, "number[]": float}.get(kind)
        if item is None or not isinstance(value, list) or not all(
                isinstance(v, item) and (item is bool or not isinstance(v, bool)) for v in value):
            raise bad
        return list(value)
    raise bad


def _value(prop: dict[str, Any] | None, value: Any) -> Any:
    kind = prop["dataType"][0] if prop else "text"
    if kind == "text":
        return properties_pb2.Value(text_value=value)
    if kind == "boolean":
        return properties_pb2.Value(bool_value=value)
    if kind == "int":
        return properties_pb2.Value(int_value=value)
    if kind == "number":
        return properties_pb2.Value(number_value=value)
    if kind == "text[]":
        return properties_pb2.Value(list_value=properties_pb2.ListValue(
            text_values=properties_pb2.TextValues(values=value)))
    if kind == "int[]":
        return properties_pb2.Value(list_value=properties_pb2.ListValue(
            int_values=properties_pb2.IntValues(values=struct.pack(f"<{len(value)}q", *value))))
    if kind == "number[]":
        return properties_pb2.Value(list_value=properties_pb2.ListValue(
            number_values=properties_pb2.NumberValues(values=struct.pack(f"<{len(value)}d", *value))))
    return properties_pb2.Value(list_value=properties_pb2.ListValue(
        bool_values=properties_pb2.BoolValues(values=value)))

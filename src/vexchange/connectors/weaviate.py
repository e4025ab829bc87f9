"""``weaviate``: a Weaviate collection, through ``weaviate-client`` v4 (REST for the schema,
gRPC for objects). docs/connectors/weaviate.md.

URL form::

    weaviate://host:8080/Memories               ?grpc_port=50051 ?grpc_host= ?secure=true
        ?namespaces=tenants                     each namespace is a tenant (multi-tenancy)
        ?timeout=60                             seconds per request

API key: ``--target-secret api_key=...`` / ``--source-secret``, VEX_WEAVIATE_API_KEY or
WEAVIATE_API_KEY (none for an open server).

* Ids: Weaviate keys objects by UUID. A record keeps its id when it is a canonical UUID and
  has no namespace; otherwise the UUID is a UUIDv5 of (namespace, id), so the same id in two
  namespaces are two objects; the original id is kept in ``_vex`` and restored on export.
* Vectors: every named vector is a Weaviate named vector (``vectorizer: none``); the default
  vector is named ``default``. Weaviate keeps cosine vectors L2-normalised (reported by
  ``verify`` as normalised). Dims and names are noted in the class description.
* Properties: ``text``, ``namespace`` (unless namespaces are tenants) and ``_vex`` (JSON text),
  plus one property per metadata key that is a property name (/[_a-z][_0-9A-Za-z]{0,230}/, not
  reserved) with a value Weaviate holds exactly (text, boolean, int within 2**53, number, and
  non-empty lists of one scalar type). A key's first value fixes its type; a later value of
  another type, a key the server refuses as a property, and everything else (lists of lists,
  mixed lists, objects, nulls, larger integers, other keys) is kept in ``_vex``.
* Import: ``insert_many`` per batch (and per tenant); objects Weaviate refuses are rejected
  one by one with its message. Export: cursor pagination (``after``) over any collection,
  tenant by tenant.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import uuid as uuid_lib
from collections.abc import Iterator
from typing import Any, cast

import grpc
import numpy as np
import orjson
import weaviate
from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances
from weaviate.classes.data import DataObject
from weaviate.classes.init import AdditionalConfig, Auth, Timeout
from weaviate.classes.tenants import Tenant
from weaviate.exceptions import (
    InsufficientPermissionsError,
    UnexpectedStatusCodeError,
    WeaviateBaseError,
    WeaviateConnectionError,
    WeaviateInsertManyAllFailedError,
    WeaviateStartUpError,
    WeaviateTimeoutError,
)

from .._json import dumps_exact, loads_exact
from ..errors import UsageError
from ..record import MemoryRecord
from ..spec import StoreSpec
from ._base import Capabilities, Connector, Page, QueryHit, Reject, VectorSpace, Writer
from ._payload import VEX_KEY, PayloadLayout, json_exact, uuid_for
from ._store import StoreWriter, Verdict, metric_for, metric_from, translated

__all__ = ["WeaviateConnector"]

_METRICS = {"cosine": "cosine", "dot": "dot", "euclidean": "l2-squared", "manhattan": "manhattan"}
_DISTANCES = {d.value: d for d in VectorDistances}
_NAME = re.compile(r"[_a-z][_0-9A-Za-z]{0,230}")
"""Property names kept as they are (Weaviate lowercases a leading capital, so those go to _vex)."""
_VECTOR_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,230}")
_TENANT = re.compile(r"[A-Za-z0-9\-_]{1,64}")
_RESERVED = {"id", "_id", "_additional", "vector", "vectors"}
_EXACT_INT = 1 << 53
"""Over gRPC the client sends scalar numbers as doubles: integers beyond 2**53 would change."""
_DEFAULT_VECTOR = "default"
_DATA_TYPES = frozenset(d.value for d in DataType)
_NOT_A_PROPERTY = ""
"""The type noted for a key Weaviate refused as a property: no value matches it, so every
value of that key is kept in ``_vex``."""
_NOTE = "vexchange:"


def _int_ok(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -_EXACT_INT <= value <= _EXACT_INT


def _scalar_type(value: Any) -> str | None:
    """The Weaviate scalar type that holds ``value`` exactly, or None."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "text"
    if isinstance(value, int):
        return "int" if _int_ok(value) else None
    if isinstance(value, float):
        return "number" if json_exact(value) else None
    return None


def data_type(value: Any) -> str | None:
    """The Weaviate type that holds ``value`` exactly, or None (then it is kept in ``_vex``).
    A list is native only when it is non-empty and all its items are scalars of one Python
    type: Weaviate has no nested arrays (``[[1, 2], [3]]``) and no mixed ones."""
    if not isinstance(value, list):
        return _scalar_type(value)
    if not value:
        return None
    first = type(value[0])
    kind = _scalar_type(value[0])
    if kind is None:
        return None
    for item in value:
        if type(item) is not first or _scalar_type(item) != kind:
            return None
    return kind + "[]"


_LAYOUT = PayloadLayout("weaviate", native=lambda v: data_type(v) is not None, vex_as_text=True)


def _tenant_of(namespace: str | None) -> str:
    if namespace is None:
        return "vx-none"
    if _TENANT.fullmatch(namespace) and not namespace.startswith("vx-"):
        return namespace
    return "vx-" + hashlib.sha256(namespace.encode()).hexdigest()[:40]


def object_uuid(record: MemoryRecord, *, tenants: bool) -> str:
    """The UUID an object gets: the id itself when it is a canonical UUID (and no namespace
    field shares the id space), else a UUIDv5 of the id, or of (namespace, id)."""
    if record.namespace is None or tenants:
        try:
            if str(uuid_lib.UUID(record.id)) == record.id:
                return record.id
        except ValueError:
            pass
        return uuid_for(record.id)
    return uuid_for(orjson.dumps([record.namespace, record.id]).decode())


def _retry_after(err: grpc.RpcError) -> float | None:
    trailing = getattr(err, "trailing_metadata", None)
    for key, value in (trailing() if callable(trailing) else None) or ():
        if key == "retry-after":
            try:
                return float(value)
            except ValueError:
                return None
    return None


def _classify(err: BaseException) -> Verdict | None:
    """gRPC codes and HTTP statuses: unavailable, exhausted, timed out and 5xx are transient;
    a refused key or a bad request is final."""
    if not isinstance(err, WeaviateBaseError):
        return None
    key_hint = "check the API key (VEX_WEAVIATE_API_KEY, WEAVIATE_API_KEY or --*-secret api_key=)"
    if isinstance(err, InsufficientPermissionsError):
        return ("permanent", key_hint)
    if isinstance(err, UnexpectedStatusCodeError):
        status = err.status_code
        if status in (401, 403):
            return ("permanent", key_hint)
        return ("transient", None) if status in (408, 429) or status >= 500 else ("permanent", None)
    if isinstance(err, (WeaviateConnectionError, WeaviateStartUpError, WeaviateTimeoutError)):
        return ("transient", None)
    cause = err.__cause__ or err.__context__
    while cause is not None and not isinstance(cause, grpc.RpcError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, grpc.RpcError):
        code = cause.code() if callable(getattr(cause, "code", None)) else None
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return ("permanent", key_hint)
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED,
                    grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL,
                    grpc.StatusCode.ABORTED, grpc.StatusCode.UNKNOWN):
            return ("transient", None, _retry_after(cause))
        return ("permanent", None)
    if "retry" in type(err).__name__.lower():
        return ("transient", None)
    return ("permanent", None)


def _translated(operation: str) -> Any:
    return translated("weaviate", operation, classify=_classify)


def _plain(value: Any) -> Any:
    """Property values of foreign collections as JSON-ready values."""
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, uuid_lib.UUID):
        return str(value)
    if isinstance(value, bytes):
        import base64

        return base64.b64encode(value).decode()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "_to_dict"):
        return _plain(value._to_dict())
    return value


class WeaviateConnector(Connector):
    name = "weaviate"
    url_options = frozenset({'grpc_host', 'grpc_port', 'namespaces', 'secure', 'timeout'})
    url_secret = "api_key"
    extra = "weaviate"
    capabilities = Capabilities(read=True, write=True, named_vectors=True, fixed_dims=True,
                                normalises=("cosine",), preferred_batch=200)

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if not spec.host:
            raise UsageError("weaviate needs a server: weaviate://host:8080/Collection")
        name = (spec.path or "").strip("/") or "Memories"
        if not _VECTOR_NAME.fullmatch(name):
            raise UsageError(f"{name!r} is not a Weaviate collection name (letters, digits, _)")
        self.collection_name = name[0].upper() + name[1:]
        self.tenants = spec.params.get("namespaces") == "tenants"
        try:
            self.timeout = float(spec.params.get("timeout", "60"))
            self.grpc_port = int(spec.params.get("grpc_port", "50051"))
        except ValueError:
            raise UsageError("weaviate ?timeout= and ?grpc_port= must be numbers") from None
        self._client: Any = None
        self._config: Any = None
        self._tenants_seen: set[str] | None = None

    def describe(self) -> dict[str, Any]:
        return {"connector": "weaviate", "location": f"weaviate://{self.spec.host}:"
                f"{self.spec.port or 8080}/{self.collection_name}"}

    def client(self) -> Any:
        if self._client is None:
            key = self.spec.secret("api_key") or os.environ.get("WEAVIATE_API_KEY")
            secure = self.spec.params.get("secure") == "true"
            with _translated("connect"):
                self._client = weaviate.connect_to_custom(
                    http_host=str(self.spec.host), http_port=self.spec.port or 8080, http_secure=secure,
                    grpc_host=self.spec.params.get("grpc_host", str(self.spec.host)),
                    grpc_port=self.grpc_port, grpc_secure=secure,
                    auth_credentials=Auth.api_key(key) if key else None, skip_init_checks=True,
                    additional_config=AdditionalConfig(timeout=Timeout(
                        init=min(self.timeout, 30), query=self.timeout, insert=self.timeout)))
        return self._client

    def collection(self) -> Any:
        return self.client().collections.get(self.collection_name)

    def exists(self) -> bool:
        with _translated("open"):
            return bool(self.client().collections.exists(self.collection_name))

    def config(self, *, fresh: bool = False) -> Any:
        if self._config is None or fresh:
            if not self.exists():
                raise UsageError(f"Weaviate has no collection {self.collection_name!r} at"
                                 f" {self.describe()['location']}")
            with _translated("describe"):
                self._config = self.collection().config.get()
        return self._config

    def note(self) -> dict[str, Any] | None:
        """What vexchange wrote in the class description: vector names and dims."""
        description = self.config().description or ""
        if description.startswith(_NOTE):
            try:
                found = loads_exact(description[len(_NOTE):])
            except ValueError:
                return None
            return found if isinstance(found, dict) else None
        return None

    def vector_names(self) -> dict[str, str]:
        """Weaviate vector name -> record vector name."""
        note = self.note()
        if note is not None:
            return {theirs: ours for ours, theirs in note["vectors"].items()}
        named = self.config().vector_config or {}
        if not named:
            return {"default": ""}  # a collection with one unnamed vector
        return {n: ("" if n == _DEFAULT_VECTOR else n) for n in named}

    def count(self) -> int | None:
        if self.tenants:
            return None
        with _translated("count"):
            return int(self.collection().aggregate.over_all(total_count=True).total_count or 0)

    def vector_spaces(self) -> dict[str, VectorSpace]:
        config = self.config()
        note = self.note() or {}
        dims = note.get("dims", {})
        named = config.vector_config or {}
        spaces: dict[str, VectorSpace] = {}
        for theirs, ours in self.vector_names().items():
            index = named[theirs].vector_index_config if theirs in named else config.vector_index_config
            distance = getattr(getattr(index, "distance_metric", None), "value", None)
            spaces[ours] = VectorSpace(dims=dims.get(ours), metric=metric_from(_METRICS, distance))
        return spaces

    def tenant_names(self) -> list[str]:
        with _translated("list tenants"):
            return sorted(self.collection().tenants.get())

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        """Cursor pagination in UUID order; the cursor is the tenant and the last UUID."""
        config = self.config()
        names = self.vector_names()
        tenant_mode = bool(config.multi_tenancy_config.enabled)
        tenants = self.tenant_names() if tenant_mode else [""]
        start_tenant, cursor = orjson.loads(after) if after else (None, None)
        for position, tenant in enumerate(tenants):
            if start_tenant is not None and tenant < start_tenant:
                continue
            if tenant != start_tenant:
                cursor = None
            handle = self.collection().with_tenant(tenant) if tenant else self.collection()
            last = position == len(tenants) - 1
            while True:
                with _translated("read"):
                    objects = handle.query.fetch_objects(limit=batch_size, after=cursor,
                                                         include_vector=True).objects
                items = [self._record(obj, names, tenant if tenant_mode else None) for obj in objects]
                if objects:
                    cursor = str(objects[-1].uuid)
                done = len(objects) < batch_size
                yield Page(items, None if done and last else orjson.dumps([tenant, cursor]).decode())
                if done:
                    break
            start_tenant = None

    def _record(self, obj: Any, names: dict[str, str], tenant: str | None) -> MemoryRecord | Reject:
        store_id = str(obj.uuid)
        try:
            payload = {k: _plain(v) for k, v in (obj.properties or {}).items() if v is not None}
            vectors = {names.get(n, n): np.asarray(v, dtype="<f4").tobytes()
                       for n, v in (obj.vector or {}).items() if v}
            namespace = tenant if tenant is not None and tenant != "vx-none" else None
            return _LAYOUT.unpack(payload, store_id=store_id, vectors=vectors, namespace=namespace)
        except (ValueError, TypeError) as err:
            return Reject(reason="bad_object", detail=str(err), id=store_id,
                          location=f"{self.describe()['location']} object {store_id}")

    def query(self, vector: Any, k: int, *, namespace: str | None = None,
              vector_name: str = "") -> list[QueryHit]:
        """Weaviate's ``near_vector`` search (its HNSW or flat index) on the named vector, in
        the namespace's tenant (``?namespaces=tenants``) or filtered on the ``namespace``
        property; objects decoded as ``read`` decodes them."""
        from weaviate.classes.query import Filter, MetadataQuery

        names = self.vector_names()
        theirs = next((t for t, ours in names.items() if ours == vector_name), None)
        if theirs is None:
            return []
        tenant = _tenant_of(namespace) if self.tenants else None
        if tenant is not None and tenant not in self._query_tenants():
            return []  # no record of that namespace here (Weaviate would refuse the tenant)
        handle = self.collection().with_tenant(tenant) if tenant else self.collection()
        where = (None if self.tenants or namespace is None
                 else Filter.by_property("namespace").equal(namespace))
        # a named vector is always named: with several, Weaviate refuses a search without one
        target = theirs if self.config().vector_config else None
        with _translated("query"):
            objects = handle.query.near_vector(
                near_vector=np.asarray(vector, dtype=np.float32).tolist(), limit=k, filters=where,
                target_vector=target, return_metadata=MetadataQuery(distance=True)).objects
        hits: list[QueryHit] = []
        for obj in objects:
            item = self._record(obj, names, tenant)
            if isinstance(item, MemoryRecord):
                distance = obj.metadata.distance if obj.metadata is not None else None
                hits.append(QueryHit(item.id, float(distance or 0.0), item.namespace))
        return hits

    def _query_tenants(self) -> set[str]:
        """The tenants, listed once per opening for ``query`` (a probe a tenant)."""
        if self._tenants_seen is None:
            self._tenants_seen = set(self.tenant_names())
        return self._tenants_seen

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        return WeaviateWriter(self, dry_run=dry_run, spaces=spaces or {})

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
            self._config = None
            self._tenants_seen = None


class WeaviateWriter(StoreWriter):
    namespaced_ids = True

    def __init__(self, store: WeaviateConnector, *, dry_run: bool,
                 spaces: dict[str, VectorSpace]) -> None:
        super().__init__(store, dry_run=dry_run, spaces=spaces, metrics=_METRICS)
        self.store: WeaviateConnector = store
        self.exists = store.exists()
        self.types: dict[str, str] = {}
        self.known_tenants: set[str] = set()
        self.names: dict[str, str] = {}
        if self.exists:
            if store.note() is None:
                raise UsageError(f"collection {store.collection_name!r} was not created by"
                                 " vexchange; writing objects into it could break its schema",
                                 hint="choose a new collection name in the URL path")
            self._load()

    def _load(self) -> None:
        config = self.store.config(fresh=True)
        self.types = {p.name: p.data_type.value for p in config.properties}
        self.names = {ours: theirs for theirs, ours in self.store.vector_names().items()}
        if self.store.tenants:
            self.known_tenants = set(self.store.tenant_names())

    def target_dims(self) -> dict[str, int]:
        note = self.store.note() if self.exists else None
        return dict((note or {}).get("dims", {}))

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return self.store.vector_spaces() if self.exists else {}

    def create(self, batch: list[MemoryRecord]) -> None:
        wanted = self.spaces_to_create(batch)
        names = {ours: (_DEFAULT_VECTOR if ours == "" else ours) for ours in sorted(wanted)}
        bad = [n for n in names.values() if not _VECTOR_NAME.fullmatch(n)]
        if bad or ("" in names and _DEFAULT_VECTOR in names):
            raise UsageError(f"vector names {sorted(names)} cannot all be Weaviate vector names"
                             " (letters, digits and _; 'default' is the unnamed vector)")
        note = {"vexchange": 1, "vectors": names,
                "dims": {ours: s.dims for ours, s in wanted.items() if s.dims}}
        vectors = [Configure.Vectors.self_provided(
            name=theirs, vector_index_config=Configure.VectorIndex.hnsw(
                distance_metric=_DISTANCES[metric_for("weaviate", wanted[ours].metric, _METRICS)]))
            for ours, theirs in names.items()]
        properties = [Property(name="text", data_type=DataType.TEXT),
                      Property(name=VEX_KEY, data_type=DataType.TEXT, index_filterable=False,
                               index_searchable=False)]
        if not self.store.tenants:
            properties.append(Property(name="namespace", data_type=DataType.TEXT,
                                       tokenization=Tokenization.FIELD))
        with _translated("create collection"):
            self.store.client().collections.create(
                self.store.collection_name, description=_NOTE + dumps_exact(note),
                vector_config=vectors or None, properties=properties,
                multi_tenancy_config=Configure.multi_tenancy(enabled=True) if self.store.tenants else None)
        self.exists = True
        self._load()

    def created(self) -> bool:
        return self.exists

    def store_id(self, record: MemoryRecord) -> str:
        return object_uuid(record, tenants=self.store.tenants)

    def namespaces_of(self, ids: list[Any]) -> dict[Any, str | None]:  # pragma: no cover
        return {}  # namespaced_ids: the UUID already includes the namespace

    def _add_properties(self, rows: list[tuple[Any, MemoryRecord]]) -> None:
        """Add a property for each new metadata key, typed by its first value. A key the
        server refuses as a property (422) is kept in ``_vex`` from then on, so its values
        still land exactly; any other failure stops the run as a store error."""
        new: dict[str, str] = {}
        for _, record in rows:
            for key, value in (record.metadata or {}).items():
                kind = data_type(value)
                if (kind in _DATA_TYPES and key not in self.types and key not in new
                        and _NAME.fullmatch(key) and key not in _RESERVED
                        and key not in _LAYOUT.reserved):
                    new[key] = kind
        if not new:
            return
        collection = self.store.collection()
        for key, kind in new.items():
            with _translated("add property"):
                try:
                    collection.config.add_property(Property(name=key, data_type=DataType(kind)))
                except UnexpectedStatusCodeError as err:
                    if err.status_code != 422:
                        raise
                    kind = _NOT_A_PROPERTY
            self.types[key] = kind

    def _accept(self, key: str, value: Any) -> bool:
        return self.types.get(key) == data_type(value)

    def upsert(self, rows: list[tuple[Any, MemoryRecord]]) -> list[Reject]:
        self._add_properties(rows)
        rejects: list[Reject] = []
        groups: dict[str, list[tuple[MemoryRecord, DataObject]]] = {}
        for key, record in rows:
            unknown = [n for n in record.vectors if n not in self.names]
            if unknown:
                rejects.append(Reject(reason="unknown_vector", id=record.id, namespace=record.namespace,
                                      detail=f"the collection has no vector named {unknown[0]!r}"
                                             f" (it has {sorted(self.names)})"))
                continue
            tenant = _tenant_of(record.namespace) if self.store.tenants else ""
            properties = _LAYOUT.pack(
                record, store_id=key, accept=self._accept,
                store_namespace=(None if tenant == "vx-none" else tenant) if self.store.tenants else None)
            if self.store.tenants:
                properties.pop("namespace", None)
            vectors = {self.names[n]: v.tolist() for n, v in record.vectors.items()}
            groups.setdefault(tenant, []).append(
                (record, DataObject(properties=cast(Any, properties), uuid=key, vector=vectors or None)))
        for tenant, items in groups.items():
            rejects.extend(self._insert(tenant, items))
        return rejects

    def _insert(self, tenant: str, items: list[tuple[MemoryRecord, DataObject]]) -> list[Reject]:
        collection = self.store.collection()
        if tenant:
            if tenant not in self.known_tenants:
                with _translated("create tenant"):
                    collection.tenants.create([Tenant(name=tenant)])
                self.known_tenants.add(tenant)
            collection = collection.with_tenant(tenant)
        with _translated("insert"):
            try:
                result = collection.data.insert_many([obj for _, obj in items])
            except WeaviateInsertManyAllFailedError as err:  # every object refused, one by one
                return [_refused(record, str(err)) for record, _ in items]
        return [_refused(items[index][0], error.message) for index, error in result.errors.items()]


def _refused(record: MemoryRecord, message: str) -> Reject:
    return Reject(reason="refused_by_store", detail=f"Weaviate refused the object: {message}",
                  id=record.id, namespace=record.namespace)

"""``qdrant``: a Qdrant collection, on a server or in qdrant-client's local mode.
docs/connectors/qdrant.md.

URL forms::

    qdrant://host:6333/memories                 server (API key: VEX_QDRANT_API_KEY; ?https=true)
    qdrant:///abs/dir?collection=memories       local mode (qdrant-client's embedded storage)

Both go through the same ``QdrantClient`` calls, so the server path is the local path's code.

* Ids: unsigned integers and canonical UUIDs are kept as Qdrant ids; any other id becomes a
  deterministic UUIDv5 and the original is kept in the payload and restored on export.
* Vectors: every named vector; the default vector is Qdrant's unnamed vector (name ``""``).
  A missing collection is created with the source's dims and metric (cosine when unknown).
* Qdrant stores cosine vectors L2-normalised: ``verify`` reports such records as
  "normalised", not "changed".
* Payload: metadata at the top level, text under ``text``, namespace under ``namespace``, the
  rest in ``_vex`` (JSON text, so integers beyond 64 bits and every float survive).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from ..errors import UsageError
from ..record import MemoryRecord
from ..spec import StoreSpec
from ._base import Capabilities, Page, QueryHit, Reject, VectorSpace, Writer
from ._qdrant_common import LAYOUT as _LAYOUT
from ._qdrant_common import METRICS as _METRICS
from ._qdrant_common import held_by, point_id, record_from_point, refuse_taken
from ._split import CollectionStore
from ._store import StoreWriter, Verdict, metric_for, metric_from, translated

__all__ = ["QdrantConnector"]

_DEFAULT_COLLECTION = "memories"
_TRANSIENT = (ResponseHandlingException, httpx.TransportError, ConnectionError, TimeoutError)


class QdrantConnector(CollectionStore):
    name = "qdrant"
    url_options = frozenset({'collection', 'https', 'namespaces'})
    url_secret = "api_key"
    extra = "qdrant"
    default_port = 6333
    capabilities = Capabilities(read=True, write=True, named_vectors=True, fixed_dims=True,
                                preferred_batch=1000,
                                normalises=("cosine",))

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if spec.host:
            self.collection_name = (spec.path or "").strip("/") or _DEFAULT_COLLECTION
        elif spec.path:
            self.collection_name = spec.params.get("collection", _DEFAULT_COLLECTION)
        else:
            raise UsageError("qdrant needs a location: qdrant://host:6333/COLLECTION"
                             " or qdrant:///path/dir?collection=NAME")
        self._client: QdrantClient | None = None
        self._sparse_names: set[str] = set()

    def collection_names(self) -> list[str]:
        with self.translated("list collections"):
            return [c.name for c in self.client().get_collections().collections]

    def translated(self, operation: str) -> Any:
        return translated("qdrant", operation, transient=_TRANSIENT,
                          permanent=(ValueError, RuntimeError), classify=_classify_qdrant,
                          hint="check the Qdrant location, collection and API key")

    def client(self) -> QdrantClient:
        if self._client is None:
            with self.translated("connect"):
                if self.spec.host:
                    self._client = QdrantClient(
                        host=self.spec.host, port=self.spec.port or self.default_port,
                        https=self.spec.params.get("https") == "true",
                        api_key=self.spec.secret("api_key"), timeout=30,
                        check_compatibility=False)
                else:
                    self._client = QdrantClient(path=str(self.spec.path))
        return self._client

    def exists(self) -> bool:
        with self.translated("open"):
            return bool(self.client().collection_exists(self.collection_name))

    def _require(self) -> None:
        if not self.exists():
            raise UsageError(f"Qdrant has no collection {self.collection_name!r}"
                             f" at {self.describe()['location']}")

    def count(self) -> int | None:
        self._require()
        with self.translated("count"):
            return int(self.client().count(self.collection_name, exact=True).count)

    def vector_spaces(self) -> dict[str, VectorSpace]:
        self._require()
        with self.translated("describe"):
            info = self.client().get_collection(self.collection_name)
        vectors = info.config.params.vectors
        if isinstance(vectors, models.VectorParams):
            vectors = {"": vectors}
        self._sparse_names = set(info.config.params.sparse_vectors or {})
        return {name: VectorSpace(dims=p.size, metric=metric_from(_METRICS, p.distance.value))
                for name, p in (vectors or {}).items()}

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        self._require()
        offset: Any = orjson.loads(after) if after else None
        while True:
            with self.translated("scroll"):
                points, next_offset = self.client().scroll(
                    self.collection_name, limit=batch_size, offset=offset,
                    with_payload=True, with_vectors=True)
            items = [record_from_point(p.id, p.vector, p.payload) for p in points]
            offset = next_offset
            yield Page(items, None if offset is None else orjson.dumps(offset).decode())
            if offset is None:
                return

    def query(self, vector: Any, k: int, *, namespace: str | None = None,
              vector_name: str = "") -> list[QueryHit]:
        """Qdrant's ``query_points`` (its HNSW index on a server; local mode searches exactly),
        filtered on the ``namespace`` payload field; points decoded as ``read`` decodes them."""
        self._require()
        where = None if namespace is None else models.Filter(must=[models.FieldCondition(
            key=_LAYOUT.namespace_key or "namespace", match=models.MatchValue(value=namespace))])
        with self.translated("query"):
            points = self.client().query_points(
                self.collection_name, query=[float(x) for x in vector], using=vector_name or None,
                query_filter=where, limit=k, with_payload=True, with_vectors=False).points
        hits: list[QueryHit] = []
        for point in points:
            item = record_from_point(point.id, None, point.payload)
            if isinstance(item, MemoryRecord):
                hits.append(QueryHit(item.id, float(point.score), item.namespace))
        return hits

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        return QdrantWriter(self, dry_run=dry_run, spaces=spaces or {})

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _classify_qdrant(err: BaseException) -> Verdict | None:
    """Qdrant errors by HTTP status: 429 and 5xx are transient, 4xx (auth, schema) are not."""
    if not isinstance(err, UnexpectedResponse):
        return None
    status = err.status_code or 0
    if status == 429 or status >= 500:
        return ("transient", None)
    return ("permanent", "check VEX_QDRANT_API_KEY" if status in (401, 403)
            else "check the collection's schema")


class QdrantWriter(StoreWriter):
    def __init__(self, store: QdrantConnector, *, dry_run: bool,
                 spaces: dict[str, VectorSpace]) -> None:
        super().__init__(store, dry_run=dry_run, spaces=spaces, metrics=_METRICS)
        self.exists = store.exists()
        self.held: dict[str, VectorSpace] = store.vector_spaces() if self.exists else {}
        self.holders: dict[Any, str] = {}
        """Point id -> the record id it holds, for the batch's points already stored."""

    def target_dims(self) -> dict[str, int]:
        return {name: s.dims for name, s in self.held.items() if s.dims}

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return dict(self.held)

    def create(self, batch: list[MemoryRecord]) -> None:
        wanted = self.spaces_to_create(batch)
        config = {name: models.VectorParams(size=s.dims or 0, distance=models.Distance(
            metric_for("qdrant", s.metric, _METRICS))) for name, s in wanted.items()}
        sparse = {name for record in batch for name in record.sparse}
        with self.store.translated("create collection"):
            self.store.client().create_collection(
                self.store.collection_name, vectors_config=config,
                sparse_vectors_config={n: models.SparseVectorParams() for n in sorted(sparse)} or None)
            if self.store.spec.host:  # local mode has no payload indexes (and warns)
                self.store.client().create_payload_index(
                    self.store.collection_name, _LAYOUT.namespace_key or "namespace",
                    models.PayloadSchemaType.KEYWORD)
        self.exists = True
        self.held = self.store.vector_spaces()

    def created(self) -> bool:
        return self.exists

    def store_id(self, record: MemoryRecord) -> Any:
        return point_id(record.id)

    def namespaces_of(self, ids: list[Any]) -> dict[Any, str | None]:
        """Also notes which record id holds each point, for ``upsert`` (``refuse_taken``)."""
        with self.store.translated("retrieve"):
            found = self.store.client().retrieve(
                self.store.collection_name, ids=ids, with_payload=["namespace", "_vex"],
                with_vectors=False)
        self.holders = {p.id: held_by(p.id, p.payload) for p in found}
        return {p.id: (p.payload or {}).get("namespace") for p in found}

    def upsert(self, rows: list[tuple[Any, MemoryRecord]]) -> list[Reject]:
        points: list[models.PointStruct] = []
        rows, rejects = refuse_taken(rows, self.holders)
        self.holders = {}
        for key, record in rows:
            unknown = [n for n in record.vectors if n not in self.held]
            if unknown:
                rejects.append(Reject(
                    reason="unknown_vector", id=record.id, namespace=record.namespace,
                    detail=f"the collection has no vector named {unknown[0]!r}"
                           f" (it has {sorted(self.held)})"))
                continue
            native = self.store._sparse_names & set(record.sparse)
            vector: dict[str, Any] = {n: v.tolist() for n, v in record.vectors.items()}
            for name in native:
                sp = record.sparse[name]
                vector[name] = models.SparseVector(indices=sp.index_array().tolist(),
                                                   values=sp.value_array().tolist())
            points.append(models.PointStruct(
                id=key, payload=_LAYOUT.pack(record, store_id=str(key), native_sparse=native),
                vector=vector))
        if points:
            with self.store.translated("upsert"):
                self.store.client().upsert(self.store.collection_name, points=points, wait=True)
        return rejects

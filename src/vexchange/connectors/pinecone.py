"""``pinecone``: a Pinecone index, through the official ``pinecone`` SDK (REST).
docs/connectors/pinecone.md.

URL forms::

    pinecone://INDEX                              host looked up on the control plane
    pinecone://INDEX?host=https://INDEX-x.svc...   data-plane host given; no control-plane call
        ?create=true&cloud=aws&region=us-east-1   create a missing serverless index
        ?controller=URL                           another control plane (default api.pinecone.io)
        ?timeout=30                               seconds per request
        ?blobs=DIR                                keep what exceeds 40 KB of metadata in DIR
        ?bulk_uri=s3://BUCKET/PREFIX              with --bulk: where the import files go
        ?integration_id=ID                        the storage integration Pinecone reads them with
        ?bulk_error_mode=abort|continue           the import's errorMode (default abort)
        ?bulk_endpoint_url=URL&bulk_region=R      an S3-compatible server for the files
        ?bulk_poll=5&bulk_timeout=0               seconds between polls; cancel after (0: never)
        ?bulk_verify=true                         read the imported namespaces back and compare

API key: ``--target-secret api_key=...`` / ``--source-secret``, or VEX_PINECONE_API_KEY, or
PINECONE_API_KEY.

* Each record's namespace is a Pinecone namespace (no namespace: the default one). A name
  Pinecone cannot hold (not 1-512 ASCII characters, or empty) becomes ``vx-<sha256>`` with
  the original kept in ``_vex``.
* Ids Pinecone cannot hold (not 1-512 ASCII characters) become UUIDv5; the original is kept.
* Metadata: strings, numbers, booleans and lists of strings at the top level, where Pinecone
  filters on them; numbers are also kept exactly in ``_vex`` because Pinecone keeps them as
  64-bit floats; everything else (nested objects, nulls, number lists, keys that are empty or
  start with ``$``, timestamps, models) is in ``_vex``.
* A record's metadata must fit in 40 KB. One that does not is rejected (``metadata_too_large``,
  in the rejects file whole), or, with ``?blobs=DIR``, its full payload goes to a
  content-addressed file in DIR and the record keeps the reference: text is never cut.
* Upserts are split by count (1,000) and by bytes (2 MB); a request the server refuses is split
  until the refused record is found, which is rejected with the server's message.
* Export walks every namespace with ``list`` + ``fetch``; sparse values are kept.
* ``--bulk`` (``accept_bulk``): the run writes the ``pinecone-bulk`` Parquet layout to
  ``?bulk_uri=`` instead of upserting, then starts Pinecone's import of it, polls it to its
  end and checks it (``_pinecone_import.py``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from pinecone import Pinecone, ServerlessSpec
from pinecone.errors.exceptions import (
    ApiError,
    ForbiddenError,
    NotFoundError,
    PineconeConnectionError,
    PineconeTimeoutError,
    RateLimitError,
    ServiceError,
    UnauthorizedError,
)

from .._json import dumps_exact, loads_exact
from ..errors import MissingDependencyError, PermanentError, UsageError
from ..record import MemoryRecord
from ..spec import StoreSpec
from ._base import Capabilities, Connector, Page, QueryHit, Reject, VectorSpace, Writer
from .._blobs import BlobDir, BlobError
from ._payload import VEX_KEY, PayloadLayout, json_exact, uuid_for
from ._store import StoreWriter, Verdict, metric_for, metric_from, translated
from ._pinecone_import import BULK_OPTIONS, BulkSettings, PineconeImportWriter

__all__ = ["PineconeConnector"]

_METRICS = {"cosine": "cosine", "dot": "dotproduct", "euclidean": "euclidean"}
MAX_METADATA_BYTES = 40 * 1024
MAX_REQUEST_BYTES = 2 * 1024 * 1024
MAX_UPSERT = 1000
MAX_NAME = 512
MAX_SPARSE = 2048
LIST_PAGE = 100
FETCH_IDS = 100
"""Ids per fetch: they travel in the URL, and 100 ids of 512 characters stay within URL limits."""
DEFAULT_NAMESPACE_NAMES = ("", "__default__")
_NUMBER_JSON = 25
"""The most bytes one number takes in the request's JSON, comma included ("-1.2345678901234567e-308,")."""
_REQUEST_SLACK = 64 * 1024
"""Room left under the 2 MB request limit for the SDK's own JSON framing."""


def _native(value: Any) -> bool:
    """What Pinecone metadata holds: strings, finite numbers, booleans, non-empty string lists."""
    if isinstance(value, list):
        return bool(value) and all(isinstance(v, str) for v in value)
    if isinstance(value, (bool, str)):
        return True
    if isinstance(value, (int, float)):
        return json_exact(value)
    return False


def _inexact(value: Any) -> bool:
    """Pinecone keeps every number as a 64-bit float and hands it back as one (``3`` as
    ``3.0``; nothing documents that ``-0.0`` or a subnormal keeps its bits): numbers are
    written for filtering and kept exactly in ``_vex``, which wins on read."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _key_ok(key: str, value: Any) -> bool:
    """Keys Pinecone's filter language can name: not empty, and not starting with ``$``
    (Pinecone documents that keys must not: ``$`` starts its operators). The value of any
    other key is kept in ``_vex``."""
    return bool(key) and not key.startswith("$")


_LAYOUT = PayloadLayout("pinecone", namespace_key=None, native=_native, inexact=_inexact,
                        vex_as_text=True)


def _holdable(name: str) -> bool:
    return 0 < len(name) <= MAX_NAME and name.isascii() and "\x00" not in name


def store_namespace(namespace: str | None) -> str:
    """The Pinecone namespace a record's namespace lives in."""
    if namespace is None:
        return ""
    if _holdable(namespace) and namespace != "__default__":
        return namespace
    return "vx-" + hashlib.sha256(namespace.encode()).hexdigest()[:48]


def store_id(record_id: str) -> str:
    return record_id if _holdable(record_id) else uuid_for(record_id)


def _size(metadata: dict[str, Any]) -> int:
    return len(orjson.dumps(metadata))


def _classify(err: BaseException) -> Verdict | None:
    """429, 5xx, timeouts and dropped connections are transient; the rest is final."""
    if isinstance(err, (RateLimitError, ServiceError, PineconeTimeoutError, PineconeConnectionError)):
        return ("transient", None)
    if isinstance(err, (UnauthorizedError, ForbiddenError)):
        return ("permanent", "check the API key (--target-secret api_key=..., VEX_PINECONE_API_KEY"
                             " or PINECONE_API_KEY)")
    if isinstance(err, NotFoundError):
        return ("permanent", "check the index name or ?host=")
    if isinstance(err, ApiError):
        status = err.status_code or 0
        return ("transient", None) if status in (408, 429) or status >= 500 else ("permanent", None)
    return None


def _translated(operation: str) -> Any:
    return translated("pinecone", operation, classify=_classify,
                      permanent=(ValueError, TypeError))


class PineconeConnector(Connector):
    name = "pinecone"
    url_options = frozenset({'blobs', 'cloud', 'controller', 'create', 'host', 'region',
                             'timeout'}) | BULK_OPTIONS
    url_secret = "api_key"
    extra = "pinecone"
    capabilities = Capabilities(read=True, write=True, named_vectors=False, null_vectors=False,
                                fixed_dims=True, preferred_batch=500)

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        self.index_name = spec.host or (spec.path or "").strip("/")
        if not self.index_name:
            raise UsageError("pinecone needs an index: pinecone://INDEX (or pinecone://INDEX?host=URL)")
        self.host = spec.params.get("host")
        self.controller = spec.params.get("controller")
        self.create = spec.params.get("create", "").lower() in ("1", "true", "yes")
        try:
            self.timeout = float(spec.params.get("timeout", "30"))
        except ValueError:
            raise UsageError(f"pinecone ?timeout= must be a number of seconds, not"
                             f" {spec.params['timeout']!r}") from None
        blobs = spec.params.get("blobs")
        self.blobs = BlobDir(Path(blobs)) if blobs else None
        self._client: Pinecone | None = None
        self._index: Any = None
        self._stats: Any = None
        self.bulk: BulkSettings | None = None
        self.bulk_import: dict[str, Any] | None = None
        """After a bulk run: the import (id, uri, status, records imported), for the receipt."""

    def describe(self) -> dict[str, Any]:
        where = f"pinecone://{self.index_name}"
        out: dict[str, Any] = {"connector": "pinecone",
                               "location": where + (f"@{self.host}" if self.host else "")}
        if self.bulk_import is not None:
            out["bulk_import"] = dict(self.bulk_import)
        return out

    def accept_bulk(self, bulk: bool) -> None:
        """``--bulk``: write the import files to ``?bulk_uri=`` and import them, instead of
        upserting (refused here, before anything is opened, without a ``bulk_uri``)."""
        self.bulk = BulkSettings.from_spec(self.spec) if bulk else None
        if bulk:
            try:
                import pyarrow  # noqa: F401  (the import files are Parquet)
            except ImportError:
                raise MissingDependencyError("pinecone --bulk", "pyarrow", "parquet",
                                             kind="import") from None

    def api_key(self) -> str:
        key = self.spec.secret("api_key") or os.environ.get("PINECONE_API_KEY")
        if not key:
            raise UsageError("pinecone needs an API key",
                             hint="pass --target-secret api_key=... (or --source-secret), or set"
                                  " VEX_PINECONE_API_KEY or PINECONE_API_KEY")
        return key

    def client(self) -> Pinecone:
        if self._client is None:
            with _translated("connect"):
                self._client = Pinecone(api_key=self.api_key(), host=self.controller,
                                        timeout=self.timeout, source_tag="vexchange")
        return self._client

    def index(self) -> Any:
        """The data-plane client (pinecone.Index); looks the host up once when not given."""
        if self._index is None:
            client = self.client()
            with _translated("open index"):
                self._index = client.index(name=self.index_name, host=self.host or "")
        return self._index

    def exists(self) -> bool:
        if self.host:
            return True
        with _translated("describe index"):
            try:
                self.client().indexes.describe(self.index_name)
            except NotFoundError:
                return False
        return True

    def stats(self, *, fresh: bool = False) -> Any:
        if self._stats is None or fresh:
            # whether the index exists is asked once; a refresh needs no control-plane call
            if self._stats is None and not self.exists():
                raise UsageError(f"Pinecone has no index {self.index_name!r}",
                                 hint="check the name, or add ?create=true&cloud=aws&region=us-east-1"
                                      " to create it when writing")
            with _translated("describe index stats"):
                self._stats = self.index().describe_index_stats()
        return self._stats

    def count(self) -> int | None:
        return int(self.stats(fresh=True).total_vector_count or 0)

    def vector_spaces(self) -> dict[str, VectorSpace]:
        stats = self.stats()
        if not stats.dimension:
            return {}
        return {"": VectorSpace(dims=int(stats.dimension), metric=metric_from(_METRICS, stats.metric))}

    def namespaces(self) -> list[str]:
        """Every namespace of the index, sorted (so a resumed export walks them in order)."""
        found: list[str] = []
        token: str | None = None
        index = self.index()
        while True:
            with _translated("list namespaces"):
                page = index.list_namespaces_paginated(pagination_token=token, limit=100)
            found.extend(ns.name for ns in page.namespaces)
            token = page.pagination.next if page.pagination else None
            if not token:
                return sorted({"" if n in DEFAULT_NAMESPACE_NAMES else n for n in found})

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        """Namespace by namespace: ``list`` pages of ids, then ``fetch`` of those ids. The
        cursor is the namespace and the list token after the last id handed out."""
        self.stats()
        start_ns, token = (orjson.loads(after) if after else (None, None))
        for namespace in self.namespaces():
            if start_ns is not None and namespace < start_ns:
                continue
            if namespace != start_ns:
                token = None
            while True:
                ids, token = self._list_ids(namespace, token, batch_size)
                items = self._fetch(namespace, ids)
                cursor = orjson.dumps([namespace, token]).decode() if token else orjson.dumps(
                    [namespace + "\x00", None]).decode()  # just after this namespace
                yield Page(items, cursor)
                if not token:
                    break
            start_ns = None

    def _list_ids(self, namespace: str, token: str | None, wanted: int) -> tuple[list[str], str | None]:
        ids: list[str] = []
        index = self.index()
        while len(ids) < wanted:
            with _translated("list"):
                page = index.list_paginated(namespace=namespace, pagination_token=token,
                                            limit=min(LIST_PAGE, max(1, wanted - len(ids))))
            ids.extend(item.id for item in page.vectors if item.id is not None)
            token = page.pagination.next if page.pagination else None
            if not token:
                break
        return ids, token

    def _fetch(self, namespace: str, ids: list[str]) -> list[MemoryRecord | Reject]:
        items: list[MemoryRecord | Reject] = []
        index = self.index()
        for start in range(0, len(ids), FETCH_IDS):
            chunk = ids[start:start + FETCH_IDS]
            with _translated("fetch"):
                found = index.fetch(ids=chunk, namespace=namespace).vectors
            for vid in chunk:
                vector = found.get(vid)
                if vector is None:  # deleted between list and fetch
                    continue
                items.append(self._record(namespace, vid, vector))
        return items

    def _record(self, namespace: str, vid: str, vector: Any) -> MemoryRecord | Reject:
        try:
            payload = dict(vector.metadata or {})
            vex = loads_exact(payload.pop(VEX_KEY)) if isinstance(payload.get(VEX_KEY), str) else {}
            if "blob" in vex:
                if self.blobs is None:
                    raise BlobError(f"its payload is in blob {vex['blob']}; give ?blobs=DIR to read it")
                payload = loads_exact(self.blobs.get(vex["blob"]))
                vex = loads_exact(payload.pop(VEX_KEY))
            payload[VEX_KEY] = vex or None
            values = vector.values
            vectors = {"": np.asarray(values, dtype="<f4").tobytes()} if values else {}
            sparse: dict[str, tuple[bytes, bytes]] = {}
            sp = vector.sparse_values
            if sp is not None and sp.indices:
                sparse[vex.get("sparse_name", "")] = (np.asarray(sp.indices, dtype="<u4").tobytes(),
                                                      np.asarray(sp.values, dtype="<f4").tobytes())
            return _LAYOUT.unpack(payload, store_id=vid, vectors=vectors, sparse=sparse,
                                  namespace=None if namespace in DEFAULT_NAMESPACE_NAMES else namespace)
        except (BlobError, ValueError, KeyError, TypeError) as err:
            reason = "missing_blob" if isinstance(err, BlobError) else "bad_metadata"
            return Reject(reason=reason, detail=f"record {vid!r}: {err}", id=vid,
                          namespace=namespace or None,
                          location=f"{self.describe()['location']} namespace {namespace!r}")

    def query(self, vector: Any, k: int, *, namespace: str | None = None,
              vector_name: str = "") -> list[QueryHit]:
        """Pinecone's ``query`` in the record namespace's own Pinecone namespace (Pinecone
        searches one namespace at a time: without one, the default namespace, which holds the
        records that have none); matches decoded as ``read`` decodes fetched vectors."""
        if vector_name:
            return []  # Pinecone holds one dense vector per record
        where = store_namespace(namespace)
        with _translated("query"):
            found = self.index().query(vector=np.asarray(vector, dtype=np.float32).tolist(), top_k=k,
                                       namespace=where, include_metadata=True, include_values=False)
        hits: list[QueryHit] = []
        for match in found.matches or []:
            item = self._record(where, match.id, match)
            if isinstance(item, MemoryRecord):
                hits.append(QueryHit(item.id, float(match.score), item.namespace))
        return hits

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        if self.bulk is not None:
            return PineconeImportWriter(self, self.bulk, resume=resume, dry_run=dry_run,
                                        spaces=spaces or {})
        return PineconeWriter(self, dry_run=dry_run, spaces=spaces or {})

    def create_index(self, space: VectorSpace) -> None:
        """Create the serverless index (``?create=true``; ``?cloud=``, ``?region=``)."""
        if not space.dims:
            raise UsageError("cannot create a Pinecone index without knowing the vector size")
        params = self.spec.params
        with _translated("create index"):
            self.client().indexes.create(
                name=self.index_name, dimension=space.dims,
                metric=metric_for("pinecone", space.metric, _METRICS),
                spec=ServerlessSpec(cloud=params.get("cloud", "aws"),
                                    region=params.get("region", "us-east-1")))
        self._stats = None

    def close(self) -> None:
        for held in (self._index, self._client):
            closer = getattr(held, "close", None)
            if closer is not None:
                closer()
        self._index = self._client = self._stats = None


class PineconeWriter(StoreWriter):
    """Upserts per namespace, in requests within Pinecone's count and size limits."""

    namespaced_ids = True

    def __init__(self, store: PineconeConnector, *, dry_run: bool,
                 spaces: dict[str, VectorSpace]) -> None:
        super().__init__(store, dry_run=dry_run, spaces=spaces, metrics=_METRICS)
        self.store: PineconeConnector = store
        self.exists = store.exists()
        if not self.exists and not store.create and not dry_run:
            raise UsageError(f"Pinecone has no index {store.index_name!r}",
                             hint="create it, or add ?create=true&cloud=aws&region=us-east-1")
        self.held = store.vector_spaces() if self.exists else {}

    def target_dims(self) -> dict[str, int]:
        return {name: s.dims for name, s in self.held.items() if s.dims}

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return dict(self.held)

    def create(self, batch: list[MemoryRecord]) -> None:
        self.store.create_index(self.spaces_to_create(batch).get("") or VectorSpace())
        self.exists = True
        self.held = self.store.vector_spaces()

    def created(self) -> bool:
        return self.exists

    def store_id(self, record: MemoryRecord) -> str:
        return store_id(record.id)

    def namespaces_of(self, ids: list[Any]) -> dict[Any, str | None]:  # pragma: no cover
        return {}  # namespaced_ids: each namespace is its own id space

    def upsert(self, rows: list[tuple[Any, MemoryRecord]]) -> list[Reject]:
        rejects: list[Reject] = []
        groups: dict[str, list[tuple[MemoryRecord, dict[str, Any], int]]] = {}
        for key, record in rows:
            built = self._vector(key, record)
            if isinstance(built, Reject):
                rejects.append(built)
                continue
            groups.setdefault(store_namespace(record.namespace), []).append((record, *built))
        for namespace, items in groups.items():
            for request in _requests(items):
                rejects.extend(self._send(namespace, request))
        return rejects

    def _vector(self, key: str, record: MemoryRecord) -> tuple[dict[str, Any], int] | Reject:
        """The vector Pinecone is sent for a record, and an upper bound of its JSON size (the
        metadata's measured size plus the longest form of each number), so a request can be
        kept under 2 MB without encoding every vector twice."""
        dense = record.vectors.get("")
        if dense is None or not np.any(dense.array()):
            return _reject(record, "zero_vector", "Pinecone refuses a dense vector whose values are"
                                                  " all zero")
        sparse_name = _native_sparse(record)
        native = set() if sparse_name is None else {sparse_name}
        extra = {"sparse_name": sparse_name} if sparse_name else None
        metadata = _LAYOUT.pack(record, store_id=key, native_sparse=native, accept=_key_ok,
                                store_namespace=store_namespace(record.namespace), extra_vex=extra)
        size = _size(metadata)
        if size > MAX_METADATA_BYTES:
            slim = self._to_blob(metadata)
            if slim is None:
                return _reject(record, "metadata_too_large",
                               f"its metadata (text included) is {size} bytes; Pinecone"
                               f" holds {MAX_METADATA_BYTES} per record. Add ?blobs=DIR to keep"
                               " such records whole, with their payload in DIR")
            metadata, size = slim, _size(slim)
        vector: dict[str, Any] = {"id": key, "values": dense.tolist(), "metadata": metadata}
        size += len(key.encode()) + _NUMBER_JSON * dense.dims + 64
        if sparse_name is not None:
            sp = record.sparse[sparse_name]
            vector["sparse_values"] = {"indices": sp.index_array().tolist(),
                                       "values": sp.value_array().tolist()}
            size += 2 * _NUMBER_JSON * sp.nnz
        return vector, size

    def _to_blob(self, metadata: dict[str, Any]) -> dict[str, Any] | None:
        """The full payload into a blob; the record keeps what still fits for filtering."""
        if self.store.blobs is None:
            return None
        ref = self.store.blobs.put(dumps_exact(metadata).encode())
        pointer = dumps_exact({"v": 1, "blob": ref})
        slim = {k: v for k, v in metadata.items() if k not in (VEX_KEY, _LAYOUT.text_key)}
        slim[VEX_KEY] = pointer
        return slim if _size(slim) <= MAX_METADATA_BYTES else {VEX_KEY: pointer}

    def _send(self, namespace: str, request: list[tuple[MemoryRecord, dict[str, Any], int]]) -> list[Reject]:
        """Upsert one request; when the server refuses it (400), split it to find the record
        it refuses, and reject only that one, with the server's reason."""
        index = self.store.index()
        try:
            with _translated("upsert"):
                index.upsert(vectors=[v for _, v, _ in request], namespace=namespace)
            return []
        except PermanentError as err:
            cause = err.__cause__
            if not (isinstance(cause, ApiError) and cause.status_code in (400, 413)):
                raise
            if len(request) == 1:
                return [_reject(request[0][0], "refused_by_store", str(cause))]
        half = len(request) // 2
        return self._send(namespace, request[:half]) + self._send(namespace, request[half:])


def _native_sparse(record: MemoryRecord) -> str | None:
    """The name of the sparse vector Pinecone holds natively (``sparse_values``), if any.
    Pinecone holds one per record, with 1 to 2,048 values: a second one, a larger one, and an
    empty one (which Pinecone does not keep) are kept in ``_vex``, so each comes back as it
    went in. The native one's name (when not "") is kept in ``_vex`` too."""
    if len(record.sparse) != 1:
        return None
    name, sparse = next(iter(record.sparse.items()))
    return name if 0 < sparse.nnz <= MAX_SPARSE else None


def _requests(items: list[tuple[MemoryRecord, dict[str, Any], int]],
              ) -> Iterator[list[tuple[MemoryRecord, dict[str, Any], int]]]:
    """Consecutive groups within 1,000 vectors and 2 MB of JSON."""
    group: list[tuple[MemoryRecord, dict[str, Any], int]] = []
    size = 0
    for item in items:
        if group and (len(group) >= MAX_UPSERT or size + item[2] > MAX_REQUEST_BYTES - _REQUEST_SLACK):
            yield group
            group, size = [], 0
        group.append(item)
        size += item[2] + 1
    if group:
        yield group


def _reject(record: MemoryRecord, reason: str, detail: str) -> Reject:
    return Reject(reason=reason, detail=detail, id=record.id, namespace=record.namespace)

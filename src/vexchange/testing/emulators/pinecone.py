"""A Pinecone emulator: the control plane and each index's data plane, in memory, on loopback.

It follows the documented REST API (API version 2026-07, as the ``pinecone`` 10.x SDK speaks
it) for the endpoints vexchange uses, with the documented limits enforced, so a connector
that passes against it has kept within them:

* control plane: ``GET/POST /indexes``, ``GET/DELETE /indexes/{name}``;
* data plane (one port per index, as each real index has its own host): ``POST
  /vectors/upsert``, ``GET /vectors/fetch``, ``GET /vectors/list``, ``POST /query``,
  ``POST /describe_index_stats``, ``GET /namespaces``, ``POST /vectors/delete``;
* bulk import from object storage (data plane): ``POST /bulk/imports``, ``GET /bulk/imports``,
  ``GET/DELETE /bulk/imports/{id}`` (the SDK's ``start_import``, ``list_imports``,
  ``describe_import``, ``cancel_import``). The import reads the Parquet files under the URI
  from an S3 server (``configure_storage``: moto in the tests) with the credentials of the
  storage integration named (none: anonymous, a public bucket), as the service documents it:
  one directory per namespace (``__default__`` for the default one), namespaces that do not
  exist yet, at most 100 of them, only ``*.parquet`` files read, the columns ``id``,
  ``values``, ``sparse_values``, ``metadata`` (JSON text) checked like an upsert's, and
  ``errorMode.onError``: ``abort`` (the default) fails the whole import at the first bad
  record or file and imports nothing, ``continue`` skips it (``PineconeEmulator.import_errors``
  keeps what was skipped, per import). An import runs on a thread: ``Pending``, ``InProgress``,
  then ``Completed``, ``Failed`` or ``Cancelled``;
* limits: 1,000 vectors and 2 MB per upsert, 1,000 ids per fetch, 100 ids per list page,
  ASCII ids of 1-512 characters, 40 KB of metadata per record with string, number, boolean
  or list-of-string values (no nulls, no nested objects, no key starting with ``$``), dense
  vectors of the index's dimension with a non-zero value, at most 2,048 sparse values;
* an empty sparse vector is not kept (the record reads back without one);
* numbers in metadata come back as floats (``3`` is read back as ``3.0``), vectors are held
  as float32, the default namespace is ``""`` and is listed as ``__default__``;
* the ``Api-Key`` header is checked; errors are ``{"code", "message", "details"}``.

Differences from the service: an index is ready at once and its ``host`` is an
``http://127.0.0.1:PORT`` URL (the service returns a bare TLS host name); storage integrations
are given to the emulator (``configure_storage``), not created through the admin API; an import
reads its files into memory one at a time. Faults are injected through ``emulator.faults``
(see :mod:`._http`).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._http import Answer, Fault, FaultSwitch, JsonServer, Request, _Refusal, refuse

__all__ = ["Fault", "PineconeEmulator", "S3Credentials"]

MAX_UPSERT_VECTORS = 1000
MAX_REQUEST_BYTES = 2 * 1024 * 1024
MAX_METADATA_BYTES = 40 * 1024
MAX_FETCH_IDS = 1000
MAX_LIST_LIMIT = 100
MAX_ID_LENGTH = 512
MAX_SPARSE_VALUES = 2048
DEFAULT_NAMESPACE_NAME = "__default__"
MAX_IMPORT_NAMESPACES = 100
MAX_IMPORT_LIST = 100
IMPORT_COLUMNS = ("id", "values", "sparse_values", "metadata")
_TERMINAL = ("Completed", "Failed", "Cancelled")
_METRICS = ("cosine", "dotproduct", "euclidean")
_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 429: 8, 500: 13, 503: 14}


@dataclass
class _Record:
    values: np.ndarray
    metadata: dict[str, Any] | None
    sparse: tuple[list[int], list[float]] | None


@dataclass(frozen=True)
class S3Credentials:
    """What a storage integration holds: the keys Pinecone reads a private bucket with."""

    access_key: str
    secret_key: str


@dataclass
class _Import:
    id: str
    uri: str
    error_mode: str
    integration: str | None
    status: str = "Pending"
    created_at: str = ""
    finished_at: str | None = None
    percent: float | None = None
    imported: int | None = None
    error: str | None = None

    def model(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "uri": self.uri, "status": self.status,
                               "createdAt": self.created_at}
        for key, value in (("finishedAt", self.finished_at), ("percentComplete", self.percent),
                           ("recordsImported", self.imported), ("error", self.error)):
            if value is not None:
                out[key] = value
        return out


@dataclass
class _Index:
    name: str
    dimension: int
    metric: str
    cloud: str = "aws"
    region: str = "us-east-1"
    namespaces: dict[str, dict[str, _Record]] = field(default_factory=dict)
    server: JsonServer | None = None
    imports: dict[str, _Import] = field(default_factory=dict)

    def model(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "host": self.server.url if self.server else None,
            "status": {"ready": True, "state": "Ready"},
            "schema": {"fields": {"_values": {"type": "dense_vector", "dimension": self.dimension,
                                             "metric": self.metric}}},
            "deployment": {"deployment_type": "managed", "cloud": self.cloud, "region": self.region},
            "deletion_protection": "disabled",
            "tags": None,
        }


def _error(status: int, message: str) -> dict[str, Any]:
    return {"code": _CODES.get(status, 2), "message": message, "details": []}


def _control_error(status: int, message: str) -> dict[str, Any]:
    names = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 404: "NOT_FOUND", 409: "ALREADY_EXISTS"}
    return {"error": {"code": names.get(status, "UNKNOWN"), "message": message}, "status": status}


def _namespace(name: str | None) -> str:
    return "" if name in (None, DEFAULT_NAMESPACE_NAME) else str(name)


class PineconeEmulator:
    """Start with ``PineconeEmulator(api_key=...)``; ``url`` is the control plane, and
    ``create_index`` (or the SDK's create) gives each index its own data-plane port."""

    def __init__(self, api_key: str = "emulator-key") -> None:
        self.api_key = api_key
        self.faults = FaultSwitch()
        self.indexes: dict[str, _Index] = {}
        self._lock = threading.RLock()
        self.s3_endpoint: str | None = None
        self.s3_region = "us-east-1"
        self.integrations: dict[str, S3Credentials] = {}
        self.import_seconds = 0.2
        """How long an import stays ``InProgress`` before it is applied (a poller sees it run)."""
        self.import_errors: dict[str, list[str]] = {}
        """Per import id: the records and files an import in ``continue`` mode skipped, and why."""
        self._import_ids = 0
        self.control = JsonServer(self._control, name_of=self._control_op, faults=self.faults,
                                  error_body=_control_error, ids_of=lambda op, r: set())
        self.url = self.control.url

    def __enter__(self) -> PineconeEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.control.stop()
        for index in self.indexes.values():
            if index.server:
                index.server.stop()

    def create_index(self, name: str, dimension: int, metric: str = "cosine") -> str:
        """Create an index directly (not through the API); returns its data-plane host."""
        with self._lock:
            index = _Index(name, dimension, metric)
            index.server = JsonServer(lambda r: self._data(index, r), name_of=self._data_op,
                                      faults=self.faults, error_body=_error, ids_of=self._ids_of)
            self.indexes[name] = index
            return index.server.url

    def configure_storage(self, endpoint: str, integrations: Mapping[str, S3Credentials] | None = None,
                          region: str = "us-east-1") -> None:
        """Where imports read ``s3://`` URIs (an S3-compatible server's URL), and the storage
        integrations by id (what ``integrationId`` names)."""
        self.s3_endpoint, self.s3_region = endpoint, region
        self.integrations = dict(integrations or {})

    def records(self, index: str) -> int:
        return sum(len(ns) for ns in self.indexes[index].namespaces.values())

    # -------------------------------------------------------------------------- control plane

    @staticmethod
    def _control_op(request: Request) -> str:
        if request.path.rstrip("/") == "/indexes":
            return "create_index" if request.method == "POST" else "list_indexes"
        return "delete_index" if request.method == "DELETE" else "describe_index"

    def _control(self, request: Request) -> tuple[str, Answer]:
        op = self._control_op(request)
        if request.headers.get("api-key") != self.api_key:
            return op, Answer(401, _control_error(401, "Invalid API Key"))
        parts = [p for p in request.path.split("/") if p]
        if parts[:1] != ["indexes"]:
            return op, Answer(404, _control_error(404, f"no route {request.path}"))
        with self._lock:
            if len(parts) == 1 and request.method == "GET":
                return op, Answer(200, {"indexes": [i.model() for i in self.indexes.values()]})
            if len(parts) == 1 and request.method == "POST":
                return op, self._create(request.json())
            index = self.indexes.get(parts[1]) if len(parts) == 2 else None
            if index is None:
                return op, Answer(404, _control_error(404, f"Resource {parts[-1]} not found"))
            if request.method == "DELETE":
                del self.indexes[index.name]
                if index.server:
                    index.server.stop()
                return op, Answer(202, None)
            return op, Answer(200, index.model())

    def _create(self, body: dict[str, Any]) -> Answer:
        name = body.get("name")
        if not isinstance(name, str) or not name:
            return Answer(400, _control_error(400, "name is required"))
        if name in self.indexes:
            return Answer(409, _control_error(409, f"Resource {name} already exists"))
        dense = [f for f in ((body.get("schema") or {}).get("fields") or {}).values()
                 if isinstance(f, dict) and f.get("type") == "dense_vector"]
        dimension = dense[0].get("dimension") if dense else body.get("dimension")
        metric = (dense[0].get("metric") if dense else body.get("metric")) or "cosine"
        if not isinstance(dimension, int) or not 1 <= dimension <= 20_000:
            return Answer(400, _control_error(400, "dimension must be an integer from 1 to 20000"))
        if metric not in _METRICS:
            return Answer(400, _control_error(400, f"metric must be one of {', '.join(_METRICS)}"))
        self.create_index(name, dimension, metric)
        deployment = body.get("deployment") or {}
        index = self.indexes[name]
        index.cloud = deployment.get("cloud", index.cloud)
        index.region = deployment.get("region", index.region)
        return Answer(201, index.model())

    # ----------------------------------------------------------------------------- data plane

    @staticmethod
    def _data_op(request: Request) -> str:
        path = request.path.rstrip("/")
        if path == "/bulk/imports":
            return "start_import" if request.method == "POST" else "list_imports"
        if path.startswith("/bulk/imports/"):
            return "cancel_import" if request.method == "DELETE" else "describe_import"
        return {"/vectors/upsert": "upsert", "/vectors/fetch": "fetch", "/vectors/list": "list",
                "/query": "query", "/describe_index_stats": "describe_index_stats",
                "/vectors/delete": "delete"}.get(path, "namespaces" if path.startswith("/namespaces")
                                                  else path)

    @staticmethod
    def _ids_of(op: str, request: Request) -> set[str]:
        if op == "upsert":
            try:
                return {str(v.get("id")) for v in request.json().get("vectors", []) if isinstance(v, dict)}
            except ValueError:
                return set()
        if op == "fetch":
            return set(request.query.get("ids", []))
        return set()

    def _data(self, index: _Index, request: Request) -> tuple[str, Answer]:
        op = self._data_op(request)
        if request.headers.get("api-key") != self.api_key:
            return op, Answer(401, _error(401, "Invalid API Key"))
        handler = getattr(self, f"_{op}", None)
        if handler is None:
            return op, Answer(404, _error(404, f"no route {request.method} {request.path}"))
        with self._lock:
            return op, handler(index, request)

    def _upsert(self, index: _Index, request: Request) -> Answer:
        if len(request.body) > MAX_REQUEST_BYTES:
            raise refuse(400, f"Request size {len(request.body)} bytes exceeds the limit of"
                              f" {MAX_REQUEST_BYTES} bytes")
        body = request.json()
        vectors = body.get("vectors")
        if not isinstance(vectors, list) or not vectors:
            raise refuse(400, "vectors must be a non-empty list")
        if len(vectors) > MAX_UPSERT_VECTORS:
            raise refuse(400, f"Upsert of {len(vectors)} vectors exceeds the limit of"
                              f" {MAX_UPSERT_VECTORS} per request")
        namespace = _namespace(body.get("namespace"))
        _check_name("namespace", namespace, allow_empty=True)
        checked = [(v.get("id"), self._check_vector(index, v)) for v in vectors]
        held = index.namespaces.setdefault(namespace, {})
        for vid, record in checked:
            held[vid] = record
        return Answer(200, {"upsertedCount": len(checked)})

    @staticmethod
    def _check_vector(index: _Index, vector: Any) -> _Record:
        if not isinstance(vector, dict):
            raise refuse(400, "each vector must be an object")
        vid = vector.get("id")
        _check_name("vector id", vid)
        values = vector.get("values")
        if not isinstance(values, list) or len(values) != index.dimension:
            got = len(values) if isinstance(values, list) else 0
            raise refuse(400, f"Vector dimension {got} does not match the dimension of the index"
                              f" {index.dimension}")
        array = np.asarray(values, dtype=np.float32)
        if not np.any(array):
            raise refuse(400, f"Dense vectors must contain at least one non-zero value (id {vid!r})")
        sparse = vector.get("sparseValues")
        pair: tuple[list[int], list[float]] | None = None
        if sparse is not None:
            indices, weights = sparse.get("indices"), sparse.get("values")
            if not isinstance(indices, list) or not isinstance(weights, list) or len(indices) != len(weights):
                raise refuse(400, "sparse indices and values must be lists of the same length")
            if len(indices) > MAX_SPARSE_VALUES:
                raise refuse(400, f"Sparse vector size {len(indices)} exceeds the maximum size of"
                                  f" {MAX_SPARSE_VALUES}")
            if len(set(indices)) != len(indices) or any(not isinstance(i, int) or not 0 <= i < 1 << 32
                                                        for i in indices):
                raise refuse(400, "sparse indices must be unique unsigned 32-bit integers")
            if indices:  # an empty sparse vector is not kept: the record has none
                pair = ([int(i) for i in indices], np.asarray(weights, dtype=np.float32).tolist())
        metadata = vector.get("metadata")
        if metadata is not None:
            metadata = _check_metadata(str(vid), metadata)
        return _Record(array, metadata, pair)

    def _fetch(self, index: _Index, request: Request) -> Answer:
        ids = request.query.get("ids", [])
        if not ids:
            raise refuse(400, "ids must not be empty")
        if len(ids) > MAX_FETCH_IDS:
            raise refuse(400, f"Fetch of {len(ids)} ids exceeds the limit of {MAX_FETCH_IDS}")
        namespace = _namespace(request.arg("namespace"))
        held = index.namespaces.get(namespace, {})
        found = {vid: _vector_json(vid, held[vid], True, True) for vid in ids if vid in held}
        return Answer(200, {"vectors": found, "namespace": namespace, "usage": {"readUnits": 1}})

    def _list(self, index: _Index, request: Request) -> Answer:
        namespace = _namespace(request.arg("namespace"))
        limit = int(request.arg("limit") or MAX_LIST_LIMIT)
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise refuse(400, f"limit must be between 1 and {MAX_LIST_LIMIT}")
        prefix = request.arg("prefix") or ""
        token = request.arg("paginationToken")
        after = base64.urlsafe_b64decode(token.encode()).decode() if token else None
        ids = sorted((i for i in index.namespaces.get(namespace, {}) if i.startswith(prefix)),
                     key=lambda i: i.encode())
        if after is not None:
            ids = [i for i in ids if i.encode() > after.encode()]
        page = ids[:limit]
        answer: dict[str, Any] = {"vectors": [{"id": i} for i in page], "namespace": namespace,
                                  "usage": {"readUnits": 1}}
        if len(ids) > limit:
            answer["pagination"] = {"next": base64.urlsafe_b64encode(page[-1].encode()).decode()}
        return Answer(200, answer)

    def _query(self, index: _Index, request: Request) -> Answer:
        body = request.json()
        namespace = _namespace(body.get("namespace"))
        held = index.namespaces.get(namespace, {})
        top_k = int(body.get("topK") or 10)
        query = body.get("vector")
        if query is None and body.get("id") in held:
            query = held[body["id"]].values.tolist()
        if not isinstance(query, list) or len(query) != index.dimension:
            raise refuse(400, "query vector must match the index dimension")
        q = np.asarray(query, dtype=np.float32)
        scored = []
        for vid, record in held.items():
            v = record.values
            if index.metric == "cosine":
                score = float(v @ q / (np.linalg.norm(v) * np.linalg.norm(q) or 1.0))
            elif index.metric == "dotproduct":
                score = float(v @ q)
            else:
                score = float(np.sum((v - q) ** 2))
            scored.append((score, vid))
        scored.sort(key=lambda s: (s[0] if index.metric == "euclidean" else -s[0], s[1]))
        matches = [{**_vector_json(vid, held[vid], bool(body.get("includeValues")),
                                   bool(body.get("includeMetadata"))), "score": score}
                   for score, vid in scored[:top_k]]
        return Answer(200, {"matches": matches, "namespace": namespace, "usage": {"readUnits": 1}})

    def _describe_index_stats(self, index: _Index, request: Request) -> Answer:
        namespaces = {(name or DEFAULT_NAMESPACE_NAME): {"vectorCount": len(held)}
                      for name, held in index.namespaces.items() if held}
        return Answer(200, {"namespaces": namespaces, "dimension": index.dimension,
                            "indexFullness": 0.0, "totalVectorCount": self.records(index.name),
                            "metric": index.metric, "vectorType": "dense"})

    def _namespaces(self, index: _Index, request: Request) -> Answer:
        names = sorted((n or DEFAULT_NAMESPACE_NAME) for n, held in index.namespaces.items() if held)
        prefix = request.arg("prefix") or ""
        names = [n for n in names if n.startswith(prefix)]
        limit = int(request.arg("limit") or 100)
        token = request.arg("paginationToken")
        start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
        page = names[start:start + limit]
        answer: dict[str, Any] = {
            "namespaces": [{"name": n, "record_count": str(len(index.namespaces[_namespace(n)]))}
                           for n in page],
            "total_count": len(names)}
        if start + limit < len(names):
            answer["pagination"] = {"next": base64.urlsafe_b64encode(str(start + limit).encode()).decode()}
        return Answer(200, answer)

    def _delete(self, index: _Index, request: Request) -> Answer:
        body = request.json()
        namespace = _namespace(body.get("namespace"))
        held = index.namespaces.get(namespace, {})
        if body.get("deleteAll"):
            held.clear()
        for vid in body.get("ids") or []:
            held.pop(vid, None)
        return Answer(200, {})


    # ---------------------------------------------------------------------------- bulk import

    def _start_import(self, index: _Index, request: Request) -> Answer:
        body = request.json()
        uri = body.get("uri")
        if not isinstance(uri, str) or not uri:
            raise refuse(400, "uri is required")
        mode = ((body.get("errorMode") or {}).get("onError") or "abort").lower()
        if mode not in ("abort", "continue"):
            raise refuse(400, "errorMode.onError must be 'abort' or 'continue'")
        integration = body.get("integrationId")
        if not uri.startswith("s3://"):
            raise refuse(400, f"unsupported import URI {uri!r}: the emulator imports from s3:// only")
        if index.cloud != "aws":
            raise refuse(400, "s3:// imports need an index hosted on AWS")
        if integration is not None and integration not in self.integrations:
            raise refuse(400, f"storage integration {integration!r} not found")
        if self.s3_endpoint is None:
            raise refuse(400, "the emulator has no object storage configured (configure_storage)")
        self._import_ids += 1
        job = _Import(str(self._import_ids), uri, mode, integration, created_at=_now())
        index.imports[job.id] = job
        threading.Thread(target=self._run_import, args=(index, job), daemon=True,
                         name=f"pinecone-import-{job.id}").start()
        return Answer(200, {"id": job.id})

    def _list_imports(self, index: _Index, request: Request) -> Answer:
        limit = int(request.arg("limit") or MAX_IMPORT_LIST)
        if not 1 <= limit <= MAX_IMPORT_LIST:
            raise refuse(400, f"limit must be between 1 and {MAX_IMPORT_LIST}")
        token = request.arg("paginationToken")
        start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
        jobs = sorted(index.imports.values(), key=lambda j: int(j.id))
        answer: dict[str, Any] = {"data": [j.model() for j in jobs[start:start + limit]]}
        if start + limit < len(jobs):
            answer["pagination"] = {"next": base64.urlsafe_b64encode(str(start + limit).encode()).decode()}
        return Answer(200, answer)

    def _job(self, index: _Index, request: Request) -> _Import:
        job = index.imports.get(request.path.rstrip("/").rsplit("/", 1)[1])
        if job is None:
            raise refuse(404, "Import not found")
        return job

    def _describe_import(self, index: _Index, request: Request) -> Answer:
        return Answer(200, self._job(index, request).model())

    def _cancel_import(self, index: _Index, request: Request) -> Answer:
        job = self._job(index, request)
        if job.status not in _TERMINAL:
            job.status, job.finished_at = "Cancelled", _now()
        return Answer(200, {})

    def _run_import(self, index: _Index, job: _Import) -> None:
        """Read and check every file, then apply what passed (``abort``: nothing at all once
        one record or file fails)."""
        with self._lock:
            if job.status == "Cancelled":
                return
            job.status, job.percent, job.imported = "InProgress", 0.0, 0
        skipped: list[str] = []
        try:
            loaded = self._read_import(index, job, skipped)
        except _Refusal as err:
            with self._lock:
                job.status, job.error, job.finished_at = "Failed", err.message, _now()
            return
        time.sleep(self.import_seconds)
        with self._lock:
            if job.status == "Cancelled":
                return
            for namespace, records in loaded.items():
                if records:  # a namespace whose every file was skipped is not made
                    index.namespaces.setdefault(namespace, {}).update(records)
            job.imported = sum(len(r) for r in loaded.values())
            job.status, job.percent, job.finished_at = "Completed", 100.0, _now()
            self.import_errors[job.id] = skipped

    def _read_import(self, index: _Index, job: _Import, skipped: list[str]) -> dict[str, dict[str, _Record]]:
        import pyarrow.fs as pafs

        fs = self._s3(job.integration)
        prefix = job.uri[len("s3://"):].rstrip("/")
        try:
            infos = fs.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
        except OSError as err:
            raise refuse(400, f"cannot list {job.uri}: {err}") from None
        files = sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(".parquet"))
        if not files:
            raise refuse(400, f"no Parquet files under {job.uri}")
        by_namespace: dict[str, list[str]] = {}
        for path in files:
            parts = path[len(prefix) + 1:].split("/")
            if len(parts) != 2:
                self._bad(job, skipped, f"{path}: a Parquet file must be in a namespace directory")
                continue
            by_namespace.setdefault(parts[0], []).append(path)
        if len(by_namespace) > MAX_IMPORT_NAMESPACES:
            raise refuse(400, f"an import holds at most {MAX_IMPORT_NAMESPACES} namespaces, not"
                              f" {len(by_namespace)}")
        for folder in by_namespace:
            if index.namespaces.get(_namespace(folder)):
                raise refuse(400, f"namespace {folder!r} already exists; an import creates its namespaces")
        loaded: dict[str, dict[str, _Record]] = {}
        done = 0
        for folder, paths in sorted(by_namespace.items()):
            held = loaded.setdefault(_namespace(folder), {})
            for path in paths:
                held.update(self._read_file(index, job, fs, path, skipped))
                done += 1
                job.percent = round(100.0 * done / len(files) * 0.99, 1)
        return loaded

    def _read_file(self, index: _Index, job: _Import, fs: Any, path: str,
                   skipped: list[str]) -> dict[str, _Record]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            with fs.open_input_file(path) as handle:
                table = pq.read_table(handle)
        except (OSError, pa.ArrowException) as err:
            self._bad(job, skipped, f"{path}: not a readable Parquet file: {err}")
            return {}
        extra = [c for c in table.column_names if c not in IMPORT_COLUMNS]
        if extra or "id" not in table.column_names or "values" not in table.column_names:
            self._bad(job, skipped, f"{path}: the columns must be {', '.join(IMPORT_COLUMNS)} (id and values"
                                    f" required), not {', '.join(table.column_names)}")
            return {}
        rows = table.to_pylist()
        out: dict[str, _Record] = {}
        for n, row in enumerate(rows):
            try:
                vid = row.get("id")
                sparse = row.get("sparse_values")
                meta = row.get("metadata")
                if meta is not None:
                    try:
                        meta = json.loads(meta)
                    except ValueError:
                        raise refuse(400, "metadata is not JSON text") from None
                vector = {"id": vid, "values": row.get("values"), "metadata": meta,
                          "sparseValues": sparse}
                if isinstance(vector["values"], list) and not all(
                        isinstance(v, float) and np.isfinite(v) for v in vector["values"]):
                    raise refuse(400, "values must be finite numbers")
                out[str(vid)] = self._check_vector(index, vector)
            except _Refusal as err:
                self._bad(job, skipped, f"{path} row {n} (id {row.get('id')!r}): {err.message}")
        return out

    @staticmethod
    def _bad(job: _Import, skipped: list[str], message: str) -> None:
        """One bad record or file: the import fails (``abort``) or skips it (``continue``)."""
        if job.error_mode == "abort":
            raise refuse(400, message)
        skipped.append(message)

    def _s3(self, integration: str | None) -> Any:
        import urllib.parse

        import pyarrow.fs as pafs

        split = urllib.parse.urlsplit(self.s3_endpoint or "")
        kwargs: dict[str, Any] = {"endpoint_override": split.netloc, "scheme": split.scheme or "https",
                                  "region": self.s3_region}
        if integration is None:
            kwargs["anonymous"] = True
        else:
            creds = self.integrations[integration]
            kwargs.update(access_key=creds.access_key, secret_key=creds.secret_key)
        return pafs.S3FileSystem(**kwargs)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"


def _check_name(what: str, value: Any, *, allow_empty: bool = False) -> None:
    if not isinstance(value, str) or (not value and not allow_empty):
        raise refuse(400, f"{what} must be a non-empty string")
    if len(value) > MAX_ID_LENGTH or not value.isascii() or "\x00" in value:
        raise refuse(400, f"{what} {value[:40]!r} must be 1-{MAX_ID_LENGTH} ASCII characters"
                          " without NUL")


def _check_metadata(vid: str, metadata: Any) -> dict[str, Any]:
    if not isinstance(metadata, dict):
        raise refuse(400, f"metadata of {vid!r} must be an object")
    size = len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        raise refuse(400, f"Metadata size is {size} bytes, which exceeds the limit of"
                          f" {MAX_METADATA_BYTES} bytes per vector")
    stored: dict[str, Any] = {}
    for key, value in metadata.items():
        if key.startswith("$"):
            raise refuse(400, f"Metadata field {key!r} of {vid!r} starts with '$', which is"
                              " reserved for filter operators")
        if isinstance(value, (bool, str)):
            stored[key] = value
        elif isinstance(value, (int, float)):
            stored[key] = float(value)  # the service keeps numbers as floats
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            stored[key] = list(value)
        else:
            raise refuse(400, f"Metadata value for field {key!r} of {vid!r} must be a string,"
                              " number, boolean or list of strings")
    return stored


def _vector_json(vid: str, record: _Record, values: bool, metadata: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"id": vid}
    if values:
        out["values"] = [float(v) for v in record.values]
        if record.sparse is not None:
            out["sparseValues"] = {"indices": record.sparse[0], "values": record.sparse[1]}
    if metadata and record.metadata is not None:
        out["metadata"] = record.metadata
    return out

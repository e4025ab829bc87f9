"""``chroma``: a Chroma 1.x collection, embedded (persistent path) or over HTTP (v2 API).
docs/connectors/chroma.md.

URL forms::

    chroma:///abs/dir?collection=memories        embedded PersistentClient
    chroma:relative/dir?collection=memories
    chroma://host:8000/memories                  HttpClient (token: VEX_CHROMA_TOKEN)

Chroma holds one embedding per record, and every record needs one; text goes to ``documents``.
Chroma metadata holds str, int, float, bool and non-empty lists of one of those; nulls, empty or
mixed lists and nested objects are kept in the reserved ``_vex`` key as JSON, and so are keys
Chroma refuses (the empty key, keys starting with ``#`` or ``$``, ``chroma:document``). Chroma
changes the last bit of some floats (90.28571428571429 reads back as 90.28571428571428), so floats are
written natively for filtering and also kept exactly in ``_vex``, which wins on read.
Chroma merges an upsert's metadata into the record's old metadata; the writer clears every old
key the new record lacks, so an update replaces the metadata exactly, as in every other store.
In a cosine collection Chroma changes the last bit of some vector values (it keeps their
direction and length); ``verify`` reports such records as "rounded". Other metrics are exact. Nothing ever
passes through Chroma's default embedding function (it would download a model): every write
carries its embeddings and the collection is opened with ``embedding_function=None``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromadb
from chromadb.api.types import META_KEY_CHROMA_DOCUMENT
from chromadb.config import DEFAULT_DATABASE, DEFAULT_TENANT, Settings
import httpx
import numpy as np

from ..errors import UsageError
from ..record import MemoryRecord
from ..spec import StoreSpec
from ._base import Capabilities, Page, QueryHit, Reject, VectorSpace, Writer
from ._payload import PayloadLayout, has_float, scalar_or_scalar_list
from ._split import CollectionStore
from ._store import StoreWriter, metric_for, metric_from, translated

__all__ = ["ChromaConnector"]

_METRICS = {"cosine": "cosine", "dot": "ip", "euclidean": "l2"}
_DEFAULT_COLLECTION = "memories"
_LAYOUT = PayloadLayout("chroma", text_key=None, native=scalar_or_scalar_list, inexact=has_float,
                        vex_as_text=True)
_TRANSIENT = (httpx.TransportError, ConnectionError, TimeoutError)
_REFUSED = (chromadb.errors.InvalidArgumentError, ValueError)
"""What Chroma raises for a batch it refuses for its content (a key, a value, an id): it names
only the batch index, so the batch is written again record by record to find the culprit."""


def chroma_key(key: str, value: Any) -> bool:
    """Whether Chroma takes ``key`` as a metadata key: it refuses the empty key and keys that
    start with ``#`` or ``$`` (its own fields and query operators), and keeps
    ``chroma:document`` for itself. A refused key is kept in ``_vex`` instead."""
    return bool(key) and key[0] not in "#$" and key != META_KEY_CHROMA_DOCUMENT


def _nothing_native(key: str, value: Any) -> bool:
    """For a record Chroma refused with its native keys: keep all its metadata in ``_vex``."""
    return False


class ChromaConnector(CollectionStore):
    name = "chroma"
    url_options = frozenset({'collection', 'database', 'https', 'namespaces', 'tenant'})
    url_secret = "token"
    extra = "chroma"
    default_port = 8000
    capabilities = Capabilities(read=True, write=True, named_vectors=False, null_vectors=False,
                                fixed_dims=True, rounds=("cosine",),
                                preferred_batch=5000)

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if spec.host:
            self.collection_name = (spec.path or "").strip("/") or spec.params.get(
                "collection", _DEFAULT_COLLECTION)
        elif spec.path:
            self.collection_name = spec.params.get("collection", _DEFAULT_COLLECTION)
        else:
            raise UsageError("chroma needs a location: chroma:///path/dir?collection=NAME"
                             " or chroma://host:8000/NAME")
        if not 3 <= len(self.collection_name) <= 512:
            raise UsageError(f"Chroma collection names have 3 to 512 characters:"
                             f" {self.collection_name!r}")
        self._client: Any = None

    def collection_names(self) -> list[str]:
        client = self.client()
        with self._translated("list collections"):
            return [c.name for c in client.list_collections()]

    def _translated(self, operation: str) -> Any:
        return translated("chroma", operation, transient=_TRANSIENT,
                          permanent=(ValueError, chromadb.errors.ChromaError),
                          hint="check the Chroma location, collection name and token")

    def client(self) -> Any:
        if self._client is None:
            with self._translated("connect"):
                if self.spec.host:
                    token = self.spec.secret("token")
                    headers = {"x-chroma-token": token} if token else None
                    self._client = chromadb.HttpClient(
                        host=self.spec.host, port=self.spec.port or self.default_port, headers=headers,
                        tenant=self.spec.params.get("tenant", DEFAULT_TENANT),
                        database=self.spec.params.get("database", DEFAULT_DATABASE),
                        settings=Settings(anonymized_telemetry=False))
                else:
                    self._check_path()
                    self._client = chromadb.PersistentClient(
                        path=str(self.spec.path),
                        settings=Settings(anonymized_telemetry=False))
        return self._client

    def _check_path(self) -> None:
        path = Path(str(self.spec.path))
        if path.exists() and not path.is_dir():
            raise UsageError(f"{path} is a file; a Chroma database is a directory",
                             hint="give the directory Chroma persists into")

    def collection(self, *, create_with: str | None = None) -> Any:
        """The collection; created with metric ``create_with`` when missing and asked to."""
        client = self.client()
        with self._translated("open collection"):
            if create_with is None:
                try:
                    return client.get_collection(self.collection_name, embedding_function=None)
                except chromadb.errors.NotFoundError:
                    raise UsageError(f"Chroma has no collection {self.collection_name!r}"
                                     f" at {self.describe()['location']}") from None
            return client.get_or_create_collection(
                self.collection_name, embedding_function=None,
                metadata={"hnsw:space": create_with})

    def count(self) -> int | None:
        collection = self.collection()
        with self._translated("count"):
            return int(collection.count())

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return _spaces(self.collection())

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        collection = self.collection()
        offset = int(after) if after else 0
        while True:
            with self._translated("read"):
                got = collection.get(include=["embeddings", "metadatas", "documents"],
                                     limit=batch_size, offset=offset)
            ids = got["ids"]
            items = [_item(i, got, rid) for i, rid in enumerate(ids)]
            offset += len(ids)
            more = len(ids) == batch_size
            yield Page(items, str(offset) if more else None)
            if not more:
                return

    def query(self, vector: Any, k: int, *, namespace: str | None = None,
              vector_name: str = "") -> list[QueryHit]:
        """Chroma's own ``query`` (its HNSW index), filtered on the ``namespace`` field; hits
        decoded as ``read`` decodes them, so ids and namespaces are the records' own."""
        if vector_name:
            return []  # Chroma holds the default vector only
        collection = self.collection()
        where = None if namespace is None else {"namespace": namespace}
        with self._translated("query"):
            got = collection.query(query_embeddings=[np.asarray(vector, dtype=np.float32)], n_results=k,
                                   where=where, include=["metadatas", "distances"])
        rows = {"metadatas": got["metadatas"][0], "embeddings": None,
                "documents": [None] * len(got["ids"][0])}
        hits: list[QueryHit] = []
        for i, rid in enumerate(got["ids"][0]):
            item = _item(i, rows, rid)
            if isinstance(item, MemoryRecord):
                hits.append(QueryHit(item.id, float(got["distances"][0][i]), item.namespace))
        return hits

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        return ChromaWriter(self, dry_run=dry_run, spaces=spaces or {})

    def close(self) -> None:
        self._client = None


def _spaces(collection: Any) -> dict[str, VectorSpace]:
    config = getattr(collection, "configuration_json", None) or {}
    space = ((config.get("hnsw") or {}).get("space") or (config.get("spann") or {}).get("space")
             or (collection.metadata or {}).get("hnsw:space") or "l2")
    first = collection.get(limit=1, include=["embeddings"])
    embeddings = first.get("embeddings")
    dims = len(embeddings[0]) if embeddings is not None and len(embeddings) else None
    return {"": VectorSpace(dims=dims, metric=metric_from(_METRICS, space))}


def _item(i: int, got: dict[str, Any], rid: str) -> MemoryRecord | Reject:
    metadata = got["metadatas"][i] or {}
    embedding = got["embeddings"][i] if got["embeddings"] is not None else None
    vectors = {} if embedding is None else {"": np.asarray(embedding, dtype="<f4").tobytes()}
    try:
        record = _LAYOUT.unpack(metadata, store_id=rid, vectors=vectors)
    except ValueError as err:
        return Reject(reason="bad_payload", detail=str(err), id=rid, record=metadata)
    text = got["documents"][i]
    return record if text is None else record.replace(text=text)


class ChromaWriter(StoreWriter):
    def __init__(self, store: ChromaConnector, *, dry_run: bool,
                 spaces: dict[str, VectorSpace]) -> None:
        super().__init__(store, dry_run=dry_run, spaces=spaces, metrics=_METRICS)
        self.metric = metric_for("chroma", spaces.get("", VectorSpace()).metric, _METRICS)
        self._collection: Any = None
        self._existing_spaces: dict[str, VectorSpace] = {}
        self._held_keys: dict[str, list[str]] = {}
        """Metadata keys of the batch's records that the store already holds (``namespaces_of``)."""
        try:
            self._collection = store.collection()
            self._existing_spaces = _spaces(self._collection)
        except UsageError:  # made by the first write (``create``)
            pass

    def created(self) -> bool:
        """A collection this run creates holds only what it sent, so the engine looks up
        only ids sent before (``StoreWriter._maybe_held``), not every batch's."""
        return self._collection is not None

    def create(self, batch: list[MemoryRecord]) -> None:
        self._collection = self.store.collection(create_with=self.metric)

    def target_dims(self) -> dict[str, int]:
        dims = self._existing_spaces.get("", VectorSpace()).dims
        return {"": dims} if dims else {}

    def vector_spaces(self) -> dict[str, VectorSpace]:
        if self._collection is None:
            return {}
        with self.store._translated("describe"):
            return _spaces(self._collection)

    def store_id(self, record: MemoryRecord) -> str:
        return record.id

    def namespaces_of(self, ids: list[Any]) -> dict[Any, str | None]:
        """Also notes each held record's metadata keys, which ``upsert`` must clear."""
        with self.store._translated("read"):
            got = self._collection.get(ids=ids, include=["metadatas"])
        held = list(zip(got["ids"], got["metadatas"], strict=False))
        self._held_keys = {rid: list(meta or ()) for rid, meta in held}
        return {rid: (meta or {}).get("namespace") for rid, meta in held}

    def payload(self, record: MemoryRecord, *, native: bool = True) -> dict[str, Any]:
        """The record's metadata, with every old key it lacks set to None: Chroma merges an
        upsert into the old metadata, and None is how it removes a key. ``native=False``
        keeps all metadata in ``_vex`` (for a record Chroma refused as it was)."""
        packed = _LAYOUT.pack(record, accept=chroma_key if native else _nothing_native)
        for key in self._held_keys.get(record.id, ()):
            packed.setdefault(key, None)
        return packed

    def upsert(self, rows: list[tuple[Any, MemoryRecord]]) -> list[Reject]:
        rejects: list[Reject] = []
        ready: list[tuple[MemoryRecord, dict[str, Any]]] = []
        for _, record in rows:
            if record.id:
                ready.append((record, self.payload(record)))
            else:
                rejects.append(_refused(record, "Chroma ids have at least one character"))
        with self.store._translated("upsert"):
            limit = int(self.store.client().get_max_batch_size())
            for start in range(0, len(ready), limit):
                rejects.extend(self._write(ready[start:start + limit]))
        self._held_keys = {}
        return rejects

    def _write(self, chunk: list[tuple[MemoryRecord, dict[str, Any]]]) -> list[Reject]:
        """Write a chunk; when Chroma refuses it, write its records one by one, so only the
        records Chroma refuses are left out, each named in its reject."""
        try:
            self._send(chunk)
            return []
        except _REFUSED as err:
            if len(chunk) == 1:
                return self._write_alone(*chunk[0], err)
        rejects: list[Reject] = []
        for record, payload in chunk:
            try:
                self._send([(record, payload)])
            except _REFUSED as err:
                rejects.extend(self._write_alone(record, payload, err))
        return rejects

    def _write_alone(self, record: MemoryRecord, payload: dict[str, Any],
                     err: Exception) -> list[Reject]:
        """A record Chroma refused: written again with all its metadata in ``_vex`` (a key or
        value of a kind Chroma refuses that ``chroma_key`` does not know yet), else refused."""
        native = [k for k, v in payload.items() if k != "_vex" and v is not None]
        try:
            self._send([(record, self.payload(record, native=False))])
            return []
        except _REFUSED as again:
            return [_refused(record, f"Chroma refused the record (metadata keys {native!r}):"
                                     f" {_first_line(err)}; with its metadata kept in _vex:"
                                     f" {_first_line(again)}")]

    def _send(self, chunk: list[tuple[MemoryRecord, dict[str, Any]]]) -> None:
        self._collection.upsert(
            ids=[r.id for r, _ in chunk],
            embeddings=np.stack([r.vectors[""].array() for r, _ in chunk]),
            metadatas=[p for _, p in chunk],
            documents=[r.text for r, _ in chunk])


def _refused(record: MemoryRecord, detail: str) -> Reject:
    return Reject(reason="refused_by_store", id=record.id, namespace=record.namespace,
                  detail=f"record {record.id!r}: {detail}")


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"[:300]

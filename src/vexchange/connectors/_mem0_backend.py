"""The vector stores behind Mem0 that vexchange reads raw vectors from, and Mem0's history
database (docs/connectors/mem0.md).

Each backend opens the store with the client Mem0 itself would create, hands it to Mem0's own
vector-store class (``mem0.vector_stores.qdrant.Qdrant``, ``...chroma.ChromaDB``) for every
write, so a memory is laid out exactly as Mem0 lays it out, and reads pages through the same
client with the vectors included, which Mem0's own ``list`` leaves out. Mem0 is imported by the
connector module before this one, with its telemetry off.
"""

from __future__ import annotations

import sqlite3
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError

__all__ = ["Backend", "ChromaBackend", "History", "QdrantBackend", "open_backend"]

_F32 = np.dtype("<f4")
_HISTORY_COLUMNS = ("id", "old_memory", "new_memory", "event", "created_at", "updated_at",
                    "is_deleted", "actor_id", "role")
Row = tuple[str, dict[str, Any], bytes | None]
"""(store id, payload, float32 vector bytes or None when the store holds no dense vector)."""


def _f32(values: Any) -> bytes | None:
    if values is None:
        return None
    arr = np.asarray(values, dtype=_F32)
    return arr.tobytes() if arr.ndim == 1 else None


class Backend(ABC):
    """One Mem0 collection in one local vector store."""

    provider: str
    metric: str
    """vexchange's name for the distance Mem0 creates this store's collections with."""

    def __init__(self, path: str, collection: str) -> None:
        self.path = path
        self.collection = collection
        self.store: Any = None
        """Mem0's vector-store object, once the collection exists."""

    @abstractmethod
    def exists(self) -> bool:
        """Whether the collection is there (opens the client, creates nothing)."""

    @abstractmethod
    def dims(self) -> int | None:
        """The collection's vector size."""

    @abstractmethod
    def attach(self, dims: int) -> None:
        """Give the client to Mem0's own class; Mem0 creates the collection when it is new."""

    @abstractmethod
    def count(self) -> int:
        ...

    @abstractmethod
    def page(self, after: Any, limit: int) -> tuple[list[Row], Any]:
        """Up to ``limit`` memories after the position ``after`` (None: the start), and the
        next position (None after the last)."""

    @abstractmethod
    def held(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """The payload of each of these ids the store holds."""

    def insert(self, ids: list[str], vectors: list[list[float]], payloads: list[dict[str, Any]],
               held: set[str]) -> None:
        """Upsert through Mem0's ``insert`` (Qdrant's is an upsert already)."""
        self.store.insert(vectors=vectors, payloads=payloads, ids=ids)

    @abstractmethod
    def close(self) -> None:
        ...


class QdrantBackend(Backend):
    """qdrant-client's local mode at a path: what Mem0 uses by default (``/tmp/qdrant``).
    Mem0 creates its collections with cosine distance, an unnamed dense vector and a ``bm25``
    sparse slot (filled only when fastembed is installed and can load its model)."""

    provider = "qdrant"
    metric = "cosine"

    def __init__(self, path: str, collection: str) -> None:
        super().__init__(path, collection)
        from qdrant_client import QdrantClient
        self.client = QdrantClient(path=path)

    def exists(self) -> bool:
        return bool(self.client.collection_exists(self.collection))

    def dims(self) -> int | None:
        vectors = self.client.get_collection(self.collection).config.params.vectors
        if isinstance(vectors, Mapping):
            vectors = vectors.get("")
        size = getattr(vectors, "size", None)
        return int(size) if size else None

    def attach(self, dims: int) -> None:
        from mem0.vector_stores.qdrant import Qdrant
        with warnings.catch_warnings():  # local mode warns that payload indexes do nothing
            warnings.simplefilter("ignore")
            self.store = Qdrant(collection_name=self.collection, embedding_model_dims=dims,
                                client=self.client)

    def count(self) -> int:
        return int(self.client.count(self.collection, exact=True).count)

    def page(self, after: Any, limit: int) -> tuple[list[Row], Any]:
        points, offset = self.client.scroll(self.collection, limit=limit, offset=after,
                                            with_payload=True, with_vectors=True)
        rows: list[Row] = []
        for point in points:
            vector = point.vector.get("") if isinstance(point.vector, Mapping) else point.vector
            rows.append((str(point.id), dict(point.payload or {}), _f32(vector)))
        return rows, offset

    def held(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        points = self.client.retrieve(self.collection, ids=ids, with_payload=True, with_vectors=False)
        return {str(p.id): dict(p.payload or {}) for p in points}

    def close(self) -> None:
        self.client.close()


class ChromaBackend(Backend):
    """Chroma's persistent client at a path, with the settings Mem0 opens it with. Mem0
    creates collections with Chroma's default distance (l2), so vectors are kept exactly."""

    provider = "chroma"
    metric = "euclidean"

    def __init__(self, path: str, collection: str) -> None:
        super().__init__(path, collection)
        import chromadb
        from chromadb.config import Settings
        self.client = chromadb.Client(Settings(anonymized_telemetry=False, persist_directory=path,
                                               is_persistent=True))
        self._collection: Any = None

    def exists(self) -> bool:
        names = {getattr(c, "name", c) for c in self.client.list_collections()}
        return self.collection in names

    def dims(self) -> int | None:
        got = self.client.get_collection(self.collection).get(limit=1, include=["embeddings"])
        embeddings = got.get("embeddings")
        return len(embeddings[0]) if embeddings is not None and len(embeddings) else None

    def attach(self, dims: int) -> None:
        from mem0.vector_stores.chroma import ChromaDB
        self.store = ChromaDB(collection_name=self.collection, client=self.client)
        self._collection = self.store.collection

    def _coll(self) -> Any:
        return self._collection or self.client.get_collection(self.collection)

    def count(self) -> int:
        return int(self._coll().count())

    def page(self, after: Any, limit: int) -> tuple[list[Row], Any]:
        start = int(after or 0)
        got = self._coll().get(limit=limit, offset=start, include=["embeddings", "metadatas"])
        ids = got["ids"]
        metas = got.get("metadatas") or [None] * len(ids)
        embeddings = got.get("embeddings")
        rows: list[Row] = [(str(i), dict(metas[n] or {}),
                            _f32(embeddings[n]) if embeddings is not None else None)
                           for n, i in enumerate(ids)]
        return rows, (start + len(ids) if len(ids) == limit else None)

    def held(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        got = self._coll().get(ids=ids, include=["metadatas"])
        metas = got.get("metadatas") or [None] * len(got["ids"])
        return {str(i): dict(metas[n] or {}) for n, i in enumerate(got["ids"])}

    def insert(self, ids: list[str], vectors: list[list[float]], payloads: list[dict[str, Any]],
               held: set[str]) -> None:
        """Mem0's Chroma ``insert`` is Chroma's ``add``, which keeps an id it already holds:
        such ids are deleted through Mem0 first, so the write replaces them whole (Chroma's
        ``update`` would merge the old metadata in)."""
        for memory_id in ids:
            if memory_id in held:
                self.store.delete(vector_id=memory_id)
        self.store.insert(vectors=vectors, payloads=payloads, ids=ids)

    def close(self) -> None:
        """Chroma's embedded client has nothing to close; its system is shared by path."""


def open_backend(provider: str, path: str, collection: str) -> Backend:
    if provider == "qdrant":
        return QdrantBackend(path, collection)
    if provider == "chroma":
        return ChromaBackend(path, collection)
    raise UsageError(f"mem0: vector store {provider!r} is not supported",
                     hint="use qdrant (local path) or chroma (persistent path)")


class History:
    """Mem0's SQLite history database: read with sqlite3 (read-only, so reading never creates
    the file), written through Mem0's ``SQLiteManager`` (which creates Mem0's tables) with each
    row's own id, so a write is an idempotent upsert and ``Memory.history`` gives the rows back."""

    def __init__(self, path: str, *, write: bool) -> None:
        self.path = path
        self.manager: Any = None
        self.conn: sqlite3.Connection | None
        if write:
            from mem0.memory.storage import SQLiteManager
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.manager = SQLiteManager(path)
            self.conn = self.manager.connection
        elif Path(path).exists():
            self.conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
        else:
            self.conn = None

    def _tables(self) -> set[str]:
        if self.conn is None:
            return set()
        return {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def rows_for(self, memory_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """History rows of these memories, in the order they were written."""
        out: dict[str, list[dict[str, Any]]] = {}
        if self.conn is None or not memory_ids or "history" not in self._tables():
            return out
        marks = ",".join("?" * len(memory_ids))
        cols = ", ".join(_HISTORY_COLUMNS)
        for row in self.conn.execute(f"SELECT memory_id, {cols} FROM history WHERE memory_id IN"
                                     f" ({marks}) ORDER BY rowid", memory_ids):
            out.setdefault(row[0], []).append(dict(zip(_HISTORY_COLUMNS, row[1:], strict=True)))
        return out

    def memory_ids_after(self, after: str | None, limit: int) -> list[str]:
        if self.conn is None or "history" not in self._tables():
            return []
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT memory_id FROM history WHERE memory_id IS NOT NULL AND memory_id > ?"
            " ORDER BY memory_id LIMIT ?", (after or "", limit))]

    def messages_after(self, after: int, limit: int) -> list[dict[str, Any]]:
        if self.conn is None or "messages" not in self._tables():
            return []
        cur = self.conn.execute("SELECT rowid, * FROM messages WHERE rowid > ? ORDER BY rowid LIMIT ?",
                                (after, limit))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def write(self, memory_id: str, rows: list[dict[str, Any]]) -> None:
        """Upsert a memory's rows by their ids (one transaction)."""
        if self.conn is None or not rows:
            return
        cols = ("id", "memory_id", *_HISTORY_COLUMNS[1:])
        values = [(row.get("id"), memory_id, *(row.get(c) for c in _HISTORY_COLUMNS[1:])) for row in rows]
        with self.manager._lock, self.conn:
            self.conn.executemany(f"INSERT OR REPLACE INTO history ({', '.join(cols)})"
                                  f" VALUES ({', '.join('?' * len(cols))})", values)

    def write_message(self, record: Any, own: Mapping[str, Any]) -> None:
        """Upsert one turn of Mem0's message log by its id."""
        if self.conn is None:
            return
        with self.manager._lock, self.conn:
            self.conn.execute("INSERT OR REPLACE INTO messages (id, session_scope, role, content, name,"
                              " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                              (record.id, record.namespace, own.get("role"), record.text, own.get("name"),
                               own.get("created_at")))

    def close(self) -> None:
        if self.manager is not None:
            self.manager.close()
        elif self.conn is not None:
            self.conn.close()
        self.conn = None

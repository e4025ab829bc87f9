"""``mem0``: memories of Mem0 open source (``mem0ai``) kept in local components: a Qdrant
local-mode or Chroma persistent vector store and Mem0's SQLite history database.
docs/connectors/mem0.md.

Location forms::

    mem0:///abs/dir                          <dir>/qdrant, collection "mem0", <dir>/history.db
    mem0:///abs/dir?vector_store=chroma      <dir>/chroma instead
    mem0:///abs/mem0-config.json             the dict a user gives Memory.from_config

Reading takes each memory's raw vector from the vector store with its payload and history, so
a move never re-embeds; writing goes through Mem0's own vector-store classes and history
manager, so the result opens in ``Memory`` and answers its ``search`` and ``get_all`` with the
same ids. No embedder and no LLM is ever built: nothing here reaches a network or needs a key.
"""

from __future__ import annotations

import os

os.environ.setdefault("MEM0_TELEMETRY", "False")  # before Mem0's first import: no PostHog client

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mem0  # noqa: F401 - the SDK; a missing one is reported as the extra to install
from mem0.utils.lemmatization import lemmatize_for_bm25
import numpy as np

from .._json import dumps_exact, loads_exact
from .._time import parse_timestamp
from ..errors import UsageError
from ..record import MemoryRecord
from ..spec import StoreSpec
from ._base import METRICS, AtPath, Capabilities, Connector, Page, Reject, VectorSpace, Writer
from ._mem0_backend import Backend, History, open_backend
from ._mem0_layout import EXTRA_KEY, is_canonical_uuid, namespace_of, payload_for, record_from, scope_of
from ._payload import json_exact, scalar_or_scalar_list, uuid_for
from ._store import StoreWriter, translated

__all__ = ["Mem0Connector"]

_PROVIDERS = ("qdrant", "chroma")
_DEFAULT_COLLECTION = "mem0"
_LOCAL_KEYS = {"qdrant": {"path", "collection_name", "embedding_model_dims", "on_disk"},
               "chroma": {"path", "collection_name"}}
"""The vector-store settings a local Mem0 store has; anything else (a host, a URL, a key, a
client) is a server or a cloud, which this connector does not reach."""
_OPEN_ERRORS = (RuntimeError, OSError, ValueError)


class _Place:
    """Where one Mem0 memory lives: vector store, its path, collection, history database."""

    def __init__(self, provider: str, path: str, collection: str, history: str) -> None:
        self.provider, self.path, self.collection, self.history = provider, path, collection, history


def _from_config_file(path: Path) -> _Place:
    """The local stores a Mem0 config file names. Only ``vector_store`` and
    ``history_db_path`` are read: the embedder and LLM sections (and any key in them) never."""
    try:
        config = loads_exact(path.read_bytes())
    except FileNotFoundError:
        raise UsageError(f"mem0: no config file at {path}") from None
    except (OSError, ValueError) as err:
        raise UsageError(f"mem0: cannot read the config file {path}: {err}") from None
    if not isinstance(config, dict):
        raise UsageError(f"mem0: {path} is not a Mem0 config (a JSON object)")
    store = config.get("vector_store") or {"provider": "qdrant"}
    provider = store.get("provider", "qdrant") if isinstance(store, dict) else None
    settings = (store.get("config") or {}) if isinstance(store, dict) else None
    if provider not in _PROVIDERS or not isinstance(settings, dict):
        raise UsageError(f"mem0: {path}: vector_store provider {provider!r} is not supported here",
                         hint="this connector reads local qdrant (path) and chroma (path) stores")
    other = sorted(k for k, v in settings.items() if v is not None and k not in _LOCAL_KEYS[provider])
    if other:
        raise UsageError(f"mem0: {path}: vector_store.config has {', '.join(other)}: only a local"
                         f" {provider} store (a path) is supported", hint="give the path of the local store")
    mem0_dir = os.environ.get("MEM0_DIR") or os.path.join(os.path.expanduser("~"), ".mem0")
    history = config.get("history_db_path") or os.path.join(mem0_dir, "history.db")
    return _Place(provider, str(settings.get("path") or f"/tmp/{provider}"),
                  str(settings.get("collection_name") or _DEFAULT_COLLECTION), str(history))


def _translated(operation: str) -> Any:
    """Open and write errors of the local stores: a locked SQLite file may pass; a directory
    another process holds (Qdrant local mode), a broken file or path does not."""
    def classify(err: BaseException) -> tuple[str, str | None] | None:
        if isinstance(err, sqlite3.OperationalError) and "locked" in str(err):
            return ("transient", None)
        if isinstance(err, (*_OPEN_ERRORS, sqlite3.Error)):
            return ("permanent", "check the path, and that no other process (a running Mem0) holds it")
        return None
    return translated("mem0", operation, classify=classify)


class Mem0Connector(AtPath, Connector):
    name = "mem0"
    extra = "mem0"
    takes_path = True
    url_options = frozenset({"vector_store", "collection", "user_id"})
    capabilities = Capabilities(read=True, write=True, named_vectors=False, null_vectors=True,
                                fixed_dims=True, normalises=("cosine",), preferred_batch=500)

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if not spec.path:
            raise UsageError("mem0 needs a directory or a Mem0 config file: mem0:///path/to/dir")
        self.path = Path(spec.path)
        self.is_config = self.path.suffix.lower() == ".json"
        provider = spec.params.get("vector_store")
        if self.is_config and (provider or spec.params.get("collection")):
            raise UsageError("mem0: ?vector_store= and ?collection= are for a directory; a config"
                             " file names its own vector store")
        if provider is not None and provider not in _PROVIDERS:
            raise UsageError(f"mem0: ?vector_store={provider} is not supported",
                             hint="vector_store=qdrant (the default) or vector_store=chroma")
        self.default_user = spec.params.get("user_id") or None
        self._place: _Place | None = None
        self._backend: Backend | None = None

    def place(self) -> _Place:
        if self._place is None:
            if self.is_config:
                self._place = _from_config_file(self.path)
            else:
                provider = self.spec.params.get("vector_store") or "qdrant"
                self._place = _Place(provider, str(self.path / provider),
                                     self.spec.params.get("collection") or _DEFAULT_COLLECTION,
                                     str(self.path / "history.db"))
        return self._place

    def _existing(self) -> Backend:
        """The backend of a collection that must already exist (reading)."""
        if self._backend is None:
            place = self.place()
            if not Path(place.path).is_dir():
                raise UsageError(f"mem0: no {place.provider} store at {place.path}")
            with _translated("open"):
                backend = open_backend(place.provider, place.path, place.collection)
                if not backend.exists():
                    backend.close()
                    raise UsageError(f"mem0: no collection {place.collection!r} in the {place.provider}"
                                     f" store at {place.path}")
            self._backend = backend
        return self._backend

    def count(self) -> int | None:
        with _translated("count"):
            return self._existing().count()

    def vector_spaces(self) -> dict[str, VectorSpace]:
        backend = self._existing()
        with _translated("read"):
            return {"": VectorSpace(dims=backend.dims(), metric=backend.metric)}

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        """Three passes, each with its own cursor: the memories (with their history), then the
        history of memories no longer in the vector store (a record with no text and no vector,
        ``extra["mem0"]["kind"] == "deleted"``), then Mem0's message log (a record per turn,
        ``kind == "message"``), so the whole history database moves too."""
        backend = self._existing()
        history = History(self.place().history, write=False)
        try:
            phase, position = _cursor(after)
            if phase == "v":
                yield from self._memories(backend, history, position, batch_size)
                phase, position = "h", None
            if phase == "h":
                yield from self._orphans(backend, history, position, batch_size)
                phase, position = "m", 0
            yield from self._messages(history, int(position or 0), batch_size)
        finally:
            history.close()

    def _memories(self, backend: Backend, history: History, position: Any,
                  batch_size: int) -> Iterator[Page]:
        while True:
            with _translated("read"):
                rows, position = backend.page(position, batch_size)
                kept = history.rows_for([r[0] for r in rows])
            items: list[MemoryRecord | Reject] = [_record(row, kept.get(row[0], [])) for row in rows]
            if position is None:
                yield Page(items, _encode("h", None))
                return
            yield Page(items, _encode("v", position))

    def _orphans(self, backend: Backend, history: History, position: Any,
                 batch_size: int) -> Iterator[Page]:
        while True:
            with _translated("read"):
                ids = history.memory_ids_after(position, batch_size)
                live = _held(backend, ids)
                gone = [i for i in ids if i not in live]
                rows = history.rows_for(gone)
            items: list[MemoryRecord | Reject] = [MemoryRecord(
                id=i, extra={EXTRA_KEY: {"kind": "deleted", "history": rows.get(i, [])}}) for i in gone]
            if len(ids) < batch_size:
                yield Page(items, _encode("m", 0))
                return
            position = ids[-1]
            yield Page(items, _encode("h", position))

    def _messages(self, history: History, position: int, batch_size: int) -> Iterator[Page]:
        while True:
            with _translated("read"):
                rows = history.messages_after(position, batch_size)
            items: list[MemoryRecord | Reject] = [_message(row) for row in rows]
            if len(rows) < batch_size:
                yield Page(items, None)
                return
            position = int(rows[-1]["rowid"])
            yield Page(items, _encode("m", position))

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        place = self.place()
        with _translated("open"):
            backend = open_backend(place.provider, place.path, place.collection) if not dry_run else None
            if backend is not None and backend.exists():
                backend.attach(backend.dims() or 0)
        self._backend = backend
        return _Mem0Writer(self, backend, dry_run=dry_run, spaces=spaces or {})

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


def _cursor(after: str | None) -> tuple[str, Any]:
    if not after:
        return "v", None
    phase, _, rest = after.partition(":")
    if phase not in ("v", "h", "m"):
        raise UsageError(f"mem0: not a cursor of this connector: {after!r}")
    return phase, loads_exact(rest)


def _encode(phase: str, position: Any) -> str:
    return f"{phase}:{dumps_exact(position)}"


def _held(backend: Backend, ids: list[str]) -> set[str]:
    """Which of these memory ids the store holds (ids Qdrant cannot hold are not there)."""
    if not ids:
        return set()
    if backend.provider == "qdrant":
        ids = [i for i in ids if is_canonical_uuid(i)]
    return set(backend.held(ids)) if ids else set()


def _record(row: tuple[str, dict[str, Any], bytes | None], history: list[dict[str, Any]]
            ) -> MemoryRecord | Reject:
    store_id, payload, vector = row
    if not vector or not np.isfinite(np.frombuffer(vector, dtype="<f4")).all():
        return Reject(reason="invalid_vector", id=store_id, namespace=namespace_of(payload),
                      detail="the memory's stored vector is missing, empty or not finite",
                      record={"id": store_id, "payload": payload})
    return record_from(store_id, payload, vector, history)


def _rows(value: Any) -> list[dict[str, Any]]:
    """History rows kept in a record (each needs its own id, the table's key)."""
    return [h for h in value if isinstance(h, dict) and h.get("id")] if isinstance(value, list) else []


def _unusable(scope_id: str) -> bool:
    """An id Mem0's own validation refuses (empty, or holding whitespace)."""
    return not scope_id.strip() or any(c.isspace() for c in scope_id)


def _message(row: dict[str, Any]) -> MemoryRecord:
    """A turn of Mem0's message log (the context its LLM extraction reads) as a record."""
    created = row.get("created_at")
    own = {"kind": "message", **{k: row.get(k) for k in ("role", "name", "created_at")}}
    content = row.get("content")
    return MemoryRecord(id=str(row.get("id")), text=content if isinstance(content, str) else None,
                        namespace=row.get("session_scope"), extra={EXTRA_KEY: own},
                        created_at=_ms(created))


def _ms(value: Any) -> int | None:
    try:
        return parse_timestamp(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _chroma_native(key: str, value: Any) -> bool:
    return bool(key) and key[0] not in "#$" and key != "chroma:document" and scalar_or_scalar_list(value)


class _Mem0Writer(StoreWriter):
    """Writes memories through Mem0's vector-store class and history manager."""

    def __init__(self, connector: Mem0Connector, backend: Backend | None, *, dry_run: bool,
                 spaces: dict[str, VectorSpace]) -> None:
        # Mem0 fixes each backend's distance itself, so every source metric is taken
        super().__init__(connector, dry_run=dry_run, spaces=spaces, metrics={m: m for m in METRICS})
        self.connector = connector
        self.backend = backend
        self.history = History(connector.place().history, write=True) if not dry_run else None
        chroma = backend is not None and backend.provider == "chroma"
        self.native = _chroma_native if chroma else (lambda key, value: json_exact(value))
        # Chroma may change a float's last bit; Mem0 writes floats there natively and so does
        # this writer, so Mem0 sees the metadata it wrote (no ``_vex`` copy): documented lossy
        self.inexact: Any = lambda value: False

    def target_dims(self) -> dict[str, int]:
        if self.backend is not None and self.backend.store is not None:
            dims = self.backend.dims()
            return {"": dims} if dims else {}
        return {}

    def vector_spaces(self) -> dict[str, VectorSpace]:
        if self.backend is None or self.backend.store is None:
            return {}
        return {"": VectorSpace(dims=self.backend.dims(), metric=self.backend.metric)}

    def created(self) -> bool:
        return self.backend is not None and self.backend.store is not None

    def create(self, batch: list[MemoryRecord]) -> None:
        space = self.spaces_to_create(batch).get("")
        if self.backend is None or space is None or not space.dims:
            return
        with _translated("create"):
            self.backend.attach(space.dims)

    def store_id(self, record: MemoryRecord) -> Any:
        own = record.extra.get(EXTRA_KEY)
        if isinstance(own, dict) and own.get("kind") in ("deleted", "message"):
            return ("mem0-log", record.id)  # history database rows: never a vector-store point
        qdrant = self.backend is not None and self.backend.provider == "qdrant"
        if qdrant and not is_canonical_uuid(record.id):
            return uuid_for(record.id)
        return record.id

    def namespaces_of(self, ids: list[Any]) -> dict[Any, str | None]:
        assert self.backend is not None
        points = [i for i in ids if not isinstance(i, tuple)]
        if self.backend.provider == "qdrant":
            points = [i for i in points if is_canonical_uuid(i)]
        if not points:
            return {}
        with _translated("read"):
            return {i: namespace_of(p) for i, p in self.backend.held(points).items()}

    def _scope(self, record: MemoryRecord) -> dict[str, str] | None:
        scope = scope_of(record.namespace)
        if scope is not None:
            return scope
        if record.namespace:
            return {"user_id": record.namespace}
        return {"user_id": self.connector.default_user} if self.connector.default_user else None

    def upsert(self, rows: list[tuple[Any, MemoryRecord]]) -> list[Reject]:
        rejects: list[Reject] = []
        ids: list[str] = []
        vectors: list[list[float]] = []
        payloads: list[dict[str, Any]] = []
        histories: list[tuple[str, list[dict[str, Any]]]] = []
        for store_id, record in rows:
            own = record.extra.get(EXTRA_KEY)
            kind = own.get("kind") if isinstance(own, dict) else None
            if kind in ("deleted", "message") and self.history is not None:
                assert isinstance(own, dict)
                with _translated("write"):
                    if kind == "deleted":
                        self.history.write(record.id, _rows(own.get("history")))
                    else:
                        self.history.write_message(record, own)
                continue
            refused = self._refusal(record)
            scope = self._scope(record)
            if refused is None and scope is None:
                refused = ("no_scope", "Mem0 keeps every memory under a user_id, agent_id or run_id;"
                           " this record has no namespace (give the target ?user_id=NAME)")
            elif refused is None and scope and any(_unusable(v) for v in scope.values()):
                refused = ("invalid_scope", f"Mem0 refuses ids with whitespace, so its get_all and"
                           f" search could never reach a memory scoped {scope!r}")
            if refused is not None:
                rejects.append(Reject(reason=refused[0], detail=refused[1], id=record.id,
                                      namespace=record.namespace))
                continue
            assert scope is not None and record.vector is not None
            ids.append(store_id)
            vectors.append(record.vector.tolist())
            payloads.append(payload_for(record, store_id=store_id, scope=scope, native=self.native,
                                        inexact=self.inexact, lemmatize=lemmatize_for_bm25))
            histories.append((store_id, _rows(own.get("history") if isinstance(own, dict) else None)))
        if ids and self.backend is not None:
            with _translated("write"):
                self.backend.insert(ids, vectors, payloads, self.held_ids)
                for store_id, entries in histories:
                    assert self.history is not None
                    self.history.write(store_id, entries)
        return rejects

    @staticmethod
    def _refusal(record: MemoryRecord) -> tuple[str, str] | None:
        if record.text is None:
            return ("no_text", "a Mem0 memory is its text (payload 'data'); this record has none")
        if record.sparse:
            return ("sparse_vectors_unsupported", "Mem0 keeps one dense vector per memory (its bm25"
                    " slot is Mem0's own, computed from the text)")
        if record.vector is None:
            return ("no_vector", "a Mem0 memory needs its dense vector")
        return None

    def finish(self, summary: dict[str, Any]) -> None:
        self.close()

    def abort(self) -> None:
        self.close()

    def close(self) -> None:
        if self.history is not None:
            self.history.close()
            self.history = None


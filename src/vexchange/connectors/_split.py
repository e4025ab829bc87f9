"""One collection per namespace: ``?namespaces=collections`` on Chroma, Qdrant and Milvus.

The default keeps every namespace in one collection with a ``namespace`` field, where an id can
hold one record only. With this option each namespace gets its own collection, named
``<base>__<namespace>`` (records without a namespace stay in ``<base>``), so the same id may live
in several namespaces and each namespace is the store's own unit (searchable, droppable,
shareable on its own). A namespace that does not fit the store's naming rules is written as
``<base>__x<hex of its UTF-8 bytes>``.

The wrapper is store-agnostic: a connector supplies a child connector for one namespace and the
list of its existing namespace collections. Reading walks namespaces in sorted order (the cursor
is ``[namespace, child cursor]``); writing routes each record to its namespace's child writer.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import orjson

from ..record import MemoryRecord
from ..spec import StoreSpec
from ._base import Capabilities, Connector, Page, QueryHit, Reject, VectorSpace, Writer

__all__ = ["CollectionStore", "NamespaceSplit", "collection_for", "namespace_of", "split", "wanted"]

_SAFE = re.compile(r"[A-Za-z0-9_]{0,39}[A-Za-z0-9]")
_SEP = "__"


def collection_for(base: str, namespace: str | None) -> str:
    if namespace is None:
        return base
    if _SAFE.fullmatch(namespace) and not namespace.startswith("x"):
        return f"{base}{_SEP}{namespace}"
    return f"{base}{_SEP}x{namespace.encode().hex()}"


def namespace_of(base: str, collection: str) -> tuple[bool, str | None]:
    """(True, namespace) when ``collection`` belongs to ``base``; (False, None) otherwise."""
    if collection == base:
        return True, None
    prefix = base + _SEP
    if not collection.startswith(prefix):
        return False, None
    rest = collection[len(prefix):]
    if rest.startswith("x"):
        try:
            return True, bytes.fromhex(rest[1:]).decode()
        except ValueError:
            return False, None
    return True, rest


class NamespaceSplit(Connector):
    """Presents the per-namespace collections of one base name as a single store."""

    def __init__(self, spec: StoreSpec, *, name: str, capabilities: Capabilities,
                 child: Callable[[str | None], Connector], existing: Callable[[], list[str | None]],
                 location: str, close: Callable[[], None]) -> None:
        """``child(namespace)`` gives the connector of one namespace's collection; they share
        one client, which ``close`` releases once."""
        super().__init__(spec)
        self._close = close
        self.name = name  # type: ignore[misc]
        self.capabilities = capabilities  # type: ignore[misc]
        self._child = child
        self._existing = existing
        self._location = location
        self._children: dict[str | None, Connector] = {}

    def child(self, namespace: str | None) -> Connector:
        if namespace not in self._children:
            self._children[namespace] = self._child(namespace)
        return self._children[namespace]

    def query(self, vector: Any, k: int, *, namespace: str | None = None,
              vector_name: str = "") -> list[QueryHit]:
        """One collection per namespace: the namespace's own collection answers."""
        return self.child(namespace).query(vector, k, vector_name=vector_name)

    def query_metric(self, vector_name: str = "") -> str | None:
        return self.child(None).query_metric(vector_name)

    def can_query(self) -> bool:
        return self.child(None).can_query()

    def describe(self) -> dict[str, Any]:
        return {"connector": self.name, "location": self._location, "namespaces": "collections"}

    def namespaces(self) -> list[str | None]:
        return sorted(self._existing(), key=lambda ns: (ns is not None, ns or ""))

    def count(self) -> int | None:
        return sum(self.child(ns).count() or 0 for ns in self.namespaces())

    def vector_spaces(self) -> dict[str, VectorSpace]:
        for ns in self.namespaces():
            return self.child(ns).vector_spaces()
        return {}

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        names = self.namespaces()
        start, inner = (orjson.loads(after) if after else [None, None])
        keys = [ns for ns in names]
        position = keys.index(start) if after and start in keys else 0
        for index in range(position, len(keys)):
            ns = keys[index]
            cursor = inner if (after and index == position) else None
            for page in self.child(ns).read(batch_size=batch_size, after=cursor):
                items = [item.replace(namespace=ns) if isinstance(item, MemoryRecord)
                         and item.namespace != ns else item for item in page.items]
                if page.cursor is not None:
                    yield Page(items, orjson.dumps([ns, page.cursor]).decode())
                elif index + 1 < len(keys):
                    yield Page(items, orjson.dumps([keys[index + 1], None]).decode())
                else:
                    yield Page(items, None)
        if not keys:
            yield Page([], None)

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        return _SplitWriter(self, dry_run=dry_run, spaces=spaces or {})

    def close(self) -> None:
        self._children.clear()
        self._close()


class _SplitWriter(Writer):
    def __init__(self, store: NamespaceSplit, *, dry_run: bool,
                 spaces: dict[str, VectorSpace]) -> None:
        self.store = store
        self.dry_run = dry_run
        self.spaces = spaces
        self.writers: dict[str | None, Writer] = {}

    def writer(self, namespace: str | None) -> Writer:
        if namespace not in self.writers:
            self.writers[namespace] = self.store.child(namespace).open_writer(
                dry_run=self.dry_run, spaces=self.spaces)
        return self.writers[namespace]

    def target_dims(self) -> dict[str, int]:
        dims: dict[str, int] = {}
        for ns in self.store.namespaces():
            dims.update(self.writer(ns).target_dims())
        return dims

    def vector_spaces(self) -> dict[str, VectorSpace]:
        for writer in self.writers.values():
            return writer.vector_spaces()
        return {}

    def write(self, batch: list[MemoryRecord]) -> list[Reject]:
        groups: dict[str | None, list[MemoryRecord]] = {}
        for record in batch:
            groups.setdefault(record.namespace, []).append(record)
        rejects: list[Reject] = []
        for ns, records in groups.items():
            rejects.extend(self.writer(ns).write(records))
        return rejects

    def finish(self, summary: dict[str, Any]) -> None:
        for writer in self.writers.values():
            writer.finish(summary)

    def abort(self) -> None:
        for writer in self.writers.values():
            writer.abort()


def wanted(spec: StoreSpec, *, also: tuple[str, ...] = ()) -> bool:
    """True when the spec asks for one collection per namespace. ``also``: further modes the
    connector handles itself (Milvus: ``partition_key``)."""
    mode = spec.params.get("namespaces", "field")
    modes = ("field", "collections", *also)
    if mode not in modes:
        from ..errors import UsageError

        raise UsageError(f"namespaces={mode!r}: choose one of {', '.join(modes)}")
    return mode == "collections"


def split(base: CollectionStore, list_collections: Callable[[], list[str]]) -> NamespaceSplit:
    """Wrap ``base`` (a connector with ``collection_name`` and a lazily built, shareable
    ``client()``) so that each namespace is a copy of it bound to its own collection."""
    import copy

    root = base.collection_name

    def child(namespace: str | None) -> Connector:
        base.client()  # one client for all children (embedded stores lock their directory)
        clone = copy.copy(base)
        clone.collection_name = collection_for(root, namespace)
        return clone

    def existing() -> list[str | None]:
        found = []
        for name in list_collections():
            ours, namespace = namespace_of(root, name)
            if ours:
                found.append(namespace)
        return found

    described = base.describe()
    wrapper = NamespaceSplit(base.spec, name=base.name, capabilities=base.capabilities,
                             child=child, existing=existing, location=described["location"],
                             close=base.close)
    return wrapper


class CollectionStore(Connector):
    """A connector bound to one collection of a store that holds many (Chroma, Qdrant,
    Milvus). ``?namespaces=collections`` turns it into one collection per namespace."""

    collection_name: str
    default_port: ClassVar[int]

    def server_url(self) -> str | None:
        """``http(s)://host:port`` of a server location (``?https=true``), None for a path."""
        if not self.spec.host:
            return None
        scheme = "https" if self.spec.params.get("https") == "true" else "http"
        return f"{scheme}://{self.spec.host}:{self.spec.port or self.default_port}"

    def takes_concurrent_writers(self) -> bool:
        """A server takes one writer per worker of a parallel run; local mode (a path) keeps
        its files to one client, so a parallel run fills it through one writer."""
        return bool(self.spec.host)

    def describe(self) -> dict[str, Any]:
        where = self.server_url() or str(self.spec.path)
        return {"connector": self.name, "location": f"{where}#{self.collection_name}"}

    @classmethod
    def from_spec(cls, spec: StoreSpec) -> Connector:
        store = cls(spec)
        return split(store, store.collection_names) if wanted(spec) else store

    @abstractmethod
    def client(self) -> Any:
        """The store's client, built once and shared by the per-namespace copies."""

    @abstractmethod
    def collection_names(self) -> list[str]:
        """Every collection of the store (to find ``<base>__<namespace>`` ones)."""

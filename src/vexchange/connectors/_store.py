"""What the store connectors (Chroma, Qdrant, pgvector, LanceDB, Milvus, Redis) share:
namespace-conflict checks on write, metric names, and turning SDK exceptions into vexchange
errors so that a stopped server or a wrong key is a clear message, never a traceback.
"""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..errors import CapabilityError, PermanentError, TransientError, UsageError, VexError, redact
from ..record import MemoryRecord
from ._base import Reject, VectorSpace, Writer

__all__ = ["StoreWriter", "metric_for", "metric_from", "require_path_or_host", "translated", "unique_dims"]

_MISSING = object()


def metric_for(connector: str, metric: str | None, names: Mapping[str, str],
               default: str = "cosine") -> str:
    """The store's name for a vexchange metric; CapabilityError when the store lacks it."""
    chosen = metric or default
    if chosen not in names:
        raise CapabilityError(
            f"{connector} has no {chosen!r} distance; it offers {', '.join(sorted(names))}",
            hint="choose another metric in the source's sidecar, or another target store")
    return names[chosen]


def metric_from(names: Mapping[str, str], store_metric: str | None) -> str | None:
    """The vexchange name for a store's metric name (None when unknown)."""
    if store_metric is None:
        return None
    lowered = str(store_metric).lower()
    return next((ours for ours, theirs in names.items() if theirs.lower() == lowered), None)


def unique_dims(batch: list[MemoryRecord]) -> dict[str, int]:
    """Vector sizes in a batch by name (the engine has already made them agree)."""
    dims: dict[str, int] = {}
    for record in batch:
        for name, vec in record.vectors.items():
            dims.setdefault(name, vec.dims)
    return dims


Verdict = tuple[str, str | None] | tuple[str, str | None, float | None]
"""``("transient" | "permanent", hint)`` for an SDK exception, optionally with the seconds a
server asked to wait (a Retry-After the SDK keeps somewhere other than ``err.retry_after``)."""


@contextlib.contextmanager
def translated(connector: str, operation: str, *, transient: tuple[type[BaseException], ...] = (),
               permanent: tuple[type[BaseException], ...] = (), hint: str | None = None,
               classify: Callable[[BaseException], Verdict | None] | None = None) -> Iterator[None]:
    """Map an SDK's exceptions: transient ones (connection refused, timeouts) may be retried;
    permanent ones (auth, schema) stop the run. ``classify`` decides for exceptions whose
    class alone does not tell (an HTTP status, an SQLSTATE); otherwise the ``transient`` and
    ``permanent`` classes do. Other exceptions pass through untouched, as they are bugs to
    report, not user mistakes."""
    try:
        yield
    except VexError:
        raise
    except Exception as err:
        verdict = classify(err) if classify else None
        if verdict is None:
            if isinstance(err, transient):
                verdict = ("transient", None)
            elif isinstance(err, permanent):
                verdict = ("permanent", hint)
            else:
                raise
        message = f"{connector} {operation} failed: {_message(err)}"
        if verdict[0] == "transient":
            wait = verdict[2] if len(verdict) > 2 else getattr(err, "retry_after", None)
            raise TransientError(message, connector=connector, operation=operation,
                                 retry_after=wait if isinstance(wait, (int, float)) else None) from err
        raise PermanentError(message, connector=connector, operation=operation,
                             hint=verdict[1] or hint) from err


def _message(err: BaseException) -> str:
    """An SDK error's first line, redacted before it is cut, so that no key or password it
    quotes reaches a message (nor half of one, cut at the 500th character)."""
    text = redact(str(err).strip()).splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:500]


class StoreWriter(Writer):
    """Upserts by id, refusing a record whose id a record of another namespace holds.

    Stores that keep the namespace as a field hold one record per id, so writing namespace B's
    "42" over namespace A's "42" would lose A's record silently. Such a record is refused as
    ``id_conflict`` (counted, in the rejects file); keep each namespace in its own collection
    to hold both.
    """

    dry_run: bool = False

    def __init__(self, store: Any, *, dry_run: bool, spaces: dict[str, VectorSpace],
                 metrics: Mapping[str, str]) -> None:
        """Keep the store and what the source declares; refuse, before any write, a metric
        the store does not offer."""
        self.store = store
        self.dry_run = dry_run
        self.spaces = spaces
        self._sent: set[int] | None = None
        """Hashes of the ids sent so far, kept when this run created the collection: then
        only those can be in the store, and the rest need no lookup."""
        self.held_ids: set[Any] = set()
        """The ids of the batch being written that the store already holds (from
        ``namespaces_of``): a store whose insert and upsert differ in cost inserts the rest."""
        for space in spaces.values():
            metric_for(store.name, space.metric, metrics)

    def spaces_to_create(self, batch: list[MemoryRecord]) -> dict[str, VectorSpace]:
        """Each vector a new collection needs: what the source declares (dims and metric),
        completed from the first batch for vectors it does not declare."""
        wanted = {name: space for name, space in self.spaces.items() if space.dims}
        for record in batch:
            for name, vec in record.vectors.items():
                if name not in wanted:
                    declared = self.spaces.get(name) or VectorSpace()
                    wanted[name] = VectorSpace(dims=vec.dims, metric=declared.metric)
        return wanted

    @abstractmethod
    def store_id(self, record: MemoryRecord) -> Any:
        """The id the store keeps for a record."""

    @abstractmethod
    def namespaces_of(self, ids: list[Any]) -> dict[Any, str | None]:
        """Namespace of each id (never an empty list) that exists in the store."""

    @abstractmethod
    def upsert(self, rows: list[tuple[Any, MemoryRecord]]) -> list[Reject]:
        """Write ``(store id, record)`` pairs; the records refused, with reasons."""

    namespaced_ids: bool = False
    """True when the store keys records by (namespace, id), so no conflict can happen."""

    def created(self) -> bool:
        """Whether the collection, table or index exists yet (stores create it on first write)."""
        return True

    def create(self, batch: list[MemoryRecord]) -> None:
        """Create the collection, table or index, sized and named from what the source
        declares and the first batch's vectors (``spaces_to_create``)."""

    def write(self, batch: list[MemoryRecord]) -> list[Reject]:
        if self.dry_run or not batch:
            return []
        if not self.created():
            self.create(batch)
            self._sent = set()
        keyed = [(self.store_id(r), r) for r in batch]
        if self.namespaced_ids:
            return self.upsert(keyed)
        maybe = self._maybe_held(list(dict.fromkeys(k for k, _ in keyed)))
        existing = self.namespaces_of(maybe) if maybe else {}
        self.held_ids = set(existing)
        rows: list[tuple[Any, MemoryRecord]] = []
        rejects: list[Reject] = []
        seen: dict[Any, Any] = {}
        for key, record in keyed:
            holder = seen.get(key, existing.get(key, _MISSING))
            if holder is not _MISSING and holder != record.namespace:
                rejects.append(Reject(
                    reason="id_conflict", id=record.id, namespace=record.namespace,
                    detail=f"id {record.id!r} is already held by a record of namespace {holder!r};"
                           " this store keeps one record per id, so it is not overwritten"))
                continue
            seen[key] = record.namespace
            rows.append((key, record))
        return rejects + (self.upsert(rows) if rows else [])

    def _maybe_held(self, keys: list[Any]) -> list[Any]:
        """The ids the store may already hold: all of them, or, in a collection this run
        created, only ids sent before (a hash match; a collision only costs a lookup). The
        batch's ids count as sent from here on, before the write, so a retried batch that
        was partly written is looked up and merged, never added twice."""
        if self._sent is None:
            return keys
        maybe = [k for k in keys if hash(k) in self._sent]
        self._sent.update(map(hash, keys))
        return maybe

    def finish(self, summary: dict[str, Any]) -> None:
        """Store writes are durable per batch; nothing to commit at the end."""

    def abort(self) -> None:
        """Acknowledged batches stay; a resumed run upserts the rest."""


def require_path_or_host(connector: str, path: str | None, host: str | None, example: str) -> None:
    if not path and not host:
        raise UsageError(f"{connector} needs a location, e.g. {example}")

"""``cartridge``: a single-file SQLite cartridge (docs/formats/vectorpack.md), read and written
like any store, and an embedded default store: it answers nearest-neighbour and keyword queries
by itself (``vex search``).

URL: ``cartridge:///path/memory.db`` (or a path ending in ``.cartridge``).

Everything a record holds is kept: ids and their type, namespaces, text, every named and sparse
vector bit for bit, metadata as exact JSON, timestamps, and the pack keys (scores, lineage,
provenance), which are also projected into their own tables for queries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, Protocol

from ..errors import IntegrityError, InvalidSpecError
from ..pack.cartridge import Cartridge, CartridgeBuilder
from ..record import MemoryRecord
from ..spec import StoreSpec
from ._base import AtPath, Capabilities, Connector, Page, QueryHit, Reject, Shard, VectorSpace, Writer

__all__ = ["CartridgeConnector"]


class CartridgeConnector(AtPath, Connector):
    name = "cartridge"
    url_options = frozenset()
    suffixes = (".cartridge",)
    takes_path = True
    capabilities = Capabilities(read=True, write=True, named_vectors=True, fixed_dims=True,
                                preferred_batch=2000, read_ahead=True,
                                read_in_process=True)

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if not spec.path:
            raise InvalidSpecError("cartridge needs a file path: cartridge:///path/memory.db")
        self.path = Path(spec.path)
        self._searcher: Any = None

    def describe(self) -> dict[str, Any]:
        return {"connector": "cartridge", "location": str(self.path.resolve())}

    def open(self) -> Cartridge:
        return Cartridge(self.path)

    def count(self) -> int | None:
        with closing(self.open()) as cart:
            return cart.count()

    def vector_spaces(self) -> dict[str, VectorSpace]:
        with closing(self.open()) as cart:
            return cartridge_spaces(cart)

    read_checks = ("content ids",)

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        with closing(self.open()) as cart:
            yield from cartridge_pages(cart, batch_size, after, verify=self.verify_reads)

    def verify_source(self) -> dict[str, Any]:
        with closing(self.open()) as cart:
            return verify_content_ids(cart)

    def shard_plan(self, max_shards: int) -> list[Shard]:
        """Rid ranges of about equal record counts (at least 256 a shard), cut at the rid of
        every ``count / max_shards``-th record: the same cartridge gives the same plan."""
        with closing(self.open()) as cart:
            total = cart.count()
            shards = max(1, min(max_shards, total // _MIN_SHARD_ROWS))
            if shards == 1:
                return [Shard(index=0)]
            cuts = cart.rid_cuts(shards)
        bounds: list[int | None] = [None, *cuts, None]
        return [Shard(index=i, kind="rowid", start=bounds[i], end=bounds[i + 1],
                      records=total * (i + 1) // shards - total * i // shards) for i in range(shards)]

    def read_shard(self, shard: Shard, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        """A rid range's records, each content id checked as in a whole read."""
        if shard.kind == "whole":
            return self.read(batch_size=batch_size, after=after)
        if shard.kind != "rowid":
            raise NotImplementedError(f"cartridge has no {shard.kind} shards")
        return self._shard_pages(shard, batch_size, after)

    def _shard_pages(self, shard: Shard, batch_size: int, after: str | None) -> Iterator[Page]:
        start = after or str(0 if shard.start is None else shard.start - 1)
        with closing(self.open()) as cart:
            yield from cartridge_pages(cart, batch_size, start, verify=self.verify_reads, end=shard.end)

    def shard_checks(self) -> dict[str, Any]:
        """Nothing before the shards: the content ids are checked record by record in the
        shard reads, a mismatch rejected as in a one-worker run."""
        return {}

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        sink = None if dry_run else CartridgeBuilder(self.path, resume=resume)
        return PackStoreWriter(sink, spaces or {})

    def query(self, vector: Any, k: int, *, namespace: str | None = None,
              vector_name: str = "") -> list[QueryHit]:
        """``vex search``'s vector search (pack/search.py: exact cosine over the cartridge)."""
        if self._searcher is None:
            from ..pack.search import Searcher

            self._searcher = Searcher(self.path)
        return pack_query(self._searcher, vector, k, namespace, vector_name)

    def query_metric(self, vector_name: str = "") -> str | None:
        return "cosine"  # vex search ranks by cosine whatever metric the pack records

    def close(self) -> None:
        if self._searcher is not None:
            self._searcher.close()
            self._searcher = None


_MIN_SHARD_ROWS = 256
"""A parallel run splits a cartridge into rid ranges of at least this many records."""

_POOL_LIMIT = 32_000
"""The most candidates one namespace-filtered query ranks (within SQLite's bound parameters)."""


def pack_query(searcher: Any, vector: Any, k: int, namespace: str | None,
               vector_name: str) -> list[QueryHit]:
    """``Connector.query`` for a cartridge or a VectorPack through ``vex search``'s own code
    (``Searcher``: exact cosine, or the pack's usearch graph when ``vex pack reindex --ann``
    built one), ranked by similarity alone (no Elo, no recency). ``vex search`` has no
    namespace filter, so for a namespace the candidates grow fourfold until ``k`` of them are
    in it, or every record (at most 32,000) was ranked."""
    from ..pack.search import Weights

    plain = Weights(similarity=1.0, elo=0.0, recency=0.0)
    total = min(searcher.cartridge.count(), _POOL_LIMIT)
    pool = k
    while True:
        found = searcher.search(vector=[float(x) for x in vector], k=pool, vector_name=vector_name,
                                weights=plain, candidates=pool, now_ms=0)
        hits = [QueryHit(h.id, float(h.similarity), h.namespace) for h in found
                if namespace is None or h.namespace == namespace]
        if namespace is None or len(hits) >= k or pool >= total:
            return hits[:k]
        pool = min(total, pool * 4)


def cartridge_spaces(cart: Cartridge) -> dict[str, VectorSpace]:
    """The vector spaces a cartridge declares (its embeddings table)."""
    return {name: VectorSpace(dims=e["dims"], metric=e["metric"]) for name, e in cart.embeddings().items()}


def verify_content_ids(cart: Cartridge, text_of: Callable[[str], str] | None = None) -> dict[str, Any]:
    """``--verify-first`` for a cartridge: every row's content id computed again; any that
    does not match is an IntegrityError (a plain read rejects each such row instead)."""
    found, described = cart.content_problems(text_of, limit=1)
    if found:
        raise IntegrityError(f"{found} record{'s' if found > 1 else ''} do not match their content"
                             f" ids; the first: {described[0]}", location=str(cart.path),
                             hint="a plain run writes the others and rejects these; --no-verify"
                                  " reads them as they are")
    return {"content ids": "ok"}


def cartridge_pages(cart: Cartridge, batch_size: int, after: str | None,
                    text_of: Callable[[str], str] | None = None, *,
                    verify: bool = True, end: int | None = None) -> Iterator[Page]:
    """A cartridge's records in rid order, a page at a time; the cursor is the last rid read.
    With ``verify`` a row whose content id does not match what it holds is a Reject
    (``content_id_mismatch``), counted and in the rejects file, never written."""
    last = int(after or 0)
    while True:
        records, last = cart.records(last, batch_size, text_of, verify=verify, before=end)
        done = len(records) < batch_size
        yield Page(list(records), None if done else str(last))
        if done:
            return


class PackSink(Protocol):
    """A cartridge or VectorPack being built: ``CartridgeBuilder`` or ``PackWriter``."""

    dims: dict[str, int]

    def write(self, records: Sequence[MemoryRecord]) -> list[tuple[MemoryRecord, str]]: ...

    def finish(self, metrics: dict[str, str | None]) -> None: ...

    def abort(self) -> None: ...

    def state(self) -> dict[str, Any]: ...


class PackStoreWriter(Writer):
    """The engine's writer for a cartridge or a VectorPack: records that break the pack
    contract are rejected as ``invalid_pack_record``; the rest are staged, and ``finish``
    builds the artifact with the metrics the source declares."""

    def __init__(self, sink: PackSink | None, spaces: dict[str, VectorSpace]) -> None:
        self.sink, self.spaces = sink, spaces

    def write(self, batch: list[MemoryRecord]) -> list[Reject]:
        if self.sink is None or not batch:
            return []
        return [Reject(reason="invalid_pack_record", detail=why, id=record.id, namespace=record.namespace)
                for record, why in self.sink.write(batch)]

    def target_dims(self) -> dict[str, int]:
        return dict(self.sink.dims) if self.sink is not None else {}

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return dict(self.spaces)

    def checkpoint(self) -> dict[str, Any]:
        """The sink's state (its staging file's run token and record count), which a resumed
        run checks before it continues that staging file."""
        return self.sink.state() if self.sink is not None else {}

    def finish(self, summary: dict[str, Any]) -> None:
        if self.sink is not None:
            self.sink.finish({name: s.metric for name, s in self.spaces.items()})

    def abort(self) -> None:
        if self.sink is not None:
            self.sink.abort()

"""``cartridge``: a single-file SQLite cartridge (docs/formats/vectorpack.md), read and written
like any store, and an embedded default store: it answers nearest-neighbour and keyword queries
by itself (``vex search``).

URL: ``cartridge:///path/memory.db`` (or a path ending in ``.cartridge``).

Everything a record holds is kept: ids and their type, namespaces, text, every named and sparse
vector bit for bit, metadata as exact JSON, timestamps, and the pack keys (scores, lineage,
provenance), which are also projected into their own tables for queries.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import InvalidSpecError
from ..pack.cartridge import Cartridge, CartridgeBuilder
from ..record import MemoryRecord
from ..spec import StoreSpec
from ._base import Capabilities, Connector, Page, Reject, VectorSpace, Writer

__all__ = ["CartridgeConnector"]


class CartridgeConnector(Connector):
    name = "cartridge"
    capabilities = Capabilities(read=True, write=True, named_vectors=True, fixed_dims=True,
                                preferred_batch=2000)

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if not spec.path:
            raise InvalidSpecError("cartridge needs a file path: cartridge:///path/memory.db")
        self.path = Path(spec.path)

    def describe(self) -> dict[str, Any]:
        return {"connector": "cartridge", "location": str(self.path.resolve())}

    def open(self) -> Cartridge:
        return Cartridge(self.path)

    def count(self) -> int | None:
        with _closing(self.open()) as cart:
            return cart.count()

    def vector_spaces(self) -> dict[str, VectorSpace]:
        with _closing(self.open()) as cart:
            return {name: VectorSpace(dims=e["dims"], metric=e["metric"])
                    for name, e in cart.embeddings().items()}

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        with _closing(self.open()) as cart:
            last = int(after or 0)
            while True:
                records, last_read = cart.records(last, batch_size)
                if not records:
                    yield Page([], None)
                    return
                last = last_read
                yield Page(list(records), str(last) if len(records) == batch_size else None)
                if len(records) < batch_size:
                    return

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        return CartridgeWriter(self.path, resume=resume is not None, dry_run=dry_run,
                               spaces=spaces or {})


class _closing:
    def __init__(self, cart: Cartridge) -> None:
        self.cart = cart

    def __enter__(self) -> Cartridge:
        return self.cart

    def __exit__(self, *exc: object) -> None:
        self.cart.close()


class CartridgeWriter(Writer):
    def __init__(self, path: Path, *, resume: bool, dry_run: bool, spaces: dict[str, VectorSpace]) -> None:
        self.dry_run, self.spaces, self.path = dry_run, spaces, path
        self.builder = None if dry_run else CartridgeBuilder(path, resume=resume)

    def write(self, batch: list[MemoryRecord]) -> list[Reject]:
        if self.builder is None or not batch:
            return []
        good: list[MemoryRecord] = []
        rejects: list[Reject] = []
        for record in batch:
            try:
                from ..pack.cartridge import record_row

                record_row(record)
                good.append(record)
            except ValueError as err:
                rejects.append(Reject(reason="invalid_pack_record", detail=str(err), id=record.id,
                                      namespace=record.namespace))
        self.builder.write(good)
        return rejects

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return dict(self.spaces)

    def finish(self, summary: dict[str, Any]) -> None:
        if self.builder is not None:
            self.builder.finish({name: s.metric for name, s in self.spaces.items()},
                                {"created_by": f"vexchange {__version__}"})

    def abort(self) -> None:
        if self.builder is not None:
            self.builder.close()

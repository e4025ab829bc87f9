"""``oms-store``: an OMS Level 3 grain store (docs/formats/oms-level3.md §10), as a source or target.

``vex migrate --from vektor --db x.db --to oms-store:memory.l3`` writes one grain per record
(the mapping of vexchange.oms.memory, as the ``mg`` connector) into an encrypted store,
creating it when it does not exist (``?preset=gdpr``; ``?directory=1`` for the directory
backend); its vectors are sealed beside their grain. The master key comes from
``?key_file=PATH`` or ``$VEX_OMS_KEY``. Writes are upserts by record id: a record whose grain
changed supersedes the current grain of the same id and namespace. Reading yields the current
grains in write order; a grain the record mapping cannot read back is a reject. A write the
store's policy refuses is a reject too (its reason the error code), and logged in the store's
audit trail.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..oms.errors import OMSError
from ..oms.grain import Grain, content_address, encode_grain
from ..oms.memory import grain_from_record, record_from_grain, vector_id
from ..record import MemoryRecord
from ..spec import StoreSpec
from ._base import AtPath, Capabilities, Connector, Page, Reject, VectorSpace, Writer
from ._rows import keyset_pages

__all__ = ["OmsStoreConnector"]

_OMS_METRICS = {"cosine": "cosine", "euclidean": "l2", "dot": "dot", "manhattan": "l1"}


class OmsStoreConnector(AtPath, Connector):
    name = "oms-store"
    extra = "crypto"
    url_options = frozenset({"key_file", "preset", "directory"})
    takes_path = True
    capabilities = Capabilities(read=True, write=True, named_vectors=True)
    read_checks = ("envelope authentication", "content addresses")

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if not spec.path:
            raise UsageError("oms-store needs a path, e.g. oms-store:memory.l3")
        self.path = Path(spec.path)
        self.key_file = spec.params.get("key_file")
        self.preset = spec.params.get("preset", "none")
        self.directory = spec.params.get("directory", "") in ("1", "true", "yes")

    def describe(self) -> dict[str, Any]:
        return {"connector": "oms-store", "location": str(self.path.resolve())}

    def _store(self, *, create: bool = False) -> Any:
        from ..oms.l3.keys import load_master_key  # the package refuses to load without the extra
        from ..oms.l3.store import INDEX_FILE, Level3Store

        exists = (self.path / INDEX_FILE).is_file() if self.path.is_dir() else self.path.is_file()
        if not exists and not create:
            raise UsageError(f"no Level 3 store at {self.path}", hint="vex grains store init makes one")
        return Level3Store(self.path, load_master_key(self.key_file), create=not exists,
                           preset=self.preset, directory=self.directory or self.path.is_dir())

    def count(self) -> int | None:
        with self._store() as store:
            return int(store.db.execute("SELECT count(*) FROM grains WHERE current = 1").fetchone()[0])

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        position = int(after) if after else 0
        with self._store() as store:

            def fetch(after: int) -> tuple[list[int], list[MemoryRecord | Reject]]:
                rows = store.scan(after=after, limit=batch_size)
                return [gid for gid, _ in rows], [self._record(store, gid, grain) for gid, grain in rows]

            yield from keyset_pages(fetch, position, batch_size)

    def _record(self, store: Any, gid: int, grain: Grain) -> MemoryRecord | Reject:
        try:
            return record_from_grain(grain, store.attachments(grain.address))
        except OMSError as err:
            return Reject(reason=err.code.lower(), detail=str(err), location=f"{self.path} grain {gid}")

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        return OmsStoreWriter(None if dry_run else self._store(create=True), spaces or {})


class OmsStoreWriter(Writer):
    """One transaction per batch; a record the store refuses is a reject, the rest commit."""

    def __init__(self, store: Any, spaces: dict[str, VectorSpace]) -> None:
        self.store = store
        self.spaces = spaces
        self.metrics = {n: _OMS_METRICS.get(s.metric or "") for n, s in spaces.items()}

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return dict(self.spaces)

    def write(self, batch: list[MemoryRecord]) -> list[Reject]:
        rejects: list[Reject] = []
        if self.store is None:
            for record in batch:
                try:
                    encode_grain(grain_from_record(record, self.metrics))
                except OMSError as err:
                    rejects.append(_reject(record, err))
            return rejects
        with self.store.transaction():
            for record in batch:
                try:
                    self._upsert(record)
                except OMSError as err:
                    rejects.append(_reject(record, err))
        return rejects

    def _upsert(self, record: MemoryRecord) -> None:
        fields = grain_from_record(record, self.metrics)
        blob = encode_grain(fields)
        previous = [g for g in self.store.query(subject=fields["subject"], namespace=fields.get("namespace"))
                    if g.fields.get("namespace") == fields.get("namespace")]
        if previous and previous[-1].address != content_address(blob):
            address = self.store.supersede(previous[-1].address, blob)
        else:
            address = self.store.put(blob)
        if record.vectors:
            self.store.put_attachments(address, {vector_id(record, name): vec.data
                                                 for name, vec in record.vectors.items()})

    def finish(self, summary: dict[str, Any]) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    def abort(self) -> None:
        """Every acknowledged batch is committed already: close the store."""
        self.finish({})


def _reject(record: MemoryRecord, err: OMSError) -> Reject:
    return Reject(reason=err.code.lower(), detail=str(err), id=record.id, namespace=record.namespace)

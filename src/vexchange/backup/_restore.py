"""A snapshot read as a source, so that ``pull`` writes into any target through the engine
(its receipts, rejects, atomic outputs and resumable runs) like every other run.

Every record is checked before it is handed over: its line is in an authenticated chunk, the
snapshot's index names it with that snapshot as the holder of its live version, and its
canonical digest and line hash are the index's. The read ends (the page whose cursor is None)
only after every record of the index was found, so a snapshot missing a record fails the run
before the target is finished; ``pull`` also checks the whole snapshot first (``verify_first``),
so a tampered repository writes nothing at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from .._canonical import record_digest
from ..codecs.vmig import RecordError, decode_object, parse_line
from ..connectors._base import Capabilities, Connector, Page, Reject, VectorSpace
from ..errors import IntegrityError, UsageError
from ..record import MemoryRecord
from ..spec import StoreSpec
from ._index import DigestIndex, key_of, line_hash
from ._layout import Manifest, Repository

__all__ = ["SnapshotSource"]


class SnapshotSource(Connector):
    """Snapshot ``manifest`` of ``repo``, its index loaded into ``index`` (``prev``)."""

    name: ClassVar[str] = "backup"
    capabilities: ClassVar[Capabilities] = Capabilities(read=True, write=False, named_vectors=True)
    read_checks: ClassVar[tuple[str, ...]] = ("snapshot digests",)

    def __init__(self, repo: Repository, manifest: Manifest, index: DigestIndex, location: str) -> None:
        super().__init__(StoreSpec(scheme="backup", path=location))
        self.repo, self.manifest, self.index, self.location = repo, manifest, index, location

    def describe(self) -> dict[str, Any]:
        return {"connector": self.name, "location": self.location, "snapshot": self.manifest.snapshot}

    def count(self) -> int | None:
        return self.manifest.records

    def vector_spaces(self) -> dict[str, VectorSpace]:
        spaces = self.manifest.source.get("vector_spaces") or {}
        return {name: VectorSpace(dims=s.get("dims"), metric=s.get("metric")) for name, s in spaces.items()}

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        try:
            skip = int(after) if after is not None else 0
        except ValueError:
            raise UsageError(f"{after!r} is not a position in a backup snapshot") from None
        self.index.reset_done()
        page: list[MemoryRecord | Reject] = []
        emitted = 0
        for record in self._records():
            emitted += 1
            if emitted <= skip:
                continue
            page.append(record)
            if len(page) >= batch_size:
                yield Page(list(page), str(emitted))
                page.clear()
        missing = self.index.not_done()
        if missing or emitted != self.manifest.records:
            raise IntegrityError(f"snapshot {self.manifest.snapshot} is missing {missing or 'some'} of its"
                                 f" {self.manifest.records} records (a data chunk was removed or replaced)")
        yield Page(page, None)

    def _records(self) -> Iterator[MemoryRecord]:
        for snap in self.index.snapshots_needed():
            manifest = self.manifest if snap == self.manifest.snapshot else self.repo.manifest(snap)[0]
            for position, chunk in self.repo.chunks(manifest, "data"):
                where = f"snapshot {snap} data chunk {position}"
                for line in chunk.splitlines(keepends=True):
                    record = _decode(line, where)
                    if record is None:
                        continue  # a tombstone
                    wanted = self.index.wanted(key_of(record), snap)
                    if wanted is None:
                        continue  # a version a later snapshot replaced or removed
                    if record_digest(record) != wanted[0] or line_hash(line) != wanted[1]:
                        raise IntegrityError(f"record {record.id!r} in {where} does not match the"
                                             " snapshot's digest index")
                    yield record


def _decode(line: bytes, where: str) -> MemoryRecord | None:
    try:
        obj = parse_line(line)
        if isinstance(obj, dict) and "tombstone" in obj and "id" not in obj:
            return None
        return decode_object(obj, raw=line)
    except (RecordError, ValueError) as err:
        raise IntegrityError(f"{where} holds a line that is not a record ({err})") from None

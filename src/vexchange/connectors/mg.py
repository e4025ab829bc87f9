"""``mg``: an OMS ``.mg`` container file of memory grains, with its companion vector file.
docs/formats/oms.md.

``vex export --from vektor --db x.db --output memory.mg`` writes ``memory.mg`` (one Belief
grain per record, see vexchange.oms.memory) and ``memory.mg.vectors`` (the vectors the grains
reference). ``vex migrate memory.mg chroma://...`` reads them back. Both files are written
under temporary names and appear together when the run finishes; a ``.mg`` export cannot
resume (the format has its index before its grains), so an interrupted export starts again.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._atomic import AtomicOutput
from .._json import loads_exact
from ..errors import UsageError
from ..oms.container import MgReader, MgWriter
from ..oms.errors import OMSError
from ..oms.grain import encode_grain
from ..oms.memory import VectorFileReader, VectorFileWriter, grain_from_record, record_from_grain, vector_id
from ..record import MemoryRecord
from ..spec import StoreSpec
from ._base import Capabilities, Connector, Page, Reject, VectorSpace, Writer

__all__ = ["MgConnector"]

_OMS_METRICS = {"cosine": "cosine", "euclidean": "l2", "dot": "dot", "manhattan": "l1"}
_OUR_METRICS = {v: k for k, v in _OMS_METRICS.items()}


def vectors_path(path: Path) -> Path:
    return path.with_name(path.name + ".vectors")


class MgConnector(Connector):
    name = "mg"
    url_options = frozenset()
    capabilities = Capabilities(read=True, write=True, named_vectors=True, read_ahead=True,
                                read_in_process=True)

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if not spec.path:
            raise UsageError("mg needs a file path, e.g. memory.mg")
        self.path = Path(spec.path)

    def describe(self) -> dict[str, Any]:
        return {"connector": "mg", "location": str(self.path.resolve())}

    def _open(self) -> MgReader:
        if not self.path.is_file():
            raise UsageError(f"no such .mg file: {self.path}")
        return MgReader(self.path)

    def count(self) -> int | None:
        with self._open() as reader:
            return len(reader)

    def vector_spaces(self) -> dict[str, VectorSpace]:
        with self._open() as reader:
            if not len(reader):
                return {}
            grain = reader[0]
        packed = grain.fields.get("vexchange")
        names = [name for name, _ in loads_exact(packed).get("vectors", [])] if isinstance(
            packed, bytes) else []
        refs = grain.fields.get("embedding_refs") or []
        return {name: VectorSpace(dims=ref.get("dimensions"),
                                  metric=_OUR_METRICS.get(ref.get("distance_metric")))
                for name, ref in zip(names, refs)}

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        index, offset = (int(p) for p in after.split(":")) if after else (0, 0)
        companion = vectors_path(self.path)
        with self._open() as reader, (open(companion, "rb") if companion.exists()
                                      else io.BytesIO()) as vector_file:
            vector_file.seek(offset)
            entries = iter(VectorFileReader(vector_file))
            while index < len(reader):
                items: list[MemoryRecord | Reject] = []
                for index in range(index, min(index + batch_size, len(reader))):
                    items.append(self._item(reader, index, entries))
                index += 1
                more = index < len(reader)
                yield Page(items, f"{index}:{vector_file.tell()}" if more else None)
            if not len(reader):
                yield Page([], None)

    def _item(self, reader: MgReader, index: int, entries: Iterator[tuple[str, bytes]]) -> MemoryRecord | Reject:
        location = f"{self.path} grain {index}"
        try:
            grain = reader[index]
            wanted = [ref.get("vector_id") for ref in grain.fields.get("embedding_refs") or []
                      if isinstance(ref, dict)]
            vectors: dict[str, bytes] = {}
            for key in wanted:
                found = next(entries, None)
                if found is None or found[0] != key:
                    raise UsageError(f"{vectors_path(self.path)} does not hold vector {key!r} where"
                                     f" {location} expects it")
                vectors[found[0]] = found[1]
            return record_from_grain(grain, vectors)
        except OMSError as err:
            return Reject(reason=err.code.lower(), detail=str(err), location=location)

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        if resume is not None:
            raise UsageError("a .mg export cannot resume (its index comes before its grains)",
                             hint="run the same command again without --resume")
        return MgFileWriter(self.path, dry_run=dry_run, spaces=spaces or {})


class MgFileWriter(Writer):
    def __init__(self, path: Path, *, dry_run: bool, spaces: dict[str, VectorSpace]) -> None:
        self.dry_run = dry_run
        self.metrics = {n: _OMS_METRICS.get(s.metric or "") for n, s in spaces.items()}
        self.spaces = spaces
        self.grains = None if dry_run else MgWriter(path)
        self.vectors_out = None if dry_run else AtomicOutput(vectors_path(path))
        self.vectors = None if self.vectors_out is None else VectorFileWriter(self.vectors_out)

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return dict(self.spaces)

    def write(self, batch: list[MemoryRecord]) -> list[Reject]:
        rejects: list[Reject] = []
        for record in batch:
            try:
                blob = encode_grain(grain_from_record(record, self.metrics))
            except OMSError as err:
                rejects.append(Reject(reason=err.code.lower(), detail=str(err), id=record.id,
                                      namespace=record.namespace))
                continue
            if self.grains is not None and self.vectors is not None:
                self.grains.add(blob)
                for name, vec in record.vectors.items():
                    self.vectors.add(vector_id(record, name), vec.data)
        return rejects

    def finish(self, summary: dict[str, Any]) -> None:
        if self.grains is not None and self.vectors_out is not None:
            self.vectors_out.commit()
            self.grains.close()

    def abort(self) -> None:
        if self.vectors_out is not None:
            self.vectors_out.discard()
        if self.grains is not None:
            self.grains.discard()

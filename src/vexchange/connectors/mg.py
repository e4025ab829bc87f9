"""``mg``: an OMS ``.mg`` container file of memory grains, with its companion vector file.
docs/formats/oms.md.

``vex export --from vektor --db x.db --output memory.mg`` writes ``memory.mg`` (one Belief
grain per record, see vexchange.oms.memory) and ``memory.mg.vectors`` (the vectors the grains
reference). ``vex migrate memory.mg chroma://...`` reads them back. Both files are written
under temporary names and appear together when the run finishes. The format has its index
before its grains, so the grains are staged first (``memory.mg.grains.partial``, each blob
after its u32 length) and the ``.mg`` file is built from them at the end; the staging file and
``memory.mg.vectors.partial`` are cut back to the last checkpoint when a run resumes.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

import msgspec

from .._atomic import RESUME_HINT, AtomicOutput, check_writable, prefix_state, write_failure
from .._json import loads_exact
from ..errors import DecodeError, IntegrityError, UsageError
from ..oms.container import MgReader, MgWriter, VectorsCheck
from ..oms.errors import OMSError
from ..oms.grain import encode_grain
from ..oms.memory import VectorFileReader, VectorFileWriter, grain_from_record, record_from_grain, vector_id
from ..record import MemoryRecord
from ..spec import StoreSpec
from ._base import AtPath, Capabilities, Connector, Page, Reject, Shard, VectorSpace, Writer
from .vmig import LastBatch

__all__ = ["MgConnector"]

_OMS_METRICS = {"cosine": "cosine", "euclidean": "l2", "dot": "dot", "manhattan": "l1"}
_OUR_METRICS = {v: k for k, v in _OMS_METRICS.items()}


def vectors_path(path: Path) -> Path:
    return path.with_name(path.name + ".vectors")


class MgConnector(AtPath, Connector):
    name = "mg"
    url_options = frozenset()
    suffixes = (".mg",)
    takes_path = True
    capabilities = Capabilities(read=True, write=True, named_vectors=True, read_ahead=True,
                                read_in_process=True)

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if not spec.path:
            raise UsageError("mg needs a file path, e.g. memory.mg")
        self.path = Path(spec.path)
        self._checked = False

    def describe(self) -> dict[str, Any]:
        return {"connector": "mg", "location": str(self.path.resolve())}

    read_checks = ("footer", "grain index", "vectors hash")

    def _open(self, *, check: bool | None = None) -> MgReader:
        """The file, its footer and offset index checked the first time (a run opens it for
        its count, its spaces and its read; a child process gets the connector already
        checked) unless ``verify_reads`` is off; ``check`` forces the footer either way."""
        if not self.path.is_file():
            raise UsageError(f"no such .mg file: {self.path}")
        verify = check if check is not None else self.verify_reads and not self._checked
        try:
            reader = MgReader(self.path, verify=verify)
        except OMSError as err:
            raise _as_integrity(err) from None
        self._checked = self._checked or verify
        return reader

    def verify_source(self) -> dict[str, Any]:
        """Footer, offset index, every grain, and the vectors file hashed whole: what
        ``vex grains verify`` checks (``--verify-first``)."""
        try:
            with self._open(check=True) as reader:
                return reader.verify()
        except OMSError as err:
            raise _as_integrity(err) from None

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
                for name, ref in zip(names, refs, strict=False)}

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        """Grains in order with their vectors. With ``verify_reads`` the vectors file is hashed
        as it is read (from its start, on a resumed read too) and checked against the hash the
        manifest carries before the last page is handed over."""
        return self._pages(batch_size, after, end=None, verify=self.verify_reads)

    def shard_plan(self, max_shards: int) -> list[Shard]:
        """Grain index ranges of about equal counts (at least 256 grains a shard), each with
        the offset in the vectors file where its first grain's vectors start (``Shard.line``):
        the grains before the last cut are counted by their vector references (their
        MessagePack payload read for that one field, a few µs a grain, nothing decoded
        further) and the vectors file's entry headers walked to that many entries. The same
        file gives the same plan."""
        with self._open() as reader:
            total = len(reader)
            shards = max(1, min(max_shards, total // _MIN_SHARD_GRAINS))
            if shards == 1:
                return [Shard(index=0)]
            cuts = [total * i // shards for i in range(1, shards)]
            entries = _refs_before(reader, cuts)
        offsets = _entry_offsets(vectors_path(self.path), entries)
        bounds: list[tuple[int, int]] = [(0, 0), *zip(cuts, offsets, strict=True)]
        return [Shard(index=i, kind="index", start=start, line=offset,
                      end=bounds[i + 1][0] if i + 1 < len(bounds) else None,
                      records=(bounds[i + 1][0] if i + 1 < len(bounds) else total) - start)
                for i, (start, offset) in enumerate(bounds)]

    def read_shard(self, shard: Shard, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        """The grains ``start`` (included) to ``end`` (excluded), their vectors read from the
        plan's offset. The vectors file's hash covers the whole file: it is checked once,
        before the shards are read (``shard_checks``), not here; each grain is still checked
        as it is decoded."""
        if shard.kind == "whole":
            return self.read(batch_size=batch_size, after=after)
        if shard.kind != "index":
            raise NotImplementedError(f"mg has no {shard.kind} shards")
        return self._pages(batch_size, after or f"{shard.start or 0}:{shard.line}", end=shard.end,
                           verify=False)

    def shard_checks(self) -> dict[str, Any]:
        """The footer and offset index (at open) and the vectors file hashed whole against the
        manifest: what a shard read cannot check alone."""
        companion = vectors_path(self.path)
        with self._open(check=True) as reader, (open(companion, "rb") if companion.exists()
                                                else io.BytesIO()) as vector_file:
            check = self._vectors_check(reader, vector_file, 0)
            if check is not None:
                try:
                    check.finish()
                except OMSError as err:
                    raise _as_integrity(err) from None
        return {"footer": "ok", "grain index": "ok",
                "vectors hash": "ok" if check is not None else "not recorded"}

    def _pages(self, batch_size: int, after: str | None, *, end: int | None,
               verify: bool) -> Iterator[Page]:
        """Pages from the cursor ``<grain index>:<vectors offset>`` up to grain ``end``."""
        index, offset = (int(p) for p in after.split(":")) if after else (0, 0)
        companion = vectors_path(self.path)
        with self._open() as reader, (open(companion, "rb") if companion.exists()
                                      else io.BytesIO()) as vector_file:
            check = self._vectors_check(reader, vector_file, offset) if verify else None
            stream = cast(BinaryIO, vector_file if check is None else check)
            if check is None:
                vector_file.seek(offset)
            entries = iter(VectorFileReader(stream))
            count = len(reader) if end is None else min(end, len(reader))
            while True:
                stop = min(index + batch_size, count)
                items = [self._item(reader, i, entries) for i in range(index, stop)]
                index = stop
                more = index < count
                if not more and check is not None:
                    try:
                        check.finish()
                    except OMSError as err:
                        raise _as_integrity(err) from None
                yield Page(items, f"{index}:{stream.tell()}" if more else None)
                if not more:
                    return

    def _vectors_check(self, reader: MgReader, vector_file: BinaryIO, offset: int) -> VectorsCheck | None:
        """The running check of the vectors file, or None: not verifying, or a file whose
        manifest carries no vectors hash (an older or foreign writer's; ``vex grains verify``
        says so)."""
        if not self.verify_reads:
            return None
        expected = reader.vectors_hash()
        if expected is None:
            return None
        companion = vectors_path(self.path)
        if not companion.is_file():
            raise _no_vectors_file(self.path)
        return VectorsCheck(vector_file, expected, companion, start=offset)

    def _item(self, reader: MgReader, index: int,
              entries: Iterator[tuple[str, bytes]]) -> MemoryRecord | Reject:
        location = f"{self.path} grain {index}"
        try:
            grain = reader[index]
            wanted = [ref.get("vector_id") for ref in grain.fields.get("embedding_refs") or []
                      if isinstance(ref, dict)]
            vectors: dict[str, bytes] = {}
            for key in wanted:
                try:
                    found = next(entries, None)
                except (OMSError, UnicodeDecodeError, struct.error) as err:
                    found, damage = None, f" ({err})"
                else:
                    damage = ""
                if found is None and not vectors_path(self.path).exists():
                    raise _no_vectors_file(self.path)
                if found is None or found[0] != key:
                    # the vectors file as a whole is damaged or another file's: no later grain
                    # lines up either, so the read stops rather than rejecting every grain
                    raise IntegrityError(f"{vectors_path(self.path)} does not hold vector {key!r}"
                                         f" where {location} expects it{damage}",
                                         hint="the .vectors file is damaged or belongs to another"
                                              " .mg file")
                vectors[found[0]] = found[1]
            return record_from_grain(grain, vectors)
        except OMSError as err:
            return Reject(reason=err.code.lower(), detail=str(err), location=location)

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        return MgFileWriter(self.path, dry_run=dry_run, spaces=spaces or {}, resume=resume)


_MIN_SHARD_GRAINS = 256
"""A parallel run splits a ``.mg`` file into index ranges of at least this many grains."""


def _refs_before(reader: MgReader, cuts: list[int]) -> list[int]:
    """The vector references of the grains before each cut (cuts ascending): each grain's
    MessagePack payload read for its ``er`` (``embedding_refs``) field only; a grain that does
    not read that way is decoded whole (and a damaged one counts none: its read rejects it)."""
    decoder = msgspec.msgpack.Decoder()
    counts: list[int] = []
    total = 0
    at = 0
    for cut in cuts:
        for i in range(at, cut):
            try:
                blob = reader.blob(i)
                payload = decoder.decode(blob[9:])
                refs = payload.get("er", payload.get("embedding_refs")) if isinstance(payload, dict) \
                    else reader[i].fields.get("embedding_refs")
            except (msgspec.DecodeError, OMSError, IndexError):
                try:
                    refs = reader[i].fields.get("embedding_refs")
                except OMSError:
                    refs = None
            total += sum(isinstance(ref, dict) for ref in refs) if isinstance(refs, list) else 0
        at = cut
        counts.append(total)
    return counts


def _entry_offsets(path: Path, entries: list[int]) -> list[int]:
    """The byte offsets of the given entry numbers (ascending) in a vectors file, its entry
    headers walked (each entry: u32 key length, key, u32 dims, 4 x dims bytes)."""
    offsets: list[int] = []
    if not path.exists():
        return [0 for _ in entries]
    size = path.stat().st_size
    with open(path, "rb") as handle:
        seen = 0
        for wanted in entries:
            while seen < wanted:
                head = handle.read(4)
                if len(head) < 4:
                    break  # a short file: its read fails where the entry is missing
                handle.seek(struct.unpack(">I", head)[0], os.SEEK_CUR)
                dims = handle.read(4)
                if len(dims) < 4:
                    break
                handle.seek(4 * struct.unpack(">I", dims)[0], os.SEEK_CUR)
                seen += 1
            offsets.append(min(handle.tell(), size))
    return offsets


def _no_vectors_file(path: Path) -> UsageError:
    """The companion file was left behind (a usage mistake, exit 2), not damaged."""
    return UsageError(f"{vectors_path(path)} is missing: {path.name}'s grains reference vectors in it",
                      hint="copy the .mg file together with its .vectors file")


def _as_integrity(err: OMSError) -> DecodeError:
    """An ERR_INTEGRITY from the container (footer, vectors hash, manifest) as the project's
    IntegrityError (exit 3); other OMS errors as they are."""
    if err.code != "ERR_INTEGRITY":
        return err
    return IntegrityError(err.message, hint="vex grains verify shows what is damaged; to read the"
                                            " file as it is, rerun with --no-verify")


def grains_path(path: Path) -> Path:
    """Where a ``.mg`` export stages its grains (``AtomicOutput`` adds ``.partial``)."""
    return path.with_name(path.name + ".grains")


class MgFileWriter(Writer):
    """Grains staged (resumably) and vectors appended in the order records come; ``finish``
    builds the ``.mg`` file. The last batch is held back until the next one or a checkpoint
    (``LastBatch``), so a batch retried after it landed is written once."""

    def __init__(self, path: Path, *, dry_run: bool, spaces: dict[str, VectorSpace],
                 resume: dict[str, Any] | None = None) -> None:
        self.path = path
        self.metrics = {n: _OMS_METRICS.get(s.metric or "") for n, s in spaces.items()}
        self.spaces = spaces
        state = _resume_state(resume, dry_run)
        if not dry_run:
            check_writable(path)  # before any work: the .mg file itself is written only at the end
        if state is not None:
            _restage(path, state["grains"])
        self.staged = None if dry_run else AtomicOutput(grains_path(path), resume=(
            None if state is None else state["grains"]), reclaim=False)
        try:
            # a finished vectors file taken back takes its .mg with it: no .mg without its vectors
            self.vectors_out = None if dry_run else AtomicOutput(
                vectors_path(path), resume=None if state is None else state["vectors"],
                before_reclaim=lambda: path.unlink(missing_ok=True))
        except BaseException:
            if self.staged is not None:
                self.staged.close_partial()
            raise
        self.vectors = None if self.vectors_out is None else VectorFileWriter(self.vectors_out)
        self.held: LastBatch[tuple[MemoryRecord, bytes]] = LastBatch(self._append)

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return dict(self.spaces)

    def write(self, batch: list[MemoryRecord]) -> list[Reject]:
        rejects: list[Reject] = []
        grains: list[tuple[MemoryRecord, bytes]] = []
        for record in batch:
            try:
                grains.append((record, encode_grain(grain_from_record(record, self.metrics))))
            except OMSError as err:
                rejects.append(Reject(reason=err.code.lower(), detail=str(err), id=record.id,
                                      namespace=record.namespace))
        self.held.hold(batch, grains)
        return rejects

    def _append(self, grains: list[tuple[MemoryRecord, bytes]]) -> None:
        if self.staged is None or self.vectors is None:
            return
        for record, blob in grains:
            self.staged.write(struct.pack(">I", len(blob)) + blob)
            for name, vec in record.vectors.items():
                self.vectors.add(vector_id(record, name), vec.data)

    def checkpoint(self) -> dict[str, Any]:
        self.held.release()
        if self.staged is None or self.vectors_out is None:
            return {"grains": None, "vectors": None}
        return {"grains": self.staged.state(), "vectors": self.vectors_out.state()}

    def finish(self, summary: dict[str, Any]) -> None:
        """Build the ``.mg`` under ``<file>.partial``, remove an earlier ``.mg``, rename the
        vectors, then the ``.mg``, then drop the staged grains. At no kill point does a ``.mg``
        sit beside vectors that are not its own; a full disk while building leaves both
        partial files for ``--resume``; killed after a rename, ``--resume`` takes the files
        back (the grains are staged again from the ``.mg``), so no record is lost or doubled."""
        self.held.release()
        if self.staged is None or self.vectors_out is None:
            return
        self.staged.flush(sync=True)
        self.staged.close_partial()
        self.vectors_out.flush(sync=True)
        built = self.path.with_name(self.path.name + ".partial")
        with MgWriter(built) as grains, open(self.staged.partial, "rb") as staged:
            describe = getattr(grains, "describe_vectors", None)
            if describe is not None:  # the vectors file's hash, in the container's manifest
                describe(self.vectors_out.sha256, self.vectors_out.size)
            while head := staged.read(4):
                grains.add(staged.read(struct.unpack(">I", head)[0]))
        try:
            self.path.unlink(missing_ok=True)
            self.vectors_out.commit()
            os.replace(built, self.path)
        except OSError as err:
            raise write_failure(err, self.path) from None
        self.staged.discard()

    def abort(self) -> None:
        """Keep both partial files: a resumed run cuts them back to its checkpoint."""
        for out in (self.staged, self.vectors_out):
            if out is not None:
                out.close_partial()


def _resume_state(resume: dict[str, Any] | None, dry_run: bool) -> dict[str, Any] | None:
    """The size and SHA-256 of the staged grains and of the vectors at the checkpoint, each
    checked (``prefix_state``); a checkpoint without them (an older vexchange's) cannot be
    continued."""
    if resume is None or dry_run:
        return None
    for key in ("grains", "vectors"):
        prefix_state(resume.get(key), Path(f"the .mg export's {key}"))
    return {"grains": resume["grains"], "vectors": resume["vectors"]}


def _restage(path: Path, grains: dict[str, Any]) -> None:
    """A run killed after its ``.mg`` was renamed in, before its checkpoint was removed, left
    no staged grains: stage the checkpoint's share of them again from the ``.mg`` (the prefix
    is then checked like any partial file, and refused if it is not the one written)."""
    staging = grains_path(path).with_name(grains_path(path).name + ".partial")
    if staging.exists() or not path.is_file():
        return  # resumed from the staged grains, or refused by AtomicOutput (missing)
    size, _ = prefix_state(grains, staging)
    written = 0
    try:
        with MgReader(path) as reader, open(staging, "wb") as out:
            for index in range(len(reader)):
                if written >= size:
                    break
                blob = reader.blob(index)
                out.write(struct.pack(">I", len(blob)) + blob)
                written += 4 + len(blob)
    except OMSError as err:
        staging.unlink(missing_ok=True)
        raise UsageError(f"cannot resume: {path} cannot be read back ({err})",
                         hint=RESUME_HINT) from None
    except OSError as err:
        staging.unlink(missing_ok=True)
        raise write_failure(err, staging) from None

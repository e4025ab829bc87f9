"""``vmig`` (alias ``jsonl``): a .vmig.jsonl file as a store. docs/connectors/vmig.md.

Reading streams line by line at constant memory. Blank lines and lines starting with ``#`` are
skipped; a UTF-8 BOM is ignored. A line that is not JSON, or not a usable record, becomes a
``Reject`` naming the file and line, and reading goes on. The cursor is ``"<byte offset>:<line>"``.

Writing goes to ``<file>.partial``, is renamed into place when the run finishes, and is followed
by the sidecar (record count, SHA-256 of the bytes, source, namespaces, dims, models). The
last batch is held back until the next one (or a checkpoint), so a batch the engine retries
after its write landed replaces itself instead of appearing twice (see ``LastBatch``).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import orjson

from .._floats import Float32Bytes, decode_rows
from .._vector_text import VectorTexts

from .._atomic import AtomicOutput, commit_partial, join_files
from ..codecs.vmig import COMPAT_MODES, RecordError, decode_object, encode_records, parse_line_and_vector
from ..errors import InvalidSpecError, UsageError
from ..record import DEFAULT_VECTOR, MemoryRecord
from ..results import ChecksumCheck, SidecarState
from ..spec import StoreSpec
from ._base import AtPath, Capabilities, Connector, Page, Reject, Shard, VectorSpace, Writer
from ..errors import DecodeError, IntegrityError
from ..sidecar import (StreamChecksum, checksum_status, claims_empty, read_sidecar, record_import,
                       recorded_checksum, sidecar_path, verify_checksum, write_sidecar)

__all__ = ["LastBatch", "VmigConnector", "VmigPartWriter", "VmigWriter", "iter_lines", "join_parts",
           "read_file"]

_BOM = b"\xef\xbb\xbf"


class VmigConnector(AtPath, Connector):
    name = "vmig"
    url_options = frozenset()
    suffixes = (".vmig.jsonl", ".jsonl")
    writer_takes = frozenset({"vector_text"})
    takes_path = True
    capabilities = Capabilities(read=True, write=True, named_vectors=True, read_ahead=True,
                                read_in_process=True)

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if not spec.path:
            raise InvalidSpecError("vmig needs a file path, e.g. memory.vmig.jsonl")
        self.path = Path(spec.path)

    compat: str | None = None
    """The run's ``compat`` option (``accept_compat``), handed to the writer."""

    def accept_compat(self, compat: str | None) -> None:
        """Any .vmig.jsonl target (whatever its file name) takes ``compat="vex"``."""
        if compat is not None and compat not in COMPAT_MODES:
            raise UsageError(f"unknown --compat mode {compat!r}; known: {', '.join(COMPAT_MODES)}")
        self.compat = compat

    def sidecar_state(self, records: int) -> SidecarState:
        meta = read_sidecar(self.path)
        if meta is None:
            return SidecarState(status="missing")
        check = verify_checksum(self.path)
        return SidecarState(
            status=check["status"], record_count=meta.get("record_count"),
            record_count_matches=meta.get("record_count") == records,
            exported_at=meta.get("exported_at"), source_store=meta.get("source_store"),
            imported_to=meta.get("imported_to"), imported_at=meta.get("imported_at"),
        )

    def file_check(self) -> ChecksumCheck:
        """The checksum against the sidecar, and the line count against its record count."""
        if not self.path.exists():
            raise UsageError(f"no such file: {self.path}")
        result = verify_checksum(self.path)
        meta = read_sidecar(self.path) or {}
        lines = sum(1 for _ in iter_lines(self.path))  # counting needs no parsing
        count_ok = meta.get("record_count") in (None, lines)
        return ChecksumCheck(ok=result.ok and count_ok, status=result["status"], records=lines,
                             sidecar_record_count=meta.get("record_count"))

    def after_run_as_source(self, *, target: str, written: int) -> None:
        """An import from this file goes into its sidecar's history (export fields untouched)."""
        record_import(self.path, target, written)

    def describe(self) -> dict[str, Any]:
        return {"connector": "vmig", "location": str(self.path.resolve())}

    def count(self) -> int | None:
        meta = read_sidecar(self.path) if self.path.exists() else None
        value = meta.get("record_count") if meta else None
        return value if isinstance(value, int) else None

    def vector_spaces(self) -> dict[str, VectorSpace]:
        meta = read_sidecar(self.path) if self.path.exists() else None
        saved = meta.get("vector_spaces") if meta else None
        if not isinstance(saved, dict):
            return {}
        return {name: VectorSpace(dims=s.get("dims"), metric=s.get("metric"))
                for name, s in saved.items() if isinstance(s, dict)}

    read_checks = ("sidecar checksum",)

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        return read_file(self.path, batch_size=batch_size, after=after, verify=self.verify_reads)

    def shard_plan(self, max_shards: int) -> list[Shard]:
        """Byte ranges of about equal size, each cut moved forward to the start of the next
        line, with the number of lines before it (so rejects name the same line numbers as
        a one-worker read). One pass over the bytes, counting newlines, no decoding."""
        if not self.path.is_file():
            raise UsageError(f"no such file: {self.path}")
        size = self.path.stat().st_size
        shards = max(1, min(max_shards, size // _MIN_SHARD_BYTES))
        if shards == 1:
            return [Shard(index=0)]
        cuts: list[tuple[int, int]] = []
        with open(self.path, "rb", buffering=0) as handle:
            lines = position = 0
            for i in range(1, shards):
                aim = max(size * i // shards, cuts[-1][0] if cuts else 0)
                while position < aim:  # count the lines up to the aim, a chunk at a time
                    chunk = handle.read(min(1 << 20, aim - position))
                    lines += chunk.count(b"\n")
                    position += len(chunk)
                rest = handle.readline()  # to the end of the line the aim fell in
                if position > 0 and not _after_newline(handle, position):
                    lines += rest.endswith(b"\n")
                    position += len(rest)
                else:  # the aim is a line start already
                    handle.seek(position)
                if position >= size:
                    break
                if not cuts or position > cuts[-1][0]:
                    cuts.append((position, lines))
        bounds = [(0, 0), *cuts]
        return [Shard(index=i, kind="bytes", start=start, line=line,
                      end=bounds[i + 1][0] if i + 1 < len(bounds) else None)
                for i, (start, line) in enumerate(bounds)] if cuts else [Shard(index=0)]

    def read_shard(self, shard: Shard, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        """A byte range's records. The sidecar checksum covers the whole file: it is checked
        once, before the shards are read (``shard_checks``), not here."""
        if shard.kind == "whole":
            return self.read(batch_size=batch_size, after=after)
        if shard.kind != "bytes":
            raise NotImplementedError(f"vmig has no {shard.kind} shards")
        return read_file(self.path, batch_size=batch_size, verify=False,
                         after=after or f"{shard.start or 0}:{shard.line}", end=shard.end)

    def shard_checks(self) -> dict[str, Any]:
        return self.verify_source()

    def verify_source(self) -> dict[str, Any]:
        """The file hashed whole against its sidecar (no decoding): ``--verify-first``."""
        if not self.path.is_file():
            raise UsageError(f"no such file: {self.path}")
        result = verify_checksum(self.path)
        if result["status"] == "mismatch":
            raise _checksum_mismatch(self.path)
        return {"sidecar checksum": result["status"]}

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        return VmigWriter(self.path, resume=resume, dry_run=dry_run, spaces=spaces, compat=self.compat)


_MIN_SHARD_BYTES = 64 << 10
"""A parallel run splits a file into byte ranges of at least this size."""


def _after_newline(handle: Any, position: int) -> bool:
    """Whether ``position`` is a line start (the byte before it is a newline)."""
    here = handle.tell()
    handle.seek(position - 1)
    before = handle.read(1)
    handle.seek(here)
    return bool(before == b"\n")


DEFAULT_MAX_LINE_BYTES = 64 << 20
"""The longest line (newline aside) a reader takes unless ``VEX_MAX_LINE_BYTES`` says otherwise."""


def max_line_bytes() -> int:
    """``VEX_MAX_LINE_BYTES``, else 64 MiB: a line is read whole to be parsed, so an endless
    one (a damaged or hostile file) must stop at a bound instead of filling memory."""
    raw = os.environ.get("VEX_MAX_LINE_BYTES", "").strip().replace("_", "")
    if not raw:
        return DEFAULT_MAX_LINE_BYTES
    if not raw.isdigit() or int(raw) < 1:
        raise UsageError(f"VEX_MAX_LINE_BYTES is {raw!r}; it must be a whole number of bytes, 1 or more")
    return int(raw)


def iter_lines(path: Path, *, offset: int = 0, line_no: int = 0,
               on_bytes: Callable[[bytes], None] | None = None,
               max_line: int | None = None, end: int | None = None) -> Iterator[tuple[int, int, bytes]]:
    """``(line number, byte offset after the line, line)`` for every line that holds data.

    Blank lines and ``#`` comments are skipped and a leading UTF-8 BOM is dropped; the one place
    that knows these reading rules. ``on_bytes`` is given every byte read, skipped lines
    included, in order (a running checksum). A line longer than ``max_line`` bytes (default
    :func:`max_line_bytes`) is a DecodeError, raised after reading at most that much of it.
    ``end``: stop at the line that starts there (a shard's end, always a line start).
    """
    for number, raw in bounded_lines(path, offset=offset, line_no=line_no, max_line=max_line, end=end):
        offset += len(raw)
        if on_bytes is not None:
            on_bytes(raw)
        line = (raw[3:] if number == 1 and raw.startswith(_BOM) else raw).strip()
        if line and not line.startswith(b"#"):
            yield number, offset, line


def bounded_lines(path: Path, *, offset: int = 0, line_no: int = 0,
                  max_line: int | None = None, end: int | None = None) -> Iterator[tuple[int, bytes]]:
    """``(line number, raw line)`` for every line from ``offset``, each read with a bound: a
    line longer than ``max_line`` bytes (default :func:`max_line_bytes`) is a DecodeError,
    raised after reading at most that much of it, so a damaged or hostile file cannot fill
    memory. Every reader of line files goes through here."""
    limit = max_line or max_line_bytes()
    # a 1 MiB buffer: lines of a few KiB each through the default 8 KiB one cost 3 µs a line
    # in refills, against 0.8 µs
    with open(path, "rb", buffering=1 << 20) as handle:
        handle.seek(offset)
        position = offset
        while (end is None or position < end) and (raw := handle.readline(limit + 1)):
            position += len(raw)
            line_no += 1
            if len(raw) > limit and not raw.endswith(b"\n"):
                raise DecodeError(
                    f"the line is longer than {limit:,} bytes; refusing to read it whole",
                    location=f"{path} line {line_no}",
                    hint="if the file is sound, set VEX_MAX_LINE_BYTES to a larger number of bytes")
            yield line_no, raw


def read_file(path: Path, *, batch_size: int, after: str | None = None,
              verify: bool = True, end: int | None = None) -> Iterator[Page]:
    """Stream records (and rejects) from a .vmig.jsonl file. With ``verify`` and a sidecar that
    records a checksum, the bytes are hashed as they are read (from the start, on a resumed
    read too) and a mismatch raises IntegrityError instead of the last page, so a run never
    finishes on a file that is not what its sidecar says."""
    if not path.exists():
        raise UsageError(f"no such file: {path}")
    if path.is_dir():
        raise UsageError(f"{path} is a directory, not a .vmig.jsonl file")
    start, first_line = _parse_cursor(after)
    expected = recorded_checksum(path) if verify else None
    stream = None if expected is None else StreamChecksum()
    if stream is not None:
        stream.update_from(path, start)
    # Vex's sidecar of an empty export has no checksum but still says: no record here
    empty = verify and expected is None and claims_empty(read_sidecar(path))
    lines: list[tuple[int, bytes]] = []
    for line_no, offset, line in iter_lines(path, offset=start, line_no=first_line, end=end,
                                            on_bytes=None if stream is None else stream.update):
        if empty:
            raise _checksum_mismatch(path)
        lines.append((line_no, line))
        if len(lines) >= batch_size:
            yield _texted_page(*_decode_page(lines, path), f"{offset}:{line_no}")
            lines = []
    if stream is not None and expected is not None \
            and checksum_status(expected, *stream.digests()) == "mismatch":
        raise _checksum_mismatch(path)
    yield _texted_page(*_decode_page(lines, path), None)


def _checksum_mismatch(path: Path) -> IntegrityError:
    return IntegrityError(
        f"the file does not match the checksum in its sidecar {sidecar_path(path).name}"
        " (it changed after it was written)", location=str(path),
        hint=f"vex verify {path} shows both checksums; to read it as it is, rerun with --no-verify")


class TextedPage(Page):
    """A page read from a .vmig.jsonl file, with the JSON text of its vectors that a JSON writer
    may write again as it was (``vector_texts``, see _vector_text.py)."""

    vector_texts: VectorTexts


def _texted_page(items: list[MemoryRecord | Reject], texts: VectorTexts, cursor: str | None) -> Page:
    page = TextedPage(items, cursor)
    page.vector_texts = texts
    return page


def _decode_page(lines: list[tuple[int, bytes]],
                 path: Path) -> tuple[list[MemoryRecord | Reject], VectorTexts]:
    """Parse a page of lines, convert their default vectors to float32 together, then build
    the records (see _floats.decode_rows: the per-vector numpy overhead is paid once a page).
    With them, the JSON text of the vectors that a writer may write again (_vector_text.py)."""
    parsed: list[Any] = []
    texts: list[bytes | None] = []  # per parsed line, the text of its vector array
    for line_no, line in lines:
        try:
            obj, text = parse_line_and_vector(line)
            parsed.append(obj)
            texts.append(text)
        except orjson.JSONDecodeError as err:
            texts.append(None)
            parsed.append(Reject(reason="bad_json", detail=f"not valid JSON: {err}",
                                 location=f"{path} line {line_no}",
                                 record=line.decode("utf-8", "replace")))
    by_size: dict[int, list[dict[str, Any]]] = {}
    for obj in parsed:
        if isinstance(obj, dict) and type(obj.get("vector")) is np.ndarray and obj["vector"].ndim == 1:
            by_size.setdefault(obj["vector"].size, []).append(obj)
    for group in by_size.values():
        if len(group) < 2:
            continue
        narrow, slow = decode_rows(np.stack([obj["vector"] for obj in group]))
        for obj, row, careful in zip(group, narrow, slow, strict=False):
            if not careful:
                obj["vector"] = Float32Bytes(row.tobytes())
    items = [obj if isinstance(obj, Reject) else _decode_parsed(obj, line, path, line_no)
             for obj, (line_no, line) in zip(parsed, lines, strict=False)]
    kept = VectorTexts()
    for obj, item, text in zip(parsed, items, texts, strict=True):
        # only a vector converted with no midpoint and no subnormal (Float32Bytes): its text
        # reads to these very bits in any float64 parser (_vector_text.py)
        if text is not None and type(item) is MemoryRecord and type(obj["vector"]) is Float32Bytes:
            vec = item.vectors.get(obj.get("vector_name") or DEFAULT_VECTOR)
            if vec is not None:
                kept.add(vec.data, text)
    return items, kept


def _parse_cursor(after: str | None) -> tuple[int, int]:
    if not after:
        return 0, 0
    offset, _, line = after.partition(":")
    return int(offset), int(line)


def _decode_parsed(obj: Any, line: bytes, path: Path, line_no: int) -> MemoryRecord | Reject:
    try:
        return decode_object(obj, line)
    except RecordError as err:
        if isinstance(obj, dict) and type(obj.get("vector")) is Float32Bytes:
            obj["vector"] = np.frombuffer(obj["vector"], dtype="<f4").tolist()
        return Reject(
            reason=err.reason,
            detail=err.detail,
            id=err.record_id,
            namespace=obj.get("namespace") if isinstance(obj, dict) else None,
            location=f"{path} line {line_no}",
            record=obj,
        )


T = TypeVar("T")


class LastBatch(Generic[T]):
    """The last batch a file writer was given, held until the next batch, a checkpoint or the
    end. A file cannot take back what it appended, and the engine writes a batch again when
    its write failed after it landed (a timeout); ids are unique within a run, so a batch with
    the same keys as the one held is that retry, and replaces it instead of adding it twice."""

    def __init__(self, release: Callable[[list[T]], None]) -> None:
        self._release = release
        self._keys: list[tuple[str | None, str]] | None = None
        self._items: list[T] = []

    def hold(self, batch: list[MemoryRecord], items: list[T]) -> None:
        keys = [(r.namespace, r.id) for r in batch]
        if keys != self._keys:
            self.release()
        self._keys, self._items = keys, items

    def release(self) -> None:
        """Hand the held batch on to the file (it can no longer be replaced)."""
        items, self._keys, self._items = self._items, None, []
        if items:
            self._release(items)


class VmigWriter(Writer):
    bulk = True
    """Written once and not read back soon: around the page cache where allowed."""

    def __init__(self, path: Path, *, resume: dict[str, Any] | None, dry_run: bool,
                 spaces: dict[str, VectorSpace] | None = None, compat: str | None = None) -> None:
        self.path = path
        self.compat = compat
        self.spaces = spaces or {}
        state = resume or {}
        self.count: int = state.get("count", 0)
        self.namespaces: Counter[str] = Counter(state.get("namespaces", {}))
        self.dims: Counter[str] = Counter(state.get("dims", {}))
        self.models: Counter[str] = Counter(state.get("models", {}))
        # resumed: the prefix the checkpoint wrote must be on disk, byte for byte (AtomicOutput);
        # a finished file taken back loses its sidecar first, so nothing claims it complete
        self.out = None if dry_run else AtomicOutput(
            path, resume=None if resume is None else (resume.get("file") or {}),
            before_reclaim=lambda: sidecar_path(path).unlink(missing_ok=True), bulk=self.bulk)
        self.held: LastBatch[tuple[MemoryRecord, bytes]] = LastBatch(self._append)

    def write(self, batch: list[MemoryRecord]) -> list[Reject]:
        return self.write_with_texts(batch, None)

    def write_with_texts(self, batch: list[MemoryRecord], texts: VectorTexts | None) -> list[Reject]:
        """``write``; a vector whose bytes ``texts`` holds is written as the text it was read
        from (_vector_text.py): the same bits, no formatting."""
        if not isinstance(batch, list):  # walked twice (encoded, then held): an iterator would be lost
            batch = list(batch)
        lines: list[tuple[MemoryRecord, bytes]] = []
        rejects: list[Reject] = []
        for record, line in zip(batch, encode_records(batch, compat=self.compat, texts=texts), strict=True):
            if type(line) is bytes:
                lines.append((record, line))
            elif isinstance(line, RecordError):
                rejects.append(Reject(reason=line.reason, detail=line.detail, id=record.id,
                                      namespace=record.namespace))
            else:
                rejects.append(Reject(reason="unencodable", detail=str(line), id=record.id,
                                      namespace=record.namespace))
        self.held.hold(batch, lines)
        return rejects

    def _append(self, lines: list[tuple[MemoryRecord, bytes]]) -> None:
        self._tally([record for record, _ in lines])
        if self.out is not None:
            self.out.write(b"".join(line for _, line in lines))

    def _tally(self, records: list[MemoryRecord]) -> None:
        """The sidecar's counts of what was written, a batch at once (``Counter.update`` of a
        list counts in C: a third of a per-record ``+= 1``'s time)."""
        self.count += len(records)
        self.namespaces.update([r.namespace if r.namespace is not None else "" for r in records])
        vectors = [(name, vec) for r in records for name, vec in r.vectors.items()]
        self.dims.update([f"{name}:{vec.dims}" if name else str(vec.dims) for name, vec in vectors])
        self.models.update([vec.model for _, vec in vectors if vec.model])

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return dict(self.spaces)

    def checkpoint(self) -> dict[str, Any]:
        """Taken after every batch; the bytes it counts reach the disk in ``make_durable``, once
        per saved checkpoint: a flush after every batch wrote the buffer's tail each time."""
        self.held.release()
        return {"file": self.out.state(flush=False) if self.out is not None else None,
                "count": self.count, "namespaces": dict(self.namespaces), "dims": dict(self.dims),
                "models": dict(self.models)}

    def make_durable(self) -> None:
        if self.out is not None:
            self.out.flush()

    def finish(self, summary: dict[str, Any]) -> None:
        """Rename the data file into place, then write its sidecar. An earlier export's sidecar
        is removed before the rename, so at no kill point does a sidecar describe other bytes;
        killed between the rename and the engine's removal of the checkpoint, ``--resume``
        takes the file back (``AtomicOutput``) and no record is lost or written twice."""
        self.held.release()
        if self.out is None:
            return
        self.out.flush(sync=True)
        sidecar_path(self.path).unlink(missing_ok=True)
        self.out.commit()
        self._write_sidecar(summary, self.out.sha256)

    def _write_sidecar(self, summary: dict[str, Any], checksum: str) -> None:
        source = summary.get("source", {})
        write_sidecar(self.path, {
            "source_store": source.get("connector"),
            "source_version": source.get("version"),
            "source_location": source.get("location"),
            "record_count": self.count,
            "checksum": f"sha256:{checksum}",
            "namespaces": dict(sorted(self.namespaces.items())),
            "dims": dict(sorted(self.dims.items())),
            "models": dict(sorted(self.models.items())),
            **({"vector_spaces": {name: {"dims": sp.dims, "metric": sp.metric}
                                  for name, sp in sorted(self.spaces.items())}}
               if self.spaces else {}),
        })

    def abort(self) -> None:
        if self.out is not None:
            self.out.close_partial()


class VmigPartWriter(VmigWriter):
    """One worker's part of a parallel run's file (docs/engine.md, Parallel runs): the lines
    of its shard, resumable like the file itself, committed without a sidecar; what the
    sidecar of the joined file needs (counts, namespaces, dims, models) is in ``tally()``,
    with the part's size and SHA-256 (``join_parts`` renames the first part into the joined
    file instead of copying it, and checks it by them). Written through the page cache: the
    join reads it back at once."""

    bulk = False

    def finish(self, summary: dict[str, Any]) -> None:
        self.held.release()
        if self.out is not None:
            self.out.flush(sync=True)
            self.out.commit()

    def tally(self) -> dict[str, Any]:
        return {"count": self.count, "namespaces": dict(self.namespaces), "dims": dict(self.dims),
                "models": dict(self.models),
                "file": None if self.out is None else {"size": self.out.size, "sha256": self.out.sha256}}


def join_parts(path: Path, parts: list[Path], tallies: list[dict[str, Any]], *,
               summary: dict[str, Any], spaces: dict[str, VectorSpace]) -> None:
    """The parts of a parallel run, in shard order, as one complete file, byte for byte what
    one writer writes, with its sidecar (the checksum over the whole): ``<file>.partial`` made
    the parts one after the other, synced, renamed into place, then the sidecar.

    The first part becomes the beginning of ``<file>.partial`` by a rename, checked by the size
    and SHA-256 its worker recorded (``tallies[0]["file"]``), and the others are written after it
    while a thread hashes the whole (``_atomic.join_files``): a 1M-record file joined in less
    than half the time a copy of every part takes (bench/RESULTS.md). Run again
    after a kill, it cuts the partial file back to the first part and copies the rest again;
    the other parts stay until the run's checkpoint is removed. A first part without that
    record (a part rewritten without a repeated id, or a run begun by an older vexchange) is
    copied like the others."""
    first = tallies[0].get("file") if tallies else None
    writer = VmigWriter(path, resume=None, dry_run=first is not None, spaces=spaces)
    for tally in tallies:
        writer.count += int(tally["count"])
        writer.namespaces.update(tally["namespaces"])
        writer.dims.update(tally["dims"])
        writer.models.update(tally["models"])
    if first is None:
        assert writer.out is not None
        for part in parts:
            with open(part, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    writer.out.write(chunk)
        writer.finish(summary)
        return
    checksum = join_files(path, parts[0], first, parts[1:])
    sidecar_path(path).unlink(missing_ok=True)
    commit_partial(path)
    writer._write_sidecar(summary, checksum)

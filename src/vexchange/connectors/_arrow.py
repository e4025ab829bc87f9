"""What the Arrow file connectors (``parquet``, ``pinecone-bulk``, ``milvus-bulk``) share:
float32 vector columns built from whole pages, JSON-text columns that keep JSON types exact,
one small file helper for every open, list and rename (so object storage can plug in there),
a writer that stages each acknowledged batch and builds the final files once, at the end, and
a reader that pages through a directory of Parquet files with a resumable cursor.

Why stage: a Parquet file is readable only once its footer is written, so a run killed
midway would leave nothing it could resume from. Each batch the engine acknowledges goes to
one small Arrow IPC file in ``<out>.staging/`` (complete on disk when the checkpoint that
counts it is taken); ``finish`` turns the staged batches into the format's files inside
``<out>.partial/`` and renames that into place, so a reader never sees a half-written output.
A resumed run keeps the staged batches its checkpoint counts and drops the rest.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from .._atomic import RESUME_HINT, describe_os_error
from .._direct_io import open_bulk
from .._json import MAX_DEPTH, dumps_exact, loads_exact, may_hold_big_int
from .._objectstore import is_url, open_url
from ..errors import CodecError, DecodeError, UsageError
from ..record import MemoryRecord
from ..spec import StoreSpec
from ._base import AtPath, Reject, VectorSpace, Writer
from .vmig import LastBatch

__all__ = ["MANIFEST", "TS_MS", "AtFiles", "Files", "HeldBatch", "LiveParquet", "ObjectFiles", "ParquetPages",
           "StagedWriter", "files_for", "finished_root", "fixed_vectors", "json_text", "list_vectors",
           "loads_cell", "local_files", "sparse_column", "vector_bytes", "write_parquet_files"]

TS_MS = pa.timestamp("ms", tz="UTC")
MANIFEST = "vexchange.json"
"""The file every output directory holds: what wrote it, and what it holds. A directory
without it is not replaced by a run (it is not ours to delete)."""
_F32 = np.dtype("<f4")
HAS_CDC = int(pa.__version__.split(".")[0]) >= 21
"""pyarrow offers content-defined chunking from version 21; older ones write without it."""


class Files:
    """Every file operation the Arrow connectors make, on local paths. One small seam:
    ``ObjectFiles`` (object storage, any fsspec URL) replaces it, and the connectors stay as
    they are. Paths are ``Path`` objects in both: for object storage they are the keys inside
    the file system (``bucket/prefix/x``), never the URL text (``Path("s3://b")`` would
    collapse the ``//``)."""

    atomic_rename = True
    """Whether ``rename`` of a directory is atomic, so a finished output appears whole."""

    def location(self, path: Path) -> str:
        """The location to show and record (an absolute path, or an URL)."""
        return str(path.resolve())

    def open(self, path: Path, mode: str) -> IO[bytes]:
        try:
            return open(path, mode)
        except OSError as err:
            verb = "read" if "r" in mode else "write"
            raise (UsageError if "r" in mode else CodecError)(
                f"cannot {verb} {path}: {describe_os_error(err)}") from None

    def open_bulk(self, path: Path) -> IO[bytes]:
        """A new file for one sequential write of bulk data (staged batches, data files),
        which nothing reads back soon: written around the page cache where the system
        allows (``vexchange._direct_io``)."""
        try:
            return open_bulk(path)
        except OSError as err:
            raise CodecError(f"cannot write {path}: {describe_os_error(err)}") from None

    def files(self, root: Path, suffix: str) -> list[Path]:
        """Files under ``root`` (at any depth) ending in ``suffix``, in sorted path order;
        hidden ones (a part starting with ``.``) and file names starting with ``_`` (Spark
        and Hive write ``_SUCCESS``, ``_metadata``) are skipped."""
        found = [p for p in root.rglob(f"*{suffix}") if p.is_file() and not p.name.startswith("_")
                 and not any(part.startswith(".") for part in p.relative_to(root).parts)]
        return sorted(found, key=lambda p: p.relative_to(root).as_posix())

    def exists(self, path: Path) -> bool:
        return path.exists()

    def is_dir(self, path: Path) -> bool:
        return path.is_dir()

    def makedirs(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)

    def remove_tree(self, path: Path) -> None:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()

    def rename(self, src: Path, dst: Path) -> None:
        os.replace(src, dst)

    def sync(self, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def publish(self, partial: Path, root: Path, manifest: str = MANIFEST) -> None:
        """Put the finished ``partial`` directory in place of ``root``: an earlier output of
        ours is moved aside first and removed after, so one rename makes the output appear."""
        old = root.with_name(root.name + ".old")
        self.remove_tree(old)
        if self.exists(root):
            self.rename(root, old)
        self.rename(partial, root)
        self.remove_tree(old)

    def unfinished(self, root: Path, manifest: str = MANIFEST) -> bool:
        """Whether ``root`` is an output of ours whose completion was cut short: it has no
        manifest while its ``.partial`` has one (only possible where a rename is not atomic)."""
        return (not self.atomic_rename and not self.exists(root / manifest)
                and self.exists(root.with_name(root.name + ".partial") / manifest))


class ObjectFiles(Files):
    """The same operations on a pyarrow file system: S3 (pyarrow's own client) or any fsspec
    file system, opened by ``vexchange._objectstore.open_url``.

    Object storage has no rename: an object appears whole when its upload completes (a
    multipart upload cut short leaves no object), but a prefix of many objects cannot appear
    at once. So ``publish`` copies the finished objects from ``<out>.partial/`` with the
    manifest last (and an earlier output loses its manifest first), and a reader refuses an
    output without its manifest while its ``.partial`` holds one (``unfinished``)."""

    atomic_rename = False

    def __init__(self, where: Any) -> None:
        self.where = where
        self.fs: Any = where.fs

    def location(self, path: Path) -> str:
        return str(self.where.url(path.as_posix()))

    def _info(self, path: Path) -> Any:
        try:
            return self.fs.get_file_info(path.as_posix())
        except OSError as err:
            raise UsageError(f"cannot reach {self.location(path)}: {err}") from None

    def open(self, path: Path, mode: str) -> IO[bytes]:
        try:
            if "r" in mode:
                handle = self.fs.open_input_file(path.as_posix())
            else:
                handle = self.fs.open_output_stream(path.as_posix())
        except OSError as err:
            verb = "read" if "r" in mode else "write"
            raise (UsageError if "r" in mode else CodecError)(
                f"cannot {verb} {self.location(path)}: {err}") from None
        return handle  # type: ignore[no-any-return]

    def open_bulk(self, path: Path) -> IO[bytes]:
        return self.open(path, "wb")  # an upload, streamed in parts

    def files(self, root: Path, suffix: str) -> list[Path]:
        import pyarrow.fs as pafs

        try:
            # a prefix with nothing under it does not exist: it lists as empty
            infos = self.fs.get_file_info(pafs.FileSelector(root.as_posix(), recursive=True,
                                                            allow_not_found=True))
        except OSError as err:
            raise UsageError(f"cannot list {self.location(root)}: {err}") from None
        found = []
        for info in infos:
            path = Path(info.path)
            if info.type != pafs.FileType.File or not path.name.endswith(suffix) or path.name.startswith("_"):
                continue
            if not any(part.startswith(".") for part in path.relative_to(root).parts):
                found.append(path)
        return sorted(found, key=lambda p: p.relative_to(root).as_posix())

    def exists(self, path: Path) -> bool:
        import pyarrow.fs as pafs

        return bool(self._info(path).type != pafs.FileType.NotFound)

    def is_dir(self, path: Path) -> bool:
        import pyarrow.fs as pafs

        return bool(self._info(path).type == pafs.FileType.Directory)

    def makedirs(self, path: Path) -> None:
        if not self.where.flat:  # a prefix needs no making (and making one could make a bucket)
            self.fs.create_dir(path.as_posix(), recursive=True)

    def remove_tree(self, path: Path) -> None:
        import pyarrow.fs as pafs

        kind = self._info(path).type
        if kind == pafs.FileType.Directory:
            self.fs.delete_dir(path.as_posix())
        elif kind == pafs.FileType.File:
            self.fs.delete_file(path.as_posix())

    def rename(self, src: Path, dst: Path) -> None:
        self.fs.move(src.as_posix(), dst.as_posix())

    def sync(self, path: Path) -> None:
        """Nothing to do: an object is durable once its upload completed."""

    def publish(self, partial: Path, root: Path, manifest: str = MANIFEST) -> None:
        """Copy each finished object into ``root`` (server-side on S3), the manifest last;
        ``root``'s earlier manifest goes first and its other objects after, so at no time does
        ``root`` hold a manifest beside objects of another run. ``partial`` goes at the end."""
        if self.exists(root / manifest):
            self.fs.delete_file((root / manifest).as_posix())
        self.remove_tree(root)
        objects = [p for p in self.all_files(partial) if p.relative_to(partial).as_posix() != manifest]
        try:
            for path in objects:
                self.publish_one(path, root / path.relative_to(partial))
            self.publish_one(partial / manifest, root / manifest)
        except OSError as err:
            raise CodecError(f"cannot complete {self.location(root)}: {err}",
                             hint="run it again: the finished files wait in "
                                  f"{self.location(partial)}") from None
        self.remove_tree(partial)

    def publish_one(self, src: Path, dst: Path) -> None:
        """One object copied into place (server-side where the store can)."""
        self.fs.copy_file(src.as_posix(), dst.as_posix())

    def all_files(self, root: Path) -> list[Path]:
        import pyarrow.fs as pafs

        infos = self.fs.get_file_info(pafs.FileSelector(root.as_posix(), recursive=True,
                                                        allow_not_found=True))
        return sorted(Path(i.path) for i in infos if i.type == pafs.FileType.File)


local_files = Files()


def files_for(spec: StoreSpec) -> tuple[Files, Path]:
    """The file helper and root path of a connector's location: the local files, or the
    object storage an URL path names (``parquet:s3://bucket/prefix``)."""
    if not spec.path:
        raise UsageError(f"{spec.scheme} needs a location: {spec.scheme}:///path or {spec.scheme}:s3://bucket/prefix")
    if is_url(spec.path):
        where = open_url(spec.path, secret=spec.secret, params=spec.params)
        return ObjectFiles(where), Path(where.path)
    return local_files, Path(spec.path)


class AtFiles(AtPath):
    """``AtPath`` for a connector whose files go through ``self.io``: a run's receipt, rejects
    and checkpoint go beside a local output, and into the working directory for one in object
    storage (they are local files, and a receipt is not for the bucket)."""

    io: Files

    def run_files_base(self) -> Path | None:
        return None if isinstance(self.io, ObjectFiles) else self.path


def finished_root(io: Files, root: Path, manifest: str = MANIFEST) -> None:
    """Refuse to read an output of ours whose completion was cut short (object storage)."""
    if io.unfinished(root, manifest):
        raise UsageError(f"{io.location(root)} is an unfinished vexchange output: the run that wrote it"
                         " stopped while completing it, so it is not read",
                         hint="run the write again (or --resume it) to complete it")


# ------------------------------------------------------------------------------------ columns

def fixed_vectors(records: Sequence[MemoryRecord], name: str, dims: int) -> pa.FixedSizeListArray:
    """``fixed_size_list<float32>[dims]`` of one named vector, null where a record has none:
    one join of the records' bytes and one copy, no per-value work."""
    blobs: list[bytes] = []
    mask = np.zeros(len(records), dtype=bool)
    zero = b"\0" * (4 * dims)
    for i, record in enumerate(records):
        vec = record.vectors.get(name)
        if vec is None:
            blobs.append(zero)
            mask[i] = True
        else:
            blobs.append(vec.data)
    joined = b"".join(blobs)
    if len(joined) != 4 * dims * len(records):  # the engine refuses other sizes before a write
        raise ValueError(f"vector {name!r}: every record's must have {dims} dims")
    values = pa.array(np.frombuffer(joined, dtype=_F32), type=pa.float32())
    return pa.FixedSizeListArray.from_arrays(values, dims, mask=pa.array(mask) if mask.any() else None)


def list_vectors(records: Sequence[MemoryRecord], name: str) -> pa.ListArray:
    """``list<float32>`` of one named vector (any lengths), null where a record has none."""
    blobs = []
    offsets = np.zeros(len(records) + 1, dtype=np.int32)
    mask = np.zeros(len(records), dtype=bool)
    at = 0
    for i, record in enumerate(records):
        vec = record.vectors.get(name)
        if vec is None:
            mask[i] = True
        else:
            blobs.append(vec.data)
            at += vec.dims
        offsets[i + 1] = at
    values = pa.array(np.frombuffer(b"".join(blobs), dtype=_F32), type=pa.float32())
    return pa.ListArray.from_arrays(pa.array(offsets), values,
                                    mask=pa.array(mask) if mask.any() else None)


def sparse_column(pairs: Sequence[tuple[bytes, bytes] | None]) -> pa.StructArray:
    """``struct<indices: list<uint32>, values: list<float32>>`` (Pinecone's and Milvus's
    sparse layout), null where a record has none."""
    idx_blobs, val_blobs = [], []
    offsets = np.zeros(len(pairs) + 1, dtype=np.int32)
    mask = np.zeros(len(pairs), dtype=bool)
    at = 0
    for i, pair in enumerate(pairs):
        if pair is None:
            mask[i] = True
        else:
            idx_blobs.append(pair[0])
            val_blobs.append(pair[1])
            at += len(pair[0]) // 4
        offsets[i + 1] = at
    off = pa.array(offsets)
    indices = pa.ListArray.from_arrays(off, pa.array(np.frombuffer(b"".join(idx_blobs), dtype="<u4"),
                                                     type=pa.uint32()))
    values = pa.ListArray.from_arrays(off, pa.array(np.frombuffer(b"".join(val_blobs), dtype=_F32),
                                                    type=pa.float32()))
    return pa.StructArray.from_arrays([indices, values], names=["indices", "values"],
                                      mask=pa.array(mask) if mask.any() else None)


def json_text(value: Any) -> str:
    """JSON text that keeps every integer exact (beyond 64 bits too) and ``-0.0``."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return dumps_exact(value)


def loads_cell(text: str | bytes) -> Any:
    """The value a JSON-text cell holds, exactly. ``loads_exact``'s checks (an integer beyond
    64 bits read as a float, nesting beyond ``MAX_DEPTH``) walk the parsed value; a cell with
    no run of 19 digits and fewer brackets than that depth cannot need them, and most cells
    are such, so they are parsed by orjson alone."""
    raw = text.encode() if isinstance(text, str) else text
    if raw.count(b"[") + raw.count(b"{") < MAX_DEPTH and not may_hold_big_int(raw):
        return orjson.loads(raw)
    return loads_exact(raw)


def vector_bytes(column: pa.Array, dims_out: list[int] | None = None) -> list[bytes | None]:
    """Each row's vector of a (fixed-size) list column of floats as float32 little-endian bytes,
    None for a null row. float64 and float16 values are converted to float32 (what every
    vexchange vector is); non-finite values are kept, for the engine to refuse."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    n = len(column)
    if pa.types.is_fixed_size_list(column.type):
        size = column.type.list_size
        flat = column.flatten() if column.null_count == 0 else None
        offsets = np.arange(n + 1, dtype=np.int64) * size
        if flat is None:  # nulls: take each row's slot from the unflattened values
            flat = column.values.slice(column.offset * size, n * size)
    else:
        offsets = np.asarray(column.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
        base = int(offsets[0])
        flat = column.values.slice(base, int(offsets[-1]) - base)
        offsets = offsets - base
    data = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=_F32).tobytes()
    valid = column.is_valid().to_numpy(zero_copy_only=False) if column.null_count else None
    if valid is None and pa.types.is_fixed_size_list(column.type):  # the usual column: equal slices
        step = 4 * column.type.list_size
        if dims_out is not None:
            dims_out.extend([column.type.list_size] * n)
        return [data[at:at + step] for at in range(0, n * step, step)]
    out: list[bytes | None] = []
    for i in range(n):
        if valid is not None and not valid[i]:
            out.append(None)
        else:
            out.append(data[4 * int(offsets[i]):4 * int(offsets[i + 1])])
    if dims_out is not None:
        dims_out.extend(int(offsets[i + 1] - offsets[i]) for i in range(n))
    return out


# ------------------------------------------------------------------------------------- reader

class ParquetPages:
    """Pages of rows across the Parquet files of a directory (or one file), in file order.
    The cursor is ``"<file index>:<row in that file>"``; resuming skips whole row groups by
    their footer counts, then the rows before the cursor in the first one."""

    def __init__(self, root: Path, files: list[Path], io: Files = local_files) -> None:
        self.root, self.paths, self.io = root, files, io

    def count(self) -> int:
        total = 0
        for path in self.paths:
            with self.io.open(path, "rb") as handle:
                total += self._file(handle, path).metadata.num_rows
        return total

    def _file(self, handle: IO[bytes], path: Path) -> pq.ParquetFile:
        try:
            # no pre-buffering: it holds a whole row group's compressed bytes besides the
            # decoded columns (183 MB against 144 MB peak for 20,000 rows of 384 dims)
            return pq.ParquetFile(handle, pre_buffer=False)
        except (pa.ArrowException, OSError) as err:
            raise DecodeError(f"{path} is not a readable Parquet file: {err}") from None

    def schema(self, index: int) -> pa.Schema:
        with self.io.open(self.paths[index], "rb") as handle:
            return self._file(handle, self.paths[index]).schema_arrow

    def batches(self, batch_size: int, after: str | None,
                ) -> Iterator[tuple[int, int, pa.Table, str | None]]:
        """(file index, first row, rows, cursor after them): pages of at most ``batch_size``
        rows; never across two files (their schemas may differ). The cursor is None after
        the last page."""
        start_file, start_row = _cursor(after)
        last = len(self.paths) - 1
        for index in range(start_file, len(self.paths)):
            path = self.paths[index]
            with self.io.open(path, "rb") as handle:
                parquet = self._file(handle, path)
                skip = start_row if index == start_file else 0
                groups, offset = [], 0
                for g in range(parquet.metadata.num_row_groups):
                    rows = parquet.metadata.row_group(g).num_rows
                    if offset + rows > skip:
                        groups.append(g)
                    else:
                        offset += rows
                total = parquet.metadata.num_rows
                row = offset
                try:
                    stream = parquet.iter_batches(batch_size=batch_size, row_groups=groups,
                                                  use_threads=False) if groups else iter(())
                    pending: pa.Table | None = None
                    for batch in stream:
                        if row + batch.num_rows <= skip:
                            row += batch.num_rows
                            continue
                        if row < skip:
                            batch = batch.slice(skip - row)
                            row = skip
                        table = pa.Table.from_batches([batch])
                        if pending is not None:
                            yield index, row - pending.num_rows, pending, f"{index}:{row}"
                        pending = table
                        row += table.num_rows
                except (pa.ArrowException, OSError) as err:
                    raise DecodeError(f"{path}: cannot read its rows: {err}") from None
                if pending is not None:
                    done = row >= total and index == last
                    yield index, row - pending.num_rows, pending, None if done else f"{index + 1}:0"
                elif index == last:
                    yield index, row, pa.table({}), None


def _cursor(after: str | None) -> tuple[int, int]:
    if not after:
        return 0, 0
    try:
        file_index, row = after.split(":")
        return int(file_index), int(row)
    except ValueError:
        raise UsageError(f"bad resume cursor {after!r} for a Parquet source",
                         hint=RESUME_HINT) from None


# ------------------------------------------------------------------------------------- writer

T = TypeVar("T")


class HeldBatch(LastBatch[T]):
    """``LastBatch`` (vmig.py) that keeps the held batch's records (or the table they came
    from, ``Writer.write_table``), not a list of their keys, and compares keys only when the
    next batch could be its retry (same length, same first key): building the key list of
    every batch cost a microsecond a record."""

    def __init__(self, release: Callable[[list[T]], None]) -> None:
        super().__init__(release)
        self._held: list[MemoryRecord] | pa.Table | None = None

    def hold(self, batch: list[MemoryRecord] | pa.Table, items: list[T]) -> None:
        held = self._held
        if held is not None and not _same_keys(held, batch):
            self.release()
        self._held, self._items = (batch if isinstance(batch, pa.Table) else list(batch)), items

    def release(self) -> None:
        items, self._held, self._items = self._items, None, []
        if items:
            self._release(items)


def _same_keys(a: list[MemoryRecord] | pa.Table, b: list[MemoryRecord] | pa.Table) -> bool:
    if len(a) != len(b):
        return False
    if isinstance(a, pa.Table) or isinstance(b, pa.Table):
        return _keys(a) == _keys(b)
    if a and (a[0].id != b[0].id or a[0].namespace != b[0].namespace):
        return False
    return all(x.id == y.id and x.namespace == y.namespace for x, y in zip(a, b, strict=True))


def _keys(batch: list[MemoryRecord] | pa.Table) -> list[tuple[str | None, str]]:
    if isinstance(batch, pa.Table):
        return list(zip(batch.column("namespace").to_pylist(), batch.column("id").to_pylist(), strict=True))
    return [(r.namespace, r.id) for r in batch]


class StagedWriter(Writer):
    """A writer into one output directory built at ``finish`` from staged batches.

    A subclass says how a batch becomes Arrow tables, one per group (a namespace's folder, or
    the one data folder), with ``encode``, and how a group's tables become files with
    ``build_group``; ``finish_output`` adds the card or manifest. The group's files must be
    written in the order the tables come (the staged order, which is the run's order)."""

    def __init__(self, root: Path, *, resume: dict[str, Any] | None, dry_run: bool,
                 spaces: dict[str, VectorSpace] | None, connector: str, io: Files = local_files) -> None:
        self.root, self.io, self.dry_run, self.connector = root, io, dry_run, connector
        self.spaces = dict(spaces or {})
        self.staging = root.with_name(root.name + ".staging")
        self.partial = root.with_name(root.name + ".partial")
        state = resume or {}
        self.seq: int = int(state.get("seq", 0))
        self.records: int = int(state.get("records", 0))
        self.nbytes: int = int(state.get("nbytes", 0))
        self.groups: dict[str, int] = dict(state.get("groups", {}))
        self.state: dict[str, Any] = dict(state.get("layout", {}))
        self.held: HeldBatch[tuple[str, pa.Table]] = HeldBatch(self._stage)
        if dry_run:
            return
        if self.io.exists(root) and not self.io.exists(root / MANIFEST) \
                and not self.io.exists(self.partial / MANIFEST):  # not ours, nor ours cut short
            what = "a directory" if self.io.is_dir(root) else "a file"
            raise UsageError(f"{root} is {what} that vexchange did not write; a run replaces its"
                             " whole output, so it writes only into a new path or its own output",
                             hint="choose a new output path")
        try:
            if resume is None:
                self.io.remove_tree(self.staging)
                self._clear_partial()
                self.io.makedirs(self.staging)
            else:
                self._take_back()
        except OSError as err:  # a read-only folder, permission denied: the user's to fix
            raise UsageError(f"cannot write {self.io.location(root)}: {describe_os_error(err)}") from None

    def _take_back(self) -> None:
        """Keep the staged batches the checkpoint counts; drop what came after it."""
        have = sorted(self.io.files(self.staging, ".arrow")) if self.io.is_dir(self.staging) else []
        kept = 0
        for path in have:
            seq = int(path.name.split("-", 1)[0])
            if seq >= self.seq:
                self.io.remove_tree(path)
            else:
                kept += 1
        if kept != self.seq:
            raise UsageError(f"cannot resume the write of {self.root}: {self.staging} holds {kept}"
                             f" of the {self.seq} staged batches the checkpoint counts",
                             hint=RESUME_HINT)

    # subclass hooks -------------------------------------------------------------------------

    def encode(self, batch: list[MemoryRecord]) -> tuple[list[Reject], dict[str, pa.Table]]:
        raise NotImplementedError

    def build_group(self, directory: Path, group: str, tables: Iterator[pa.Table]) -> list[str]:
        """Write one group's files under ``directory``; the paths written, relative to it."""
        raise NotImplementedError

    def finish_output(self, directory: Path, files: dict[str, list[str]],
                      summary: dict[str, Any]) -> None:
        """Write what describes the output (a dataset card); the manifest is written after."""

    def on_staged(self, group: str, table: pa.Table) -> None:
        """A batch was staged (it is acknowledged): a subclass may write it on into its
        final files now (``LiveParquet``), so ``finish`` need not read the staging back."""

    def built_live(self) -> dict[str, list[str]] | None:
        """The files already written in ``<out>.partial`` from every staged batch (per group,
        relative to it), or None when ``finish`` must build them from the staging."""
        return None

    def stop_live(self) -> None:
        """Stop writing the final files as the run goes (the run stopped)."""

    # the Writer contract ---------------------------------------------------------------------

    def write(self, batch: list[MemoryRecord]) -> list[Reject]:
        rejects, tables = self.encode(batch)
        self.held.hold(batch, [(g, t) for g, t in sorted(tables.items()) if t.num_rows])
        return rejects

    def _stage(self, tables: list[tuple[str, pa.Table]]) -> None:
        for group, table in tables:
            self.records += table.num_rows
            self.nbytes += table.nbytes
            self.groups[group] = self.groups.get(group, 0) + table.num_rows
            if self.dry_run:
                continue
            name = f"{self.seq:09d}-{group.encode().hex()}.arrow"
            tmp = self.staging / (name + ".tmp")
            try:
                with self.io.open_bulk(tmp) as handle, ipc.new_stream(handle, table.schema) as out:
                    out.write_table(table)
                self.io.rename(tmp, self.staging / name)
            except OSError as err:
                raise CodecError(f"cannot write {tmp}: {describe_os_error(err)}") from None
            self.seq += 1
            self.on_staged(group, table)

    def checkpoint(self) -> dict[str, Any]:
        self.held.release()
        return {"seq": self.seq, "records": self.records, "nbytes": self.nbytes, "groups": dict(self.groups),
                "layout": dict(self.state)}

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return dict(self.spaces)

    def output_groups(self) -> dict[str, list[Path]]:
        """The groups ``finish`` builds, with their staged files in run order."""
        return self.staged()

    def staged(self) -> dict[str, list[Path]]:
        out: dict[str, list[Path]] = {}
        for path in self.io.files(self.staging, ".arrow"):
            hexname = path.stem.split("-", 1)[1]
            out.setdefault(bytes.fromhex(hexname).decode(), []).append(path)
        return out

    def read_staged(self, paths: list[Path]) -> Iterator[pa.Table]:
        for path in paths:
            with self.io.open(path, "rb") as handle:
                yield ipc.open_stream(handle).read_all()

    def finish(self, summary: dict[str, Any]) -> None:
        """Build every file in ``<out>.partial`` from the staged batches, sync them, write the
        manifest, then put the directory in place of the output (an earlier output of ours is
        moved aside first and removed after) and drop the staging."""
        self.held.release()
        if self.dry_run:
            return
        live = self.built_live()
        if live is None:
            self._clear_partial()
            self.io.makedirs(self.partial)
        files: dict[str, list[str]] = dict(live or {})
        try:
            if live is None:
                for group, paths in sorted(self.output_groups().items()):
                    files[group] = self.build_group(self.partial, group, self.read_staged(paths))
            self.finish_output(self.partial, files, summary)
            manifest = {"format": 1, "connector": self.connector, "records": self.records,
                        "groups": dict(sorted(self.groups.items())),
                        "files": {g: f for g, f in sorted(files.items())},
                        "vector_spaces": {n: {"dims": s.dims, "metric": s.metric}
                                          for n, s in sorted(self.spaces.items())},
                        "layout": self.state,
                        "source": {k: summary.get("source", {}).get(k)
                                   for k in ("connector", "location", "version")}}
            with self.io.open(self.partial / MANIFEST, "wb") as handle:
                handle.write(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
            for group_files in files.values():
                for name in group_files:
                    self.io.sync(self.partial / name)
        except OSError as err:
            raise CodecError(f"cannot write {self.partial}: {describe_os_error(err)}") from None
        self.io.publish(self.partial, self.root)
        self.io.remove_tree(self.staging)

    def abort(self) -> None:
        """The staged batches stay for ``--resume``; nothing looks complete."""
        self.stop_live()
        with contextlib.suppress(OSError, UsageError):
            self._clear_partial()

    def _clear_partial(self) -> None:
        """Drop ``<out>.partial``; an output whose completion it was (cut short, so without
        its manifest) goes first, so it never stays behind looking like someone else's."""
        if self.io.unfinished(self.root):
            self.io.remove_tree(self.root)
        self.io.remove_tree(self.partial)


def write_parquet_files(io: Files, paths: Sequence[Path] | Callable[[int], Path],
                        tables: Iterator[pa.Table], *,
                        schema: pa.Schema, rows_per_file: int, row_group_rows: int,
                        cdc: bool = True, compression: str | None = None) -> int:
    """Parquet files from tables that share ``schema``: ``rows_per_file`` rows in each of
    ``paths`` in turn (the caller sized the list from the rows it staged, or gives a function
    of the file's index when the count is not known yet), in row groups of
    about ``row_group_rows`` (small staged batches are gathered, so groups are not
    page-sized; memory holds one row group). Content-defined chunking (pyarrow >= 21) keeps
    data pages stable across edits, for deduplicating storage such as the Hugging Face Hub's.
    Returns the rows written.

    Vector columns get no dictionary and no statistics (float noise has neither a small
    dictionary nor useful min/max, and trying costs more than the rest of the write), and no
    compression unless one is asked for (``compression``): snappy saves under 1 % on
    embeddings. The other columns are snappy-compressed by default."""
    vectors = [f.name for f in schema if pa.types.is_list(f.type) or pa.types.is_fixed_size_list(f.type)
               or pa.types.is_struct(f.type)]
    scalars = [name for name in schema.names if name not in vectors]
    options: dict[str, Any] = {
        "compression": {name: (compression or ("none" if name in vectors else "snappy"))
                        for name in schema.names},
        "use_dictionary": scalars, "write_statistics": scalars}
    if cdc and HAS_CDC:
        options["use_content_defined_chunking"] = True
    path_at: Callable[[int], Path] = paths if callable(paths) else paths.__getitem__
    rows = 0
    index = 0
    in_file = 0
    handle: IO[bytes] | None = None
    out: pq.ParquetWriter | None = None
    pending: list[pa.Table] = []
    pending_rows = 0

    def flush() -> None:
        nonlocal pending, pending_rows
        if pending and out is not None:
            out.write_table(pa.concat_tables(pending), row_group_size=row_group_rows)
        pending, pending_rows = [], 0

    def close() -> None:
        nonlocal out, handle
        flush()
        if out is not None:
            out.close()
        if handle is not None:
            handle.close()
        out = handle = None

    try:
        for table in tables:
            table = table.cast(schema) if table.schema != schema else table
            while table.num_rows:
                if out is None:
                    handle = io.open_bulk(path_at(index))
                    out = pq.ParquetWriter(handle, schema, **options)
                    index += 1
                    in_file = 0
                head, table = table.slice(0, rows_per_file - in_file), table.slice(rows_per_file - in_file)
                pending.append(head)
                pending_rows += head.num_rows
                in_file += head.num_rows
                rows += head.num_rows
                if pending_rows >= row_group_rows:
                    flush()
                if in_file >= rows_per_file:
                    close()
        if index == 0 and (callable(paths) or paths):  # no rows: one empty file, so the output has its schema
            handle = io.open_bulk(path_at(0))
            out = pq.ParquetWriter(handle, schema, **options)
    finally:
        close()
    return rows


class LiveParquet:
    """Parquet files written on a thread while a run stages its batches, so that a run that is
    not interrupted does not read its staging back at ``finish`` and write everything then:
    pyarrow encodes and writes without the interpreter lock, beside the engine's own work.

    The staging stays the truth: a batch is handed here only once it is staged, and ``close``
    gives None (the caller builds from the staging) when anything failed or was left out.
    Files go to ``directory/.live-NNNNN.parquet`` (hidden: no reader lists them) until the
    caller renames them, since their final names count the files. At most ``depth`` batches
    wait, so memory holds those and one row group."""

    def __init__(self, io: Files, directory: Path, *, schema: pa.Schema, rows_per_file: int,
                 row_group_rows: int, cdc: bool, compression: str | None, depth: int = 2) -> None:
        self.io, self.directory = io, directory
        self.paths: list[Path] = []
        self.given = 0
        self.rows = 0
        self.error: BaseException | None = None
        self._queue: queue.Queue[pa.Table | None] = queue.Queue(maxsize=depth)
        self._options = {"schema": schema, "rows_per_file": rows_per_file,
                         "row_group_rows": row_group_rows, "cdc": cdc, "compression": compression}
        self._ended = False  # the writer thread has taken the end of the tables (None)
        self._thread = threading.Thread(target=self._run, name="vex-parquet-writer", daemon=True)
        self._closed = False
        self._thread.start()

    def _path(self, index: int) -> Path:
        path = self.directory / f".live-{index:05d}.parquet"
        self.paths.append(path)
        return path

    def _tables(self) -> Iterator[pa.Table]:
        while (table := self._queue.get()) is not None:
            yield table
        self._ended = True

    def _run(self) -> None:
        try:
            self.io.makedirs(self.directory)
            self.rows = write_parquet_files(self.io, self._path, self._tables(), **self._options)
        except BaseException as err:  # the staging stays; the caller builds from it
            self.error = err
            # so a producer never waits on a dead writer; but a failure after the end (closing
            # the last file on a full disk) has taken the end already: waiting for it would hang
            while not self._ended and self._queue.get() is not None:
                pass

    def put(self, table: pa.Table) -> None:
        self.given += table.num_rows
        self._queue.put(table)

    def close(self) -> list[Path] | None:
        """Wait for the files; their paths in order, or None when they are not the whole."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
        self._thread.join()
        if self.error is not None or self.rows != self.given:
            return None
        return list(self.paths)

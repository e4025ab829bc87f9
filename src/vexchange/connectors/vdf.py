"""``vdf``: a VDF directory (vector-io's Vector Dataset Format: Parquet files and a
``VDF_META.json`` manifest), read and written. docs/formats/vdf.md.

URL form: ``vdf:///abs/dir`` or ``vdf:relative/dir``; ``?index=NAME`` names the index to write
(default ``memories``) or, in a directory holding several, the one to read.

What vexchange writes is a directory vector-io's ``import_vdf`` takes as it is::

    VDF_META.json                       the manifest (vdf-io's VDFMeta), every file listed
    <index>/<namespace dir>/<k>.parquet one per batch and namespace, k from 1
        id string, vector fixed_size_list<float32>[N], "vector_<name>" ..., text string,
        one column per metadata key whose values in that file share one simple type,
        _vex string (JSON: what has no column, so every record comes back exactly)

Any VDF can be read: what vdf-io exports (metadata flattened into columns, vectors as
``list<float>`` or ``list<double>``, a pandas index column) reads as records of its namespaces.
A run builds the directory in ``<dir>.partial`` and swaps it into place when it finishes.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .._objectstore import OPTIONS as OBJECT_OPTIONS
from .._objectstore import is_url, open_url
from ..errors import DecodeError, UsageError
from ..record import MemoryRecord, Vector
from ..spec import StoreSpec
from ._arrow import ObjectFiles, finished_root
from ._base import AtPath, Capabilities, Connector, Page, Reject, VectorSpace, Writer
from ._payload import VEX_KEY, PayloadLayout
from .vmig import LastBatch

__all__ = ["DirectoryOutput", "Files", "VdfConnector", "vector_table_spaces"]

META = "VDF_META.json"
FORMAT_VERSION = "0.1.248"
"""The vdf-io version whose layout vexchange writes (VDFMeta ``version``): its importer warns
about a directory written by a newer vdf-io than itself, so the field names the format."""
_DEFAULT_INDEX = "memories"
_METRICS = {"cosine": "Cosine", "euclidean": "Euclid", "dot": "Dot", "manhattan": "Manhattan"}
_TEXT_COLUMNS = ("text", "document")
_PANDAS_INDEX = "__index_level_0__"
_SAFE_DIR = re.compile(r"[A-Za-wyz0-9][A-Za-z0-9_.-]{0,99}")
"""A namespace kept as its own directory name (one starting with ``x`` is hex-encoded)."""
_INDEX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_LAYOUT = PayloadLayout("vdf", text_key=None, namespace_key=None, vex_as_text=True)


# ------------------------------------------------------------------------------ file access


class Files:
    """Every byte vdf reads or writes goes through here: a pyarrow file system rooted at one
    directory, so another file system (object storage) can stand in for the local one."""

    def __init__(self, root: Path | str, fs: pafs.FileSystem | None = None) -> None:
        self.root = str(root)
        self.fs = fs or pafs.LocalFileSystem()

    def _at(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open_input_stream(self._at(rel)) as handle:
            return bytes(handle.read())

    def write_bytes(self, rel: str, data: bytes) -> None:
        with self.fs.open_output_stream(self._at(rel)) as handle:
            handle.write(data)

    def parquet(self, rel: str) -> pq.ParquetFile:
        return pq.ParquetFile(self.fs.open_input_file(self._at(rel)))

    def write_parquet(self, rel: str, table: pa.Table) -> None:
        self.fs.create_dir(self._at(rel.rsplit("/", 1)[0]), recursive=True)
        pq.write_table(table, self._at(rel), filesystem=self.fs, row_group_size=10_000)

    def parquet_files(self, rel: str) -> list[str]:
        """Every ``*.parquet`` under ``rel``, as vdf-io's importer finds them (recursively),
        in a stable order: numbered files by their number."""
        found = self.fs.get_file_info(pafs.FileSelector(self._at(rel), recursive=True))
        names = [info.path[len(self.root) + 1:] for info in found
                 if info.type == pafs.FileType.File and info.path.endswith(".parquet")]
        return sorted(names, key=_natural)

    def is_dir(self, rel: str) -> bool:
        return bool(self.fs.get_file_info(self._at(rel)).type == pafs.FileType.Directory)


def _natural(name: str) -> list[Any]:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


class DirectoryOutput:
    """A directory built under ``<path>.partial`` and swapped into place by :meth:`commit`,
    so a reader never finds it half written. ``is_ours``: whether a directory is one this
    format wrote (a rerun replaces only such a directory, never anything else). Resumed, the
    work directory is kept; a finished directory (killed after the swap, before the checkpoint
    was removed) is taken back into ``.partial`` first."""

    def __init__(self, path: Path, *, resume: dict[str, Any] | None,
                 is_ours: Callable[[Path], bool]) -> None:
        self.path, self.is_ours = path, is_ours
        self.work = path.with_name(path.name + ".partial")
        if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not is_ours(path))):
            raise UsageError(f"cannot write {path}: it exists and is not a directory this format wrote",
                             hint="choose a new directory")
        if not path.parent.is_dir():
            raise UsageError(f"cannot write {path}: directory {path.parent} does not exist")
        if resume is not None:
            if not self.work.exists() and path.exists() and is_ours(path):
                os.replace(path, self.work)
            if not self.work.is_dir():
                raise UsageError(f"cannot resume: {self.work} is missing",
                                 hint="run the same command again without --resume")
            return
        if self.work.exists():
            if self.work.is_dir() and (is_ours(self.work) or not any(self.work.iterdir())
                                       or (self.work / META).exists() or _all_parquet(self.work)):
                shutil.rmtree(self.work)
            else:
                raise UsageError(f"cannot write {path}: {self.work} is in the way",
                                 hint="remove it or choose a new directory")
        try:
            self.work.mkdir()
        except OSError as err:
            raise UsageError(f"cannot write {path}: {err.strerror}") from None

    def files(self) -> Files:
        return Files(self.work.resolve())

    def cut_back(self, keep: set[str]) -> None:
        """Resumed: only the files ``keep`` names stay (and no manifest)."""
        (self.work / META).unlink(missing_ok=True)
        for found in sorted(self.work.rglob("*"), reverse=True):
            rel = found.relative_to(self.work).as_posix()
            if found.is_file() and rel not in keep:
                found.unlink()
            elif found.is_dir() and not any(found.iterdir()):
                found.rmdir()

    def commit(self) -> None:
        old = self.path.with_name(self.path.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        if self.path.exists():
            os.replace(self.path, old)
        os.replace(self.work, self.path)
        if old.exists():
            shutil.rmtree(old)


class ObjectOutput:
    """``DirectoryOutput`` in object storage: built under the ``<path>.partial`` prefix, then
    completed by copying its objects into place with ``VDF_META.json`` last (the file vdf-io
    and vexchange read first, so without it the directory is not a VDF); an earlier output's
    manifest goes first. An output cut short while completing has no manifest while its
    ``.partial`` has one: readers refuse it, and the next run replaces it."""

    def __init__(self, io: ObjectFiles, path: Path, *, resume: dict[str, Any] | None) -> None:
        self.io, self.path = io, path
        self.work = path.with_name(path.name + ".partial")
        cut_short = io.unfinished(path, META)
        if io.exists(path) and not cut_short and not io.exists(path / META):
            raise UsageError(f"cannot write {io.location(path)}: it exists and is not a directory this"
                             " format wrote", hint="choose a new prefix")
        if resume is not None:
            return
        if cut_short:
            io.remove_tree(path)
        io.remove_tree(self.work)

    def files(self) -> Files:
        return Files(self.work.as_posix(), self.io.fs)

    def cut_back(self, keep: set[str]) -> None:
        self.io.remove_tree(self.work / META)
        have = {p.relative_to(self.work).as_posix() for p in self.io.all_files(self.work)}
        if not keep <= have:
            raise UsageError(f"cannot resume: {self.io.location(self.work)} lacks files the checkpoint"
                             " counts",
                             hint="run the same command again without --resume")
        for rel in sorted(have - keep):
            self.io.remove_tree(self.work / rel)

    def commit(self) -> None:
        self.io.publish(self.work, self.path, META)


def _all_parquet(directory: Path) -> bool:
    return all(p.is_dir() or p.suffix == ".parquet" for p in directory.rglob("*"))


def vector_table_spaces(spaces: dict[str, VectorSpace], batch: list[MemoryRecord]) -> dict[str, VectorSpace]:
    """The vector columns of a table fixed at its first write: each name the source declares
    or the first batch holds, sized as declared, else as first seen."""
    wanted = {name: space for name, space in spaces.items() if space.dims}
    for record in batch:
        for name, vec in record.vectors.items():
            if name not in wanted:
                wanted[name] = VectorSpace(dims=vec.dims, metric=(spaces.get(name) or VectorSpace()).metric)
    return wanted


# ------------------------------------------------------------------------------ the connector


class VdfConnector(AtPath, Connector):
    name = "vdf"
    url_options = frozenset({"index"}) | OBJECT_OPTIONS
    takes_path = True
    extra = "vdf"
    capabilities = Capabilities(read=True, write=True, named_vectors=True, fixed_dims=True,
                                preferred_batch=10_000, read_ahead=True)
    """10,000 rows per file, what vdf-io's own exporters write."""

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if not spec.path:
            raise UsageError("vdf needs a directory: vdf:///path/dir")
        self.objects: ObjectFiles | None = None
        if is_url(spec.path):
            self.objects = ObjectFiles(open_url(spec.path, secret=spec.secret, params=spec.params))
            self.path = Path(self.objects.where.path)
        else:
            self.path = Path(spec.path)
        self.index = spec.params.get("index")
        if self.index is not None and not _INDEX.fullmatch(self.index):
            raise UsageError(f"?index={self.index!r}: an index name is a directory name (letters,"
                             " digits, '_', '.', '-')")

    def describe(self) -> dict[str, Any]:
        where = self.objects.location(self.path) if self.objects else str(self.path.resolve())
        return {"connector": "vdf", "location": f"{where}#{self.index}" if self.index else where}

    def run_files_base(self) -> Path | None:
        """Beside a local directory; in the working directory for object storage."""
        return None if self.objects else self.path

    def files(self) -> Files:
        if self.objects is not None:
            return Files(self.path.as_posix(), self.objects.fs)
        return Files(self.path.resolve())

    def manifest(self) -> dict[str, Any]:
        if self.objects is not None:
            finished_root(self.objects, self.path, META)
        if not self.files().is_dir(""):
            raise UsageError(f"there is no VDF directory at {self.describe()['location']}")
        try:
            meta = orjson.loads(self.files().read_bytes(META))
        except FileNotFoundError:
            raise UsageError(f"{self.path} is not a VDF directory: it has no {META}") from None
        except orjson.JSONDecodeError as err:
            raise DecodeError(f"{self.path / META} is not JSON: {err}",
                              location=str(self.path / META)) from None
        if not isinstance(meta, dict) or not isinstance(meta.get("indexes"), dict):
            raise DecodeError(f"{self.path / META} has no 'indexes' object", location=str(self.path / META))
        return meta

    def entries(self) -> list[dict[str, Any]]:
        """The namespace entries of the index read, in manifest order."""
        indexes: dict[str, Any] = self.manifest()["indexes"]
        if self.index is None and len(indexes) > 1:
            raise UsageError(f"{self.path} holds {len(indexes)} indexes ({', '.join(sorted(indexes))})",
                             hint="name the one to read with ?index=NAME")
        if self.index is not None and self.index not in indexes:
            raise UsageError(f"{self.path} has no index {self.index!r}; it has {', '.join(sorted(indexes))}")
        chosen = [self.index] if self.index is not None else list(indexes)
        out = [entry for name in chosen for entry in indexes[name] or []]
        if not all(isinstance(e, dict) and isinstance(e.get("data_path"), str) for e in out):
            raise DecodeError(f"{self.path / META}: a namespace entry has no data_path")
        return out

    def count(self) -> int | None:
        return sum(int(e.get("exported_vector_count") or 0) for e in self.entries())

    def vector_spaces(self) -> dict[str, VectorSpace]:
        spaces: dict[str, VectorSpace] = {}
        for entry in self.entries():
            own = _own(entry)
            metric = _metric_from(entry.get("metric"))
            for column, name in _vector_names(entry, own).items():
                dims = (entry.get("model_map") or {}).get(column, {}).get("dimensions")
                if own:
                    metric = (own.get("metrics") or {}).get(name, metric)
                spaces.setdefault(name, VectorSpace(dims=dims if isinstance(dims, int) and dims > 0 else None,
                                                    metric=metric))
        return spaces

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        """Pages entry by entry, file by file. The cursor is ``entry:file:row``."""
        files = self.files()
        entries = self.entries()
        id_column = self.manifest().get("id_column") or "id"
        at = [int(p) for p in after.split(":")] if after else [0, 0, 0]
        for e_no in range(at[0], len(entries)):
            entry = entries[e_no]
            reader = _EntryReader(entry, id_column)
            if not files.is_dir(entry["data_path"]):
                raise DecodeError(f"{self.path}: data_path {entry['data_path']!r} is not a directory")
            names = files.parquet_files(entry["data_path"])
            start_file = at[1] if e_no == at[0] else 0
            for f_no in range(start_file, len(names)):
                skip = at[2] if (e_no, f_no) == (at[0], at[1]) else 0
                done = skip
                parquet = files.parquet(names[f_no])
                for batch in parquet.iter_batches(batch_size=batch_size):
                    if skip >= batch.num_rows:
                        skip -= batch.num_rows
                        continue
                    batch = batch.slice(skip)
                    skip = 0
                    items = reader.records(pa.Table.from_batches([batch]), f"{names[f_no]}", done)
                    done += batch.num_rows
                    yield Page(items, f"{e_no}:{f_no}:{done}")
        yield Page([], None)

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        return VdfWriter(self, resume=resume, dry_run=dry_run, spaces=spaces or {})


def _own(entry: dict[str, Any]) -> dict[str, Any] | None:
    """vexchange's part of a namespace entry (in ``index_config``), or None for another writer's."""
    config = entry.get("index_config")
    own = config.get("vexchange") if isinstance(config, dict) else None
    return own if isinstance(own, dict) else None


def _metric_from(name: Any) -> str | None:
    return next((ours for ours, theirs in _METRICS.items() if str(name).lower() == theirs.lower()), None)


def _vector_names(entry: dict[str, Any], own: dict[str, Any] | None) -> dict[str, str]:
    """Vector column -> record vector name."""
    if own:
        return {column: name for name, column in (own.get("vectors") or {}).items()}
    columns = [c for c in entry.get("vector_columns") or ["vector"] if isinstance(c, str)]
    return {c: ("" if i == 0 or c == "vector" else c) for i, c in enumerate(columns)}


class _EntryReader:
    """Rows of one namespace entry's files as records."""

    def __init__(self, entry: dict[str, Any], id_column: str) -> None:
        self.own = _own(entry)
        self.names = _vector_names(entry, self.own)
        found = entry.get("model_map")
        models: dict[str, Any] = found if isinstance(found, dict) else {}
        self.models = {name: model for column, name in self.names.items()
                       if isinstance(model := (models.get(column) or {}).get("model_name"), str)
                       and model not in ("", "NOT_PROVIDED")}
        """A foreign file's vector models (vdf-io's ``model_map``; vexchange's own are in _vex)."""
        self.id_column = "id" if self.own else id_column
        namespace = entry.get("namespace")
        if self.own:
            self.namespace = self.own.get("namespace")
        else:  # vdf-io's "" is the default namespace: the record has none
            self.namespace = namespace if isinstance(namespace, str) and namespace else None

    def records(self, table: pa.Table, where: str, first: int) -> list[MemoryRecord | Reject]:
        vectors: dict[str, list[bytes | None] | str] = {}
        for column, name in self.names.items():
            if column in table.column_names:
                vectors[name] = _vector_rows(table.column(column))
        plain = {c: table.column(c).to_pylist() for c in table.column_names
                 if c not in self.names and c != _PANDAS_INDEX}
        out: list[MemoryRecord | Reject] = []
        for i in range(table.num_rows):
            location = f"{where} row {first + i}"
            row = {k: v[i] for k, v in plain.items()}
            rid = row.pop(self.id_column, None)
            if rid is None:
                out.append(Reject(reason="no_id", detail=f"the row has no {self.id_column!r}",
                                  location=location, record=_jsonable(row)))
                continue
            vecs: dict[str, bytes] = {}
            bad = None
            for name, rows in vectors.items():
                cell = rows if isinstance(rows, str) else rows[i]
                if isinstance(cell, str):
                    bad = f"vector {name or 'vector'!r}: {cell}"
                elif cell is not None:
                    vecs[name] = cell
            if bad is None and isinstance(rid, float):
                bad = f"id {rid!r} is not a string or an integer"
            if bad is not None:
                out.append(Reject(reason="bad_vector" if "vector" in bad else "bad_id", detail=bad,
                                  id=str(rid), namespace=self.namespace, location=location,
                                  record=_jsonable(row)))
                continue
            out.append(self._record(row, str(rid), isinstance(rid, int), vecs, location))
        return out

    def _record(self, row: dict[str, Any], rid: str, int_id: bool, vectors: dict[str, bytes],
                location: str) -> MemoryRecord | Reject:
        try:
            if self.own:
                text = row.pop("text", None)
                payload = {k: v for k, v in row.items() if v is not None and k != VEX_KEY}
                payload[VEX_KEY] = row.get(VEX_KEY)
                record = _LAYOUT.unpack(payload, store_id=rid, vectors=vectors, namespace=self.namespace)
                return record.replace(text=text)
            text = next((row.pop(c) for c in _TEXT_COLUMNS if isinstance(row.get(c), str)), None)
            for c in _TEXT_COLUMNS:
                if c in row and row[c] is None:
                    row.pop(c)
            payload = {k: _jsonable(v) for k, v in row.items()}
            record = _LAYOUT.unpack(payload, store_id=rid, vectors=vectors, namespace=self.namespace,
                                    id_type="int" if int_id else "str")
            models = {n: Vector(v.data, self.models.get(n)) for n, v in record.vectors.items()}
            return record.replace(text=text, vectors=models)
        except (ValueError, KeyError, TypeError) as err:
            return Reject(reason="bad_row", detail=str(err), id=rid, namespace=self.namespace,
                          location=location, record=_jsonable(row))


def _vector_rows(column: pa.ChunkedArray) -> list[bytes | None] | str:
    """Each row of a vector column (fixed or variable list of floats) as float32 bytes, None
    for a null row, a string saying why for a row that is no vector."""
    kind = column.type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)) \
            or not (pa.types.is_floating(kind.value_type) or pa.types.is_integer(kind.value_type)):
        return f"a column of {kind}, not a list of numbers"
    out: list[bytes | None] = []
    for cell in column.to_pylist():
        if cell is None:
            out.append(None)
            continue
        values = np.asarray(cell, dtype="<f4")
        if values.size == 0 or not np.isfinite(values).all():
            return "a vector that is empty or not finite"
        out.append(values.tobytes())
    return out


def _jsonable(value: Any) -> Any:
    """A Parquet cell as JSON: dates as ISO text, bytes as text, NaN (pandas' missing) as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return str(value)


# ------------------------------------------------------------------------------ writing


def _dir_of(namespace: str | None) -> str:
    """A namespace's directory name: the name itself when it is a plain one (not starting with
    ``x``), ``x<hex of its UTF-8>`` otherwise, ``_default`` for none."""
    if namespace is None:
        return "_default"
    if _SAFE_DIR.fullmatch(namespace):
        return namespace
    return "x" + namespace.encode().hex()


def _kind(value: Any) -> str | None:
    """The column type a metadata value can live in, exactly; None: it goes to ``_vex``."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if -(1 << 63) <= value < 1 << 63 else None
    if isinstance(value, float):
        return "float" if math.isfinite(value) else None
    if isinstance(value, str):
        return "str"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "strs"
    return None


_ARROW = {"bool": pa.bool_(), "int": pa.int64(), "float": pa.float64(), "str": pa.string(),
          "strs": pa.list_(pa.string())}


def _is_vdf(path: Path) -> bool:
    return (path / META).is_file()


class VdfWriter(Writer):
    """One Parquet file per released batch and namespace, in ``<dir>.partial``; ``finish``
    writes the manifest and swaps the directory in."""

    def __init__(self, store: VdfConnector, *, resume: dict[str, Any] | None, dry_run: bool,
                 spaces: dict[str, VectorSpace]) -> None:
        self.store, self.spaces = store, spaces
        self.index = store.index or _DEFAULT_INDEX
        state = resume or {}
        self.columns: dict[str, str] | None = state.get("columns")
        self.dims: dict[str, int] = dict(state.get("dims") or {})
        self.parts: dict[str, dict[str, Any]] = dict(state.get("parts") or {})
        self.out: DirectoryOutput | ObjectOutput | None = None
        if not dry_run:
            self.out = (ObjectOutput(store.objects, store.path, resume=resume) if store.objects else
                        DirectoryOutput(store.path, resume=resume, is_ours=_is_vdf))
        if self.out is not None and resume is not None:
            self._cut_back()
        self.files = self.out.files() if self.out is not None else None
        self.held: LastBatch[MemoryRecord] = LastBatch(self._release)

    def _cut_back(self) -> None:
        """Resumed: only the files the checkpoint counted stay (and no manifest)."""
        assert self.out is not None
        self.out.cut_back({f"{self.index}/{p['dir']}/{k}.parquet" for p in self.parts.values()
                           for k in range(1, p["files"] + 1)})

    def target_dims(self) -> dict[str, int]:
        return dict(self.dims)

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return {name: VectorSpace(dims=d, metric=(self.spaces.get(name) or VectorSpace()).metric)
                for name, d in self.dims.items()} or dict(self.spaces)

    def write(self, batch: list[MemoryRecord]) -> list[Reject]:
        if self.columns is None:
            wanted = vector_table_spaces(self.spaces, batch)
            self.columns = {n: ("vector" if n == "" else f"vector_{n}") for n in sorted(wanted)}
            self.dims = {n: s.dims or 1 for n, s in wanted.items()}
        rejects: list[Reject] = []
        kept: list[MemoryRecord] = []
        for record in batch:
            problem = next(((("unknown_vector", f"the files have no column for vector {n!r}")
                             if n not in self.columns else
                             ("dims_mismatch", f"vector {n!r} has {v.dims} dims; its column holds"
                                               f" {self.dims[n]}"))
                            for n, v in record.vectors.items()
                            if n not in self.columns or v.dims != self.dims[n]), None)
            if problem:
                rejects.append(Reject(reason=problem[0], detail=problem[1], id=record.id,
                                      namespace=record.namespace))
            else:
                kept.append(record)
        self.held.hold(batch, kept)
        return rejects

    def _release(self, records: list[MemoryRecord]) -> None:
        groups: dict[str, list[MemoryRecord]] = {}
        for record in records:
            groups.setdefault(orjson.dumps(record.namespace).decode(), []).append(record)
        for key, group in groups.items():
            part = self.parts.setdefault(key, {"dir": _dir_of(group[0].namespace), "files": 0, "rows": 0,
                                               "models": {}})
            if self.files is not None:
                self.files.write_parquet(f"{self.index}/{part['dir']}/{part['files'] + 1}.parquet",
                                         self._table(group))
            part["files"] += 1
            part["rows"] += len(group)
            for record in group:
                for name, vec in record.vectors.items():
                    if vec.model:
                        models = part["models"].setdefault(name, {})
                        models[vec.model] = models.get(vec.model, 0) + 1

    def _table(self, records: list[MemoryRecord]) -> pa.Table:
        assert self.columns is not None
        kinds: dict[str, str | None] = {}
        for record in records:
            for key, value in (record.metadata or {}).items():
                plain = key and key not in _RESERVED and not key.startswith("vector_")
                kind = _kind(value) if plain else None
                if kind is not None or value is not None:
                    kinds[key] = kind if kinds.get(key, kind) == kind else None
        columns = {k: kind for k, kind in kinds.items() if kind is not None}
        packed = [_LAYOUT.pack(r, accept=lambda k, v: k in columns and _kind(v) == columns[k])
                  for r in records]
        data: dict[str, pa.Array] = {"id": pa.array([r.id for r in records], pa.string())}
        for name, column in self.columns.items():
            size = self.dims[name]
            flat = np.zeros((len(records), size), dtype="<f4")
            valid = np.zeros(len(records), dtype=bool)
            for i, record in enumerate(records):
                vec = record.vectors.get(name)
                if vec is not None:
                    flat[i], valid[i] = vec.array(), True
            data[column] = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel(), pa.float32()), size,
                                                              mask=pa.array(~valid))
        data["text"] = pa.array([r.text for r in records], pa.string())
        for key, kind in columns.items():
            data[key] = pa.array([p.get(key) for p in packed], _ARROW[kind])
        data[VEX_KEY] = pa.array([p[VEX_KEY] for p in packed], pa.string())
        return pa.table(data)

    def checkpoint(self) -> dict[str, Any]:
        self.held.release()
        return {"columns": self.columns, "dims": self.dims, "parts": self.parts}

    def finish(self, summary: dict[str, Any]) -> None:
        self.held.release()
        if self.out is None or self.files is None:
            return
        self.files.write_bytes(META, orjson.dumps(self._manifest(summary), option=orjson.OPT_INDENT_2))
        self.out.commit()

    def _manifest(self, summary: dict[str, Any]) -> dict[str, Any]:
        columns = self.columns or {}
        name = self.store.path.name
        metrics = {n: (self.spaces.get(n) or VectorSpace()).metric or "cosine" for n in columns}
        entries = []
        structure = [f"{name}/{META}"]
        for key, part in sorted(self.parts.items()):
            namespace = orjson.loads(key)
            data_path = f"{self.index}/{part['dir']}"
            structure += [f"{name}/{data_path}/{k}.parquet" for k in range(1, part["files"] + 1)]
            model_of = {n: max(m.items(), key=lambda kv: kv[1])[0] for n, m in part["models"].items()}
            entries.append({
                "namespace": namespace or "", "index_name": self.index,
                "total_vector_count": part["rows"], "exported_vector_count": part["rows"],
                "dimensions": self.dims.get("", -1), "model_name": model_of.get("", "NOT_PROVIDED"),
                "model_map": {c: {"model_name": model_of.get(n, "NOT_PROVIDED"), "text_column": "text",
                                  "dimensions": self.dims[n], "vector_column": c}
                              for n, c in columns.items()},
                "vector_columns": list(columns.values()), "data_path": data_path,
                "metric": _METRICS.get(metrics.get("", "cosine"), "Cosine"),
                "index_config": {"vexchange": {"format": 1, "namespace": namespace, "vectors": columns,
                                               "metrics": metrics}},
                "schema_dict_str": None})
        source = summary.get("source") or {}
        return {"version": FORMAT_VERSION, "file_structure": structure, "author": "vexchange",
                "exported_from": str(source.get("connector") or "vexchange"),
                "indexes": {self.index: entries},
                "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(), "id_column": "id"}

    def abort(self) -> None:
        """What was written stays in ``<dir>.partial`` for ``--resume``."""


_RESERVED = frozenset({"id", "text", "vector", VEX_KEY, _PANDAS_INDEX})

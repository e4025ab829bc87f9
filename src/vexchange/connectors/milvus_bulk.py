"""``milvus-bulk``: files for Milvus's bulk import (``bulk_import`` / ``do_bulk_insert``), as
pymilvus's own ``LocalBulkWriter`` lays them out. docs/formats/milvus-bulk.md.

URL: ``milvus-bulk:///abs/dir`` with ``?format=parquet`` (default) or ``?format=json``;
``?rows_per_file=100000``, ``?row_group=10000``.

Layout::

    DIR/<partition>/00000.parquet ...    (or 00000.json) one folder per namespace, to import
                                         into the partition of that name; _default: none
    DIR/vexchange.json                   what wrote it, the collection schema to create

The collection: ``id`` VARCHAR(65535) primary key, ``vector`` FLOAT_VECTOR(N) (and
``vector_<name>`` per named vector), dynamic fields on. Every other field goes to the
dynamic field ``$meta``: ``namespace``, ``text``, each metadata key Milvus's JSON holds
exactly, and ``_vex`` (timestamps, id type, models, sparse vectors, what JSON cannot hold).
Parquet: ``id`` string, ``vector`` list<float32>, ``$meta`` string (JSON text). Row JSON:
``{"rows": [{"id": ..., "vector": [...], "$meta": {...}}, ...]}``, one row a line.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from .._json import loads_exact
from ..errors import DecodeError, UsageError
from ..record import MemoryRecord
from ..spec import StoreSpec
from .._objectstore import OPTIONS as OBJECT_OPTIONS
from ._arrow import (
    AtFiles,
    ParquetPages,
    StagedWriter,
    files_for,
    finished_root,
    json_text,
    list_vectors,
    loads_cell,
    vector_bytes,
    write_parquet_files,
)
from ._base import Capabilities, Connector, Page, Reject, VectorSpace, Writer
from ._payload import PayloadLayout, json_exact
from .parquet import _int_option

__all__ = ["MilvusBulkConnector", "collection_schema", "partition_for"]

META = "$meta"
MAX_KEY_BYTES = 65_535
DEFAULT_PARTITION = "_default"
_PARTITION = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
_LAYOUT = PayloadLayout("milvus", text_key="text", namespace_key="namespace", native=json_exact,
                        vex_as_text=True)
"""``_vex`` is JSON text inside ``$meta``: it may hold integers beyond 64 bits, which Milvus's
JSON refuses (pymilvus: "data type is inconsistent")."""


def partition_for(namespace: str | None) -> str:
    """The partition (and folder) of a namespace: ``_default`` for none; a name Milvus
    cannot take as a partition (``""`` included) becomes ``vx_<sha256>``, with the original in
    ``$meta``."""
    if namespace is None:
        return DEFAULT_PARTITION
    if _PARTITION.fullmatch(namespace) and namespace != DEFAULT_PARTITION and not namespace.startswith("vx_"):
        return namespace
    return "vx_" + hashlib.sha256(namespace.encode()).hexdigest()[:48]


def _column(name: str) -> str:
    return "vector" if name == "" else f"vector_{name}"


_METRICS = {"cosine": "COSINE", "dot": "IP", "euclidean": "L2"}


def collection_schema(dims: dict[str, int], metrics: dict[str, str | None]) -> dict[str, Any]:
    """The collection to create before the import, as plain data (pymilvus's field names)."""
    fields: list[dict[str, Any]] = [{"name": "id", "type": "VARCHAR", "max_length": MAX_KEY_BYTES,
                                     "is_primary": True}]
    fields += [{"name": _column(n), "type": "FLOAT_VECTOR", "dim": d,
                "metric": _METRICS.get(metrics.get(n) or "cosine")}
               for n, d in sorted(dims.items())]
    return {"auto_id": False, "enable_dynamic_field": True, "fields": fields}


class MilvusBulkConnector(AtFiles, Connector):
    name = "milvus-bulk"
    url_options = frozenset({"format", "rows_per_file", "row_group"}) | OBJECT_OPTIONS
    takes_path = True
    extra = "parquet"
    capabilities = Capabilities(read=True, write=True, named_vectors=True, null_vectors=False,
                                fixed_dims=True, preferred_batch=10_000, read_ahead=True,
                                read_in_process=True)

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if not spec.path:
            raise UsageError("milvus-bulk needs a directory: milvus-bulk:///path/to/dir")
        self.io, self.path = files_for(spec)
        self.format = spec.params.get("format", "parquet").lower()
        if self.format not in ("parquet", "json"):
            raise UsageError(f"?format={self.format!r}: parquet or json")
        self.rows_per_file = _int_option(spec, "rows_per_file", 100_000)
        self.row_group = _int_option(spec, "row_group", 10_000)

    def describe(self) -> dict[str, Any]:
        return {"connector": self.name, "location": self.io.location(self.path)}

    def _files(self) -> list[Path]:
        finished_root(self.io, self.path)
        if not self.io.is_dir(self.path):
            raise UsageError(f"{self.io.location(self.path)} is not a directory of Milvus import files")
        found = self.io.files(self.path, ".parquet") + self.io.files(self.path, ".json")
        found = [p for p in found if p.name != "vexchange.json"]
        if not found:
            raise UsageError(f"{self.io.location(self.path)} holds no .parquet or .json import files")
        return sorted(found, key=lambda p: p.relative_to(self.path).as_posix())

    def _folder(self, path: Path) -> str | None:
        parts = path.relative_to(self.path).parts
        return parts[0] if len(parts) > 1 else None

    def count(self) -> int | None:
        files = self._files()
        if all(p.suffix == ".parquet" for p in files):
            return ParquetPages(self.path, files, self.io).count()
        return None

    def vector_spaces(self) -> dict[str, VectorSpace]:
        manifest = self.path / "vexchange.json"
        if self.io.exists(manifest):
            with self.io.open(manifest, "rb") as handle:
                saved = orjson.loads(handle.read()).get("vector_spaces", {})
            return {n: VectorSpace(dims=s.get("dims"), metric=s.get("metric")) for n, s in saved.items()}
        return {}

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        files = self._files()
        start = int(after.split(":")[0]) if after else 0
        skip = int(after.split(":")[1]) if after else 0
        for index in range(start, len(files)):
            path = files[index]
            folder = self._folder(path)
            last = index == len(files) - 1
            offset = skip if index == start else 0
            if path.suffix == ".parquet":
                pages = ParquetPages(self.path, [path], self.io)
                for _, first, table, cursor in pages.batches(batch_size, f"0:{offset}"):
                    rows = table.to_pylist() if table.num_columns else []
                    done = cursor is None
                    yield Page([self._record(row, folder, path) for row in rows],
                               None if done and last else (f"{index + 1}:0" if done
                                                           else f"{index}:{first + len(rows)}"))
            else:
                yield from self._json_pages(path, index, folder, batch_size, offset, last)

    def _json_pages(self, path: Path, index: int, folder: str | None, batch_size: int,
                    offset: int, last: bool) -> Iterator[Page]:
        rows = self._json_rows(path)
        page: list[MemoryRecord | Reject] = []
        position = 0
        for position, row in enumerate(rows, 1):
            if position <= offset:
                continue
            page.append(self._record(row, folder, path))
            if len(page) >= batch_size:
                yield Page(page, f"{index}:{position}")
                page = []
        yield Page(page, None if last else f"{index + 1}:0")

    def _json_rows(self, path: Path) -> Iterator[Any]:
        """Rows of a row-JSON file: ours one a line (streamed); any other layout
        (``[...]`` or ``{"rows": [...]}`` as Milvus takes it) parsed whole."""
        with self.io.open(path, "rb") as handle:
            head = handle.readline()
            if head.strip() == b'{"rows":[':
                for line in handle:
                    line = line.strip().rstrip(b",")
                    if line in (b"]}", b""):
                        continue
                    yield self._loads(line, path)
                return
            data = self._loads(head + handle.read(), path)
        rows = data.get("rows") if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise DecodeError(f"{path}: a Milvus row-JSON file is [rows] or {{\"rows\": [rows]}}")
        yield from rows

    @staticmethod
    def _loads(text: bytes, path: Path) -> Any:
        try:
            return loads_exact(text)
        except orjson.JSONDecodeError as err:
            raise DecodeError(f"{path}: not JSON: {err}") from None

    def _record(self, row: Any, folder: str | None, path: Path) -> MemoryRecord | Reject:
        try:
            if not isinstance(row, dict):
                raise ValueError("a row is not an object")
            row = dict(row)
            rid = row.pop("id")
            meta = row.pop(META, None)
            payload = loads_cell(meta) if isinstance(meta, (str, bytes)) else dict(meta or {})
            vectors: dict[str, bytes] = {}
            for key in [k for k in row if k == "vector" or k.startswith("vector_")]:
                values = row.pop(key)
                if values is not None:
                    column = pa.array([values], pa.list_(pa.float32()))
                    data = vector_bytes(column)[0]
                    if data is not None:
                        vectors["" if key == "vector" else key[len("vector_"):]] = data
            payload.update(row)  # dynamic keys given as extra keys of a row
            namespace = None if folder in (None, DEFAULT_PARTITION) else folder
            id_type = "int" if isinstance(rid, int) and not isinstance(rid, bool) else None
            return _LAYOUT.unpack(payload, store_id=str(rid), vectors=vectors, namespace=namespace,
                                  id_type=id_type)
        except (ValueError, KeyError, TypeError, pa.ArrowException) as err:
            rid = row.get("id") if isinstance(row, dict) else None
            return Reject(reason="bad_row", detail=f"{path}: {err}", id=None if rid is None else str(rid))

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        return MilvusBulkWriter(self, resume=resume, dry_run=dry_run, spaces=spaces)


class MilvusBulkWriter(StagedWriter):
    def __init__(self, store: MilvusBulkConnector, *, resume: dict[str, Any] | None, dry_run: bool,
                 spaces: dict[str, VectorSpace] | None) -> None:
        super().__init__(store.path, resume=resume, dry_run=dry_run, spaces=spaces,
                         connector=store.name, io=store.io)
        self.store = store

    def target_dims(self) -> dict[str, int]:
        return {n: int(d) for n, d in self.state.get("dims", {}).items()}

    def _fix(self, batch: list[MemoryRecord]) -> dict[str, int]:
        if "dims" not in self.state:
            dims = {n: s.dims for n, s in self.spaces.items() if s.dims}
            for record in batch:
                for name, vec in record.vectors.items():
                    dims.setdefault(name, vec.dims)
            self.state["dims"] = dims
            for name, size in dims.items():
                known = self.spaces.get(name)
                self.spaces[name] = VectorSpace(dims=size, metric=known.metric if known else None)
        return dict(self.state["dims"])

    def schema(self) -> pa.Schema:
        dims = self.state.get("dims", {})
        return pa.schema([pa.field("id", pa.string(), nullable=False),
                          *[pa.field(_column(n), pa.list_(pa.float32())) for n in sorted(dims)],
                          pa.field(META, pa.string())])

    def encode(self, batch: list[MemoryRecord]) -> tuple[list[Reject], dict[str, pa.Table]]:
        dims = self._fix(batch)
        layout = PayloadLayout("milvus", text_key="text", namespace_key="namespace", native=json_exact,
                               vex_as_text=True)
        layout.reserved |= {"id", META, *(_column(n) for n in dims)}  # schema fields: kept in _vex
        rejects: list[Reject] = []
        groups: dict[str, list[tuple[MemoryRecord, str]]] = {}
        for record in batch:
            missing = sorted(set(dims) - set(record.vectors))
            if len(record.id.encode()) > MAX_KEY_BYTES:
                rejects.append(Reject(reason="id_too_long", id=record.id, namespace=record.namespace,
                                      detail=f"Milvus keys are at most {MAX_KEY_BYTES} bytes"))
                continue
            wrong = next((n for n, v in record.vectors.items() if n in dims and v.dims != dims[n]), None)
            if wrong is not None:
                rejects.append(Reject(reason="dims_mismatch", id=record.id, namespace=record.namespace,
                                      detail=f"vector {wrong!r} has {record.vectors[wrong].dims} values;"
                                             f" its field has {dims[wrong]}"))
                continue
            if missing or any(n not in dims for n in record.vectors):
                rejects.append(Reject(reason="no_vector" if missing else "unknown_vector", id=record.id,
                                      namespace=record.namespace,
                                      detail=f"Milvus vectors cannot be null; the collection has the"
                                             f" vector fields {sorted(dims)}, the record"
                                             f" {sorted(record.vectors)}"))
                continue
            payload = layout.pack(record)
            groups.setdefault(partition_for(record.namespace), []).append((record, json_text(payload)))
        tables = {}
        for folder, rows in groups.items():
            records = [r for r, _ in rows]
            arrays = [pa.array([r.id for r in records], pa.string()),
                      *[list_vectors(records, n) for n in sorted(dims)],
                      pa.array([m for _, m in rows], pa.string())]
            tables[folder] = pa.Table.from_arrays(arrays, schema=self.schema())
        return rejects, tables

    def build_group(self, directory: Path, group: str, tables: Iterator[pa.Table]) -> list[str]:
        rows = self.groups.get(group, 0)
        count = max(1, -(-rows // self.store.rows_per_file))
        suffix = self.store.format
        names = [f"{group}/{i:05d}.{suffix}" for i in range(count)]
        self.io.makedirs(directory / group)
        paths = [directory / n for n in names]
        if suffix == "parquet":
            write_parquet_files(self.io, paths, tables, schema=self.schema(),
                                rows_per_file=self.store.rows_per_file,
                                row_group_rows=self.store.row_group, cdc=False)
        else:
            self._write_json(paths, tables)
        return names

    def _write_json(self, paths: list[Path], tables: Iterator[pa.Table]) -> None:
        """``{"rows": [...]}`` (what pymilvus's LocalBulkWriter writes and Milvus reads), one
        row a line; vectors as the shortest decimal of each float32's double value, which
        Milvus's parser and ours read back to the same float32."""
        index, in_file = 0, 0
        handle = None
        names = self.schema().names
        try:
            for table in tables:
                columns = {n: table.column(n).to_pylist() for n in names}
                for i in range(table.num_rows):
                    if handle is None:
                        handle = self.io.open(paths[index], "wb")
                        handle.write(b'{"rows":[\n')
                        index, in_file = index + 1, 0
                    row = {n: (orjson.Fragment(columns[n][i]) if n == META else columns[n][i])
                           for n in names}
                    handle.write((b",\n" if in_file else b"") + orjson.dumps(row))
                    in_file += 1
                    if in_file >= self.store.rows_per_file:
                        handle.write(b"\n]}\n")
                        handle.close()
                        handle = None
            if handle is None and index == 0:
                handle = self.io.open(paths[0], "wb")
                handle.write(b'{"rows":[\n')
        finally:
            if handle is not None:
                handle.write(b"\n]}\n")
                handle.close()

    def finish_output(self, directory: Path, files: dict[str, list[str]],
                      summary: dict[str, Any]) -> None:
        self.state["collection"] = collection_schema(
            self.state.get("dims", {}), {n: s.metric for n, s in self.spaces.items()})
        self.state["partitions"] = sorted(files)

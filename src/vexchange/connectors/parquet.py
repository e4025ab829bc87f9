"""``parquet``: a directory of Parquet files that is also a Hugging Face dataset.
docs/formats/parquet.md.

URL forms: ``parquet:///abs/dir``, ``parquet:relative/dir``, or a bare path ending in
``.parquet`` (a directory when written, like Spark's; a single file or a directory when read).
Options: ``?split=train``, ``?rows_per_file=1000000``, ``?row_group=10000``,
``?compression=snappy|zstd|lz4|gzip|none``, ``?cdc=true|false`` (content-defined chunking).

What vexchange writes::

    DIR/README.md                                    dataset card: YAML features, configs, splits
    DIR/vexchange.json                               what wrote it: counts, files, vector spaces
    DIR/data/<split>-00000-of-0000N.parquet ...      the rows, in run order

    id string not null, namespace string, text string,
    vector fixed_size_list<float32>[N]            the default vector (null: none)
    vector_<name> fixed_size_list<float32>[M]     one per named vector
    metadata string                               the metadata as exact JSON text (null: none)
    created_at, updated_at timestamp[ms, UTC]
    vex string                                    JSON of the rest (id type, score, models, ...)
    schema metadata "vexchange": which column holds which vector, dims and metric, which
    columns are JSON text

Any other Parquet file or dataset can be read: an ``id`` column (else the row's position),
every list column of floats as a vector, ``text``/``content``/``document`` as the text,
``namespace`` when present, every other column as metadata.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from .._canonical import column_digests
from .._json import MAX_DEPTH, may_hold_big_int
from ..errors import UsageError
from ..record import MemoryRecord, SparseVector, Vector, canonical_int
from ..spec import StoreSpec
from .._objectstore import OPTIONS as OBJECT_OPTIONS
from ._arrow import (
    MANIFEST,
    AtFiles,
    LiveParquet,
    TS_MS,
    ParquetPages,
    StagedWriter,
    files_for,
    finished_root,
    fixed_vectors,
    json_text,
    loads_cell,
    vector_bytes,
    write_parquet_files,
)
from ._base import Capabilities, Connector, Page, Reject, TablePage, VectorSpace, Writer

__all__ = ["ParquetConnector", "dataset_card", "foreign_records", "own_digests", "own_records"]

SCHEMA_KEY = b"vexchange"
_COMPRESSIONS = ("snappy", "zstd", "lz4", "gzip", "none")
_TEXT_COLUMNS = ("text", "content", "document", "page_content", "chunk")
_DEFAULT_VECTOR_COLUMNS = ("vector", "embedding", "embeddings", "values")
_MISSING = object()
_OWN_COLUMNS = frozenset({"id", "namespace", "text", "metadata", "created_at", "updated_at", "vex"})


def _int_option(spec: StoreSpec, key: str, default: int) -> int:
    raw = spec.params.get(key)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise UsageError(f"?{key}={raw!r} must be a whole number of at least 1")
    return int(raw)


def _bool_option(spec: StoreSpec, key: str, default: bool) -> bool:
    raw = spec.params.get(key)
    if raw is None:
        return default
    if raw.lower() not in ("true", "false", "1", "0"):
        raise UsageError(f"?{key}={raw!r} must be true or false")
    return raw.lower() in ("true", "1")


class ParquetConnector(AtFiles, Connector):
    name = "parquet"
    url_options = frozenset({"split", "rows_per_file", "row_group", "compression", "cdc"}) | OBJECT_OPTIONS
    suffixes = (".parquet",)
    writer_takes = frozenset({"tables"})
    takes_path = True
    extra = "parquet"
    capabilities = Capabilities(read=True, write=True, named_vectors=True, fixed_dims=True,
                                preferred_batch=10_000, read_ahead=True, read_in_process=True)

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if not spec.path:
            raise UsageError("parquet needs a directory: parquet:///path/to/dir")
        self.io, self.path = files_for(spec)
        self.split = spec.params.get("split", "train")
        if not self.split.replace("_", "").replace("-", "").isalnum():
            raise UsageError(f"?split={self.split!r}: a split name is letters, digits, - and _")
        self.rows_per_file = _int_option(spec, "rows_per_file", 1_000_000)
        self.row_group = _int_option(spec, "row_group", 10_000)
        chosen = spec.params.get("compression")
        self.compression = chosen.lower() if chosen is not None else None
        if self.compression is not None and self.compression not in _COMPRESSIONS:
            raise UsageError(f"?compression={self.compression!r}: one of {', '.join(_COMPRESSIONS)}")
        self.cdc = _bool_option(spec, "cdc", True)

    def describe(self) -> dict[str, Any]:
        return {"connector": self.name, "location": self.io.location(self.path)}

    def pages(self) -> ParquetPages:
        finished_root(self.io, self.path)
        if not self.io.exists(self.path):
            raise UsageError(f"{self.io.location(self.path)} does not exist")
        if self.io.is_dir(self.path):
            files = self.io.files(self.path, ".parquet")
            if not files:
                raise UsageError(f"{self.io.location(self.path)} holds no .parquet files")
            return ParquetPages(self.path, files, self.io)
        return ParquetPages(self.path.parent, [self.path], self.io)

    def count(self) -> int | None:
        return self.pages().count()

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return Shape(self.pages().schema(0)).spaces()

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        for page in self._read(batch_size, after, tables=False):
            assert isinstance(page, Page)
            yield page

    def read_tables(self, *, batch_size: int, after: str | None = None) -> Iterator[Page | TablePage]:
        return self._read(batch_size, after, tables=True)

    def _read(self, batch_size: int, after: str | None, *, tables: bool) -> Iterator[Page | TablePage]:
        pages = self.pages()
        starts: list[int] = []  # each file's first row position, for ids of foreign rows
        for index, first, table, cursor in pages.batches(batch_size, after):
            shape = Shape(table.schema) if table.num_columns else None
            if shape is None:
                yield Page([], cursor)
                continue
            if shape.own:
                taken = own_digests(table, shape) if tables else None
                if taken is not None:
                    yield TablePage(table, {name: column for column, name in shape.vectors.items()},
                                    *taken, cursor)
                else:
                    yield Page(own_records(table, shape), cursor)
                continue
            if not starts:
                starts = _file_starts(pages)
            yield Page(foreign_records(table, shape, starts[index] + first), cursor)

    def table_records(self, table: Any) -> list[MemoryRecord | Reject]:
        return own_records(table, Shape(table.schema))

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        return ParquetWriter(self, resume=resume, dry_run=dry_run, spaces=spaces)


def _file_starts(pages: ParquetPages) -> list[int]:
    starts, total = [], 0
    for path in pages.paths:
        starts.append(total)
        total += ParquetPages(pages.root, [path], pages.io).count()
    return starts


class Shape:
    """How a table's columns map to record fields: vexchange's own (by the schema metadata)
    or any table's (by column types and names)."""

    def __init__(self, schema: pa.Schema) -> None:
        saved = (schema.metadata or {}).get(SCHEMA_KEY)
        info = orjson.loads(saved) if saved else None
        self.own = isinstance(info, dict) and info.get("layout") == "vexchange-parquet"
        # a file another tool saved again (``datasets`` drops the schema metadata): ours by
        # its columns, which carry everything but the metric
        resaved = not self.own and set(schema.names) >= _OWN_COLUMNS
        floats = [f.name for f in schema if (pa.types.is_fixed_size_list(f.type)
                                             or pa.types.is_list(f.type)
                                             or pa.types.is_large_list(f.type))
                  and pa.types.is_floating(f.type.value_type)]
        self.spaces_info: dict[str, Any] = {}
        if self.own and isinstance(info, dict):
            self.vectors: dict[str, str] = dict(info["vectors"])  # column -> vector name
            self.spaces_info = dict(info.get("spaces", {}))
        elif resaved:
            self.own = True
            self.vectors = {c: ("" if c == "vector" else c[len("vector_"):]) for c in floats
                            if c == "vector" or c.startswith("vector_")}
        else:
            default = next((c for c in _DEFAULT_VECTOR_COLUMNS if c in floats), None)
            if default is None and len(floats) == 1:
                default = floats[0]
            self.vectors = {c: ("" if c == default else c) for c in floats}
        self.dims = {f.name: f.type.list_size for f in schema
                     if f.name in self.vectors and pa.types.is_fixed_size_list(f.type)}
        names = set(schema.names)
        self.text = "text" if self.own else next(
            (c for c in _TEXT_COLUMNS if c in names and pa.types.is_string(schema.field(c).type)), None)

    def spaces(self) -> dict[str, VectorSpace]:
        out = {}
        for column, name in self.vectors.items():
            saved = self.spaces_info.get(name, {})
            out[name] = VectorSpace(dims=saved.get("dims", self.dims.get(column)),
                                    metric=saved.get("metric"))
        return out


def own_records(table: pa.Table, shape: Shape) -> list[MemoryRecord | Reject]:
    """Records of a table vexchange wrote, column by column: vectors sliced from one buffer,
    JSON parsed only where a cell holds some, the common ``vex`` texts parsed once, and one
    look for long digit runs over the page's metadata instead of one per cell."""
    ids = table.column("id").to_pylist()
    namespaces = table.column("namespace").to_pylist()
    texts = table.column("text").to_pylist()
    metas = table.column("metadata").to_pylist()
    created = table.column("created_at").cast(pa.int64()).to_pylist()
    updated = table.column("updated_at").cast(pa.int64()).to_pylist()
    vexes = table.column("vex").to_pylist()
    vectors = {name: vector_bytes(table.column(column)) for column, name in shape.vectors.items()}
    kinds: dict[str | None, tuple[dict[str, Any], dict[str, Any], bool]] = {None: ({}, {}, False)}
    out: list[MemoryRecord | Reject] = []
    items = list(vectors.items())
    only, only_column = items[0] if len(items) == 1 else ("", [])  # the usual table: one vector
    parse = _cell_parser(metas)
    for i, (rid, ns, text, meta, made, changed, vex_text) in enumerate(
            zip(ids, namespaces, texts, metas, created, updated, vexes, strict=True)):
        try:
            kind = kinds.get(vex_text)
            if kind is None:  # each distinct vex text is parsed once per page
                kind = kinds[vex_text] = _kind(_vex_of(vex_text))
            fields, models, int_id = kind
            if len(items) == 1:
                data = only_column[i]
                record_vectors = {} if data is None else {only: Vector(data, models.get(only))}
            else:
                record_vectors = {name: Vector(data, models.get(name))
                                  for name, column in items if (data := column[i]) is not None}
            record = MemoryRecord(
                id=rid, text=text, namespace=ns, vectors=record_vectors,
                metadata=None if meta is None else parse(meta),
                created_at=made, updated_at=changed, **fields)
            if int_id and canonical_int(rid) is not None:
                record = record.replace(id_type="int")
            out.append(record)
        except (ValueError, TypeError, KeyError) as err:
            out.append(Reject(reason="bad_row", detail=f"row {i}: {err}", id=str(rid), namespace=ns))
    return out


def own_digests(table: pa.Table, shape: Shape) -> tuple[list[bytes], list[str], list[str | None]] | None:
    """The digests, ids and namespaces of the records ``own_records`` makes of ``table``, from
    its columns alone: each row's metadata parsed as it parses it, the vectors hashed where
    they lie. None when a row is not the usual one (no id, a row without one of the vectors
    or with a sparse one, a cell that does not parse): ``own_records`` makes those pages, with
    a reject for each row it cannot read."""
    ids = table.column("id").to_pylist()
    if not ids or any(rid is None for rid in ids):
        return None
    vectors: list[tuple[str, list[str | None], int, memoryview]] = []
    kinds: dict[str | None, dict[str, Any] | None] = {None: {}}
    vexes = table.column("vex").to_pylist()
    try:
        for vex_text in vexes:
            if vex_text not in kinds:
                fields, models, _ = _kind(_vex_of(vex_text))
                kinds[vex_text] = None if "sparse" in fields else models
        row_models = [kinds[v] for v in vexes]
        if any(models is None for models in row_models):
            return None
        for column, name in sorted(shape.vectors.items(), key=lambda item: item[1]):
            values = table.column(column)
            kind = values.type
            if values.null_count or not (pa.types.is_fixed_size_list(kind)
                                         and pa.types.is_float32(kind.value_type)):
                return None
            flat = np.ascontiguousarray(values.combine_chunks().flatten().to_numpy(zero_copy_only=False),
                                        dtype=_F32)
            vectors.append((name, [m.get(name) for m in row_models],  # type: ignore[union-attr]
                            kind.list_size, memoryview(flat.data).cast("B")))
        metas = table.column("metadata").to_pylist()
        parse = _cell_parser(metas)
        metadata = [None if meta is None else parse(meta) for meta in metas]
        namespaces = table.column("namespace").to_pylist()
        digests = column_digests(ids, namespaces, table.column("text").to_pylist(), metadata,
                                 table.column("created_at").cast(pa.int64()).to_pylist(),
                                 table.column("updated_at").cast(pa.int64()).to_pylist(), vectors)
    except (ValueError, TypeError, KeyError):
        return None
    return digests, ids, namespaces


_F32 = np.dtype("<f4")


def _cell_parser(cells: list[str | None]) -> Callable[[str], Any]:
    """How a page's JSON cells are parsed exactly: ``loads_cell`` looks at each cell for a run
    of 19 digits (an integer orjson would turn into a float) and for deep nesting; when no
    cell of the page has such a run, one look at them all does, and only cells long enough
    to nest ``MAX_DEPTH`` levels are looked at one by one."""
    present = [c for c in cells if c is not None]
    if may_hold_big_int("\0".join(present).encode()):
        return loads_cell
    loads = orjson.loads

    def parse(cell: str) -> Any:
        return loads(cell) if len(cell) < MAX_DEPTH else loads_cell(cell)

    return parse


def _kind(vex: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """What one vex text means: the record fields it sets (only those it holds, so each
    record gets its own empty containers from the defaults), the vector models, and whether
    the id is an integer."""
    fields: dict[str, Any] = {}
    for key in ("source_store", "score", "modality"):
        if key in vex:
            fields[key] = vex[key]
    if vex.get("extra"):
        fields["extra"] = vex["extra"]
    if vex.get("sparse"):
        fields["sparse"] = _sparse_of(vex)
    return fields, dict(vex.get("models") or {}), vex.get("id_type") == "int"


def _vex_of(text: str) -> dict[str, Any]:
    value = loads_cell(text)
    if not isinstance(value, dict):
        raise ValueError("the vex column is not a JSON object")
    return value


def _sparse_of(vex: dict[str, Any]) -> dict[str, SparseVector]:
    return {name: SparseVector(base64.b64decode(e["indices"]), base64.b64decode(e["values"]),
                               e.get("model"))
            for name, e in (vex.get("sparse") or {}).items()}


def _plain(value: Any) -> Any:
    """A cell of a foreign table as a JSON value: dates as ISO-8601 text, decimals as text,
    bytes as base64 text, non-finite floats as text (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def foreign_records(table: pa.Table, shape: Shape, first: int) -> list[MemoryRecord | Reject]:
    """Records of any table: ``id`` (else the row position in the dataset), the vector
    columns, the text column, ``namespace``, and every other column as metadata."""
    n = table.num_rows
    names = table.column_names
    ids = table.column("id").to_pylist() if "id" in names else [None] * n
    texts = table.column(shape.text).to_pylist() if shape.text else [None] * n
    namespaces = (table.column("namespace").to_pylist()
                  if "namespace" in names and pa.types.is_string(table.schema.field("namespace").type)
                  else [None] * n)
    vectors = {name: vector_bytes(table.column(column)) for column, name in shape.vectors.items()}
    taken = {"id", "namespace", *shape.vectors, *([shape.text] if shape.text else [])}
    rest = [c for c in names if c not in taken and c != "__index_level_0__"]
    columns = {c: table.column(c).to_pylist() for c in rest}
    out: list[MemoryRecord | Reject] = []
    for i in range(n):
        raw = ids[i]
        if raw is None:
            rid, kind = str(first + i), "int"
        else:
            rid = raw if isinstance(raw, str) else str(raw)
            kind = "int" if isinstance(raw, int) and not isinstance(raw, bool) else "str"
        metadata = {c: _plain(values[i]) for c, values in columns.items()} if rest else None
        record_vectors = {name: Vector(data) for name, column in vectors.items()
                          if (data := column[i]) is not None}
        ns = namespaces[i]
        out.append(MemoryRecord(id=rid, text=texts[i], vectors=record_vectors, namespace=ns,
                                metadata=metadata, source_store="parquet",
                                id_type="int" if kind == "int" else "str"))
    return out


# ------------------------------------------------------------------------------------- writing

def _vex_for(record: MemoryRecord) -> str | None:
    vex: dict[str, Any] = {}
    if record.id_type != "str":
        vex["id_type"] = record.id_type
    if record.score is not None:
        vex["score"] = record.score
    if record.source_store is not None:
        vex["source_store"] = record.source_store
    if record.modality != "text":
        vex["modality"] = record.modality
    models = {name: vec.model for name, vec in record.vectors.items() if vec.model}
    if models:
        vex["models"] = models
    if record.extra:
        vex["extra"] = record.extra
    if record.sparse:
        vex["sparse"] = {name: {"indices": base64.b64encode(sp.indices).decode(),
                                "values": base64.b64encode(sp.values).decode(), "model": sp.model}
                         for name, sp in record.sparse.items()}
    return json_text(vex) if vex else None


class ParquetWriter(StagedWriter):
    """Stages each batch as one Arrow table of the layout above; ``finish`` writes the data
    files, the dataset card and the manifest."""

    def __init__(self, store: ParquetConnector, *, resume: dict[str, Any] | None, dry_run: bool,
                 spaces: dict[str, VectorSpace] | None) -> None:
        super().__init__(store.path, resume=resume, dry_run=dry_run, spaces=spaces,
                         connector=store.name, io=store.io)
        self.store = store
        self._schema: pa.Schema | None = None
        self._vex_cache: dict[tuple[Any, ...], str | None] = {}
        # the data files are written as the run goes unless it resumes (the batches before its
        # checkpoint are only in the staging) or renames are copies (object storage)
        self._live_wanted = resume is None and not dry_run and store.io.atomic_rename
        self.live: LiveParquet | None = None

    def target_dims(self) -> dict[str, int]:
        return {name: int(d) for name, d in self.state.get("dims", {}).items()}

    def _layout(self, sizes: Iterable[tuple[str, int]]) -> tuple[dict[str, int], dict[str, str]]:
        """The vector sizes and columns a first batch with these (name, dims) would fix: what
        the source declares, then the first size seen of each name."""
        dims = {name: s.dims for name, s in self.spaces.items() if s.dims}
        for name, size in sizes:
            dims.setdefault(name, size)
        return dims, {name: ("vector" if name == "" else f"vector_{name}") for name in sorted(dims)}

    def _fix_layout(self, batch: list[MemoryRecord]) -> None:
        """The vector columns and their sizes, fixed by the first batch (or by what the
        source declares): every file of one dataset has one schema."""
        if "dims" not in self.state:
            self._set_layout(*self._layout((n, v.dims) for r in batch for n, v in r.vectors.items()))

    def _set_layout(self, dims: dict[str, int], columns: dict[str, str]) -> None:
        self.state["dims"], self.state["columns"] = dims, columns
        for name, size in dims.items():
            known = self.spaces.get(name)
            self.spaces[name] = VectorSpace(dims=size, metric=known.metric if known else None)

    def schema(self) -> pa.Schema:
        if self._schema is None:
            columns = self.state["columns"]
            info = {"layout": "vexchange-parquet", "format": 1,
                    "vectors": {column: name for name, column in columns.items()},
                    "spaces": {n: {"dims": s.dims, "metric": s.metric} for n, s in self.spaces.items()},
                    "json_columns": ["metadata", "vex"]}
            self._schema = pa.schema(_fields(self.state["dims"], columns),
                                     metadata={SCHEMA_KEY: orjson.dumps(info)})
        return self._schema

    def takes_table(self, table: Any) -> bool:
        """A table of this layout (a Parquet source's page) with this dataset's columns, and
        the same vector in each vector column: its rows are written as they are."""
        if not isinstance(table, pa.Table):
            return False
        shape = Shape(table.schema)
        if not shape.own:
            return False
        if "dims" in self.state:
            dims, columns = self.state["dims"], self.state["columns"]
        else:
            dims, columns = self._layout(_table_sizes(table, shape))
        return (shape.vectors == {column: name for name, column in columns.items()}
                and table.schema.equals(pa.schema(_fields(dims, columns)), check_metadata=False))

    def write_table(self, table: Any) -> None:
        if "dims" not in self.state:
            self._set_layout(*self._layout(_table_sizes(table, Shape(table.schema))))
        table = table.replace_schema_metadata(self.schema().metadata)
        self.held.hold(table, [("", table)] if table.num_rows else [])

    def encode(self, batch: list[MemoryRecord]) -> tuple[list[Reject], dict[str, pa.Table]]:
        self._fix_layout(batch)
        columns = self.state["columns"]
        dims = self.state["dims"]
        rejects: list[Reject] = []
        kept: list[MemoryRecord] = []
        size = 4 * dims.get("", 0)
        for record in batch:
            vectors = record.vectors
            default = vectors.get("")
            if len(vectors) == 1 and default is not None and len(default.data) == size:
                kept.append(record)  # the usual record: one default vector of the right size
                continue
            bad = next((n for n, v in vectors.items() if n not in columns or v.dims != dims[n]), None)
            if bad is not None:
                reason = "unknown_vector" if bad not in columns else "dims_mismatch"
                rejects.append(Reject(reason=reason, id=record.id, namespace=record.namespace,
                                      detail=f"vector {bad!r}: the dataset's columns are fixed by its"
                                             f" first batch ({dict(dims)})"))
            else:
                kept.append(record)
        if not kept:
            return rejects, {}
        arrays: dict[str, pa.Array] = {
            "id": pa.array([r.id for r in kept], pa.string()),
            "namespace": pa.array([r.namespace for r in kept], pa.string()),
            "text": pa.array([r.text for r in kept], pa.string()),
        }
        for name, column in columns.items():
            arrays[column] = fixed_vectors(kept, name, dims[name])
        arrays["metadata"] = pa.array([None if r.metadata is None else json_text(r.metadata)
                                       for r in kept], pa.string())
        arrays["created_at"] = pa.array([r.created_at for r in kept], pa.int64()).cast(TS_MS)
        arrays["updated_at"] = pa.array([r.updated_at for r in kept], pa.int64()).cast(TS_MS)
        arrays["vex"] = pa.array([self._vex(r) for r in kept], pa.string())
        return rejects, {"": pa.Table.from_pydict(arrays, schema=self.schema())}

    def _vex(self, record: MemoryRecord) -> str | None:
        """The vex text; records that differ only in id, text, vectors and metadata share it
        (the usual case), so it is encoded once per kind, not once per record."""
        if record.extra or record.sparse:
            return _vex_for(record)
        score = record.score
        vectors = record.vectors
        if len(vectors) == 1:
            models: Any = next(iter(vectors.items()))
            models = (models[0], models[1].model)
        else:
            models = tuple((n, v.model) for n, v in vectors.items())
        key = (record.id_type, None if score is None else (type(score), repr(score)),
               record.source_store, record.modality, models)
        text = self._vex_cache.get(key, _MISSING)
        if text is _MISSING:
            if len(self._vex_cache) > 4096:
                self._vex_cache.clear()
            text = self._vex_cache[key] = _vex_for(record)
        return text  # type: ignore[return-value]

    def build_group(self, directory: Path, group: str, tables: Iterator[pa.Table]) -> list[str]:
        rows = self.groups.get(group, 0)
        count = max(1, -(-rows // self.store.rows_per_file))
        names = [f"data/{self.store.split}-{i:05d}-of-{count:05d}.parquet" for i in range(count)]
        self.io.makedirs(directory / "data")
        if "dims" not in self.state:
            self._fix_layout([])
        write_parquet_files(self.io, [directory / n for n in names], tables, schema=self.schema(),
                            rows_per_file=self.store.rows_per_file, row_group_rows=self.store.row_group,
                            cdc=self.store.cdc, compression=self.store.compression)
        return names

    def on_staged(self, group: str, table: pa.Table) -> None:
        if not self._live_wanted:
            return
        if self.live is None:
            self.live = LiveParquet(self.io, self.partial / "data", schema=self.schema(),
                                    rows_per_file=self.store.rows_per_file,
                                    row_group_rows=self.store.row_group, cdc=self.store.cdc,
                                    compression=self.store.compression)
        self.live.put(table)

    def built_live(self) -> dict[str, list[str]] | None:
        """The files written as the run went, under their final names; None (build them from
        the staging) when none were, or they do not hold every staged row."""
        live, self.live = self.live, None
        paths = live.close() if live is not None else None
        if paths is None or live is None or live.rows != self.records:
            return None
        names = [f"data/{self.store.split}-{i:05d}-of-{len(paths):05d}.parquet" for i in range(len(paths))]
        for path, name in zip(paths, names, strict=True):
            self.io.rename(path, self.partial / name)
        return {"": names}

    def stop_live(self) -> None:
        live, self.live = self.live, None
        if live is not None:
            live.close()

    def output_groups(self) -> dict[str, list[Path]]:
        """The one data folder, with an empty file when nothing was written (so the output
        is a dataset with its schema)."""
        return {"": super().output_groups().get("", [])}

    def finish_output(self, directory: Path, files: dict[str, list[str]],
                      summary: dict[str, Any]) -> None:
        card = dataset_card(self.schema(), split=self.store.split, rows=self.records, nbytes=self.nbytes,
                            spaces=self.spaces, source=summary.get("source", {}))
        with self.io.open(directory / "README.md", "wb") as handle:
            handle.write(card.encode())


def _fields(dims: dict[str, int], columns: dict[str, str]) -> list[pa.Field]:
    """The layout's columns, with one fixed-size float32 list column per vector name."""
    return [pa.field("id", pa.string(), nullable=False), pa.field("namespace", pa.string()),
            pa.field("text", pa.string()),
            *[pa.field(column, pa.list_(pa.float32(), dims[name])) for name, column in columns.items()],
            pa.field("metadata", pa.string()), pa.field("created_at", TS_MS),
            pa.field("updated_at", TS_MS), pa.field("vex", pa.string())]


def _table_sizes(table: pa.Table, shape: Shape) -> list[tuple[str, int]]:
    """(vector name, dims) of a table's fixed-size vector columns, by column order."""
    return [(shape.vectors[f.name], f.type.list_size) for f in table.schema
            if f.name in shape.vectors and pa.types.is_fixed_size_list(f.type)]


def _feature(field: pa.Field) -> list[str]:
    """One feature of the card's YAML (``datasets``' own spelling of the Arrow type)."""
    kind = field.type
    if pa.types.is_fixed_size_list(kind):
        return [f"  - name: {field.name}", "    list: float32", f"    length: {kind.list_size}"]
    if pa.types.is_timestamp(kind):
        return [f"  - name: {field.name}", f"    dtype: timestamp[{kind.unit}, tz={kind.tz}]"]
    return [f"  - name: {field.name}", f"    dtype: {'string' if pa.types.is_string(kind) else kind}"]


def dataset_card(schema: pa.Schema, *, split: str, rows: int, nbytes: int, spaces: dict[str, VectorSpace],
                 source: dict[str, Any]) -> str:
    """README.md with the YAML header the Hub and ``datasets`` read: the features (the
    vectors as fixed-length float32 lists), the one config and split, and what vexchange
    keeps where."""
    lines = ["---", "dataset_info:", "  features:"]
    for field in schema:
        lines.extend("  " + line for line in _feature(field))
    lines += ["  splits:", f"  - name: {split}", f"    num_bytes: {nbytes}", f"    num_examples: {rows}",
              "configs:", "- config_name: default", "  data_files:", f"  - split: {split}",
              f"    path: data/{split}-*.parquet", "tags:", "- vexchange", "- embeddings", "---", "",
              "# Vector memory exported by vexchange", "",
              f"{rows} records{(' from ' + str(source['connector'])) if source.get('connector') else ''}.",
              "", "| vector | column | dims | metric |", "|---|---|---|---|"]
    for name, space in sorted(spaces.items()):
        column = "vector" if name == "" else f"vector_{name}"
        lines.append(f"| {name or '(default)'} | `{column}` | {space.dims} | {space.metric or 'unknown'} |")
    lines += ["", "`metadata` and `vex` are JSON text (exact: integers beyond 64 bits, `-0.0`);"
              " `vex` holds the id's type, score, vector models, sparse vectors and other fields.",
              "", f"Load it with `datasets.load_dataset(\"parquet\", data_dir=...)` or"
              f" `pyarrow.dataset.dataset(...)`; `{MANIFEST}` lists the files.", ""]
    return "\n".join(lines)


"""``pinecone-bulk``: the Parquet layout Pinecone's bulk import reads from object storage
(``start_import``). docs/formats/pinecone-bulk.md.

URL: ``pinecone-bulk:///abs/dir`` (the import URI is this directory's storage prefix).
Options: ``?rows_per_file=100000``, ``?row_group=10000``, ``?blobs=DIR``.

Layout (peers.md 5.1)::

    DIR/<namespace>/00000.parquet 00001.parquet ...   one folder per Pinecone namespace
    DIR/__default__/...                               records without a namespace
    DIR/vexchange.json                                what wrote it (Pinecone ignores other files)

    id string not null, values list<float32>,
    sparse_values struct<indices: list<uint32>, values: list<float32>> (null: none),
    metadata string (a JSON object)

exactly these four columns (the SDK's validator refuses any other). Records map to Pinecone
as the ``pinecone`` connector maps them (its docs page): the metadata object holds the
filterable keys and ``_vex``, within Pinecone's 40 KB; ids and namespaces Pinecone cannot hold
get a stand-in with the original kept. A record Pinecone would refuse is refused here, before
anything is written: no dense vector, all zeros, named vectors, more than 40 KB of metadata
(unless ``?blobs=DIR`` keeps the payload in a file).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from .._blobs import BlobDir, BlobError
from .._json import dumps_exact
from ..errors import UsageError
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
    sparse_column,
    vector_bytes,
    write_parquet_files,
)
from ._base import Capabilities, Connector, Page, Reject, VectorSpace, Writer
from ._payload import VEX_KEY, PayloadLayout, json_exact, uuid_for
from .parquet import _int_option

__all__ = ["SCHEMA", "PineconeBulkConnector", "store_id", "store_namespace"]

MAX_METADATA_BYTES = 40 * 1024
MAX_NAME = 512
MAX_SPARSE = 2048
DEFAULT_NAMESPACE = "__default__"
SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False), pa.field("values", pa.list_(pa.float32())),
    pa.field("sparse_values", pa.struct([("indices", pa.list_(pa.uint32())),
                                         ("values", pa.list_(pa.float32()))])),
    pa.field("metadata", pa.string())])


def _native(value: Any) -> bool:
    """What Pinecone metadata holds: strings, finite numbers, booleans, non-empty string lists."""
    if isinstance(value, list):
        return bool(value) and all(isinstance(v, str) for v in value)
    if isinstance(value, (bool, str)):
        return True
    if isinstance(value, (int, float)):
        return json_exact(value)
    return False


def _inexact(value: Any) -> bool:
    """Pinecone keeps numbers as 64-bit floats (``3`` comes back ``3.0``): written for
    filtering and kept exactly in ``_vex``, which wins on read."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _key_ok(key: str, value: Any) -> bool:
    return bool(key) and not key.startswith("$")


_LAYOUT = PayloadLayout("pinecone", namespace_key=None, native=_native, inexact=_inexact,
                        vex_as_text=True)


def _holdable(name: str) -> bool:
    return 0 < len(name) <= MAX_NAME and name.isascii() and "\x00" not in name and "/" not in name


def store_namespace(namespace: str | None) -> str:
    """The namespace folder: ``__default__`` for none; a name Pinecone (or a storage prefix)
    cannot hold, ``""`` included, becomes ``vx-<sha256>`` with the original in ``_vex``."""
    if namespace is None:
        return DEFAULT_NAMESPACE
    if _holdable(namespace) and namespace not in (DEFAULT_NAMESPACE, ".", "..") \
            and not namespace.startswith((".", "_")):
        return namespace
    return "vx-" + hashlib.sha256(namespace.encode()).hexdigest()[:48]


def store_id(record_id: str) -> str:
    """The id Pinecone keeps: the id itself, or a UUIDv5 (the original kept in ``_vex``)
    for one that is not 1 to 512 ASCII characters."""
    ok = 0 < len(record_id) <= MAX_NAME and record_id.isascii() and "\x00" not in record_id
    return record_id if ok else uuid_for(record_id)


def _native_sparse(record: MemoryRecord) -> str | None:
    if len(record.sparse) != 1:
        return None
    name, sparse = next(iter(record.sparse.items()))
    return name if 0 < sparse.nnz <= MAX_SPARSE else None


class PineconeBulkConnector(AtFiles, Connector):
    name = "pinecone-bulk"
    url_options = frozenset({"rows_per_file", "row_group", "blobs"}) | OBJECT_OPTIONS
    takes_path = True
    extra = "parquet"
    capabilities = Capabilities(read=True, write=True, null_vectors=False, fixed_dims=True,
                                preferred_batch=10_000, read_ahead=True, read_in_process=True)

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if not spec.path:
            raise UsageError("pinecone-bulk needs a directory: pinecone-bulk:///path/to/dir")
        self.io, self.path = files_for(spec)
        self.rows_per_file = _int_option(spec, "rows_per_file", 100_000)
        self.row_group = _int_option(spec, "row_group", 10_000)
        blobs = spec.params.get("blobs")
        self.blobs = BlobDir(Path(blobs)) if blobs else None

    def describe(self) -> dict[str, Any]:
        return {"connector": self.name, "location": self.io.location(self.path)}

    def pages(self) -> ParquetPages:
        finished_root(self.io, self.path)
        if not self.io.is_dir(self.path):
            raise UsageError(f"{self.io.location(self.path)} is not a directory of Pinecone import files")
        files = [p for p in self.io.files(self.path, ".parquet") if len(p.relative_to(self.path).parts) == 2]
        if not files:
            raise UsageError(f"{self.io.location(self.path)} holds no <namespace>/*.parquet files")
        return ParquetPages(self.path, files, self.io)

    def count(self) -> int | None:
        return self.pages().count()

    def vector_spaces(self) -> dict[str, VectorSpace]:
        manifest = self.path / "vexchange.json"
        if self.io.exists(manifest):
            with self.io.open(manifest, "rb") as handle:
                saved = orjson.loads(handle.read()).get("vector_spaces", {})
            return {n: VectorSpace(dims=s.get("dims"), metric=s.get("metric")) for n, s in saved.items()}
        return {}

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        pages = self.pages()
        for index, _first, table, cursor in pages.batches(batch_size, after):
            folder = pages.paths[index].relative_to(self.path).parts[0]
            yield Page(self._records(table, folder) if table.num_columns else [], cursor)

    def _records(self, table: pa.Table, folder: str) -> list[MemoryRecord | Reject]:
        names = table.column_names
        ids = table.column("id").to_pylist()
        dense = vector_bytes(table.column("values")) if "values" in names else [None] * len(ids)
        sparse = table.column("sparse_values").to_pylist() if "sparse_values" in names else [None] * len(ids)
        metas = table.column("metadata").to_pylist() if "metadata" in names else [None] * len(ids)
        namespace = None if folder == DEFAULT_NAMESPACE else folder
        out: list[MemoryRecord | Reject] = []
        for i, vid in enumerate(ids):
            try:
                meta = metas[i]
                payload = loads_cell(meta) if meta is not None else {}
                if not isinstance(payload, dict):
                    raise ValueError("metadata is not a JSON object")
                vex = loads_cell(payload.pop(VEX_KEY)) if isinstance(payload.get(VEX_KEY), str) else {}
                if "blob" in vex:
                    if self.blobs is None:
                        raise BlobError(f"its payload is in blob {vex['blob']}; give ?blobs=DIR to read it")
                    payload = loads_cell(self.blobs.get(vex["blob"]))
                    vex = loads_cell(payload.pop(VEX_KEY))
                payload[VEX_KEY] = vex or None
                native: dict[str, tuple[bytes, bytes]] = {}
                sp = sparse[i]
                if sp is not None and sp.get("indices"):
                    native[vex.get("sparse_name", "")] = (
                        np.asarray(sp["indices"], dtype="<u4").tobytes(),
                        np.asarray(sp["values"], dtype="<f4").tobytes())
                vectors = {"": dense[i]} if dense[i] is not None else {}
                out.append(_LAYOUT.unpack(payload, store_id=str(vid), vectors=vectors,  # type: ignore[arg-type]
                                          sparse=native, namespace=namespace))
            except (BlobError, ValueError, KeyError, TypeError) as err:
                out.append(Reject(reason="bad_metadata", detail=f"record {vid!r}: {err}", id=str(vid),
                                  namespace=namespace))
        return out

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        return PineconeBulkWriter(self, resume=resume, dry_run=dry_run, spaces=spaces)


def _reject(record: MemoryRecord, reason: str, detail: str) -> Reject:
    return Reject(reason=reason, detail=detail, id=record.id, namespace=record.namespace)


class PineconeBulkWriter(StagedWriter):
    def __init__(self, store: PineconeBulkConnector, *, resume: dict[str, Any] | None, dry_run: bool,
                 spaces: dict[str, VectorSpace] | None) -> None:
        super().__init__(store.path, resume=resume, dry_run=dry_run, spaces=spaces,
                         connector=store.name, io=store.io)
        self.store = store

    def target_dims(self) -> dict[str, int]:
        dims = self.state.get("dims")
        return {"": int(dims)} if dims else {}

    def _metadata(self, record: MemoryRecord, key: str) -> tuple[str | None, str | None]:
        """The metadata JSON text (None, and the reason, when it does not fit)."""
        sparse_name = _native_sparse(record)
        native = set() if sparse_name is None else {sparse_name}
        metadata = _LAYOUT.pack(record, store_id=key, native_sparse=native, accept=_key_ok,
                                store_namespace=None if record.namespace is None else
                                store_namespace(record.namespace),
                                extra_vex={"sparse_name": sparse_name} if sparse_name else None)
        text = json_text(metadata)
        if len(text.encode()) <= MAX_METADATA_BYTES:
            return text, None
        if self.store.blobs is None:
            return None, (f"its metadata (text included) is {len(text.encode())} bytes; Pinecone"
                          f" holds {MAX_METADATA_BYTES} per record. Add ?blobs=DIR to keep such"
                          " records whole, with their payload in DIR")
        ref = self.store.blobs.put(text.encode())
        pointer = dumps_exact({"v": 1, "blob": ref})
        slim = {k: v for k, v in metadata.items() if k not in (VEX_KEY, _LAYOUT.text_key)}
        slim[VEX_KEY] = pointer
        text = json_text(slim)
        return (text if len(text.encode()) <= MAX_METADATA_BYTES else json_text({VEX_KEY: pointer})), None

    def encode(self, batch: list[MemoryRecord]) -> tuple[list[Reject], dict[str, pa.Table]]:
        rejects: list[Reject] = []
        groups: dict[str, list[tuple[MemoryRecord, str, str]]] = {}
        for record in batch:
            dense = record.vectors.get("")
            if dense is None or not np.any(dense.array()):
                rejects.append(_reject(record, "zero_vector", "Pinecone refuses a dense vector whose"
                                                              " values are all zero"))
                continue
            dims = self.state.setdefault("dims", dense.dims)
            if dense.dims != dims:
                rejects.append(_reject(record, "dims_mismatch", f"a vector of {dense.dims} values; the"
                                                                f" index's dimension is {dims}"))
                continue
            key = store_id(record.id)
            metadata, why = self._metadata(record, key)
            if metadata is None:
                rejects.append(_reject(record, "metadata_too_large", why or ""))
                continue
            groups.setdefault(store_namespace(record.namespace), []).append((record, key, metadata))
        tables = {}
        for folder, rows in groups.items():
            records = [r for r, _, _ in rows]
            pairs: list[tuple[bytes, bytes] | None] = []
            for r in records:
                name = _native_sparse(r)
                pairs.append(None if name is None else (r.sparse[name].indices, r.sparse[name].values))
            tables[folder] = pa.Table.from_arrays(
                [pa.array([k for _, k, _ in rows], pa.string()), list_vectors(records, ""),
                 sparse_column(pairs), pa.array([m for _, _, m in rows], pa.string())], schema=SCHEMA)
        return rejects, tables

    def build_group(self, directory: Path, group: str, tables: Iterator[pa.Table]) -> list[str]:
        rows = self.groups.get(group, 0)
        count = max(1, -(-rows // self.store.rows_per_file))
        names = [f"{group}/{i:05d}.parquet" for i in range(count)]
        self.io.makedirs(directory / group)
        write_parquet_files(self.io, [directory / n for n in names], tables, schema=SCHEMA,
                            rows_per_file=self.store.rows_per_file, row_group_rows=self.store.row_group,
                            cdc=False)
        return names

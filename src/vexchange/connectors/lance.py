"""``lance``: a Lance dataset directory (pylance) as a file format. docs/formats/lance.md.

URL form: ``lance:///abs/memory.lance`` or a bare path ending in ``.lance``; in object storage
``lance:s3://bucket/prefix/memory.lance`` (``?endpoint_url=``, ``?region=``; credentials from the
secrets or the AWS_* variables, as for every object-storage location).

This is the dataset itself, not a LanceDB database holding tables (that is ``lancedb``); a
dataset written here is also a LanceDB table when it sits in a LanceDB directory as
``<name>.lance``. The columns are the ones the ``lancedb`` connector writes, so either reads
what the other wrote::

    id string not null, namespace string, text string,
    vector fixed_size_list<float32>[N]          the default vector
    "vector_<name>" fixed_size_list<float32>[M] one per named vector
    metadata string (JSON), vex string (JSON), created_at timestamp[ms, UTC], updated_at ...
    schema metadata "vexchange": which column holds which vector, and each vector's metric

A run builds the dataset in ``<path>.partial`` (one append, one Lance version, per batch) and
swaps it into place when it finishes, so a reader never sees a dataset half written, and a
second run replaces the dataset like any file target. In object storage there is no rename:
each batch is written as Lance fragments (data files no manifest names yet, so no reader sees
them) and ``finish`` makes one commit, an ``Overwrite`` naming them all: the new version
appears whole, or (a run cut short) not at all. Any other Lance dataset can be read:
an ``id`` column (else the row position), every fixed-size float list column as a vector,
``text``/``namespace`` when present, other columns as metadata.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import base64

import lance
import orjson
import pyarrow as pa

from .._objectstore import OPTIONS as OBJECT_OPTIONS
from .._objectstore import is_url, lance_storage
from ..errors import UsageError
from ..record import MemoryRecord
from ..spec import StoreSpec
from ._base import AtPath, Capabilities, Connector, Page, Reject, VectorSpace, Writer
from ._lance_table import SCHEMA_KEY, Shape, fields, misfit, vector_columns
from ._lance_table import table as table_of
from ._payload import PayloadLayout, json_exact
from ._store import translated
from .vdf import DirectoryOutput, vector_table_spaces
from .vmig import LastBatch

__all__ = ["LanceConnector"]

_LAYOUT = PayloadLayout("lance", text_key=None, namespace_key=None, native=json_exact, vex_as_text=True)


def _shape(schema: pa.Schema) -> Shape:
    return Shape(schema, _LAYOUT)


def _is_dataset(path: Path) -> bool:
    """A directory Lance wrote: it has a ``_versions`` directory (what a rerun may replace)."""
    return (path / "_versions").is_dir()


class LanceConnector(AtPath, Connector):
    name = "lance"
    url_options = OBJECT_OPTIONS
    suffixes = (".lance",)
    takes_path = True
    extra = "lance"
    capabilities = Capabilities(read=True, write=True, named_vectors=True, fixed_dims=True,
                                preferred_batch=10_000, read_ahead=True)
    """Large batches: each batch is one Lance version (a data file and a manifest)."""

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if not spec.path:
            raise UsageError("lance needs a dataset directory: lance:///path/memory.lance")
        self.url: str | None = None
        self.storage: dict[str, str] = {}
        """pylance's ``storage_options`` for a dataset in S3 (they may hold secrets: never shown)."""
        self.where: Any = None
        if is_url(spec.path):
            self.where, self.storage = lance_storage(spec.path, secret=spec.secret, params=spec.params)
            self.url = self.where.url(self.where.path)
            self.path = Path(self.where.path)
        else:
            self.path = Path(spec.path)

    def describe(self) -> dict[str, Any]:
        return {"connector": "lance", "location": self.url or str(self.path.resolve())}

    def run_files_base(self) -> Path | None:
        """Beside a local dataset; in the working directory for one in object storage."""
        return None if self.url else self.path

    def uri(self) -> str:
        """What pylance opens: the local path, or the ``s3://`` URL."""
        return self.url or str(self.path)

    def exists(self) -> bool:
        """Whether a Lance dataset is there (it has a ``_versions`` directory)."""
        if self.url is None:
            return _is_dataset(self.path)
        import pyarrow.fs as pafs

        versions = f"{self.where.path}/_versions"
        try:
            infos = self.where.fs.get_file_info(pafs.FileSelector(versions, allow_not_found=True))
        except OSError as err:
            raise UsageError(f"cannot reach {self.url}: {err}") from None
        return bool(infos)

    def clear_uncommitted(self) -> None:
        """Before a fresh run where there is no dataset: drop the fragments a run cut short
        left (data files no version names, so never visible); refuse anything else there."""
        import pyarrow.fs as pafs

        infos = self.where.fs.get_file_info(pafs.FileSelector(self.where.path, recursive=True,
                                                              allow_not_found=True))
        data = f"{self.where.path}/data"
        files = [i.path for i in infos if i.type == pafs.FileType.File]
        if any(not (p.startswith(data + "/") and p.endswith(".lance")) for p in files):
            raise UsageError(f"{self.url} holds objects but no Lance dataset; a run replaces a dataset,"
                             " never what it did not write", hint="choose a new location")
        if files:
            self.where.fs.delete_dir(data)

    def holds_anything(self) -> bool:
        """Whether any object is under the dataset's prefix (a local path: whether it exists)."""
        if self.url is None:
            return self.path.exists()
        import pyarrow.fs as pafs

        try:
            infos = self.where.fs.get_file_info(pafs.FileSelector(self.where.path, recursive=True,
                                                                  allow_not_found=True))
        except OSError as err:
            raise UsageError(f"cannot reach {self.url}: {err}") from None
        return bool(infos)

    def _translated(self, operation: str) -> Any:
        return translated("lance", operation, transient=(TimeoutError,),
                          permanent=(OSError, RuntimeError, ValueError, pa.ArrowException))

    def dataset(self, version: int | None = None) -> Any:
        if not self.holds_anything():
            raise UsageError(f"there is no Lance dataset at {self.url or self.path}")
        if not self.exists():
            raise UsageError(f"{self.url or self.path} is not a Lance dataset (it has no _versions"
                             " directory)")
        with self._translated("open"):
            return lance.dataset(self.uri(), version=version, storage_options=self.storage or None)

    def count(self) -> int | None:
        ds = self.dataset()
        with self._translated("count"):
            return int(ds.count_rows())

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return _shape(self.dataset().schema).spaces()

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        """Pages in row order. The cursor is ``<version>:<rows read>``: a resumed read opens
        the same version, so rows appended since cannot shift what it continues with."""
        version, offset = (int(part) for part in after.split(":")) if after else (None, 0)
        ds = self.dataset(version)
        version = ds.version
        shape = _shape(ds.schema)
        total = ds.count_rows()
        with self._translated("read"):
            batches = ds.scanner(batch_size=batch_size, offset=offset or None, scan_in_order=True,
                                 strict_batch_size=True).to_batches()
            for batch in batches:
                items = _records(shape, pa.Table.from_batches([batch]), offset)
                offset += batch.num_rows
                yield Page(items, f"{version}:{offset}" if offset < total else None)
        if offset == 0 or offset < total:
            yield Page([], None)

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        if self.url is not None:
            return LanceObjectWriter(self, resume=resume, dry_run=dry_run, spaces=spaces or {})
        return LanceWriter(self, resume=resume, dry_run=dry_run, spaces=spaces or {})


def _records(shape: Shape, data: pa.Table, position: int) -> list[MemoryRecord | Reject]:
    out: list[MemoryRecord | Reject] = []
    for i, (row, vectors) in enumerate(shape.rows(data)):
        try:
            out.append(shape.unpack(row, vectors, position + i))
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as err:
            out.append(Reject(reason="bad_row", detail=str(err), id=str(row.get("id", position + i)),
                              location=f"row {position + i}"))
    return out


class LanceWriter(Writer):
    """Appends each batch to ``<path>.partial`` as one Lance version; ``finish`` swaps it in."""

    def __init__(self, store: LanceConnector, *, resume: dict[str, Any] | None, dry_run: bool,
                 spaces: dict[str, VectorSpace]) -> None:
        self.store, self.spaces, self.dry_run = store, spaces, dry_run
        self.shape: Shape | None = None
        self.version: int | None = None
        self.out = None if dry_run else DirectoryOutput(store.path, resume=resume, is_ours=_is_dataset)
        self.held: LastBatch[MemoryRecord] = LastBatch(self._append)
        if self.out is not None and resume is not None and resume.get("version") is not None:
            self._restore(int(resume["version"]))

    def _restore(self, version: int) -> None:
        """Back to the version the checkpoint counted: a batch appended after it is dropped
        (the engine writes it again)."""
        assert self.out is not None
        with self.store._translated("resume"):
            ds = lance.dataset(str(self.out.work))
            if ds.version != version:
                lance.dataset(str(self.out.work), version=version).restore()  # type: ignore[no-untyped-call]
                ds = lance.dataset(str(self.out.work))
        self.version, self.shape = ds.version, _shape(ds.schema)

    def target_dims(self) -> dict[str, int]:
        shape = self.shape
        return {shape.names[c]: d for c, d in shape.dims.items()} if shape else {}

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return self.shape.spaces() if self.shape else dict(self.spaces)

    def write(self, batch: list[MemoryRecord]) -> list[Reject]:
        if self.shape is None:
            self.shape = _shape(_schema(self.spaces, batch))
        columns = {n: c for c, n in self.shape.names.items()}
        rejects: list[Reject] = []
        kept: list[MemoryRecord] = []
        for record in batch:
            problem = misfit(record, columns, self.shape.dims, "dataset")
            if problem:
                rejects.append(Reject(reason=problem[0], detail=problem[1], id=record.id,
                                      namespace=record.namespace))
            else:
                kept.append(record)
        self.held.hold(batch, kept)
        return rejects

    def _append(self, records: list[MemoryRecord]) -> None:
        if self.out is None or self.shape is None:
            return
        table = table_of(records, self.shape)
        with self.store._translated("write"):
            ds = lance.write_dataset(table, str(self.out.work),
                                     mode="create" if self.version is None else "append",
                                     max_rows_per_group=4096)
        self.version = ds.version

    def checkpoint(self) -> dict[str, Any]:
        self.held.release()
        return {"version": self.version}

    def finish(self, summary: dict[str, Any]) -> None:
        self.held.release()
        if self.out is None:
            return
        if self.version is None:  # an empty run still leaves a dataset, with its columns
            shape = self.shape or _shape(_schema(self.spaces, []))
            self.shape = shape
            self._append([])
        self.out.commit()

    def abort(self) -> None:
        """What was appended stays in ``<path>.partial`` for ``--resume``."""


class LanceObjectWriter(LanceWriter):
    """A dataset in object storage: each batch becomes fragments (data files under the
    dataset's ``data/`` that no manifest names, so no reader sees them); ``finish`` commits
    them all as one ``Overwrite``, the one version a reader can see. The checkpoint keeps the
    fragments written so far and the schema, so ``--resume`` commits what the run wrote."""

    def __init__(self, store: LanceConnector, *, resume: dict[str, Any] | None, dry_run: bool,
                 spaces: dict[str, VectorSpace]) -> None:
        self.store, self.spaces, self.dry_run = store, spaces, dry_run
        self.shape = None
        self.version = None
        self.out = None
        self.held = LastBatch(self._append)
        state = resume or {}
        self.fragments: list[str] = list(state.get("fragments", []))
        if state.get("schema"):
            schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(state["schema"])))
            self.shape = _shape(schema)
        if not dry_run and resume is None and not store.exists():
            store.clear_uncommitted()


    def _append(self, records: list[MemoryRecord]) -> None:
        if self.dry_run or self.shape is None:
            return
        table = table_of(records, self.shape)
        with self.store._translated("write"):
            written = lance.fragment.write_fragments(table, self.store.uri(), schema=self.shape.schema,
                                                     max_rows_per_group=4096,
                                                     storage_options=self.store.storage or None)
        self.fragments.extend(orjson.dumps(f.to_json()).decode() for f in written)

    def checkpoint(self) -> dict[str, Any]:
        self.held.release()
        schema = base64.b64encode(self.shape.schema.serialize().to_pybytes()).decode() if self.shape else None
        return {"fragments": list(self.fragments), "schema": schema}

    def finish(self, summary: dict[str, Any]) -> None:
        """One commit: the new version names every fragment, or there is none."""
        from lance.fragment import FragmentMetadata

        self.held.release()
        if self.dry_run:
            return
        shape = self.shape or _shape(_schema(self.spaces, []))
        self.shape = shape
        fragments = [FragmentMetadata.from_json(text) for text in self.fragments]
        store = self.store
        with store._translated("commit"):
            read_version = lance.dataset(store.uri(), storage_options=store.storage or None).version \
                if store.exists() else None
            overwrite = lance.LanceOperation.Overwrite(shape.schema, fragments)
            ds = lance.LanceDataset.commit(store.uri(), overwrite, read_version=read_version,
                                           storage_options=store.storage or None)
        self.version = ds.version

    def abort(self) -> None:
        """The fragments stay unreferenced (invisible) for ``--resume`` to commit."""


def _schema(spaces: dict[str, VectorSpace], batch: list[MemoryRecord]) -> pa.Schema:
    """The dataset's columns: a vector column per name the source declares or the first batch
    holds, sized as declared (else as first seen)."""
    wanted = vector_table_spaces(spaces, batch)
    columns = vector_columns(wanted)
    meta = orjson.dumps({"vectors": columns, "format": 1,
                         "metrics": {name: s.metric or "cosine" for name, s in wanted.items()}})
    return pa.schema(fields(columns, {n: s.dims or 1 for n, s in wanted.items()}),
                     metadata={SCHEMA_KEY: meta})

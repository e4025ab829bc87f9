"""The VectorPack: a directory bundle of an agent's memory, hashed file by file.

    manifest.yaml            format, schema version, embeddings, counts, every file's SHA-256
    tables/memory.db         the cartridge (canonical substrate)
    tables/records.parquet   the same records for pandas, DuckDB, Hugging Face (when pyarrow is there)
    blobs/sha256/ab/cdef...  texts over 64 KiB, content-addressed
    receipts/build.json      how the pack was built: schema hash, tool versions, counts
    indexes/                 derived, rebuildable indexes (``vex pack reindex``: a flat index per vector)

The same records in any order give a byte-identical pack, and re-packing a pack gives the same
bytes. Nothing in a pack is trusted on read: ``verify_pack`` checks every path, every hash,
that no file is unlisted and no symlink is present, and the cartridge's own integrity; every
opener (``open_pack``) refuses a pack that fails any of these but the cartridge's integrity
check, the hashes of the files it has not read yet being checked when it reads them.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .._version import __version__
from .._blobs import BlobDir, BlobError
from ..errors import DecodeError, IntegrityError, MissingDependencyError, UsageError
from ..record import MemoryRecord
from .._atomic import RESUME_HINT, describe_os_error
from .cartridge import SCHEMA, SCHEMA_VERSION, Cartridge, CartridgeBuilder, check_finished, resume_state
from .manifest import dump_manifest, load_manifest

__all__ = ["PACK_FORMAT", "PackWriter", "ann_index", "flat_index", "open_pack", "pack_problems",
           "refuse_unsafe", "reindex", "verify_pack"]

PACK_FORMAT = "vectorpack"
PACK_VERSION = 1
TEXT_BLOB_BYTES = 64 * 1024
"""Texts longer than this (UTF-8 bytes) live in blobs/; the cartridge keeps the reference."""
CARTRIDGE = "tables/memory.db"
TOP_DIRS = ("tables", "blobs", "receipts", "indexes")
_CHUNK = 1 << 20


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class PackWriter:
    """Builds a pack in ``<dir>.partial`` and renames it into place when finished.

    ``resume``: the builder state a checkpoint kept (``True``: continue without one). Killed
    after the pack was renamed in, before the checkpoint was removed, a resumed run takes the
    pack back to ``<dir>.partial`` (when its cartridge is this run's, ``check_finished``)
    so nothing looks complete while the run continues. Only directories vexchange made are
    ever deleted: a pack it replaces, its own ``.partial`` work directory."""

    def __init__(self, directory: Path, *, resume: bool | dict[str, Any] | None) -> None:
        state = resume_state(resume)
        self.final = directory
        self.work = directory.with_name(directory.name + ".partial")
        if directory.exists():
            _refuse_to_replace(directory)
        if self.work.exists() and not self.work.is_dir():
            raise UsageError(f"{self.work} exists and is not a pack being built; refusing to"
                             " replace it", hint="move it away or choose a new directory for the pack")
        try:
            self._prepare(state)
        except OSError as err:
            raise UsageError(f"cannot write {self.work}: {describe_os_error(err)}",
                             hint="choose another directory, free some space or fix the"
                                  " permissions") from None
        self.blobs = BlobDir(self.work / "blobs")
        self.builder = CartridgeBuilder(self.work / CARTRIDGE, resume=resume)
        self.dims: dict[str, int] = {}
        """A pack is built new each time: it fixes no vector size beforehand."""

    def _prepare(self, state: dict[str, Any] | None) -> None:
        """The work directory: new (an earlier one removed when it is a pack being built), the
        one a resumed run continues, or the finished pack taken back."""
        if state is None and self.work.exists():
            if not _being_built(self.work):
                raise UsageError(f"{self.work} exists and is not a pack being built; refusing to"
                                 " delete it", hint="move it away or choose a new directory for the pack")
            shutil.rmtree(self.work)
        elif state is not None and not self.work.exists():
            if not self.final.is_dir():
                raise UsageError(f"cannot resume: {self.work} is missing, so the records the"
                                 " checkpoint counts as written are not there", hint=RESUME_HINT)
            check_finished(self.final / CARTRIDGE, state)
            os.replace(self.final, self.work)  # the run goes on: nothing looks complete
        (self.work / "tables").mkdir(parents=True, exist_ok=True)

    def state(self) -> dict[str, Any]:
        return self.builder.state()

    def write(self, records: Sequence[MemoryRecord]) -> list[tuple[MemoryRecord, str]]:
        """Stage a batch (long texts to blobs); the records that break the contract, with why."""
        refs: dict[int, str] = {}
        for i, record in enumerate(records):
            if record.text is not None and len(record.text) * 4 > TEXT_BLOB_BYTES:
                data = record.text.encode("utf-8", "surrogatepass")
                if len(data) > TEXT_BLOB_BYTES:
                    refs[i] = self.blobs.put(data)
        return self.builder.write(records, refs)

    def finish(self, metrics: dict[str, str | None]) -> None:
        info = {"created_by": f"vexchange {__version__}"}
        self.builder.finish(metrics, info)
        cartridge = Cartridge(self.work / CARTRIDGE)
        try:
            parquet = _write_parquet(cartridge, self.work / "tables" / "records.parquet")
            summary = _summary(cartridge)
            inputs = _inputs(cartridge)
        finally:
            cartridge.close()
        tools = {"vexchange": __version__, "sqlite": sqlite3.sqlite_version}
        if parquet:
            tools["pyarrow"] = parquet
        build = {"format": PACK_FORMAT, "pack_version": PACK_VERSION, "inputs": inputs,
                 "cartridge_schema_version": SCHEMA_VERSION,
                 "cartridge_schema_sha256": hashlib.sha256(SCHEMA.encode()).hexdigest(),
                 "tools": tools, **summary}
        (self.work / "receipts").mkdir(exist_ok=True)
        (self.work / "receipts" / "build.json").write_bytes(
            json.dumps(build, indent=2, sort_keys=True).encode() + b"\n")
        files = {}
        for path in sorted(p for p in self.work.rglob("*") if p.is_file()):
            rel = path.relative_to(self.work).as_posix()
            if rel == "manifest.yaml":
                continue  # the manifest of a pack a resumed run took back: rewritten below
            files[rel] = {"sha256": _sha256(path), "size": path.stat().st_size}
        manifest = {"format": PACK_FORMAT, "pack_version": PACK_VERSION, "created_by": info["created_by"],
                    **summary, "files": files}
        (self.work / "manifest.yaml").write_bytes(dump_manifest(manifest))
        self._swap_in()

    def _swap_in(self) -> None:
        """Rename the work directory into place; a pack there is first moved to a unique name
        of vexchange's own and then deleted, so a directory vexchange did not create (such as
        ``<dir>.old``) is never touched. Killed between the renames, the old pack waits under
        that name and is deleted when the next build of the pack finishes."""
        if self.final.exists():
            _refuse_to_replace(self.final)
            os.replace(self.final, self.final.with_name(
                f".{self.final.name}.{uuid.uuid4().hex}.replaced"))
        os.replace(self.work, self.final)
        for stale in self.final.parent.glob(f".{glob.escape(self.final.name)}.*.replaced"):
            if _REPLACED.fullmatch(stale.name[len(self.final.name) + 2:]) and stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)

    def abort(self) -> None:
        self.builder.abort()


_REPLACED = re.compile(r"[0-9a-f]{32}\.replaced")


def _being_built(work: Path) -> bool:
    """Whether ``<dir>.partial`` is vexchange's own work directory: a pack, or a pack being
    built (only the pack's folders, and its cartridge or the cartridge's staging file)."""
    try:
        _manifest(work)
        return True
    except (DecodeError, UsageError):
        pass
    names = {p.name for p in work.iterdir()}
    staged = any((work / CARTRIDGE).with_name(name).is_file()
                 for name in ("memory.db", "memory.db.partial"))
    return staged and names <= {*TOP_DIRS, "manifest.yaml"}


def _refuse_to_replace(directory: Path) -> None:
    """A finished pack is replaced by a new one; anything else is never deleted."""
    try:
        _manifest(directory)
    except (DecodeError, UsageError):
        raise UsageError(f"{directory} exists and is not a VectorPack; refusing to replace it",
                         hint="choose a new directory for the pack") from None


def _inputs(cartridge: Cartridge) -> dict[str, Any]:
    """What went in, without where it came from (so the pack stays byte-identical): the
    SHA-256 over every record's key and content id, in canonical order."""
    digest = hashlib.sha256()
    for nskey, rid, content in cartridge.db.execute("SELECT nskey, id, content_id FROM records ORDER BY rid"):
        digest.update(f"{nskey}\x1f{rid}\x1f{content}\n".encode("utf-8", "surrogatepass"))
    return {"records": cartridge.count(), "keys_and_content_sha256": digest.hexdigest()}


def _summary(cartridge: Cartridge) -> dict[str, Any]:
    namespaces = {("" if ns is None else ns): {"records": n, "no_namespace": ns is None}
                  for ns, n in cartridge.db.execute(
                      "SELECT namespace, count(*) FROM records GROUP BY nskey ORDER BY nskey")}
    return {"records": cartridge.count(),
            "embeddings": {name or "(default)": {k: v for k, v in e.items() if v is not None}
                           for name, e in cartridge.embeddings().items()},
            "namespaces": {name or "(none)": v["records"] for name, v in namespaces.items()}}


def _write_parquet(cartridge: Cartridge, path: Path) -> str | None:
    """The records as Parquet, in canonical order, one list<float32> column per vector name;
    skipped (and noted in the manifest by its absence) when pyarrow is not installed."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    names = sorted(cartridge.embeddings())
    columns = ["namespace", "id", "id_type", "content_id", "text", "text_ref", "modality",
               "created_at", "updated_at", "source_store", "payload"]
    schema = pa.schema([("namespace", pa.string()), ("id", pa.string()), ("id_type", pa.string()),
                        ("content_id", pa.string()), ("text", pa.string()), ("text_ref", pa.string()),
                        ("modality", pa.string()), ("created_at", pa.int64()), ("updated_at", pa.int64()),
                        ("source_store", pa.string()), ("payload", pa.string())]
                       + [(_vector_column(n), pa.list_(pa.float32())) for n in names])
    vector_columns = [_vector_column(n) for n in names]
    # float32 vectors and hex hashes barely compress, and min/max statistics of vector elements
    # help no query: both cost time for nothing. zstd is kept for the text and JSON columns,
    # dictionaries for the columns that repeat.
    compression = {c: "zstd" for c in columns} | {c: "none" for c in [*vector_columns, "content_id"]}
    with pq.ParquetWriter(path, schema, compression=compression, write_statistics=columns,
                          use_dictionary=["namespace", "id_type", "modality", "source_store"]) as writer:
        last = 0
        while True:
            rows = cartridge.db.execute(
                "SELECT rid, " + ", ".join(columns) + " FROM records WHERE rid > ? ORDER BY rid LIMIT 20000",
                (last,)).fetchall()
            if not rows:
                break
            transposed = list(zip(*rows, strict=False))
            rids = np.asarray(transposed[0], dtype=np.int64)
            arrays = [pa.array(transposed[i + 1], type=schema.field(c).type) for i, c in enumerate(columns)]
            for name in names:
                arrays.append(_vector_array(pa, cartridge, name, rids))
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            last = int(rids[-1])
    return str(pa.__version__)


def _vector_column(name: str) -> str:
    return "vector" if name == "" else f"vector__{name}"


def _vector_array(pa: Any, cartridge: Cartridge, name: str, rids: np.ndarray) -> Any:
    """One vector column for a block of records: a list<float32> per record, null where the
    record has no vector of that name (built from one query, without a Python loop per row)."""
    found = cartridge.db.execute("SELECT rid, dims, vector FROM vectors WHERE name = ? AND rid"
                                 " BETWEEN ? AND ? ORDER BY rid",
                                 (name, int(rids[0]), int(rids[-1]))).fetchall()
    has = np.isin(rids, np.fromiter((r for r, _, _ in found), dtype=np.int64, count=len(found)))
    dims = found[0][1] if found else 0
    values = np.frombuffer(b"".join(v for _, _, v in found), dtype="<f4")
    offsets = np.concatenate([[0], np.cumsum(has.astype(np.int32) * dims)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=pa.float32()),
                                    mask=pa.array(~has))


# ----------------------------------------------------------------------------------- reading


def _safe_relative(rel: str) -> bool:
    path = PurePosixPath(rel)
    return (not path.is_absolute() and ".." not in path.parts and "" not in rel.split("/")
            and "\\" not in rel and path.parts[0] in TOP_DIRS and len(path.parts) >= 2)


CHECKED_WHEN_READ = ("blobs/", "indexes/")
"""Files whose hash opening a pack leaves to the moment they are read: a text blob when its
record is read, an index when a search loads it (each is hashed then)."""
NOT_READ = ("tables/records.parquet",)
"""Files no vexchange reader reads (the Parquet copy is for other tools): opening a pack checks
that they are regular, listed files of the listed size; ``verify_pack`` hashes them too."""


def verify_pack(directory: str | Path, *, indexes: bool = True) -> dict[str, Any]:
    """Every check a pack must pass; ``ok`` is False with each problem named when one fails.
    ``indexes=False`` leaves the derived indexes out (``reindex`` replaces them anyway, so a
    damaged index must not stop its own repair)."""
    root = Path(directory)
    manifest = _manifest(root)
    problems = pack_problems(root, manifest, indexes=indexes)
    if "pack_version" not in manifest:
        problems.append("manifest.yaml: no pack_version")
    if not problems:
        problems += _check_cartridge(root, manifest["files"])
    if not problems:
        problems += _check_figures(root, manifest, indexes=indexes)
    return {"pack": str(root), "ok": not problems, "files": len(manifest["files"]),
            "records": manifest.get("records"), "problems": problems}


def pack_problems(root: Path, manifest: dict[str, Any], *, indexes: bool = True,
                  unhashed: tuple[str, ...] = ()) -> list[str]:
    """What makes a pack unsafe to read or not what was built, each named: a manifest path
    outside the layout (absolute, ``..``, an unknown folder), a symlink or a file that is not
    a regular one anywhere in the directory, a file the manifest does not list, and for every
    listed file one missing, of another size or (unless its path starts with one of
    ``unhashed``) whose SHA-256 differs. ``verify_pack`` and every opener use it."""
    problems: list[str] = []
    files = manifest["files"]
    for rel, entry in sorted(files.items()):
        if not indexes and rel.startswith("indexes/") and _safe_relative(rel):
            continue
        if not _safe_relative(rel):
            problems.append(f"{rel}: path outside the pack layout (absolute, '..' or unknown folder)")
            continue
        problem = _check_file(root, rel, entry, hashed=not rel.startswith(unhashed))
        if problem:
            problems.append(problem)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():
                problems.append(f"{rel}: a symlink (packs hold only regular files)")
            elif (not indexes and rel.startswith("indexes/")) or full.is_dir():
                continue
            elif not full.is_file():
                problems.append(f"{rel}: not a regular file (packs hold only regular files)")
            elif rel != "manifest.yaml" and rel not in files:
                problems.append(f"{rel}: a file the manifest does not list")
    return problems


def _manifest(root: Path) -> dict[str, Any]:
    if not root.is_dir():
        raise UsageError(f"no VectorPack directory at {root}")
    path = root / "manifest.yaml"
    if path.is_symlink() or not path.is_file():
        raise DecodeError("the pack has no manifest.yaml (or it is not a regular file)", location=str(root))
    manifest = load_manifest(path.read_bytes(), str(path))
    if manifest.get("format") != PACK_FORMAT:
        raise DecodeError(f"not a VectorPack manifest (format {manifest.get('format')!r})",
                          location=str(path))
    if int(manifest.get("pack_version", 0)) > PACK_VERSION:
        raise DecodeError(f"pack version {manifest['pack_version']} is newer than this vexchange reads",
                          location=str(path), hint="upgrade vexchange")
    if not isinstance(manifest.get("files"), dict) or CARTRIDGE not in manifest["files"]:
        raise DecodeError(f"the manifest lists no {CARTRIDGE}", location=str(path))
    return manifest


def _check_file(root: Path, rel: str, entry: Any, *, hashed: bool = True) -> str | None:
    """The problem with one listed file, or None; ``hashed=False`` checks all but its hash."""
    full = root.joinpath(*rel.split("/"))
    parent = root
    for part in rel.split("/")[:-1]:
        parent = parent / part
        if parent.is_symlink():
            return f"{rel}: reached through a symlink"
    if full.is_symlink():
        return f"{rel}: a symlink (packs hold only regular files)"
    if not full.is_file():
        return f"{rel}: missing"
    if not isinstance(entry, dict) or "sha256" not in entry or "size" not in entry:
        return f"{rel}: the manifest entry has no sha256 and size"
    if full.stat().st_size != entry["size"]:
        return f"{rel}: {full.stat().st_size} bytes, the manifest says {entry['size']}"
    if hashed and _sha256(full) != entry["sha256"]:
        return f"{rel}: content does not match its SHA-256 in the manifest"
    return None


def _check_figures(root: Path, manifest: dict[str, Any], *, indexes: bool = True) -> list[str]:
    """The manifest's own figures against the cartridge: records, namespaces, embeddings (and
    the cartridge's own record count), each index's rows, dims and file sizes; then every
    record's content id. A pack whose files all hash right can still describe itself wrongly."""
    cartridge, text_of, _ = open_pack(root, check=False)
    try:
        held = _summary(cartridge)
        problems = [f"manifest.yaml: {key} says {manifest.get(key)!r}, the cartridge holds {held[key]!r}"
                    for key in ("records", "namespaces", "embeddings") if manifest.get(key) != held[key]]
        if str(cartridge.meta.get("records")) != str(held["records"]):
            problems.append(f"{CARTRIDGE}: its cartridge table says {cartridge.meta.get('records')}"
                            f" records, it holds {held['records']}")
        if indexes:
            problems += _index_figures(root, manifest, cartridge.embeddings())
        found, described = cartridge.content_problems(text_of)
        problems += [f"{CARTRIDGE}: {line}" for line in described]
        if found > len(described):
            problems.append(f"{CARTRIDGE}: {found - len(described)} more records do not match"
                            " their content ids")
    except sqlite3.DatabaseError as err:
        problems = [f"{CARTRIDGE}: {err}"]
    finally:
        cartridge.close()
    return problems


def _index_figures(root: Path, manifest: dict[str, Any], embeddings: dict[str, Any]) -> list[str]:
    """Each ``indexes`` entry against the vectors it indexes: its rows and dims, and the sizes
    its matrix (rows x dims float32) and record numbers (rows int64) must have."""
    problems = []
    for label, entry in sorted((manifest.get("indexes") or {}).items()):
        name = "" if label == "(default)" else label
        held = embeddings.get(name)
        where = f"manifest.yaml: index {label!r}"
        if held is None or not isinstance(entry, dict):
            problems.append(f"{where} indexes no vector the cartridge holds")
            continue
        rows, dims = entry.get("rows"), entry.get("dims")
        if rows != held["records"] or dims != held["dims"]:
            problems.append(f"{where} says {rows} rows of {dims} dims, the cartridge holds"
                            f" {held['records']} of {held['dims']}")
            continue
        for key, size in (("matrix", rows * dims * 4), ("rids", rows * 8)):
            listed = manifest["files"].get(entry.get(key))
            if not isinstance(listed, dict) or listed.get("size") != size:
                problems.append(f"{where}: its {key} file is not the {size:,} bytes {rows} rows take")
        ann = entry.get("ann")
        if isinstance(ann, dict) and ann.get("rows") != rows:
            problems.append(f"{where}: its usearch index says {ann.get('rows')} rows, not {rows}")
    return problems


def _check_cartridge(root: Path, files: dict[str, Any]) -> list[str]:
    problems = []
    try:
        cartridge = Cartridge(root / CARTRIDGE)
    except (DecodeError, UsageError) as err:
        return [f"{CARTRIDGE}: {err}"]
    try:
        result = cartridge.db.execute("PRAGMA integrity_check").fetchone()[0]
        if result != "ok":
            problems.append(f"{CARTRIDGE}: SQLite integrity check: {result}")
        for (ref,) in cartridge.db.execute(
                "SELECT DISTINCT text_ref FROM records WHERE text_ref IS NOT NULL"):
            try:
                rel = BlobDir(Path("blobs")).path_of(ref).as_posix()
            except BlobError as err:
                problems.append(f"{CARTRIDGE}: {err}")
                continue
            if rel not in files:
                problems.append(f"{CARTRIDGE}: text blob {ref} is not in the pack")
    except sqlite3.DatabaseError as err:
        problems.append(f"{CARTRIDGE}: {err}")
    finally:
        cartridge.close()
    return problems


def open_pack(directory: str | Path, *, check: bool = True,
              ) -> tuple[Cartridge, Callable[[str], str], dict[str, Any]]:
    """The pack's cartridge, a reader of its text blobs (each checked against its own hash),
    and the manifest. Unless the caller checked this pack already (``check=False``), the pack
    is refused first for anything ``pack_problems`` finds, the hashes of blobs and indexes
    (checked when read) and of the files no reader reads (``NOT_READ``) aside: every opener
    (``vex search``, ``vex pack unpack``, the vectorpack connector, micropacks) comes here."""
    root = Path(directory)
    manifest = _manifest(root)
    if check:
        refuse_unsafe(root, manifest)
    blobs = BlobDir(root / "blobs")
    listed = manifest["files"]

    def text_of(ref: str) -> str:
        rel = BlobDir(Path("blobs")).path_of(ref).as_posix()
        if rel not in listed or _check_file(root, rel, listed[rel]):
            raise IntegrityError(f"text blob {ref} is missing from the pack or damaged",
                                 location=str(root))
        return blobs.get(ref).decode("utf-8", "surrogatepass")

    return Cartridge(root / CARTRIDGE), text_of, manifest


def refuse_unsafe(root: Path, manifest: dict[str, Any]) -> None:
    """An IntegrityError naming the first of ``pack_problems`` (and how many more), if any."""
    problems = pack_problems(root, manifest, unhashed=CHECKED_WHEN_READ + NOT_READ)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise IntegrityError(f"the pack is damaged or unsafe to read: {problems[0]}{more}",
                             location=str(root), hint=f"vex pack verify {root} lists every problem")


# ----------------------------------------------------------------------------------- indexes


def index_files(name: str) -> tuple[str, str]:
    """The pack paths of a vector's flat index: the matrix and its record numbers."""
    stem = "default" if name == "" else "v-" + name.encode().hex()
    return f"indexes/{stem}.f32", f"indexes/{stem}.rids"


ANN_KINDS = ("usearch",)
"""Approximate indexes ``vex pack reindex --ann`` builds besides the flat one."""
USEARCH = {"connectivity": 16, "expansion_add": 128, "expansion_search": 64}
"""The HNSW settings of a usearch index (usearch's defaults, written down so a rebuild matches)."""


def reindex(directory: str | Path, *, ann: str | None = None, threads: int = 1) -> dict[str, Any]:
    """(Re)build the derived indexes of a pack: for each vector name, a flat index (its vectors
    L2-normalised, as one contiguous little-endian float32 matrix in record order, and the
    record numbers as int64), which exact search memory-maps instead of reading SQLite rows;
    and with ``ann="usearch"`` an HNSW graph over the same vectors (cosine, keyed by record
    number, built on one thread so a rebuild gives the same bytes), which search then uses to
    find candidates before scoring them exactly. ``threads`` > 1 (0: every core) builds the
    graph faster, but then two builds differ in their bytes.
    Listed in the manifest with their hashes and marked rebuildable; the pack is verified
    first, all but the indexes being replaced (so a damaged index is repaired, not refused)."""
    if ann is not None and ann not in ANN_KINDS:
        raise UsageError(f"unknown approximate index {ann!r}", hint="use --ann usearch")
    if threads < 0:
        raise UsageError("threads must be 0 (every core) or more")
    usearch = _usearch() if ann == "usearch" else None
    root = Path(directory)
    report = verify_pack(root, indexes=False)
    if not report["ok"]:
        raise IntegrityError(f"the pack is damaged: {report['problems'][0]}", location=str(root),
                             hint="run vex pack verify for every problem")
    manifest = _manifest(root)
    files = {k: v for k, v in manifest["files"].items() if not k.startswith("indexes/")}
    shutil.rmtree(root / "indexes", ignore_errors=True)
    (root / "indexes").mkdir()
    indexes: dict[str, Any] = {}
    cartridge = Cartridge(root / CARTRIDGE)
    try:
        for name, embedding in sorted(cartridge.embeddings().items()):
            matrix_rel, rids_rel = index_files(name)
            rows = 0
            with open(root / matrix_rel, "wb") as matrix, open(root / rids_rel, "wb") as rid_file:
                for rids, block in cartridge.iter_vectors(name):
                    norms = np.linalg.norm(block, axis=1, keepdims=True)
                    norms[norms == 0] = 1.0
                    matrix.write((block / norms).astype("<f4").tobytes())
                    rid_file.write(rids.astype("<i8").tobytes())
                    rows += len(rids)
            entry: dict[str, Any] = {"kind": "flat-normalised-float32", "dims": embedding["dims"],
                                     "rows": rows, "matrix": matrix_rel, "rids": rids_rel,
                                     "rebuildable": True}
            built = [matrix_rel, rids_rel]
            if usearch is not None:
                entry["ann"] = _build_usearch(usearch, root, name, embedding["dims"], rows, threads)
                built.append(entry["ann"]["file"])
            indexes[name or "(default)"] = entry
            for rel in built:
                files[rel] = {"sha256": _sha256(root / rel), "size": (root / rel).stat().st_size}
    finally:
        cartridge.close()
    manifest["files"] = files
    manifest["indexes"] = indexes
    (root / "manifest.yaml").write_bytes(dump_manifest(manifest))
    return {"pack": str(root), "indexes": indexes}


def _usearch() -> Any:
    try:
        from usearch.index import Index
    except ImportError:
        raise MissingDependencyError("usearch", "usearch", "usearch", kind="index") from None
    return Index


def _build_usearch(index_class: Any, root: Path, name: str, dims: int, rows: int,
                   threads: int) -> dict[str, Any]:
    """An HNSW graph over the flat index just written (read back memory-mapped, in blocks)."""
    import usearch

    matrix_rel, rids_rel = index_files(name)
    rel = matrix_rel.rsplit(".", 1)[0] + ".usearch"
    index = index_class(ndim=dims, metric="cos", dtype="f32", **USEARCH)
    if rows:
        matrix = np.memmap(root / matrix_rel, dtype="<f4", mode="r").reshape(rows, dims)
        rids = np.fromfile(root / rids_rel, dtype="<i8")
        for start in range(0, rows, 65_536):
            index.add(rids[start:start + 65_536].astype(np.uint64), np.ascontiguousarray(
                matrix[start:start + 65_536]), threads=threads)
        del matrix
    index.save(str(root / rel))
    return {"kind": "usearch-hnsw", "metric": "cos", "file": rel, "rows": rows, **USEARCH,
            "library": f"usearch {usearch.__version__}", "reproducible": threads == 1,
            "rebuildable": True}


def ann_index(root: Path, manifest: dict[str, Any], name: str) -> Any | None:
    """A pack's usearch index for a vector name, memory-mapped after checking its hash; None
    when the pack has none. Needs usearch installed."""
    flat = _index_entry(manifest, name)
    entry = flat.get("ann")
    if not entry:
        return None
    hint = "rebuild it with vex pack reindex --ann usearch"
    _check_index_file(root, manifest, entry["file"], hint)
    index_class = _usearch()
    dims = flat.get("dims")
    try:
        header = index_class.metadata(str(root / entry["file"]))
    except ValueError:
        header = None
    if not header or header.get("dimensions") != dims or header.get("count_present") != entry.get("rows"):
        raise IntegrityError(f"{entry['file']} is not the usearch index the manifest describes",
                             location=str(root), hint=hint)
    index = index_class.restore(str(root / entry["file"]), view=True)
    index.expansion_search = int(entry.get("expansion_search", USEARCH["expansion_search"]))
    return index


def flat_index(root: Path, manifest: dict[str, Any], name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """A pack's flat index for a vector name, memory-mapped (after checking its hashes), or None."""
    entry = _index_entry(manifest, name)
    if not entry:
        return None
    for rel in (entry["matrix"], entry["rids"]):
        _check_index_file(root, manifest, rel, "rebuild it with vex pack reindex")
    matrix = np.memmap(root / entry["matrix"], dtype="<f4", mode="r").reshape(entry["rows"], entry["dims"])
    rids = np.fromfile(root / entry["rids"], dtype="<i8")
    return rids, matrix


def _index_entry(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    """The manifest's ``indexes`` entry of a vector name ({} when it has none)."""
    return dict((manifest.get("indexes") or {}).get(name or "(default)") or {})


def _check_index_file(root: Path, manifest: dict[str, Any], rel: str, hint: str) -> None:
    problem = _check_file(root, rel, manifest["files"].get(rel))
    if problem:
        raise IntegrityError(f"the pack's index is damaged: {problem}", location=str(root), hint=hint)

"""``faiss``: FAISS index files with an id map, and a SQLite side table of payloads.
docs/connectors/faiss.md.

URL form: ``faiss:///abs/dir`` (a bare path ending ``.faiss`` is one too). The directory::

    index.faiss            IndexIDMap2(IndexFlat) of the default vector, written by faiss.write_index
    index.<name>.faiss     one per named vector (index.x<hex of the name>.faiss for other names)
    payloads.sqlite        payloads(fid INTEGER PRIMARY KEY, id, namespace, text, metadata, vex,
                           created_at, updated_at): the FAISS id of a vector is its row's fid
                           vex_layout: which file holds which vector, dims and metric
                           pending, touched: vectors of a run not yet merged into the index files

Metrics: ``euclidean`` IndexFlatL2, ``dot`` IndexFlatIP, ``manhattan`` IndexFlat(METRIC_L1), and
``cosine`` IndexFlatIP over L2-normalised vectors (FAISS's own recipe: the index holds unit
vectors, ``verify`` counts them ``normalised``). Vectors of the other metrics are bit-exact.

A run writes each batch into the side table in one transaction (payload rows, and the batch's
vectors in ``pending``), so a killed run loses nothing acknowledged; ``finish`` merges the
pending vectors into the index files (each written under a temporary name, then renamed) and
only then clears ``pending``. A reader sees the same records either way: for a row still in
``touched``, its vectors come from ``pending``.

FAISS keeps an index in memory: reading or finishing a run loads each index file whole (its
size is what the index is, n x dims x 4 bytes for a flat index); the payloads stream in pages.
Any index file faiss wrote can be read (``faiss:///path/file.index``, or a directory holding an
``index.faiss`` without ``payloads.sqlite``, as LangChain saves one; its pickle is never
loaded): ids from its id map (else positions), vectors by ``reconstruct``, no payloads.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import orjson

from ..errors import UsageError
from ..record import MemoryRecord
from ..spec import StoreSpec
from ._base import AtPath, Capabilities, Connector, Page, QueryHit, Reject, VectorSpace, Writer
from ._store import StoreWriter, metric_for, translated
from ._rows import keyset_pages, layout_for, query_hits, record_row, row_record

__all__ = ["FaissConnector"]

_METRICS = {"cosine": "inner_product", "dot": "inner_product", "euclidean": "l2", "manhattan": "l1"}
_FAISS_METRIC = {"inner_product": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2, "l1": faiss.METRIC_L1}
_FROM_FAISS = {faiss.METRIC_INNER_PRODUCT: "dot", faiss.METRIC_L2: "euclidean", faiss.METRIC_L1: "manhattan"}
_SIDE = "payloads.sqlite"
_MERGE_CHUNK = 20_000


def _index_file(name: str) -> str:
    if name == "":
        return "index.faiss"
    if re.fullmatch(r"[A-Za-z0-9_-]+", name):
        return f"index.{name}.faiss"
    return f"index.x{name.encode().hex()}.faiss"


def _translated(operation: str) -> Any:
    return translated("faiss", operation, transient=(sqlite3.OperationalError,),
                      permanent=(RuntimeError, sqlite3.DatabaseError, OSError))


class FaissConnector(AtPath, Connector):
    name = "faiss"
    url_options = frozenset()
    takes_path = True
    extra = "faiss"
    suffixes = (".faiss",)
    capabilities = Capabilities(read=True, write=True, named_vectors=True, fixed_dims=True,
                                normalises=("cosine",), preferred_batch=5000)

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if not spec.path:
            raise UsageError("faiss needs a directory: faiss:///path/memories.faiss")
        self.path = Path(spec.path)
        self._side: sqlite3.Connection | None = None
        self._queried: dict[str, Any] = {}

    def describe(self) -> dict[str, Any]:
        return {"connector": self.name, "location": str(self.path.resolve())}

    # ------------------------------------------------------------------------------ what is there

    def foreign_index(self) -> Path | None:
        """The index file of a location vexchange did not write, or None for our layout."""
        if self.path.is_file():
            return self.path
        if self.path.is_dir() and not (self.path / _SIDE).exists() and (self.path / "index.faiss").exists():
            return self.path / "index.faiss"
        return None

    def side(self, *, create: bool = False) -> sqlite3.Connection | None:
        if self._side is None:
            file = self.path / _SIDE
            if not file.exists() and not create:
                return None
            with _translated("open"):
                self._side = sqlite3.connect(str(file), isolation_level=None, timeout=30)
                if create:
                    self._side.executescript(
                        "CREATE TABLE IF NOT EXISTS payloads (fid INTEGER PRIMARY KEY, id TEXT NOT NULL,"
                        " namespace TEXT, text TEXT, metadata TEXT, vex TEXT, created_at INTEGER,"
                        " updated_at INTEGER);"
                        "CREATE INDEX IF NOT EXISTS payloads_key ON payloads (id, namespace);"
                        "CREATE TABLE IF NOT EXISTS vex_layout (key TEXT PRIMARY KEY, value TEXT);"
                        "CREATE TABLE IF NOT EXISTS pending (fid INTEGER, name TEXT, data BLOB,"
                        " PRIMARY KEY (fid, name));"
                        "CREATE TABLE IF NOT EXISTS touched (fid INTEGER PRIMARY KEY);")
        return self._side

    def layout(self) -> dict[str, Any] | None:
        side = self.side()
        if side is None:
            return None
        with _translated("describe"):
            row = side.execute("SELECT value FROM vex_layout WHERE key = 'layout'").fetchone()
        return orjson.loads(row[0]) if row else None

    def _require(self) -> None:
        if self.path.is_dir() and self.foreign_index() is None and self.layout() is None:
            raise UsageError(f"{self.path} holds no FAISS index vexchange can read"
                             f" (neither {_SIDE} nor index.faiss)")
        if not self.path.exists():
            raise UsageError(f"no FAISS index at {self.path}")

    def count(self) -> int | None:
        self._require()
        foreign = self.foreign_index()
        if foreign is not None:
            return int(_read_index(foreign).ntotal)
        side = self.side()
        assert side is not None
        with _translated("count"):
            return int(side.execute("SELECT count(*) FROM payloads").fetchone()[0])

    def vector_spaces(self) -> dict[str, VectorSpace]:
        self._require()
        foreign = self.foreign_index()
        if foreign is not None:
            index = _read_index(foreign)
            return {"": VectorSpace(dims=int(index.d), metric=_FROM_FAISS.get(index.metric_type))}
        layout = self.layout() or {}
        return {n: VectorSpace(dims=layout["dims"][n], metric=layout["metrics"][n])
                for n in layout.get("vectors", {})}

    # ------------------------------------------------------------------------------------ reading

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        self._require()
        foreign = self.foreign_index()
        if foreign is not None:
            yield from _read_foreign(foreign, batch_size, int(after) if after else 0)
            return
        layout = self.layout() or {"vectors": {}}
        side = self.side()
        assert side is not None
        indexes = {name: _Loaded(self.path / file) for name, file in layout["vectors"].items()}
        codec = layout_for(self.name)
        position = int(after) if after else -1

        def fetch(after: int) -> tuple[list[int], list[MemoryRecord | Reject]]:
            with _translated("read"):
                rows = side.execute("SELECT fid, id, namespace, text, metadata, vex FROM payloads"
                                    " WHERE fid > ? ORDER BY fid LIMIT ?", (after, batch_size)).fetchall()
                fids = [r[0] for r in rows]
                vectors = self._vectors(side, indexes, fids)
            return fids, [row_record(codec, store_id=rid, namespace=ns, text=text, metadata=meta, vex=vex,
                                     vectors=vectors.get(fid, {}))
                          for fid, rid, ns, text, meta, vex in rows]

        yield from keyset_pages(fetch, position, batch_size)

    @staticmethod
    def _vectors(side: sqlite3.Connection, indexes: dict[str, _Loaded],
                 fids: list[int]) -> dict[int, dict[str, bytes]]:
        """Each row's vectors: from ``pending`` for a row an unfinished run touched, else from
        the index files."""
        out: dict[int, dict[str, bytes]] = {}
        if not fids:
            return out
        marks = ",".join("?" * len(fids))
        touched = {r[0] for r in side.execute(f"SELECT fid FROM touched WHERE fid IN ({marks})", fids)}
        for fid, name, data in side.execute(
                f"SELECT fid, name, data FROM pending WHERE fid IN ({marks})", fids):
            out.setdefault(fid, {})[name] = bytes(data)
        for name, loaded in indexes.items():
            wanted = [f for f in fids if f not in touched and f in loaded.ids]
            if wanted:
                found = loaded.index.reconstruct_batch(np.asarray(wanted, dtype=np.int64))
                for fid, vec in zip(wanted, np.asarray(found, dtype="<f4"), strict=True):
                    out.setdefault(fid, {})[name] = vec.tobytes()
        return out

    # ------------------------------------------------------------------------------------ search

    def query(self, vector: Any, k: int, *, namespace: str | None = None,
              vector_name: str = "") -> list[QueryHit]:
        """FAISS's own ``search`` on the index file (flat: exact by its metric; a cosine
        index holds unit vectors, so the query is normalised too, FAISS's recipe), hits named
        from the side table. The index knows no namespace, so for one the number asked grows
        fourfold until ``k`` hits are in it, or every vector was asked. A run not finished yet
        has vectors only in ``pending``: FAISS does not see them, and neither does this."""
        self._require()
        q = np.asarray(vector, dtype=np.float32).reshape(1, -1).copy()
        foreign = self.foreign_index()
        if foreign is not None:
            if vector_name:
                return []
            index = self._query_index("", foreign)
            with _translated("search"):
                distances, labels = index.search(q, min(k, int(index.ntotal)) or 1)
            return [QueryHit(str(int(label)), float(d))
                    for d, label in zip(distances[0], labels[0], strict=True) if label >= 0]
        layout = self.layout() or {"vectors": {}}
        file = layout["vectors"].get(vector_name)
        if file is None or not (self.path / file).exists():
            return []
        index = self._query_index(vector_name, self.path / file)
        if layout["metrics"].get(vector_name) == "cosine":
            faiss.normalize_L2(q)
        total = int(index.ntotal)
        fetch = min(k, total)
        while True:
            with _translated("search"):
                distances, labels = index.search(q, max(fetch, 1))
                hits = self._named(distances[0], labels[0])
            kept = [h for h in hits if namespace is None or h.namespace == namespace]
            if namespace is None or len(kept) >= k or fetch >= total:
                return kept[:k]
            fetch = min(total, fetch * 4)

    def _query_index(self, name: str, path: Path) -> Any:
        """Each index file is loaded once per connector for queries (FAISS searches in memory)."""
        if name not in self._queried:
            self._queried[name] = _read_index(path)
        return self._queried[name]

    def _named(self, distances: np.ndarray, labels: np.ndarray) -> list[QueryHit]:
        side = self.side()
        assert side is not None
        fids = [int(label) for label in labels if label >= 0]
        if not fids:
            return []
        marks = ",".join("?" * len(fids))
        rows = {r[0]: r[1:] for r in side.execute(
            f"SELECT fid, id, namespace, text, metadata, vex FROM payloads WHERE fid IN ({marks})", fids)}
        codec = layout_for(self.name)
        found = ((int(label), distance) for distance, label in zip(distances, labels, strict=True))
        return query_hits(codec, found, rows)

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        return FaissWriter(self, dry_run=dry_run, spaces=spaces or {})

    def close(self) -> None:
        if self._side is not None:
            self._side.close()
            self._side = None
        self._queried = {}


def _read_index(path: Path) -> Any:
    with _translated("read index"):
        return faiss.read_index(str(path))


class _Loaded:
    """One of our index files in memory, with the set of FAISS ids it holds."""

    def __init__(self, path: Path) -> None:
        self.index: Any = _read_index(path) if path.exists() else None
        self.ids: set[int] = (set(faiss.vector_to_array(self.index.id_map).tolist())
                              if self.index is not None else set())


def _read_foreign(path: Path, batch_size: int, start: int) -> Iterator[Page]:
    """An index faiss wrote: ids from its id map (else positions), vectors by reconstruct."""
    index = _read_index(path)
    ids = None
    inner = index
    if hasattr(index, "id_map"):
        inner = faiss.downcast_index(index.index)
        ids = faiss.vector_to_array(index.id_map)
    with contextlib.suppress(RuntimeError):  # an IVF index needs a direct map to reconstruct
        faiss.extract_index_ivf(inner).make_direct_map()
    codec = layout_for("faiss")
    total = int(index.ntotal)
    position = start
    while True:
        end = min(position + batch_size, total)
        with _translated("reconstruct"):
            block = np.asarray(inner.reconstruct_n(position, end - position), dtype="<f4") if end > position \
                else np.zeros((0, index.d), dtype="<f4")
        items: list[MemoryRecord | Reject] = [
            codec.unpack({}, store_id=str(int(ids[i]) if ids is not None else i),
                         vectors={"": block[i - position].tobytes()}, id_type="int")
            for i in range(position, end)]
        position = end
        more = position < total
        yield Page(items, str(position) if more else None)
        if not more:
            return


class FaissWriter(StoreWriter):
    namespaced_ids = True
    """Rows are keyed by (namespace, id): the same id in two namespaces is two rows."""

    def __init__(self, store: FaissConnector, *, dry_run: bool, spaces: dict[str, VectorSpace]) -> None:
        super().__init__(store, dry_run=dry_run, spaces=spaces, metrics=_METRICS)
        self.connector = store
        self.codec = layout_for(store.name)
        if store.foreign_index() is not None:
            raise UsageError(f"{store.path} is a FAISS index vexchange did not write; writing into it"
                             " could break what reads it", hint="give a new directory")
        if store.path.exists() and not store.path.is_dir():
            raise UsageError(f"{store.path} is not a directory")
        self.saved = store.layout() if (store.path / _SIDE).exists() else None

    def target_dims(self) -> dict[str, int]:
        return dict(self.saved["dims"]) if self.saved else {}

    def vector_spaces(self) -> dict[str, VectorSpace]:
        saved = self.saved or {"vectors": {}}
        return {n: VectorSpace(dims=saved["dims"][n], metric=saved["metrics"][n]) for n in saved["vectors"]}

    def created(self) -> bool:
        return self.saved is not None

    def create(self, batch: list[MemoryRecord]) -> None:
        wanted = self.spaces_to_create(batch)
        metrics = {n: s.metric or "cosine" for n, s in wanted.items()}
        for metric in metrics.values():
            metric_for(self.connector.name, metric, _METRICS)
        layout = {"format": 1, "vectors": {n: _index_file(n) for n in sorted(wanted)},
                  "dims": {n: wanted[n].dims for n in wanted}, "metrics": metrics}
        with _translated("create"):
            self.connector.path.mkdir(parents=True, exist_ok=True)
            side = self.connector.side(create=True)
            assert side is not None
            side.execute("INSERT OR REPLACE INTO vex_layout VALUES ('layout', ?)",
                         (orjson.dumps(layout).decode(),))
        self.saved = layout

    def store_id(self, record: MemoryRecord) -> str:
        return record.id

    def namespaces_of(self, ids: list[Any]) -> dict[Any, str | None]:  # pragma: no cover
        return {}

    def upsert(self, rows: list[tuple[Any, MemoryRecord]]) -> list[Reject]:
        """One side-table transaction per batch: payload rows replaced by (namespace, id), and
        the records' vectors staged in ``pending`` for ``finish``."""
        assert self.saved is not None
        side = self.connector.side(create=True)
        assert side is not None
        rejects: list[Reject] = []
        with _translated("write"):
            side.execute("BEGIN IMMEDIATE")
            try:
                for _, record in rows:
                    unknown = [n for n in record.vectors if n not in self.saved["vectors"]]
                    if unknown:
                        rejects.append(Reject(
                            reason="unknown_vector", id=record.id, namespace=record.namespace,
                            detail=f"the store has no index for vector {unknown[0]!r}"))
                        continue
                    metadata, vex = record_row(self.codec, record)
                    values = (record.id, record.namespace, record.text, metadata, vex,
                              record.created_at, record.updated_at)
                    held = side.execute("SELECT fid FROM payloads WHERE id = ? AND namespace IS ?",
                                        (record.id, record.namespace)).fetchone()
                    if held:
                        fid = held[0]
                        side.execute("UPDATE payloads SET id = ?, namespace = ?, text = ?, metadata = ?,"
                                     " vex = ?, created_at = ?, updated_at = ? WHERE fid = ?", (*values, fid))
                    else:
                        fid = side.execute("INSERT INTO payloads (id, namespace, text, metadata, vex,"
                                           " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                           values).lastrowid
                    side.execute("INSERT OR IGNORE INTO touched VALUES (?)", (fid,))
                    side.execute("DELETE FROM pending WHERE fid = ?", (fid,))
                    side.executemany("INSERT INTO pending VALUES (?, ?, ?)",
                                     [(fid, name, vec.data) for name, vec in record.vectors.items()])
                side.execute("COMMIT")
            except BaseException:
                side.execute("ROLLBACK")
                raise
        return rejects

    def finish(self, summary: dict[str, Any]) -> None:
        """Merge ``pending`` into each index file: drop the touched ids, add their new vectors,
        write under a temporary name and rename; then clear ``pending`` (a run stopped in
        between merges the same rows again next time, which gives the same index)."""
        if self.dry_run or self.saved is None:
            return
        side = self.connector.side()
        assert side is not None
        with _translated("merge"):
            touched = np.asarray([r[0] for r in side.execute("SELECT fid FROM touched")], dtype=np.int64)
            if touched.size == 0:
                return
            for name, file in self.saved["vectors"].items():
                self._merge(side, name, self.connector.path / file, touched)
            side.execute("BEGIN IMMEDIATE")
            side.execute("DELETE FROM pending")
            side.execute("DELETE FROM touched")
            side.execute("COMMIT")

    def _merge(self, side: sqlite3.Connection, name: str, path: Path, touched: np.ndarray) -> None:
        assert self.saved is not None
        dims, metric = int(self.saved["dims"][name]), self.saved["metrics"][name]
        index: Any
        if path.exists():
            index = faiss.read_index(str(path))
            index.remove_ids(touched)
        else:
            index = faiss.IndexIDMap2(faiss.IndexFlat(dims, _FAISS_METRIC[_METRICS[metric]]))
        last = -1
        while True:
            chunk = side.execute("SELECT fid, data FROM pending WHERE name = ? AND fid > ? ORDER BY fid"
                                 " LIMIT ?", (name, last, _MERGE_CHUNK)).fetchall()
            if not chunk:
                break
            last = chunk[-1][0]
            blob = b"".join(bytes(d) for _, d in chunk)
            vectors = np.frombuffer(blob, dtype="<f4").reshape(-1, dims).copy()
            if metric == "cosine":
                faiss.normalize_L2(vectors)
            index.add_with_ids(vectors, np.asarray([f for f, _ in chunk], dtype=np.int64))
        temporary = path.with_name(path.name + ".tmp")
        faiss.write_index(index, str(temporary))
        os.replace(temporary, path)

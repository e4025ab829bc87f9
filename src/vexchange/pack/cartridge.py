"""The cartridge: one SQLite file that holds an agent's whole memory, readable with nothing but
Python's ``sqlite3``. docs/formats/vectorpack.md has the schema, version 1.

Writing goes to a staging database ``<file>.partial`` (records upserted by namespace and id,
in any order), and ``finish`` builds the cartridge from it in canonical order (namespace, then
id), builds the full-text index, vacuums, and renames it into place. The same records in any
input order give the same bytes (with the same SQLite library), and an interrupted run leaves
only the staging file, which ``--resume`` continues.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from .._canonical import content_id
from .._json import dumps_exact, loads_exact, may_hold_big_int
from .._version import __version__
from ..errors import CapabilityError, DecodeError, UsageError
from ..record import MemoryRecord, SparseVector, Vector

__all__ = ["SCHEMA", "SCHEMA_VERSION", "Cartridge", "CartridgeBuilder", "nskey", "record_row"]

SCHEMA_VERSION = 1
FORMAT = "vexchange-cartridge"
PACK_KEYS = ("scores", "lineage", "provenance")
"""Record extension keys the cartridge also projects into their own tables."""
SCORE_FIELDS = ("elo", "recency", "trust", "decay")

SCHEMA = """
CREATE TABLE cartridge (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE embeddings (
    name TEXT PRIMARY KEY, model TEXT, dims INTEGER NOT NULL, metric TEXT, records INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE records (
    rid INTEGER PRIMARY KEY,
    nskey TEXT NOT NULL,
    namespace TEXT,
    id TEXT NOT NULL,
    id_type TEXT NOT NULL,
    content_id TEXT NOT NULL,
    text TEXT,
    text_ref TEXT,
    modality TEXT NOT NULL,
    created_at INTEGER,
    updated_at INTEGER,
    source_store TEXT,
    payload TEXT NOT NULL,
    UNIQUE (nskey, id)
);
CREATE TABLE vectors (
    rid INTEGER NOT NULL, name TEXT NOT NULL, model TEXT, dims INTEGER NOT NULL,
    vector BLOB NOT NULL, PRIMARY KEY (rid, name)
);
CREATE TABLE sparse_vectors (
    rid INTEGER NOT NULL, name TEXT NOT NULL, model TEXT, indices BLOB NOT NULL,
    vals BLOB NOT NULL, PRIMARY KEY (rid, name)
) WITHOUT ROWID;
CREATE TABLE scores (
    rid INTEGER PRIMARY KEY, elo REAL, recency REAL, trust REAL, decay REAL,
    uses INTEGER NOT NULL DEFAULT 0, helpful INTEGER NOT NULL DEFAULT 0, last_used_at INTEGER
);
CREATE TABLE lineage (
    rid INTEGER NOT NULL, relation TEXT NOT NULL, target TEXT NOT NULL,
    PRIMARY KEY (rid, relation, target)
) WITHOUT ROWID;
CREATE TABLE receipts (
    rid INTEGER NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (rid, kind)
) WITHOUT ROWID;
CREATE TABLE feedback (
    seq INTEGER PRIMARY KEY, rid INTEGER NOT NULL, at INTEGER NOT NULL, helpful INTEGER NOT NULL,
    elo_before REAL NOT NULL, elo_after REAL NOT NULL, note TEXT, receipt_sha256 TEXT NOT NULL
);
CREATE VIRTUAL TABLE records_fts USING fts5(text, content='records', content_rowid='rid');
"""


def nskey(namespace: str | None) -> str:
    """The key a namespace sorts by: "" for no namespace, else "=" + name (so None and ""
    are apart, and no namespace sorts first)."""
    return "" if namespace is None else "=" + namespace


def _check_pack_keys(record: MemoryRecord) -> None:
    """The contract for the keys the cartridge projects (docs/formats/vectorpack.md)."""
    extra = record.extra or {}
    scores = extra.get("scores")
    if scores is not None:
        if not isinstance(scores, dict) or any(
                k in SCORE_FIELDS and (isinstance(v, bool) or not isinstance(v, (int, float)))
                for k, v in scores.items()):
            raise ValueError("scores must be an object whose elo, recency, trust and decay are numbers")
    lineage = extra.get("lineage")
    if lineage is not None:
        if not isinstance(lineage, dict) or any(
                not isinstance(v, list) or not all(isinstance(t, str) for t in v) for v in lineage.values()):
            raise ValueError("lineage must be an object of lists of record references (strings)")
    provenance = extra.get("provenance")
    if provenance is not None and not isinstance(provenance, dict):
        raise ValueError("provenance must be an object")


def record_row(record: MemoryRecord, text_ref: str | None = None) -> tuple[Any, ...]:
    """The ``records`` row (without rid) of a record; raises ValueError on a contract breach."""
    _check_pack_keys(record)
    payload: dict[str, Any] = {}
    if record.metadata is not None:
        payload["metadata"] = record.metadata
    if record.score is not None:
        payload["score"] = record.score
    if record.extra:
        payload["extra"] = record.extra
    return (nskey(record.namespace), record.namespace, record.id, record.id_type, content_id(record),
            None if text_ref else record.text, text_ref, record.modality, record.created_at,
            record.updated_at, record.source_store, dumps_exact(payload))


def _projections(key: tuple[str, str], record: MemoryRecord) -> tuple[list[Any], list[Any], list[Any]]:
    extra = record.extra or {}
    scores = extra.get("scores") or {}
    score_rows = [(*key, *[scores.get(k) for k in SCORE_FIELDS], int(scores.get("uses", 0) or 0),
                   int(scores.get("helpful", 0) or 0), scores.get("last_used_at"))] if scores else []
    lineage_rows = [(*key, relation, target) for relation, targets in (extra.get("lineage") or {}).items()
                    for target in dict.fromkeys(targets)]
    receipt_rows = [(*key, kind, dumps_exact(value)) for kind, value in (extra.get("provenance") or {}).items()]
    return score_rows, lineage_rows, receipt_rows


STAGING = """
CREATE TABLE s_records (
    nskey TEXT NOT NULL, id TEXT NOT NULL, namespace TEXT, id_type TEXT NOT NULL,
    content_id TEXT NOT NULL, text TEXT, text_ref TEXT, modality TEXT NOT NULL, created_at INTEGER,
    updated_at INTEGER, source_store TEXT, payload TEXT NOT NULL, PRIMARY KEY (nskey, id)
) WITHOUT ROWID;
CREATE TABLE s_vectors (nskey TEXT, id TEXT, name TEXT, model TEXT, dims INTEGER, vector BLOB,
                        PRIMARY KEY (nskey, id, name));
CREATE TABLE s_sparse_vectors (nskey TEXT, id TEXT, name TEXT, model TEXT, indices BLOB, vals BLOB,
                               PRIMARY KEY (nskey, id, name)) WITHOUT ROWID;
CREATE TABLE s_scores (nskey TEXT, id TEXT, elo REAL, recency REAL, trust REAL, decay REAL,
                       uses INTEGER, helpful INTEGER, last_used_at INTEGER,
                       PRIMARY KEY (nskey, id)) WITHOUT ROWID;
CREATE TABLE s_lineage (nskey TEXT, id TEXT, relation TEXT, target TEXT,
                        PRIMARY KEY (nskey, id, relation, target)) WITHOUT ROWID;
CREATE TABLE s_receipts (nskey TEXT, id TEXT, kind TEXT, value TEXT,
                         PRIMARY KEY (nskey, id, kind)) WITHOUT ROWID;
CREATE TABLE s_feedback (seq INTEGER PRIMARY KEY, nskey TEXT, id TEXT, at INTEGER, helpful INTEGER,
                         elo_before REAL, elo_after REAL, note TEXT, receipt_sha256 TEXT);
"""
_PARTS = ("vectors", "sparse_vectors", "scores", "lineage", "receipts")


class CartridgeBuilder:
    """Stages records keyed by (namespace, id), any order, with upserts; ``finish`` builds the
    canonical cartridge from them."""

    def __init__(self, path: Path, *, resume: bool) -> None:
        self.path = path
        self.staging = path.with_name(path.name + ".partial")
        if not resume and self.staging.exists():
            self.staging.unlink()
        fresh = not self.staging.exists()
        self.db = sqlite3.connect(self.staging, isolation_level=None)
        self.db.execute("PRAGMA page_size=16384")
        self.db.execute("PRAGMA journal_mode=WAL")
        # like the .vmig writer: what a batch wrote survives a killed process (the OS has it); a
        # power loss during a run means running it again
        self.db.execute("PRAGMA synchronous=OFF")
        self.metrics: dict[str, str | None] = {}
        self.dims: dict[str, int] = {}
        """Vector sizes the cartridge written into already holds (its records are kept)."""
        self.replacing = not fresh  # a resumed run repeats pages: replace, never add twice
        if fresh:
            self.db.executescript(STAGING)
            if path.exists():
                self._seed(path)
                self.replacing = True

    def _seed(self, existing: Path) -> None:
        """Writing into an existing cartridge upserts into what it holds: start from its rows."""
        Cartridge(existing).close()  # refuses a file that is not a cartridge
        db = self.db
        db.execute("ATTACH DATABASE ? AS old", (f"file:{existing}?mode=ro",))
        db.execute("BEGIN")
        db.execute("INSERT INTO s_records SELECT nskey, id, namespace, id_type, content_id, text,"
                   " text_ref, modality, created_at, updated_at, source_store, payload FROM old.records")
        for table, columns in (("vectors", "t.name, t.model, t.dims, t.vector"),
                               ("sparse_vectors", "t.name, t.model, t.indices, t.vals"),
                               ("scores", "t.elo, t.recency, t.trust, t.decay, t.uses, t.helpful, t.last_used_at"),
                               ("lineage", "t.relation, t.target"), ("receipts", "t.kind, t.value")):
            db.execute(f"INSERT INTO s_{table} SELECT r.nskey, r.id, {columns} FROM old.{table} t"
                       " JOIN old.records r ON r.rid = t.rid")
        db.execute("INSERT INTO s_feedback SELECT t.seq, r.nskey, r.id, t.at, t.helpful, t.elo_before,"
                   " t.elo_after, t.note, t.receipt_sha256 FROM old.feedback t JOIN old.records r"
                   " ON r.rid = t.rid")
        held = db.execute("SELECT name, metric, dims FROM old.embeddings").fetchall()
        self.metrics = {name: metric for name, metric, _ in held}
        self.dims = {name: dims for name, _, dims in held}
        db.execute("COMMIT")
        db.execute("DETACH DATABASE old")

    def write(self, records: Sequence[MemoryRecord],
              text_refs: dict[int, str] | None = None) -> list[tuple[MemoryRecord, str]]:
        """Upsert a batch in one transaction (a record replaces the one with its namespace and
        id); returns the records that break the contract, with why, unwritten."""
        refs = text_refs or {}
        rows = []
        kept = []
        refused = []
        for i, record in enumerate(records):
            try:
                rows.append(record_row(record, refs.get(i)))
                kept.append(record)
            except ValueError as err:
                refused.append((record, str(err)))
        records = kept
        keys = [(row[0], row[2]) for row in rows]
        vectors: list[Any] = []
        sparse: list[Any] = []
        scores: list[Any] = []
        lineage: list[Any] = []
        receipts: list[Any] = []
        for key, record in zip(keys, records):
            vectors.extend((*key, name, v.model, v.dims, v.data) for name, v in record.vectors.items())
            sparse.extend((*key, name, sp.model, sp.indices, sp.values) for name, sp in record.sparse.items())
            if record.extra:
                more = _projections(key, record)
                scores.extend(more[0])
                lineage.extend(more[1])
                receipts.extend(more[2])
        staged = [(r[0], r[2], r[1], *r[3:]) for r in rows]
        try:
            self._stage(keys, staged, vectors, sparse, scores, lineage, receipts, replace=self.replacing)
        except sqlite3.IntegrityError:
            # a key staged before: this batch is written again (a retry after a failure the
            # store did not see, or the same record twice); replace what it staged
            self._stage(keys, staged, vectors, sparse, scores, lineage, receipts, replace=True)
        return refused

    def _stage(self, keys: list[Any], staged: list[Any], vectors: list[Any], sparse: list[Any],
               scores: list[Any], lineage: list[Any], receipts: list[Any], *, replace: bool) -> None:
        """One transaction: plain inserts (a key already staged fails the batch), or with
        ``replace`` the batch's keys deleted from every table first."""
        db = self.db
        db.execute("BEGIN")
        try:
            if replace:
                for table in ("records", *_PARTS):
                    db.executemany(f"DELETE FROM s_{table} WHERE nskey = ? AND id = ?", keys)
            db.executemany("INSERT INTO s_records VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", staged)
            db.executemany("INSERT INTO s_vectors VALUES (?,?,?,?,?,?)", vectors)
            db.executemany("INSERT INTO s_sparse_vectors VALUES (?,?,?,?,?,?)", sparse)
            db.executemany("INSERT INTO s_scores VALUES (?,?,?,?,?,?,?,?,?)", scores)
            db.executemany("INSERT INTO s_lineage VALUES (?,?,?,?)", lineage)
            db.executemany("INSERT INTO s_receipts VALUES (?,?,?,?)", receipts)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def finish(self, metrics: dict[str, str | None], info: dict[str, str] | None = None) -> None:
        """Build the cartridge from the staging file, in canonical order, and rename it in."""
        info = info or {"created_by": f"vexchange {__version__}"}
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.close()
        building = self.path.with_name(self.path.name + ".building")
        if building.exists():
            building.unlink()
        build(self.staging, building, {**self.metrics, **{k: v for k, v in metrics.items() if v}}, info)
        os.replace(building, self.path)
        self.staging.unlink()
        for suffix in ("-wal", "-shm"):
            Path(str(self.staging) + suffix).unlink(missing_ok=True)

    def abort(self) -> None:
        """Keep the staging file (a resumed run continues from it) and let it go."""
        try:
            self.db.close()
        except sqlite3.ProgrammingError:
            pass


def build(staging: Path, target: Path, metrics: dict[str, str | None], info: dict[str, str]) -> None:
    """The canonical cartridge from a staging database: the same rows, whatever order they were
    staged in, give the same bytes (fresh file, fixed page size, rows inserted in key order)."""
    db = sqlite3.connect(target, isolation_level=None)
    try:
        db.execute("PRAGMA page_size=16384")  # vectors of up to 4,000 dims fit in a page
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.executescript(SCHEMA)
        db.execute("ATTACH DATABASE ? AS staging", (str(staging),))
        db.execute("BEGIN")
        # the canonical rid of each record, then every table copied by walking the records in
        # that order and looking each one's rows up by key: no sort of the rows themselves (a
        # sort of the vector blobs cost twice the copy)
        db.execute("CREATE TEMP TABLE remap (new INTEGER PRIMARY KEY, nskey TEXT NOT NULL, id TEXT NOT NULL)")
        db.execute("INSERT INTO remap SELECT row_number() OVER (ORDER BY nskey, id), nskey, id"
                   " FROM staging.s_records ORDER BY nskey, id")
        db.execute("INSERT INTO records SELECT m.new, r.nskey, r.namespace, r.id, r.id_type,"
                   " r.content_id, r.text, r.text_ref, r.modality, r.created_at, r.updated_at,"
                   " r.source_store, r.payload FROM remap m CROSS JOIN staging.s_records r"
                   " ON r.nskey = m.nskey AND r.id = m.id ORDER BY m.new")
        for table, columns, order in (("vectors", "t.name, t.model, t.dims, t.vector", "t.name"),
                                      ("sparse_vectors", "t.name, t.model, t.indices, t.vals", "t.name"),
                                      ("lineage", "t.relation, t.target", "t.relation, t.target"),
                                      ("receipts", "t.kind, t.value", "t.kind"),
                                      ("scores", "t.elo, t.recency, t.trust, t.decay, t.uses, t.helpful,"
                                                 " t.last_used_at", "m.new")):
            db.execute(f"INSERT INTO {table} SELECT m.new, {columns} FROM remap m CROSS JOIN"
                       f" staging.s_{table} t ON t.nskey = m.nskey AND t.id = m.id ORDER BY m.new, {order}")
        db.execute("INSERT INTO feedback SELECT t.seq, m.new, t.at, t.helpful, t.elo_before,"
                   " t.elo_after, t.note, t.receipt_sha256 FROM staging.s_feedback t"
                   " JOIN remap m ON m.nskey = t.nskey AND m.id = t.id ORDER BY t.seq")
        spaces = db.execute("SELECT name, CASE WHEN count(DISTINCT coalesce(model, '')) = 1"
                            " THEN max(model) END, max(dims), min(dims), count(*) FROM vectors"
                            " GROUP BY name ORDER BY name").fetchall()
        for name, model, dims, low, count in spaces:
            if dims != low:
                raise CapabilityError(f"vector {name!r} has sizes {low} and {dims}; a cartridge holds"
                                      " one size per vector name")
            db.execute("INSERT INTO embeddings VALUES (?,?,?,?,?)",
                       (name, model, dims, metrics.get(name), count))
        meta = {"format": FORMAT, "schema_version": str(SCHEMA_VERSION),
                "records": str(db.execute("SELECT count(*) FROM records").fetchone()[0]), **info}
        db.executemany("INSERT INTO cartridge VALUES (?,?)", sorted(meta.items()))
        db.execute("INSERT INTO records_fts(records_fts) VALUES ('rebuild')")
        db.execute("COMMIT")
        db.execute("DETACH DATABASE staging")
    finally:
        db.close()


class Cartridge:
    """A finished cartridge, opened read-only (or read-write for ``feedback``)."""

    def __init__(self, path: Path, *, writable: bool = False) -> None:
        if not path.is_file():
            raise UsageError(f"no cartridge at {path}")
        mode = "rw" if writable else "ro"
        try:
            self.db = sqlite3.connect(f"file:{path}?mode={mode}", uri=True, isolation_level=None)
            meta = dict(self.db.execute("SELECT key, value FROM cartridge").fetchall())
        except sqlite3.DatabaseError as err:
            raise DecodeError(f"not a vexchange cartridge ({err})", location=str(path)) from None
        if meta.get("format") != FORMAT:
            raise DecodeError(f"not a vexchange cartridge (format {meta.get('format')!r})", location=str(path))
        if int(meta.get("schema_version", 0)) > SCHEMA_VERSION:
            raise DecodeError(f"cartridge schema {meta['schema_version']} is newer than this vexchange"
                              f" reads ({SCHEMA_VERSION})", location=str(path),
                              hint="upgrade vexchange")
        self.path, self.meta = path, meta
        self._sparse: bool | None = None

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM records").fetchone()[0])

    def embeddings(self) -> dict[str, dict[str, Any]]:
        return {name: {"model": model, "dims": dims, "metric": metric, "records": n}
                for name, model, dims, metric, n in self.db.execute("SELECT * FROM embeddings")}

    def records(self, after: int, limit: int, text_of: Any = None) -> tuple[list[MemoryRecord], int]:
        """Up to ``limit`` records after rid ``after``, and the last rid read.

        Built for speed: one query for the records, one for their vectors (cheaper than a join
        here), sparse vectors asked for only when the cartridge holds any."""
        rows = self.db.execute(
            "SELECT rid, namespace, id, id_type, text, text_ref, modality, created_at, updated_at,"
            " source_store, payload FROM records WHERE rid > ? ORDER BY rid LIMIT ?", (after, limit)).fetchall()
        if not rows:
            return [], after
        low, high = rows[0][0], rows[-1][0]
        vectors: dict[int, dict[str, Vector]] = {}
        for rid, name, model, blob in self.db.execute(
                "SELECT rid, name, model, vector FROM vectors WHERE rid BETWEEN ? AND ?", (low, high)):
            if rid in vectors:
                vectors[rid][name] = Vector(blob, model)
            else:
                vectors[rid] = {name: Vector(blob, model)}
        sparse: dict[int, dict[str, SparseVector]] = {}
        if self._holds_sparse():
            for rid, name, model, idx, vals in self.db.execute(
                    "SELECT rid, name, model, indices, vals FROM sparse_vectors WHERE rid BETWEEN ? AND ?",
                    (low, high)):
                sparse.setdefault(rid, {})[name] = SparseVector(idx, vals, model)
        # one scan of the page for integers beyond 64 bits (which need the exact parser), then
        # orjson per payload: cheaper than a call to loads_exact for each
        parse = loads_exact if may_hold_big_int("".join([row[10] for row in rows]).encode()) else orjson.loads
        out = []
        for rid, namespace, rid_id, id_type, text, text_ref, modality, created, updated, store, payload in rows:
            body = parse(payload)
            if text_ref is not None:
                if text_of is None:
                    raise DecodeError(f"record {rid_id!r} keeps its text in blob {text_ref}; open it"
                                      " from its VectorPack", location=str(self.path))
                text = text_of(text_ref)
            out.append(MemoryRecord(
                id=rid_id, text=text, vectors=vectors.get(rid, {}), namespace=namespace,
                metadata=body.get("metadata"), created_at=created, updated_at=updated,
                source_store=store, score=body.get("score"), modality=modality, id_type=id_type,
                extra=body.get("extra") or {}, sparse=sparse.get(rid, {})))
        return out, high

    def _holds_sparse(self) -> bool:
        if self._sparse is None:
            self._sparse = self.db.execute("SELECT EXISTS (SELECT 1 FROM sparse_vectors)").fetchone()[0] == 1
        return self._sparse

    def iter_vectors(self, name: str = "", chunk: int = 8192) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(rids, float32 matrix) in chunks, for exact search at flat memory."""
        dims = self.embeddings().get(name, {}).get("dims")
        if dims is None:
            return
        cursor = self.db.execute("SELECT rid, vector FROM vectors WHERE name = ? ORDER BY rid", (name,))
        while True:
            part = cursor.fetchmany(chunk)
            if not part:
                return
            rids = np.fromiter((r for r, _ in part), dtype=np.int64, count=len(part))
            matrix = np.frombuffer(b"".join(b for _, b in part), dtype="<f4").reshape(len(part), dims)
            yield rids, matrix

    def close(self) -> None:
        self.db.close()

"""The cartridge: one SQLite file that holds an agent's whole memory, readable with nothing but
Python's ``sqlite3``. docs/formats/vectorpack.md has the schema, version 1.

Writing goes to a staging database ``<file>.partial`` (records upserted by namespace and id,
in any order), and ``finish`` builds the cartridge from it in canonical order (namespace, then
id), builds the full-text index, vacuums, and renames it into place. The same records in any
input order give the same bytes (with the same SQLite library), and an interrupted run leaves
only the staging file, which ``--resume`` continues.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from .._canonical import content_id
from .._json import dumps_exact, loads_exact
from .._version import __version__
from .._atomic import RESUME_HINT, check_writable, describe_os_error
from .._sqlite import open_readonly, require_tables
from ..errors import CapabilityError, CodecError, DecodeError, UsageError
from ..record import MemoryRecord, SparseVector, Vector
from ..connectors._base import Reject

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
    if scores is not None and (not isinstance(scores, dict) or any(
            k in SCORE_FIELDS and (isinstance(v, bool) or not isinstance(v, (int, float)))
            for k, v in scores.items())):
        raise ValueError("scores must be an object whose elo, recency, trust and decay are numbers")
    lineage = extra.get("lineage")
    if lineage is not None and (not isinstance(lineage, dict) or any(
            not isinstance(v, list) or not all(isinstance(t, str) for t in v) for v in lineage.values())):
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
    receipt_rows = [(*key, kind, dumps_exact(value))
                    for kind, value in (extra.get("provenance") or {}).items()]
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


STAGING_RUN = "CREATE TABLE s_run (token TEXT NOT NULL, started_ns INTEGER NOT NULL);"
"""Which run a staging file belongs to: a resumed run continues only its own."""
_CLOCK_SLACK_NS = 2_000_000_000
"""File times may be rounded (to 2 s on some file systems) against the clock."""


class CartridgeBuilder:
    """Stages records keyed by (namespace, id), any order, with upserts; ``finish`` builds the
    canonical cartridge from them.

    ``resume``: the :meth:`state` a checkpoint kept (``True``: continue without one). A resumed
    run continues the staging file only when it is that run's (its token) and holds at least
    the records the checkpoint counts; killed after the rename (its staging file gone), it
    starts from the finished cartridge when that was built after the run began and holds as
    many records. Anything else is refused: resuming never silently starts over."""

    def __init__(self, path: Path, *, resume: bool | dict[str, Any] | None) -> None:
        self.path = path
        self.staging = path.with_name(path.name + ".partial")
        state = resume_state(resume)
        check_writable(path)
        self.token = ""
        self.started_ns = 0
        try:
            self._open(state)
        except BaseException as err:
            self.abort()
            if isinstance(err, (sqlite3.Error, OSError)):
                reason = describe_os_error(err) if isinstance(err, OSError) else sqlite_reason(err)
                raise UsageError(f"cannot write {self.staging}: {reason}", hint=(
                    RESUME_HINT if state is not None else
                    "choose another location, free some space or fix its permissions")) from None
            raise

    def _open(self, state: dict[str, Any] | None) -> None:
        if state is None and self.staging.exists():
            self.staging.unlink()
        if state is not None and not self.staging.exists():
            check_finished(self.path, state)  # killed after the rename: start from the cartridge
        fresh = not self.staging.exists()
        self.db = sqlite3.connect(self.staging, isolation_level=None)
        self.db.execute("PRAGMA page_size=16384")
        self.db.execute("PRAGMA journal_mode=WAL")
        # like the .vmig writer: what a batch wrote survives a killed process (the OS has it); a
        # power loss during a run means running it again
        self.db.execute("PRAGMA synchronous=OFF")
        self.metrics: dict[str, str | None] = dict((state or {}).get("metrics") or {})
        self.dims: dict[str, int] = dict((state or {}).get("dims") or {})
        """Vector sizes the cartridge written into already holds (its records are kept)."""
        self.replacing = not fresh  # a resumed run repeats pages: replace, never add twice
        if fresh:
            self.db.executescript(STAGING + STAGING_RUN)
            self.token, self.started_ns = (state["token"], state["started_ns"]) if state else (
                uuid.uuid4().hex, time.time_ns())
            self.db.execute("INSERT INTO s_run VALUES (?, ?)", (self.token, self.started_ns))
            if self.path.exists():
                self._seed(self.path)
                self.replacing = True
        else:
            self.token, self.started_ns = self._own_staging(state or {})
        self.staged = int(self.db.execute("SELECT count(*) FROM s_records").fetchone()[0])
        wrote = (state or {}).get("staged", 0)
        if self.staged < wrote:
            raise DecodeError(f"cannot resume: {self.staging} holds {self.staged} records, the"
                              f" checkpoint wrote {wrote}", location=str(self.staging),
                              hint=RESUME_HINT)

    def _own_staging(self, state: dict[str, Any]) -> tuple[str, int]:
        """The staging file's run token, refused when it is another run's (or a file from an
        older vexchange, which kept none)."""
        try:
            token, started = self.db.execute("SELECT token, started_ns FROM s_run").fetchone()
        except (sqlite3.DatabaseError, TypeError):
            raise DecodeError(f"cannot resume: {self.staging} is not a staging file this run"
                              " wrote", location=str(self.staging), hint=RESUME_HINT) from None
        if state.get("token", token) != token:
            raise DecodeError(f"cannot resume: {self.staging} belongs to another run",
                              location=str(self.staging), hint=RESUME_HINT)
        return str(token), int(started)

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps to continue: the run's token and start, the records staged,
        and the metrics and sizes taken from a cartridge written into."""
        return {"token": self.token, "started_ns": self.started_ns, "staged": self.staged,
                "metrics": dict(self.metrics), "dims": dict(self.dims)}

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
                               ("scores", "t.elo, t.recency, t.trust, t.decay, t.uses, t.helpful,"
                                          " t.last_used_at"),
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
        try:
            return self._write(records, text_refs or {})
        except sqlite3.Error as err:  # a full disk, an I/O error: the staged batches stay
            raise CodecError(f"cannot write {self.staging}: {sqlite_reason(err)}") from None

    def _write(self, records: Sequence[MemoryRecord],
               refs: dict[int, str]) -> list[tuple[MemoryRecord, str]]:
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
        for key, record in zip(keys, records, strict=False):
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
            replaced = 0
            if replace:
                for table in ("records", *_PARTS):
                    done = db.executemany(f"DELETE FROM s_{table} WHERE nskey = ? AND id = ?", keys)
                    replaced += done.rowcount if table == "records" else 0
            db.executemany("INSERT INTO s_records VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", staged)
            db.executemany("INSERT INTO s_vectors VALUES (?,?,?,?,?,?)", vectors)
            db.executemany("INSERT INTO s_sparse_vectors VALUES (?,?,?,?,?,?)", sparse)
            db.executemany("INSERT INTO s_scores VALUES (?,?,?,?,?,?,?,?,?)", scores)
            db.executemany("INSERT INTO s_lineage VALUES (?,?,?,?)", lineage)
            db.executemany("INSERT INTO s_receipts VALUES (?,?,?,?)", receipts)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite may have rolled back already (a full disk)
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise
        self.staged += len(staged) - replaced

    def finish(self, metrics: dict[str, str | None], info: dict[str, str] | None = None) -> None:
        """Build the cartridge from the staging file, in canonical order, and rename it in."""
        info = info or {"created_by": f"vexchange {__version__}"}
        # built under a name of its own (never a file vexchange did not create), then renamed
        # in; killed after that, a resumed run starts from the cartridge (check_finished)
        building = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.building")
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.db.close()
            build(self.staging, building, {**self.metrics, **{k: v for k, v in metrics.items() if v}},
                  info)
            os.replace(building, self.path)
        except (sqlite3.Error, OSError) as err:
            _unlink_quietly(building)
            reason = describe_os_error(err) if isinstance(err, OSError) else sqlite_reason(err)
            raise CodecError(f"cannot write {self.path}: {reason}") from None
        self.staging.unlink()
        for suffix in ("-wal", "-shm"):
            Path(str(self.staging) + suffix).unlink(missing_ok=True)
        for stale in self.path.parent.glob(f".{glob.escape(self.path.name)}.*.building"):
            if _BUILDING.fullmatch(stale.name[len(self.path.name) + 2:]):
                _unlink_quietly(stale)  # a killed build's, by its name (ours alone)

    def abort(self) -> None:
        """Keep the staging file (a resumed run continues from it) and let it go."""
        try:
            if hasattr(self, "db"):
                self.db.close()
        except sqlite3.Error:
            pass


_BUILDING = re.compile(r"[0-9a-f]{32}\.building")


def sqlite_reason(err: sqlite3.Error) -> str:
    """A failed SQLite write in words: SQLite reports a full disk as SQLITE_FULL, and a file
    size limit (or a failed write) as a disk I/O error."""
    name = getattr(err, "sqlite_errorname", "")
    if name == "SQLITE_FULL" or name.startswith("SQLITE_IOERR_WRITE"):
        return f"no space left on the device (or the file size limit was reached) ({err})"
    if name in ("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM"):
        return f"the file or its folder cannot be written ({err})"
    return str(err)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def resume_state(resume: bool | dict[str, Any] | None) -> dict[str, Any] | None:
    """A checkpoint's builder state, checked; ``True`` (a caller without one) is an empty
    state, whose checks are the ones that need no figures; None or False: a fresh run."""
    if resume is None or resume is False:
        return None
    state: dict[str, Any] = {} if resume is True else dict(resume)
    if resume is not True and not (isinstance(state.get("token"), str)
                                   and isinstance(state.get("started_ns"), int)
                                   and isinstance(state.get("staged"), int)):
        raise UsageError("the checkpoint does not say which staging file and how many records"
                         " it covers, so the run cannot be continued safely", hint=RESUME_HINT)
    return state


def check_finished(path: Path, state: dict[str, Any]) -> None:
    """Refuse to resume from the finished cartridge at ``path`` (the staging file being gone)
    unless it was built after the run began and holds the records the checkpoint counts: a
    cartridge of an earlier run is never taken for this one's."""
    if not path.is_file():
        raise UsageError(f"cannot resume: {path.with_name(path.name + '.partial')} is missing,"
                         " so the records the checkpoint counts as written are not there",
                         hint=RESUME_HINT)
    built = path.stat().st_mtime_ns
    cartridge = Cartridge(path)
    try:
        held = cartridge.count()
    finally:
        cartridge.close()
    if built + _CLOCK_SLACK_NS < state.get("started_ns", 0) or held < state.get("staged", 0):
        raise UsageError(f"cannot resume: the staging file is missing and {path} is not the"
                         " cartridge this run built", hint=RESUME_HINT)


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


def _row_reject(path: Path, rid: int, record_id: Any, namespace: Any, reason: str, detail: str,
                record: Any) -> Reject:
    """A row that fails its check when read, as a Reject naming its rid (for the rejects file)."""
    return Reject(reason=reason, detail=detail, id=str(record_id), namespace=namespace,
                  location=f"{path} rid {rid}", record=record)


def _record_json(record: MemoryRecord) -> Any:
    """The record as a .vmig.jsonl object, so a rejected row can be looked at and fixed."""
    from ..codecs.vmig import encode_record

    try:
        return orjson.loads(encode_record(record))
    except (ValueError, TypeError):
        return {"id": record.id, "namespace": record.namespace, "unencodable": repr(record)}


TABLES = ("cartridge", "embeddings", "records", "vectors", "sparse_vectors", "scores", "lineage",
          "receipts", "feedback", "records_fts")
"""Every table of SCHEMA: a cartridge holds these as real tables, and no view or trigger."""


class Cartridge:
    """A finished cartridge, opened read-only (or read-write for ``feedback``).

    Opened through _sqlite, so reading a cartridge from anyone is bounded: read-only, every
    statement time-bounded, every SQLite error a DecodeError naming the file, and refused up
    front unless each table of the schema is a real table and the file holds no view or
    trigger (SCHEMA has none; one could run any query). The cartridge of a VectorPack
    (``<pack>/tables/``), whose hash its opener checks, is opened ``immutable``."""

    def __init__(self, path: Path, *, writable: bool = False) -> None:
        if not path.is_file():
            raise UsageError(f"no cartridge at {path}")
        self.db = open_readonly(path, writable=writable, immutable=_in_pack(path))
        try:
            meta = _open_checks(self.db, path)
        except BaseException:
            self.db.close()
            raise
        self.path, self.meta = path, meta
        self._sparse: bool | None = None

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM records").fetchone()[0])

    def embeddings(self) -> dict[str, dict[str, Any]]:
        return {name: {"model": model, "dims": dims, "metric": metric, "records": n}
                for name, model, dims, metric, n in self.db.execute("SELECT * FROM embeddings")}

    def records(self, after: int, limit: int, text_of: Any = None, *,
                verify: bool = False, before: int | None = None) -> tuple[list[MemoryRecord | Reject], int]:
        """Up to ``limit`` records after rid ``after`` (and below rid ``before``, a parallel
        run's shard), and the last rid read.

        With ``verify`` each record's content id is computed again from what the row holds
        and compared with the one stored: a row changed after the cartridge was built (or a
        payload that is not JSON) comes back as a ``Reject`` naming its rid, never a record.

        Built for speed: one query for the records, one for their vectors (cheaper than a join
        here), sparse vectors asked for only when the cartridge holds any."""
        rows = self.db.execute(
            "SELECT rid, namespace, id, id_type, text, text_ref, modality, created_at, updated_at,"
            " source_store, payload, content_id FROM records WHERE rid > ? AND rid < ? ORDER BY rid LIMIT ?",
            (after, (1 << 63) - 1 if before is None else before, limit)).fetchall()
        if not rows:
            return [], after
        previous = after
        for row in rows:  # a damaged b-tree can hand rids back out of order: never loop on it
            if row[0] <= previous:
                raise DecodeError(f"the records table is damaged: rid {row[0]} is not above"
                                  f" {previous}", location=str(self.path))
            previous = row[0]
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
        parse = loads_exact  # exact big integers, and nesting bounded (orjson alone takes 1024 levels)
        out: list[MemoryRecord | Reject] = []
        for rid, namespace, rid_id, id_type, text, text_ref, modality, created, updated, store, payload, \
                stored_id in rows:
            try:
                body = parse(payload)
            except (ValueError, TypeError) as err:
                if not verify:
                    raise DecodeError(f"rid {rid}: the payload is not JSON ({err})",
                                      location=str(self.path)) from None
                out.append(_row_reject(self.path, rid, rid_id, namespace, "bad_row",
                                       f"the payload is not JSON ({err})", {"payload": str(payload)}))
                continue
            if text_ref is not None:
                if text_of is None:
                    raise DecodeError(f"record {rid_id!r} keeps its text in blob {text_ref}; open it"
                                      " from its VectorPack", location=str(self.path))
                text = text_of(text_ref)
            record = MemoryRecord(
                id=rid_id, text=text, vectors=vectors.get(rid, {}), namespace=namespace,
                metadata=body.get("metadata"), created_at=created, updated_at=updated,
                source_store=store, score=body.get("score"), modality=modality, id_type=id_type,
                extra=body.get("extra") or {}, sparse=sparse.get(rid, {}))
            if verify and content_id(record) != stored_id:
                out.append(_row_reject(
                    self.path, rid, rid_id, namespace, "content_id_mismatch",
                    f"the text, modality and metadata of record {rid_id!r} do not hash to its content id"
                    f" {str(stored_id)[:16]}... (the row changed after the cartridge was built)",
                    _record_json(record)))
                continue
            out.append(record)
        return out, high

    def rid_cuts(self, shards: int) -> list[int]:
        """The rid of every ``count / shards``-th record in rid order: where a parallel run's
        shards start (``CartridgeConnector.shard_plan``)."""
        total = self.count()
        return [int(self.db.execute("SELECT rid FROM records ORDER BY rid LIMIT 1 OFFSET ?",
                                    (total * i // shards,)).fetchone()[0]) for i in range(1, shards)]

    def content_problems(self, text_of: Any = None, limit: int = 10) -> tuple[int, list[str]]:
        """How many rows fail the content-id check of :meth:`records`, and the first ``limit``
        of them described (``pack verify``, ``--verify-first``)."""
        found, last = 0, 0
        described: list[str] = []
        while True:
            items, last = self.records(last, 2000, text_of, verify=True)
            for item in items:
                if isinstance(item, Reject):
                    found += 1
                    if len(described) < limit:
                        described.append(f"{item.location}: {item.detail}")
            if len(items) < 2000:
                return found, described

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


def _in_pack(path: Path) -> bool:
    """A cartridge at ``<pack>/tables/`` beside the pack's manifest: a file nothing changes."""
    return path.parent.name == "tables" and (path.parent.parent / "manifest.yaml").is_file()


def _open_checks(db: sqlite3.Connection, path: Path) -> dict[str, str]:
    """The cartridge's own table, once the file is known to be a cartridge of a version this
    vexchange reads whose schema is tables only; a DecodeError naming the file otherwise."""
    where = str(path)
    try:
        require_tables(db, ["cartridge"], where)
        meta = dict(db.execute("SELECT key, value FROM cartridge").fetchall())
    except DecodeError as err:
        raise DecodeError(f"not a vexchange cartridge ({err.reason})", location=where) from None
    if meta.get("format") != FORMAT:
        raise DecodeError(f"not a vexchange cartridge (format {meta.get('format')!r})", location=where)
    version = meta.get("schema_version", "0")
    if not isinstance(version, str) or not version.isdigit():
        raise DecodeError(f"the cartridge's schema_version {version!r} is not a number", location=where)
    if int(version) > SCHEMA_VERSION:
        raise DecodeError(f"cartridge schema {version} is newer than this vexchange"
                          f" reads ({SCHEMA_VERSION})", location=where, hint="upgrade vexchange")
    require_tables(db, TABLES, where)
    active = db.execute("SELECT type, name FROM sqlite_master WHERE type IN ('view', 'trigger')"
                        " ORDER BY name LIMIT 1").fetchone()
    if active is not None:
        raise DecodeError(f"it holds a {active[0]} ({active[1]!r}); a cartridge holds only tables"
                          " and indexes (a view or trigger could run any query)", location=where)
    return meta

"""``vektor``: a VEKTOR Slipstream SQLite memory database. docs/connectors/vektor.md.

URL forms: ``vektor:///abs/path/memory.db``, ``vektor:relative.db``, or ``--from vektor --db x.db``.

Reading opens the file read-only and pages by rowid (keyset), so memory is flat and a run can
resume from the last rowid. A database can come from anyone: it is opened through _sqlite (read
only, hardened, every statement time-bounded), and ``memories`` and the side tables must be
real tables (a view in their place, which could run any query, is refused before one runs).
Every column that is not id, content, namespace, a timestamp or the vector becomes a metadata
key (agent_id, tags, importance, memory_type, pinned, summary, ...).

Writing creates a Slipstream-layout database when the file does not exist, and otherwise writes
in the layout it finds. Each batch is one transaction: a failure leaves the database as it was
before that batch. Rows are upserted (re-runs never duplicate, and change nothing). Ids are
global, one row per id: the same id in another namespace is an ``id_conflict``, never an
overwrite. What the columns cannot hold goes to the side table. The FTS index stays correct:
existing triggers do their work, where a trigger is missing the connector updates
``memories_fts`` itself, and a batch of new rows is indexed in one statement where the insert
trigger is Slipstream's own copy (``_FtsPlan.batch_insert``).
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

from .._atomic import check_writable
from .._json import dumps_exact
from .._time import _MS_THRESHOLD
from .._sqlite import error_kind, open_readonly, require_tables
from ..errors import DecodeError, LayoutMismatchError, TransientError, UsageError
from ..record import MemoryRecord, canonical_int
from ..spec import StoreSpec
from ._base import AtPath, Capabilities, Connector, Page, Reject, Shard, VectorSpace, Writer
from ._vektor_schema import (
    SIDE_DDL,
    SIDE_TABLE,
    SPACES_TABLE,
    SLIPSTREAM_DDL,
    Layout,
    PlainRows,
    detect_layout,
    fingerprint,
    overrides_for,
    plain_condition,
    record_to_row,
    row_to_record,
    stored_identity,
    stored_record,
)

__all__ = ["VektorConnector"]

_BUSY_TIMEOUT_MS = 5000
_INT64_MAX = (1 << 63) - 1
_INT64_MIN = -(1 << 63)
_IN_CHUNK = 500
"""Ids per ``IN (...)`` list: far below SQLite's bound on parameters (32766; 999 before 3.32)."""
_MIN_SHARD_ROWS = 256
"""A parallel run splits a database into shards of at least this many rows."""
_FRESH_CEILING = -(1 << 62)
"""Fresh rowids (for ids that are not their own rowid) are taken from [-2**63, -2**62)."""
CHANGE_MARGIN_MS = 300_000
"""An incremental run reads again the changes of the 5 minutes before the previous run's mark:
a writer whose transaction stamped ``updated_at`` before that run read and committed after it
is still seen (the engine drops what its digest says is unchanged)."""
_UPDATED_MS = (f"(CASE WHEN abs(m.updated_at) >= {_MS_THRESHOLD} THEN m.updated_at"
               " ELSE m.updated_at * 1000 END)")
"""``updated_at`` in milliseconds, as ``parse_timestamp`` reads an epoch number."""
_DATED = "typeof(m.updated_at) IN ('integer', 'real')"


class VektorConnector(AtPath, Connector):
    name = "vektor"
    url_options = frozenset({'db'})
    takes_path = True
    capabilities = Capabilities(read=True, write=True, named_vectors=True, fixed_dims=True,
                                read_ahead=True, read_in_process=True)

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        path = spec.path or spec.params.get("db")
        if not path:
            raise UsageError("vektor needs a database path: vektor:///path/memory.db or --db PATH")
        self.path = Path(path)

    def describe(self) -> dict[str, Any]:
        return {"connector": "vektor", "location": str(self.path.resolve())}

    # ------------------------------------------------------------------------------ reading

    def _open_read(self) -> tuple[sqlite3.Connection, Layout]:
        if not self.path.exists():
            raise UsageError(f"no such database: {self.path}")
        if self.path.is_dir():
            raise UsageError(f"{self.path} is a directory, not a VEKTOR database")
        with _translated(self.path, "open"):
            db = open_readonly(self.path, translate=False)
        try:
            with _translated(self.path, "open"):
                db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
                _require_real_tables(db, self.path)
            return db, _require_layout(db, self.path)
        except BaseException:
            db.close()
            raise

    def count(self) -> int | None:
        db, _ = self._open_read()
        with _translated(self.path, "count"):
            try:
                return int(db.execute("SELECT COUNT(*) FROM memories").fetchone()[0])
            finally:
                db.close()

    def vector_spaces(self) -> dict[str, VectorSpace]:
        db, layout = self._open_read()
        try:
            with _translated(self.path, "describe"):
                return _spaces(db, layout)
        finally:
            db.close()

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        db, layout = self._open_read()
        try:
            yield from self._pages(db, layout, batch_size, int(after) if after else None)
        finally:
            db.close()

    def shard_plan(self, max_shards: int) -> list[Shard]:
        """Rowid ranges of about equal row counts, cut at the rowids found at every
        ``count / max_shards``-th row in rowid order: the same rows give the same plan."""
        db, _ = self._open_read()
        try:
            with _translated(self.path, "plan"):
                total = int(db.execute("SELECT COUNT(*) FROM memories").fetchone()[0])
                shards = max(1, min(max_shards, total // _MIN_SHARD_ROWS))
                if shards == 1:
                    return [Shard(index=0)]
                cuts = [int(db.execute("SELECT rowid FROM memories ORDER BY rowid LIMIT 1 OFFSET ?",
                                       (total * i // shards,)).fetchone()[0]) for i in range(1, shards)]
        finally:
            db.close()
        bounds: list[int | None] = [None, *cuts, None]
        return [Shard(index=i, kind="rowid", start=bounds[i], end=bounds[i + 1],
                      records=total * (i + 1) // shards - total * i // shards) for i in range(shards)]

    # ------------------------------------------------------------------ incremental runs

    def keeps_records(self) -> bool:
        return True  # the writer upserts into the database it finds

    def change_mark(self) -> str | None:
        """The newest ``updated_at`` (epoch seconds or milliseconds, as Slipstream writes it),
        in milliseconds, never later than now; None when ``memories`` has no such column."""
        db, layout = self._open_read()
        try:
            if "updated_at" not in layout.columns:
                return None
            with _translated(self.path, "read"):
                newest = db.execute(f"SELECT max({_UPDATED_MS}) FROM memories m WHERE {_DATED}").fetchone()[0]
        finally:
            db.close()
        now = time.time_ns() // 1_000_000
        return str(now if newest is None else min(int(newest), now))

    def read_changed(self, mark: str, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        """Rows whose ``updated_at`` is at or after ``mark`` less ``CHANGE_MARGIN_MS``, and
        every row whose ``updated_at`` is not a number (NULL, text), in rowid order."""
        db, layout = self._open_read()
        try:
            since = int(mark) - CHANGE_MARGIN_MS
            yield from self._pages(db, layout, batch_size, int(after) if after else None,
                                   where=f"NOT ({_DATED} AND {_UPDATED_MS} < {since})")
        finally:
            db.close()

    def list_ids(self, *, batch_size: int) -> Iterator[list[tuple[str | None, str]]]:
        """``(namespace, id)`` of every row as the reader gives it (the side table's id and
        namespace where they apply), unreadable rows included."""
        db, layout = self._open_read()
        try:
            with _translated(self.path, "read"):
                has_side = _has_table(db, SIDE_TABLE)
            columns = ", ".join(f'm."{c}"' for c in layout.columns)
            side = (f"s.fingerprint, s.overrides FROM memories m LEFT JOIN {SIDE_TABLE} s"
                    " ON s.row_key = CAST(m.id AS TEXT)") if has_side else "NULL, NULL FROM memories m"
            first = f"SELECT m.rowid, {columns}, {side} ORDER BY m.rowid LIMIT ?"
            after = f"SELECT m.rowid, {columns}, {side} WHERE m.rowid > ? ORDER BY m.rowid LIMIT ?"
            last: int | None = None
            while True:
                with _translated(self.path, "read"):
                    rows = (db.execute(first, (batch_size,)) if last is None
                            else db.execute(after, (last, batch_size))).fetchall()
                page = []
                for row in rows:
                    values = dict(zip(layout.columns, row[1:-2], strict=False))
                    record_id, namespace = stored_identity(values, row[-2], row[-1])
                    page.append((namespace, record_id))
                if page:
                    yield page
                if len(rows) < batch_size:
                    return
                last = rows[-1][0]
        finally:
            db.close()

    def read_shard(self, shard: Shard, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        if shard.kind == "whole":
            return self.read(batch_size=batch_size, after=after)
        if shard.kind != "rowid":
            raise NotImplementedError(f"vektor has no {shard.kind} shards")
        return self._shard_pages(shard, batch_size, after)

    def _shard_pages(self, shard: Shard, batch_size: int, after: str | None) -> Iterator[Page]:
        db, layout = self._open_read()
        try:
            # the first page of a shard starts at its lower bound, included
            last = int(after) if after else (None if shard.start is None else shard.start - 1)
            yield from self._pages(db, layout, batch_size, last, end=shard.end)
        finally:
            db.close()

    def _pages(self, db: sqlite3.Connection, layout: Layout, batch_size: int,
               last: int | None, *, end: int | None = None, where: str | None = None) -> Iterator[Page]:
        """Pages in rowid order after ``last``, below ``end``, of the rows ``where`` selects
        (an SQL condition on ``m``; an incremental run's changed rows). Each row comes with
        ``plain_condition``'s value, and the page's plain rows become records together
        (``PlainRows``); the others one by one (``_item``)."""
        with _translated(self.path, "read"):
            has_side = _has_table(db, SIDE_TABLE)
        columns = ", ".join(f'm."{c}"' for c in layout.columns)
        side = (f"s.fingerprint, s.overrides FROM memories m LEFT JOIN {SIDE_TABLE} s"
                " ON s.row_key = CAST(m.id AS TEXT)") if has_side else "NULL, NULL FROM memories m"
        head = f"SELECT m.rowid, {plain_condition(layout, has_side)}, {columns}, {side}"
        conditions = ([] if end is None else [f"m.rowid < {int(end)}"]) + ([where] if where else [])
        bound = "".join(f" AND {c}" for c in conditions)
        # no lower bound before the first page: a row may sit at the lowest rowid, -2**63
        first = (f"{head}{' WHERE ' + ' AND '.join(conditions) if conditions else ''}"
                 " ORDER BY m.rowid LIMIT ?")
        after = f"{head} WHERE m.rowid > ?{bound} ORDER BY m.rowid LIMIT ?"
        plain = PlainRows(layout, first=2, flag=1)
        cursor = last
        while True:
            with _translated(self.path, "read"):
                rows = (db.execute(first, (batch_size,)) if cursor is None
                        else db.execute(after, (cursor, batch_size))).fetchall()
            if not rows:
                yield Page([], None)
                return
            items: list[MemoryRecord | Reject] = [
                record if record is not None else self._item(layout, row)
                for record, row in zip(plain.records(rows), rows, strict=True)]
            cursor = rows[-1][0]
            yield Page(items, str(cursor) if len(rows) == batch_size else None)
            if len(rows) < batch_size:
                return

    def _item(self, layout: Layout, row: tuple[Any, ...]) -> MemoryRecord | Reject:
        """A row of ``_pages`` (rowid, plain flag, the columns, fingerprint, overrides)."""
        values = dict(zip(layout.columns, row[2:-2], strict=False))
        try:
            return stored_record(layout, values, row[-2], row[-1])
        except ValueError as err:
            return Reject(reason="bad_row", detail=str(err), id=str(values.get("id")),
                          namespace=values.get("namespace"),
                          location=f"{self.path} rowid {row[0]}", record=_row_json(values))

    # ------------------------------------------------------------------------------ writing

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        return VektorWriter(self.path, dry_run=dry_run, spaces=spaces or {})


class VektorWriter(Writer):
    def __init__(self, path: Path, *, dry_run: bool,
                 spaces: dict[str, VectorSpace] | None = None) -> None:
        self.path = path
        self.dry_run = dry_run
        creating = not path.exists()
        if creating and dry_run:
            self.db = _connect(":memory:")
        else:
            if creating:
                check_writable(path)
            self.db = _connect(str(path))
        with _translated(path, "open"):
            if creating:
                self.db.executescript(SLIPSTREAM_DDL)
            self.layout = _require_layout(self.db, path)
            if not dry_run:
                self.db.executescript(SIDE_DDL)
        self._unsaved_spaces = dict(spaces or {})
        self._schema_version: int | None = None
        self._inspect_schema()

    def _inspect_schema(self) -> None:
        """What the writer plans by (the layout, the FTS triggers, the columns whose default is
        NULL), again whenever the schema changed since it last looked (``PRAGMA
        schema_version``, read inside each batch's transaction): another program may add,
        drop or replace a trigger between two batches, and ``_FtsPlan.batch_insert`` must
        never drop a trigger it has not looked at, nor create one again from an old text."""
        version = self.db.execute("PRAGMA schema_version").fetchone()[0]
        if version == self._schema_version:
            return
        self.layout = _require_layout(self.db, self.path)
        self.fts = _FtsPlan.inspect(self.db)
        self.null_default = _null_default_columns(self.db, self.layout)
        self._schema_version = version

    def _save_spaces(self) -> None:
        """Inside the first batch's transaction: no write happens before the first batch."""
        for name, space in self._unsaved_spaces.items():
            if space.metric or space.dims:
                self.db.execute(f"INSERT OR REPLACE INTO {SPACES_TABLE} VALUES (?, ?, ?)",
                                (name, space.dims, space.metric))
        self._unsaved_spaces = {}

    _spaces_at_close: dict[str, VectorSpace] | None = None

    def vector_spaces(self) -> dict[str, VectorSpace]:
        if self._spaces_at_close is not None:
            return self._spaces_at_close
        return _spaces(self.db, self.layout)

    def target_dims(self) -> dict[str, int]:
        col = self.layout.vector_column
        if not col:
            return {}
        row = self.db.execute(
            f'SELECT length("{col}") FROM memories WHERE "{col}" IS NOT NULL LIMIT 1').fetchone()
        return {"": row[0] // 4} if row and row[0] else {}

    def write(self, batch: list[MemoryRecord]) -> list[Reject]:
        if self.dry_run:
            return []
        with _translated(self.path, "write"):
            try:
                self.db.execute("BEGIN IMMEDIATE")
                self._inspect_schema()
                self._save_spaces()
                rejects = self._write_batch(batch)
                # the batch's own trigger swap (``_FtsPlan.batch_insert``) changes the schema
                # version and nothing the writer plans by
                self._schema_version = self.db.execute("PRAGMA schema_version").fetchone()[0]
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
        return rejects

    def _write_batch(self, batch: list[MemoryRecord]) -> list[Reject]:
        """Record by record, each one's row and side-table entry complete before the next is
        placed: a later record of the same batch sees it exactly as a later run would. A batch
        of new rows only takes ``_insert_fresh``, which writes the same rows in fewer calls."""
        keys = self._fresh_keys(batch)
        if keys is not None:
            self._insert_fresh(batch, keys)
            return []
        rejects: list[Reject] = []
        for record in batch:
            key, holder = self._place(record)
            if holder is not None and holder.namespace != record.namespace:
                rejects.append(Reject(
                    reason="id_conflict", id=record.id, namespace=record.namespace,
                    detail=f"row {key} already holds the memory {record.id!r} of namespace"
                           f" {holder.namespace!r}; VEKTOR ids are global (one row per id),"
                           " so it is not overwritten"))
                continue
            self._upsert(key, record_to_row(self.layout, record), exists=holder is not None)
            self._store_overrides(record, key)
        return rejects

    def _fresh_keys(self, batch: list[MemoryRecord]) -> list[int] | None:
        """The rowids of a batch that ``_place`` would put, every one, in a new row of its own,
        or None for a batch that needs the record-by-record path. A canonical integer id within
        int64 is its own rowid; any other id (``mem-0001``) takes the next fresh key, as
        ``_fresh_key`` gives them one after another. It holds when no id repeats, the side
        table maps none of them, no row sits at any of these rowids, and, with fresh keys
        among them, no own rowid falls in the fresh keys' range (one there could be taken by a
        fresh key first, which only the record-by-record path sorts out). For such a batch no
        record's place depends on another's, so placing them together is placing them one by
        one."""
        if not self.layout.int_ids or not batch:
            return None
        own = [_rowid_for(record.id) for record in batch]
        ids = [record.id for record in batch]
        if len(set(ids)) != len(ids):
            return None
        named = own.count(None)
        if named and any(key is not None and key < _FRESH_CEILING for key in own):
            return None
        first = self._fresh_key() if named else _INT64_MIN
        if named and first + named > _FRESH_CEILING:
            return None
        fresh = iter(range(first, first + named))
        keys = [next(fresh) if key is None else key for key in own]
        for start in range(0, len(keys), _IN_CHUNK):
            part = keys[start:start + _IN_CHUNK]
            marks = ", ".join("?" * len(part))
            if self.db.execute(f"SELECT 1 FROM {SIDE_TABLE} WHERE source_id IN ({marks}) LIMIT 1",
                               ids[start:start + _IN_CHUNK]).fetchone() is not None:
                return None
            if self.db.execute(f"SELECT 1 FROM memories WHERE id IN ({marks}) LIMIT 1",
                               part).fetchone() is not None:
                return None
        return keys

    def _insert_fresh(self, batch: list[MemoryRecord], keys: list[int]) -> None:
        """``_upsert`` and ``_store_overrides`` of every record of a batch of new rows
        (``_fresh_keys``): the rows inserted in order, by one ``executemany`` for each run of
        rows with the same columns (``memories_fts`` filled for the batch by
        ``_FtsPlan.batch_insert``), then read back together, and the side table written for
        those whose row does not give them back exactly (``overrides_for``), its stale entries
        for the others removed.

        Reading the rows back costs less than telling in Python which values SQLite stores as
        bound (a type test of every value by its column's affinity cost twice the ``SELECT``:
        bench/RESULTS.md), so every row is read back."""
        layout, db = self.layout, self.db
        rows = [record_to_row(layout, record) for record in batch]
        # a column left out takes its default; one whose default is NULL may as well be given
        # NULL, so that rows with and without a summary, say, go in by the same statement
        for row in rows:
            for column in self.null_default:
                row.setdefault(column, None)
        shaped = [tuple(c for c in layout.columns if c in row) for row in rows]
        with self.fts.batch_insert(db, keys):
            self._insert_rows(keys, rows, shaped)
        stored = self._read_back(keys)
        entries: list[tuple[str, str | None, str, str]] = []
        cleared: list[str] = []
        for record, key in zip(batch, keys, strict=True):
            values, derived = stored[key]
            overrides = overrides_for(record, derived)
            row_key = str(key)
            source_id = record.id if row_key != record.id else None  # a fresh key's id: mapped
            if overrides or source_id:
                entries.append((row_key, source_id, fingerprint(values), dumps_exact(overrides)))
            else:
                cleared.append(row_key)
        if entries:
            db.executemany(f"INSERT OR REPLACE INTO {SIDE_TABLE} (row_key, source_id, fingerprint,"
                           " overrides) VALUES (?, ?, ?, ?)", entries)
        for start in range(0, len(cleared), _IN_CHUNK):
            part = cleared[start:start + _IN_CHUNK]
            db.execute(f"DELETE FROM {SIDE_TABLE} WHERE row_key IN ({', '.join('?' * len(part))})", part)

    def _insert_rows(self, keys: list[int], rows: list[dict[str, Any]],
                     shaped: list[tuple[str, ...]]) -> None:
        """The rows at ``keys``, in order: one ``executemany`` for each run of rows with the
        same columns (``shaped``)."""
        start = 0
        while start < len(rows):
            names = shaped[start]
            end = start + 1
            while end < len(rows) and shaped[end] == names:
                end += 1
            columns = ", ".join(f'"{c}"' for c in ("id", *names))
            marks = ", ".join("?" * (len(names) + 1))
            pick = itemgetter(*names)
            self.db.executemany(
                f"INSERT INTO memories ({columns}) VALUES ({marks})",
                [(keys[i], *pick(rows[i])) if len(names) > 1 else (keys[i], pick(rows[i]))
                 for i in range(start, end)])
            start = end

    def _read_back(self, keys: list[int]) -> dict[int, tuple[dict[str, Any], MemoryRecord]]:
        """The stored values of the rows at ``keys`` and the record each gives alone (what
        ``row_to_record`` gives: plain rows by ``PlainRows``, a page at a time)."""
        layout = self.layout
        columns = ", ".join(f'm."{c}"' for c in layout.columns)
        plain = PlainRows(layout, first=1, flag=0)
        out: dict[int, tuple[dict[str, Any], MemoryRecord]] = {}
        for start in range(0, len(keys), _IN_CHUNK):
            part = keys[start:start + _IN_CHUNK]
            rows = self.db.execute(
                f"SELECT {plain_condition(layout, False)}, {columns} FROM memories m"
                f" WHERE m.id IN ({', '.join('?' * len(part))})", part).fetchall()
            for row, record in zip(rows, plain.records(rows), strict=True):
                values = dict(zip(layout.columns, row[1:], strict=True))
                out[values["id"]] = (values, record if record is not None else row_to_record(layout, values))
        return out

    def _place(self, record: MemoryRecord) -> tuple[Any, _Holder | None]:
        """The row key of a record's id, and who holds that row now (None: a new row).

        An id keeps the row it was given before (the side table maps it). Otherwise a
        canonical integer id is its own rowid, unless another memory already holds that rowid
        (a string id given a fresh key, say, when "-1" arrives after "mem-a" took row -1):
        then it gets a fresh key too. Different ids never share a row."""
        if not self.layout.int_ids:
            return record.id, self._holder(record.id)
        mapped = self.db.execute(f"SELECT row_key FROM {SIDE_TABLE} WHERE source_id = ?",
                                 (record.id,)).fetchone()
        if mapped is not None:
            return int(mapped[0]), self._holder(int(mapped[0]))
        direct = _rowid_for(record.id)
        if direct is not None:
            holder = self._holder(direct)
            if holder is None or holder.id == record.id:
                return direct, holder
        return self._fresh_key(), None

    def _fresh_key(self) -> int:
        """A rowid for an id that cannot be its own, counted up from the bottom of int64: far
        from every id a source brings (Slipstream's own ids count up from 1; negative ones
        such as -1 or -7 keep their own rowid), and always free (one past the highest row of
        that range). An id whose rowid a fresh key took anyway is placed afresh itself."""
        top = self.db.execute("SELECT MAX(id) FROM memories WHERE id < ?",
                              (_FRESH_CEILING,)).fetchone()[0]
        return _INT64_MIN if top is None else int(top) + 1

    def _holder(self, key: Any) -> _Holder | None:
        """The id and namespace the row at ``key`` reads back as (None: no such row)."""
        columns = ", ".join(f'm."{c}"' for c in self.layout.columns)
        found = self.db.execute(
            f"SELECT {columns}, s.fingerprint, s.overrides FROM memories m"
            f" LEFT JOIN {SIDE_TABLE} s ON s.row_key = CAST(m.id AS TEXT) WHERE m.id = ?",
            (key,)).fetchone()
        if found is None:
            return None
        values = dict(zip(self.layout.columns, found[:-2], strict=False))
        return _Holder(*stored_identity(values, found[-2], found[-1]))

    def _upsert(self, key: Any, row: dict[str, Any], *, exists: bool) -> None:
        if exists:
            self.fts.before_update(self.db, key)
            sets = ", ".join(f'"{c}" = ?' for c in row)
            self.db.execute(f"UPDATE memories SET {sets} WHERE id = ?", (*row.values(), key))
            self.fts.after_update(self.db, key)
            return
        names = ", ".join(f'"{c}"' for c in ["id", *row])
        marks = ", ".join("?" * (len(row) + 1))
        self.db.execute(f"INSERT INTO memories ({names}) VALUES ({marks})", [key, *row.values()])
        self.fts.after_insert(self.db, key)

    def _store_overrides(self, record: MemoryRecord, key: Any) -> None:
        """Read the row back and keep, in the side table, what it does not give back exactly,
        and the id the row stands for when that is not its own key."""
        layout = self.layout
        columns = ", ".join(f'"{c}"' for c in layout.columns)
        row = self.db.execute(f"SELECT {columns} FROM memories WHERE id = ?", (key,)).fetchone()
        values = dict(zip(layout.columns, row, strict=False))
        overrides = overrides_for(record, row_to_record(layout, values))
        source_id = record.id if str(key) != record.id else None
        if overrides or source_id:
            self.db.execute(
                f"INSERT OR REPLACE INTO {SIDE_TABLE} (row_key, source_id, fingerprint, overrides)"
                " VALUES (?, ?, ?, ?)",
                (str(key), source_id, fingerprint(values), dumps_exact(overrides)))
        else:
            self.db.execute(f"DELETE FROM {SIDE_TABLE} WHERE row_key = ?", (str(key),))

    def delete(self, keys: list[tuple[str | None, str]]) -> None:
        """Delete the rows of these ``(namespace, id)`` pairs in one transaction, with their
        side-table entries and their FTS entries (by the database's trigger, else here); a
        row that another namespace holds, or none, is left alone."""
        if self.dry_run:
            return
        with _translated(self.path, "delete"):
            try:
                self.db.execute("BEGIN IMMEDIATE")
                for namespace, record_id in keys:
                    key = self._key_of(record_id)
                    holder = None if key is None else self._holder(key)
                    if holder is None or holder.id != record_id or holder.namespace != namespace:
                        continue
                    self.fts.before_delete(self.db, key)
                    self.db.execute("DELETE FROM memories WHERE id = ?", (key,))
                    self.db.execute(f"DELETE FROM {SIDE_TABLE} WHERE row_key = ?", (str(key),))
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise

    def _key_of(self, record_id: str) -> Any:
        """The row key an id was given (the side table's mapping, else its own), or None."""
        if not self.layout.int_ids:
            return record_id
        mapped = self.db.execute(f"SELECT row_key FROM {SIDE_TABLE} WHERE source_id = ?",
                                 (record_id,)).fetchone()
        return int(mapped[0]) if mapped is not None else _rowid_for(record_id)

    def finish(self, summary: dict[str, Any]) -> None:
        self._close()

    def abort(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
        self._close()

    def _close(self) -> None:
        """Close, keeping what the receipt asks about afterwards."""
        try:
            self._spaces_at_close = _spaces(self.db, self.layout)
        except sqlite3.Error:
            self._spaces_at_close = {}
        self.db.close()


class _Holder(NamedTuple):
    """Who a row stands for: a memory id and its namespace (None and "" are two namespaces,
    and neither is "default": an upsert may not move a memory out of any other one)."""

    id: str
    namespace: str | None


class _FtsPlan:
    """Keeps ``memories_fts`` in step where the database has no trigger doing it, and for a
    batch of new rows does the insert trigger's work in one statement (``batch_insert``)."""

    def __init__(self, columns: list[str], external: bool, triggers: set[str],
                 insert_trigger: _CopyTrigger | None = None) -> None:
        self.columns = columns
        self.external = external
        self.triggers = triggers
        self.insert_trigger = insert_trigger

    @classmethod
    def inspect(cls, db: sqlite3.Connection) -> _FtsPlan:
        sql_row = db.execute("SELECT sql FROM sqlite_master WHERE name = 'memories_fts'").fetchone()
        if sql_row is None:
            return cls([], False, set())
        columns = [r[1] for r in db.execute("PRAGMA table_info(memories_fts)")]
        triggers = {
            str(r[0]).upper() for r in db.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'memories'"
                " AND sql LIKE '%memories_fts%'")
        }
        events = {e for e in ("INSERT", "UPDATE", "DELETE") if any(f"AFTER {e}" in t for t in triggers)}
        return cls(columns, "CONTENT=" in str(sql_row[0]).upper().replace(" ", ""), events,
                   _CopyTrigger.find(db))

    @contextmanager
    def batch_insert(self, db: sqlite3.Connection, keys: list[int]) -> Iterator[None]:
        """Around the insert of a batch of new rows at ``keys``: afterwards ``memories_fts``
        holds what the insert trigger, or ``after_insert`` where there is none, puts there
        row by row, put by one ``INSERT ... SELECT`` per chunk of keys from the stored rows.

        SQLite runs a trigger program for every row, and for an FTS5 table that costs more
        than the index itself (about 20 µs a row, against 5 µs a row this way: bench/RESULTS.md).
        So a trigger that only copies the new row's columns into ``memories_fts``
        (``_CopyTrigger``, Slipstream's own) is dropped for the insert and created again with
        its own SQL text, all inside the batch's transaction: no other connection ever sees
        the database without it, and a failure or a crash rolls it back with the batch. The
        index then holds the same terms, documents and positions (compared through
        ``fts5vocab`` in tests); how FTS5 lays them out in its segments may differ. Any other
        trigger, or a second one on the insert, is left alone and fires row by row."""
        trigger = self.insert_trigger
        copy_columns = trigger.columns if trigger is not None else (
            self.columns if self.columns and "INSERT" not in self.triggers else None)
        if trigger is not None:
            db.execute(f'DROP TRIGGER "{trigger.name}"')
        yield
        if copy_columns:
            names = ", ".join(f'"{c}"' for c in copy_columns)
            for start in range(0, len(keys), _IN_CHUNK):
                part = keys[start:start + _IN_CHUNK]
                db.execute(f"INSERT INTO memories_fts (rowid, {names}) SELECT id, {names} FROM memories"
                           f" WHERE id IN ({', '.join('?' * len(part))}) ORDER BY id", part)
        if trigger is not None:
            db.execute(trigger.sql)

    def _values(self, db: sqlite3.Connection, key: Any) -> list[Any]:
        cols = ", ".join(f'"{c}"' for c in self.columns)
        return list(db.execute(f"SELECT {cols} FROM memories WHERE id = ?", (key,)).fetchone())

    def _insert(self, db: sqlite3.Connection, key: Any) -> None:
        cols = ", ".join(["rowid"] + [f'"{c}"' for c in self.columns])
        marks = ", ".join("?" * (len(self.columns) + 1))
        db.execute(f"INSERT INTO memories_fts ({cols}) VALUES ({marks})", [key, *self._values(db, key)])

    def after_insert(self, db: sqlite3.Connection, key: Any) -> None:
        if self.columns and "INSERT" not in self.triggers:
            self._insert(db, key)

    def before_update(self, db: sqlite3.Connection, key: Any) -> None:
        if not self.columns or "UPDATE" in self.triggers:
            return
        if self.external:
            cols = ", ".join(["memories_fts", "rowid"] + [f'"{c}"' for c in self.columns])
            marks = ", ".join("?" * (len(self.columns) + 2))
            db.execute(f"INSERT INTO memories_fts ({cols}) VALUES ({marks})",
                       ["delete", key, *self._values(db, key)])
        else:
            db.execute("DELETE FROM memories_fts WHERE rowid = ?", (key,))

    def after_update(self, db: sqlite3.Connection, key: Any) -> None:
        if self.columns and "UPDATE" not in self.triggers:
            self._insert(db, key)

    def before_delete(self, db: sqlite3.Connection, key: Any) -> None:
        if not self.columns or "DELETE" in self.triggers:
            return
        if self.external:
            cols = ", ".join(["memories_fts", "rowid"] + [f'"{c}"' for c in self.columns])
            marks = ", ".join("?" * (len(self.columns) + 2))
            db.execute(f"INSERT INTO memories_fts ({cols}) VALUES ({marks})",
                       ["delete", key, *self._values(db, key)])
        else:
            db.execute("DELETE FROM memories_fts WHERE rowid = ?", (key,))


class _CopyTrigger(NamedTuple):
    """The one insert trigger of ``memories``, when all it does is copy the new row's id and
    columns into ``memories_fts`` (Slipstream's ``memories_fts_insert``)."""

    name: str
    sql: str
    columns: list[str]

    @classmethod
    def find(cls, db: sqlite3.Connection) -> _CopyTrigger | None:
        # a trigger whose event cannot be told is counted as one on the insert: left alone
        inserts = _insert_triggers(db)
        if len(inserts) != 1:
            return None
        name, sql = inserts[0]
        shape = _COPY_TRIGGER.fullmatch(" ".join(sql.replace("(", " ( ").replace(")", " ) ")
                                                 .replace(",", " , ").replace(";", " ; ").split()))
        if shape is None or shape.group(1) != name:
            return None
        targets = [c.strip() for c in shape.group(2).split(",")]
        sources = [c.strip() for c in shape.group(3).split(",")]
        if targets[0].lower() != "rowid" or sources[0].lower() != "new.id" or len(targets) != len(sources):
            return None
        columns = targets[1:]
        if [s.lower() for s in sources[1:]] != [f"new.{c.lower()}" for c in columns]:
            return None
        return cls(name, sql, columns)


# which event a trigger of ``memories`` fires on, and the whole text of one that copies the new
# row into memories_fts (spaces around brackets, commas and semicolons made single first)
_TRIGGER_EVENT = re.compile(
    r"\s*CREATE\s+(?:TEMP\s+|TEMPORARY\s+)?TRIGGER\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r"(?:\"[^\"]*\"|\[[^\]]*\]|`[^`]*`|[^\s\"\[`]+)\s+(?:BEFORE\s+|AFTER\s+|INSTEAD\s+OF\s+)?"
    r"(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)
_COPY_TRIGGER = re.compile(
    r"CREATE TRIGGER (\w+) AFTER INSERT ON memories (?:FOR EACH ROW )?BEGIN INSERT INTO memories_fts"
    r" \( ((?:\w+ , )*\w+) \) VALUES \( ((?:new\.\w+ , )*new\.\w+) \) ; END", re.IGNORECASE)


# ------------------------------------------------------------------------------------ helpers


def _connect(target: str, *, uri: bool = False) -> sqlite3.Connection:
    db = sqlite3.connect(target, uri=uri, isolation_level=None, check_same_thread=False)
    db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    return db


def _insert_triggers(db: sqlite3.Connection) -> list[tuple[str, str]]:
    """``(name, sql)`` of each trigger of ``memories`` that fires on an insert; one whose event
    cannot be told counts as one."""
    rows = db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
                      " AND tbl_name = 'memories'").fetchall()
    return [(n, q) for n, q in rows
            if (event := _TRIGGER_EVENT.match(q)) is None or event.group(1).upper() == "INSERT"]


def _null_default_columns(db: sqlite3.Connection, layout: Layout) -> tuple[str, ...]:
    """The columns of ``memories`` (besides the id) whose default is NULL: no DEFAULT clause,
    no NOT NULL, not in the primary key. Inserting NULL into one stores what leaving it out
    stores."""
    out = []
    for _, name, _, notnull, default, pk in db.execute("PRAGMA table_info(memories)").fetchall():
        if default is None and not notnull and not pk and name in layout.columns and name != "id":
            out.append(name)
    return tuple(out)


def _require_layout(db: sqlite3.Connection, path: Path) -> Layout:
    with _translated(path, "open"):
        layout = detect_layout(db)
    if layout is None:
        raise LayoutMismatchError(
            f"{path} has no memories table: it is not a VEKTOR Slipstream database",
            connector="vektor", operation="open")
    if layout.kind == "slipstream" and "content" not in layout.columns:
        raise LayoutMismatchError(f"{path}: the memories table has no content column",
                                  connector="vektor", operation="open")
    return layout


def _require_real_tables(db: sqlite3.Connection, path: Path) -> None:
    """A reader selects from ``memories`` and the two side tables: each must be a table, never
    a view (which would run whatever query it holds, a recursive CTE that never ends...)."""
    try:
        require_tables(db, [], str(path), optional=["memories", SIDE_TABLE, SPACES_TABLE])
    except DecodeError as err:
        raise LayoutMismatchError(f"{path} is not a VEKTOR database vexchange reads: {err.reason}",
                                  connector="vektor", operation="open") from None


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None


def _spaces(db: sqlite3.Connection, layout: Layout) -> dict[str, VectorSpace]:
    """What an import recorded, else the default vector's size from the first row."""
    if _has_table(db, SPACES_TABLE):
        saved = {name: VectorSpace(dims=dims, metric=metric)
                 for name, dims, metric in db.execute(f"SELECT name, dims, metric FROM {SPACES_TABLE}")}
        if saved:
            return saved
    col = layout.vector_column
    if not col:
        return {}
    row = db.execute(f'SELECT length("{col}") FROM memories WHERE "{col}" IS NOT NULL LIMIT 1').fetchone()
    return {"": VectorSpace(dims=row[0] // 4)} if row and row[0] else {}


def _rowid_for(text: str) -> int | None:
    """The rowid a string id maps to directly: a canonical integer within SQLite's int64."""
    value = canonical_int(text)
    return value if value is not None and -_INT64_MAX <= value <= _INT64_MAX else None


def _row_json(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.hex() if isinstance(v, bytes) else v) for k, v in values.items()}


class _translated:
    """Turn sqlite3 errors into vexchange errors that say what to do."""

    def __init__(self, path: Path, operation: str) -> None:
        self.path = path
        self.operation = operation

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, err: Any, tb: Any) -> None:
        if not isinstance(err, sqlite3.Error):
            return
        text, kind = str(err), error_kind(err)
        if kind == "busy":
            raise TransientError(f"{self.path} is locked by another program ({text})",
                                 connector="vektor", operation=self.operation,
                                 hint="close the program holding the database, then run again") from err
        if kind == "notadb":
            raise LayoutMismatchError(f"{self.path} is not a SQLite database",
                                      connector="vektor", operation=self.operation) from err
        if kind in ("readonly", "cantopen"):
            raise UsageError(f"cannot {self.operation} {self.path}: {text}") from err
        raise LayoutMismatchError(f"{self.path}: {self.operation} failed: {text}",
                                  connector="vektor", operation=self.operation) from err

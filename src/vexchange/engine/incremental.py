"""Incremental runs (``--incremental``): copy only what changed since the previous run into
the same target, propagate deletions, and prove afterwards that target and source agree.
docs/engine.md, "Incremental runs".

The previous run is found by the receipt the engine would write now (``<target>.receipt.json``,
or ``--receipt``): its ``incremental`` section names the high-water mark the next run starts
from (``Connector.change_mark``, where the source keeps an ``updated_at`` it can select by) and
the state file beside it, ``<receipt>.incremental.sqlite3``: one row per record the runs wrote,
keyed like a backup's index (``_record_keys``), with the digest of the record as the source
gave it and as it was written. A record whose source digest equals the state's is unchanged
and not written; a key of the state that the source no longer holds is a deletion.

The state never claims more than the target holds. Before a batch is written (or a deletion
made) its rows are marked unknown (digests NULL) and that is committed; the new digests are
set after the target acknowledged. A run killed in between leaves rows marked unknown, which
the next run treats as changed: it writes them again (upserts), and deletes them again where
the source no longer holds them. So a crash costs a repeated write, never a lost one.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from .._canonical import NamespaceDigest, namespace_key, record_digest
from .._record_keys import record_key, split_key
from ..connectors._base import Connector, Page, Reject, Writer
from ..errors import DecodeError, UsageError
from ..record import MemoryRecord
from .options import RunOptions
from .receipt import Receipt, load_receipt

__all__ = ["Incremental", "refuse_unsupported"]

_CHUNK = 500
"""Keys per SQLite statement (below every SQLite's limit on bound variables)."""
_DONE = ("completed", "completed_with_skips")


def refuse_unsupported(options: RunOptions) -> None:
    """The options an incremental run cannot honour, refused before anything is opened."""
    if not options.incremental:
        return
    clash = [name for name, given in (
        ("--workers", options.worker_count() > 1), ("--resume", options.resume),
        ("--limit", options.limit is not None), ("--since", options.since is not None),
        ("--until", options.until is not None)) if given]
    if clash:
        raise UsageError(
            f"--incremental cannot be combined with {', '.join(clash)}: an incremental run reads"
            " what changed in the whole selection, in one process, and continues by being run again",
            hint="leave those out; run the same --incremental command again to continue a stopped run")


class State:
    """``<receipt>.incremental.sqlite3``: per record the runs wrote, its namespace and its
    source and written digests (NULL while unknown); a temporary table of the keys the source
    holds in this run, for deletions."""

    def __init__(self, path: Path | None, *, fresh: bool, keep: bool = True) -> None:
        """``path`` None: in memory (a dry run's first run). ``keep`` False: nothing this run
        does to the state is kept (a dry run)."""
        self.keep = keep
        if fresh and path is not None:
            for suffix in ("", "-wal", "-shm"):
                path.with_name(path.name + suffix).unlink(missing_ok=True)
        try:
            self.db = sqlite3.connect(":memory:" if path is None else path, isolation_level=None)
            self.db.executescript("""
                PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, ns TEXT, source BLOB,
                                                    written BLOB) WITHOUT ROWID;
                CREATE TEMP TABLE seen (key TEXT PRIMARY KEY) WITHOUT ROWID;
            """)
            self.db.execute("SELECT key, ns, source, written FROM records LIMIT 1").fetchall()
        except sqlite3.DatabaseError as err:
            raise DecodeError(f"the incremental state is damaged ({err}); delete it and the receipt"
                              " beside it to start again with a full run", location=str(path)) from None
        self.db.execute("BEGIN")

    def commit(self) -> None:
        if self.keep:
            self.db.execute("COMMIT")
            self.db.execute("BEGIN")

    def close(self) -> None:
        if self.db.in_transaction:
            self.db.execute("COMMIT" if self.keep else "ROLLBACK")
        self.db.close()

    def known(self, keys: list[str]) -> dict[str, bytes | None]:
        """The source digest of each key the state holds (None: unknown)."""
        out: dict[str, bytes | None] = {}
        for i in range(0, len(keys), _CHUNK):
            part = keys[i:i + _CHUNK]
            out.update(self.db.execute(
                f"SELECT key, source FROM records WHERE key IN ({','.join('?' * len(part))})", part))
        return out

    def see(self, keys: Iterable[str]) -> None:
        self.db.executemany("INSERT OR IGNORE INTO temp.seen VALUES (?)", ((k,) for k in keys))

    def mark_unknown(self, keys: list[tuple[str, str | None]]) -> None:
        """Before the target is touched at these keys: their digests unknown, committed."""
        self.db.executemany(
            "INSERT INTO records (key, ns) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET source = NULL, written = NULL", keys)
        self.commit()

    def has_unknown(self) -> bool:
        return self.db.execute("SELECT 1 FROM records WHERE source IS NULL OR written IS NULL"
                               " LIMIT 1").fetchone() is not None

    def set_digests(self, rows: list[tuple[bytes, bytes, str]]) -> None:
        self.db.executemany("UPDATE records SET source = ?, written = ? WHERE key = ?", rows)

    def remove(self, keys: list[str]) -> None:
        self.db.executemany("DELETE FROM records WHERE key = ?", ((k,) for k in keys))

    def gone(self, namespaces: list[str] | None) -> Iterator[str]:
        """Keys the state holds, in the selected namespaces, that the source no longer holds."""
        query = "SELECT key FROM records r WHERE NOT EXISTS (SELECT 1 FROM temp.seen s WHERE s.key = r.key)"
        args: list[Any] = []
        if namespaces:
            query += f" AND ns IN ({','.join('?' * len(namespaces))})"
            args = list(namespaces)
        yield from (row[0] for row in self.db.execute(query + " ORDER BY key", args).fetchall())

    def totals(self, namespaces: list[str] | None) -> tuple[dict[str, NamespaceDigest],
                                                            dict[str, NamespaceDigest], int]:
        """Per namespace, the digests of the source and of the target as the state knows them,
        and how many rows are unknown, over the selected namespaces."""
        source: dict[str, NamespaceDigest] = {}
        written: dict[str, NamespaceDigest] = {}
        unknown = 0
        wanted = set(namespaces or ())
        for ns, src, out in self.db.execute("SELECT ns, source, written FROM records"):
            if wanted and ns not in wanted:
                continue
            if src is None or out is None:
                unknown += 1
                continue
            source.setdefault(namespace_key(ns), NamespaceDigest()).add(src)
            written.setdefault(namespace_key(ns), NamespaceDigest()).add(out)
        return source, written, unknown


class Incremental:
    """The incremental side of one run: planned before the source is opened, asked about each
    page, told about each acknowledged batch, then deletions and the proof."""

    def __init__(self, source: Connector, target: Connector, options: RunOptions,
                 receipt_path: Path) -> None:
        if not target.keeps_records():
            raise UsageError(
                f"--incremental needs a target that keeps what it holds between runs; {target.name}"
                " is written whole by every run",
                hint="write into a store (VEKTOR, pgvector, ...) or run without --incremental")
        self.options = options
        self.dry_run = options.dry_run
        self.namespaces = list(options.namespaces) if options.namespaces else None
        self.state_path = receipt_path.with_name(receipt_path.name + ".incremental.sqlite3")
        previous = _previous(receipt_path, source, target)
        self.previous_run_id: str | None = previous.run_id if previous else None
        section = (previous.incremental or {}) if previous else {}
        # a completed run's mark moves the start on; a stopped one's base is still the base
        self.since: str | None = section.get("high_water" if previous and previous.status in _DONE
                                             else "since")
        fresh = previous is None or not self.state_path.exists()
        self.first = fresh
        self.state = State(None if fresh and self.dry_run else self.state_path, fresh=fresh,
                           keep=not self.dry_run)
        if fresh or self.state.has_unknown():
            # rows a stopped run left unknown may have changed back at the source without a
            # newer updated_at: only a full read finds them
            self.since = None
        self.high_water: str | None = None
        self.by = "digests"
        self.deletions = "propagated"
        self.held_back = 0
        """Entries the source could not read and that name no id: any key might be one."""
        self._known: dict[str, bytes | None] = {}
        self._pending: dict[str, tuple[str | None, bytes]] = {}
        self.proof: dict[str, Any] | None = None

    # ------------------------------------------------------------------ reading

    def start(self, source: Connector) -> None:
        """Just before the source is read: the mark this run will leave for the next."""
        self.high_water = source.change_mark()
        self.by = "updated_at" if self.high_water is not None else "digests"
        if self.high_water is None:
            self.since = None

    @property
    def reads_changed(self) -> bool:
        return self.since is not None and self.high_water is not None

    def pages(self, source: Connector, batch_size: int) -> Callable[[str | None], Iterator[Page]] | None:
        """How to read the source when only its changed records are read, else None."""
        since = self.since
        if not self.reads_changed or since is None:
            return None
        return lambda after: source.read_changed(since, batch_size=batch_size, after=after)

    def look_up(self, page: Page) -> None:
        """Fetch the state's digests of a page's records in one query, and note what the
        source holds (a full read lists every key it has)."""
        keys = [record_key(it.namespace, it.id) for it in page.items if isinstance(it, MemoryRecord)]
        self._known = self.state.known(keys)
        self._pending.clear()
        if not self.reads_changed:
            self.state.see(keys)
            self.state.see(record_key(it.namespace, it.id) for it in page.items
                           if isinstance(it, Reject) and it.id is not None)

    def unreadable(self, reject: Reject) -> None:
        if reject.id is None and (not self.namespaces or reject.namespace is None
                                  or reject.namespace in self.namespaces):
            self.held_back += 1

    def unchanged(self, record: MemoryRecord, digest: bytes) -> bool:
        """True when the target holds this record as it is (by the state); a changed one is
        remembered for ``before_write``."""
        key = record_key(record.namespace, record.id)
        if self._known.get(key) == digest:
            return True
        self._pending[key] = (record.namespace, digest)
        return False

    # ------------------------------------------------------------------ writing

    def before_write(self, batch: list[MemoryRecord]) -> None:
        if self.dry_run:
            return
        self.state.mark_unknown([(record_key(r.namespace, r.id), r.namespace) for r in batch])

    def acknowledged(self, batch: list[MemoryRecord], digests: list[bytes], refused: list[Reject]) -> None:
        """After the target took ``batch`` (less ``refused``): the state learns what it holds.
        A refused record stays unknown, so the next run tries it again."""
        no = {(r.namespace, r.id) for r in refused}
        rows: list[tuple[bytes, bytes, str]] = []
        new_and_refused: list[str] = []
        for record, written in zip(batch, digests, strict=True):
            key = record_key(record.namespace, record.id)
            pending = self._pending.pop(key, None)
            if (record.namespace, record.id) not in no:
                if pending is not None:
                    rows.append((pending[1], written, key))
            elif key not in self._known:
                new_and_refused.append(key)  # the target holds nothing of it
        if not self.dry_run:
            self.state.set_digests(rows)
            self.state.remove(new_and_refused)
        self._pending.clear()

    def save(self) -> None:
        """At each checkpoint: what is known is committed."""
        if not self.dry_run:
            self.state.commit()

    def propagate_deletions(self, source: Connector, writer: Writer, batch_size: int,
                            call: Callable[[Callable[[], None]], None]) -> int:
        """Delete from the target the records the source no longer holds; gives how many."""
        if self.reads_changed:
            if not source.can_list_ids():
                self.deletions = f"not propagated: {source.name} cannot list its ids"
                return 0
            for page in source.list_ids(batch_size=batch_size):
                self.state.see(record_key(ns, rid) for ns, rid in page)
        elif self.held_back:
            self.deletions = (f"held back: the source had {self.held_back} unreadable entries that"
                              " name no id, and any record of the state might be one")
            return 0
        gone = list(self.state.gone(self.namespaces))
        if gone and not writer.can_delete():
            self.deletions = f"not propagated: {len(gone)} records; the target cannot delete records"
            self._undeleted = len(gone)
            return 0
        deleted = 0
        for i in range(0, len(gone), batch_size):
            keys = gone[i:i + batch_size]
            pairs = [split_key(k) for k in keys]
            if not self.dry_run:
                self.state.mark_unknown([(k, ns) for k, (ns, _) in zip(keys, pairs, strict=True)])
                call(functools.partial(writer.delete, pairs))
                self.state.remove(keys)
                self.state.commit()
            deleted += len(keys)
        return deleted

    _undeleted = 0

    # ------------------------------------------------------------------ the proof

    def prove(self, target: Connector, batch_size: int) -> None:
        """Read the whole target (the selected namespaces) and compare its digests with what
        the state says it holds; the source's digests after the run are the state's too."""
        self.state.commit()
        source, expected, unknown = self.state.totals(self.namespaces)
        actual: dict[str, NamespaceDigest] = {}
        unreadable = 0
        for page in target.read(batch_size=batch_size):
            for item in page.items:
                if isinstance(item, Reject):
                    if not self.namespaces or item.namespace is None or item.namespace in self.namespaces:
                        unreadable += 1
                    continue
                if self.namespaces and item.namespace not in self.namespaces:
                    continue
                actual.setdefault(namespace_key(item.namespace), NamespaceDigest()).add(record_digest(item))
        names = sorted(set(expected) | set(actual))
        none = NamespaceDigest()
        differ = [ns for ns in names if expected.get(ns, none) != actual.get(ns, none)]
        self.proof = {
            "source": {ns: d.to_dict() for ns, d in sorted(source.items())},
            "target": {ns: d.to_dict() for ns, d in sorted(actual.items())},
            "expected": {ns: d.to_dict() for ns, d in sorted(expected.items())},
            "differ": differ, "unknown": unknown, "target_unreadable": unreadable,
            "in_step": not differ and not unknown and not unreadable and not self._undeleted
            and self.deletions == "propagated",
        }

    def describe(self) -> dict[str, Any]:
        """The receipt's ``incremental`` section."""
        out: dict[str, Any] = {
            "by": self.by, "since": self.since, "high_water": self.high_water,
            "read": "changed" if self.reads_changed else "all",
            "previous_run_id": self.previous_run_id, "first": self.first,
            "state_file": str(self.state_path), "deletions": self.deletions,
        }
        if self.proof is not None:
            out.update(self.proof)
        return out

    def close(self) -> None:
        self.state.close()


def _previous(receipt_path: Path, source: Connector, target: Connector) -> Receipt | None:
    """The previous incremental run into this target from this source, by its receipt."""
    if not receipt_path.exists():
        return None
    try:
        previous = load_receipt(receipt_path)
    except DecodeError:
        return None
    if previous.incremental is None or previous.source != source.describe() \
            or previous.target != target.describe():
        return None
    return previous

"""The run loop: read a page, select, check, write with retry, checkpoint; then receipt.

Memory stays flat: one page is in flight at a time; what grows with the run is counters, the
per-namespace digests, and an 8-byte hash per selected id to catch duplicate ids.

Every record the source yields ends in exactly one place: written, filtered out on purpose
(counted), or rejected with a reason (counted, and written to the rejects file). The receipt's
counts add up: read = filtered + selected; selected = written + skipped (for a finished run).

Nothing is claimed complete from a source that failed its own checks (docs/engine.md, "Read
integrity"): the source's reader checks what its format records (``Connector.read_checks``) as
it reads and fails before the page that ends the read; the run then fails before
``writer.finish``. ``verify_first`` makes the checks before the target is opened.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from .._canonical import NamespaceDigest, namespace_key, record_digest
from .._time import format_timestamp, utc_now_ms
from .._vector_text import vector_texts_of
from ..connectors._base import Connector, Page, Reject, VectorSpace, Writer, writes_vector_texts
from ..errors import (IntegrityError, redact, MigrationError, RunInterrupted, TransientError, UsageError,
                      VexError)
from ..codecs.vmig import encode_record
from ..record import MemoryRecord
from .checkpoint import Checkpoint, RejectsFile, SeenIds
from .incremental import Incremental, refuse_unsupported
from .progress import NoProgress, Progress
from .read_ahead import read_ahead
from .read_process import (ColumnarPage, StartedRead, digests_of, id_keys_of, read_in_process,
                           read_tables_here, reading_mode, takes_tables)
from .tables import table_vectors_fit
from .options import RunOptions
from .receipt import Counts, NamespaceDigests, Receipt, versions
from ..retry import RetryPolicy
from .vectors import VectorTransform

__all__ = ["RunOptions", "broken_vector", "not_normalisable", "read_pages", "run", "wanted"]

_CHECKPOINT_EVERY_S = 1.0
DEFAULT_BATCH = 500


@dataclass
class _State:
    counts: Counts = field(default_factory=Counts)
    source_digests: dict[str, NamespaceDigest] = field(default_factory=dict)
    written_digests: dict[str, NamespaceDigest] = field(default_factory=dict)
    seen_ids: SeenIds | None = None
    pinned_dims: dict[str, int] = field(default_factory=dict)
    cursor: str | None = None
    rejects_at: tuple[int, int] | None = None
    """Lines and bytes of the rejects file at the checkpoint a resumed run starts from."""
    normalising: dict[str, bool] = field(default_factory=dict)
    """Per vector name: whether the target keeps it L2-normalised (or rounds it) under the
    metric the run declares, so a vector whose float32 norm is 0 or overflows is refused."""


def run(
    source: Connector,
    target: Connector,
    *,
    operation: str,
    options: RunOptions,
    receipt_path: Path,
    rejects_path: Path,
    progress: Progress | None = None,
    retry: RetryPolicy | None = None,
) -> Receipt:
    """Copy the selected records of ``source`` into ``target``; the receipt says what happened
    (it is also written to ``receipt_path``, and rewritten as the run goes). With
    ``options.workers`` above 1 a source that can be split runs in worker processes
    (engine/parallel.py); anything else runs here, in one."""
    from .parallel import parallel_run

    refuse_unsupported(options)  # before a parallel run could take it
    _accept_bulk(target, options)  # likewise: --bulk is refused, or switches the target's writer
    merged = parallel_run(source, target, operation=operation, options=options,
                          receipt_path=receipt_path, rejects_path=rejects_path, progress=progress,
                          retry=retry)
    if merged is not None:
        return merged
    return _Run(source, target, operation=operation, options=options, receipt_path=receipt_path,
                rejects_path=rejects_path, progress=progress, retry=retry).execute()


class _Run:
    """One run. Its steps, in the order ``execute`` takes them: ``plan`` (refuse what cannot
    run, load the checkpoint to resume from), ``open`` (the source, the vector spaces, the
    target's writer), ``loop`` (pages in, checkpoints out), ``finish`` (the target made
    complete), and the ``receipt`` at each of them; ``stop`` when a step fails."""

    options: RunOptions
    retry: RetryPolicy
    checkpoint: Checkpoint
    state: _State
    run_id: str
    target_state: dict[str, Any] | None
    """The target's resume state from the checkpoint (``{}`` at least) when resuming, else None."""
    transform: VectorTransform | None
    reading: str
    spaces: dict[str, VectorSpace]
    rejects: RejectsFile
    started: float
    started_at: str
    writer: Writer | None = None
    early_read: StartedRead | None = None
    """The reading child, given its job before the writer opened; ``read_in_process`` stops it
    once the loop has read from it, ``stop`` or a failed open when it never did."""
    incremental: Incremental | None = None
    durable: dict[str, Any] | None = None
    """The last snapshot saved as the checkpoint, its output on the disk (``Writer.make_durable``)."""

    def __init__(self, source: Connector, target: Connector, *, operation: str, options: RunOptions,
                 receipt_path: Path, rejects_path: Path, progress: Progress | None,
                 retry: RetryPolicy | None) -> None:
        self.source, self.target, self.operation = source, target, operation
        self.options = options
        self.receipt_path, self.rejects_path = receipt_path, rejects_path
        self.progress = progress or NoProgress()
        self._retry = retry

    @property
    def resumed(self) -> bool:
        return self.target_state is not None

    def execute(self) -> Receipt:
        self.plan()
        try:
            self.open()
        except BaseException:
            self._drop_early_read()
            if self.incremental is not None:
                self.incremental.close()
            raise
        try:
            whole, last = self.loop()
            self.propagate_deletions(last)
            self.finish(whole, last)
        except BaseException as err:
            replacement = self.stop(err)
            if replacement is None:
                raise
            raise replacement from err
        return self.completed()

    def plan(self) -> None:
        """Refuse, before anything is opened, what cannot run; then the state to start from
        (fresh, or the checkpoint's)."""
        self.options.validate()
        _plan(self.source, self.target)
        self.target.accept_compat(self.options.compat)  # refused for a target that cannot honour it
        if self.options.batch_size is None:
            self.options = dataclasses.replace(
                self.options, batch_size=self.target.capabilities.preferred_batch or DEFAULT_BATCH)
        if self.source.same_location(self.target):
            raise UsageError("source and target are the same store; refusing to overwrite the input")
        self.source.verify_reads = self.options.verify  # before the source is first opened (its count)
        self.retry = self._retry or RetryPolicy(attempts=self.options.retries)
        self.checkpoint = Checkpoint(self.receipt_path.with_name(self.receipt_path.name + ".checkpoint"))
        self.state, self.run_id, self.target_state = _start_state(
            self.checkpoint, self.source, self.target, self.options)
        self.transform = _vector_transform(self.options, self.retry)
        if self.options.incremental:  # last: it opens the state file beside the receipt
            self.incremental = Incremental(self.source, self.target, self.options, self.receipt_path)

    def open(self) -> None:
        """Open the source (a missing or foreign store fails before any output), declare the
        vector spaces, check the source first when asked, open the target's writer, and leave
        a "running" receipt before the first write."""
        source, target = self.source, self.target
        total = source.count()
        self.reading = reading_mode(source, total)
        if self.incremental is not None:
            self.incremental.start(source)  # the mark, before anything is read
            if self.incremental.reads_changed and self.reading == "process":
                self.reading = "thread" if source.capabilities.read_ahead else "main"
        spaces = _with_metric(source.vector_spaces(), self.options.metric)
        if self.transform is not None:
            spaces = self.transform.spaces(spaces)
        self.spaces = spaces
        self.state.normalising = _normalising(target, spaces)
        rejects_at = self.state.rejects_at
        self.rejects = RejectsFile(self.rejects_path, append=self.resumed)
        self.started = time.monotonic()
        self.started_at = format_timestamp(utc_now_ms())
        if self.options.verify_first:
            _verify_first(source, self.operation, self._refused)
        self.early_read = self._start_read()  # the child reads while the writer opens
        self.writer = _open_writer(target, self.target_state, self.options, self.retry, self.operation,
                                   spaces)
        if rejects_at is not None:
            self.rejects.truncate(rejects_at)  # rejects of a page after the checkpoint come again
        self.progress.start(total)
        # Before the first write: a run killed midway (SIGKILL, power) leaves a receipt that says
        # it is "running", never an earlier run's "completed" beside a half-written target.
        self.receipt("running").write(self.receipt_path)

    def loop(self) -> tuple[bool, dict[str, Any]]:
        """Process pages; after each acknowledged page the state is snapshotted for the checkpoint.
        Gives whether the source was read to its end (False when ``--limit`` stopped the read
        first), and the last snapshot, which a failure after the loop saves as the checkpoint.

        On failure the checkpoint gets the last snapshot, so a resumed run repeats the failed page
        in full (writes are idempotent upserts) and counts nothing twice.
        """
        writer, state, options, retry = self._writer(), self.state, self.options, self.retry
        state.pinned_dims.update(writer.target_dims())
        last_saved = time.monotonic()
        snapshot = self.durable = self._snapshot()  # nothing written since the run began or resumed
        incremental = self.incremental
        batch_size = options.batch_size or DEFAULT_BATCH
        try:
            tables = self._tables_wanted(_writer_takes_tables(writer))
            vector_text = writes_vector_texts(writer)
            early = self.early_read
            if early is not None and early.job != (batch_size, state.cursor, tables, vector_text):
                self._drop_early_read()  # the target declared other than its writer takes: read again
            pages = read_pages(self.source, batch_size, state.cursor, retry,
                               in_process=self.reading == "process", tables=tables, vector_text=vector_text,
                               changed=incremental.pages(self.source, batch_size) if incremental else None,
                               started=self.early_read)  # stopped by ``stop`` if never taken
            if self.reading == "thread":
                pages = read_ahead(pages)
            with closing(pages), _fewer_collections():  # a read-ahead thread stops here, whatever happened
                for page in pages:
                    table_written = isinstance(page, ColumnarPage) and _write_table(
                        page, writer, state, self.target, retry)  # as it is, without records
                    limit_reached = False if table_written else self._write_records(page, writer)
                    state.cursor = page.cursor
                    self.progress.advance(state.counts.read, state.counts.written,
                                          state.counts.skipped_total)
                    if page.cursor is None or limit_reached:
                        return page.cursor is None, snapshot
                    snapshot = self._snapshot()
                    if time.monotonic() - last_saved >= _CHECKPOINT_EVERY_S:
                        writer.make_durable()
                        _save(self.checkpoint, snapshot, state)
                        self.durable = snapshot
                        if incremental is not None:
                            incremental.save()
                        last_saved = time.monotonic()
            return True, snapshot
        except BaseException:
            self._roll_back(snapshot)
            raise

    def _write_records(self, page: Page, writer: Writer) -> bool:
        """Select, check and write a page's records; whether ``--limit`` was reached."""
        if isinstance(page, ColumnarPage):  # a table its writer does not take as it is
            page = page.with_records(self.source)
        incremental, state = self.incremental, self.state
        if incremental is not None:
            incremental.look_up(page)
        batch, digests, limit_reached = _select(page, self.options, state, self.target, self.rejects,
                                                self.transform, incremental)
        if batch:
            if incremental is not None:
                incremental.before_write(batch)
            texts = vector_texts_of(page) if writes_vector_texts(writer) else None
            refused = self.retry.call(functools.partial(writer.write, batch) if texts is None
                                      else functools.partial(writer.write_with_texts, batch, texts))
            _account_written(batch, digests, refused, state, self.rejects)
            if incremental is not None:
                incremental.acknowledged(batch, digests, refused)
        return limit_reached

    def _start_read(self) -> StartedRead | None:
        """The reading child, given its job before the target's writer opens (a store's client
        may take a second to import) with what the target declares its writer takes
        (``Connector.writer_takes``), from the checkpoint's cursor when resuming; None when the
        run reads otherwise."""
        if self.reading != "process" or self.incremental is not None:
            return None
        takes = type(self.target).writer_takes
        return StartedRead(self.source, batch_size=self.options.batch_size or DEFAULT_BATCH,
                           after=self.state.cursor, tables=self._tables_wanted("tables" in takes),
                           vector_text="vector_text" in takes)

    def _drop_early_read(self) -> None:
        """Stop the early read (again, harmlessly, once ``read_in_process`` has stopped it)."""
        early, self.early_read = self.early_read, None
        if early is not None:
            early.close()

    def _tables_wanted(self, writer_takes_tables: bool) -> bool:
        """Whether pages may come as their tables (``ColumnarPage``): the writer takes tables,
        and the run changes, filters and stops at nothing record by record."""
        options = self.options
        return (writer_takes_tables
                and takes_tables(self.source)
                and self.transform is None
                and self.incremental is None and options.limit is None and not options.namespaces
                and options.since is None and options.until is None)

    def propagate_deletions(self, last: dict[str, Any]) -> None:
        """An incremental run: delete from the target what the source no longer holds
        (engine/incremental.py), counted as ``deleted``."""
        if self.incremental is None:
            return
        writer, retry = self._writer(), self.retry
        try:
            self.state.counts.deleted += self.incremental.propagate_deletions(
                self.source, writer, self.options.batch_size or DEFAULT_BATCH, retry.call)
        except BaseException:
            self._roll_back(last)
            raise

    def finish(self, whole: bool, last: dict[str, Any]) -> None:
        """Make the target complete. A source read only in part (``--limit``) is checked in
        full first, so what was written was checked too; a failure here (a full disk while the
        output is completed) saves the last page's checkpoint, so the run resumes."""
        writer = self._writer()
        try:
            if not whole and self.options.verify and self.source.read_checks:
                self.source.verify_source()
            writer.finish({"source": self.source.describe(), "counts": _counts_summary(self.state.counts)})
        except BaseException:
            self._roll_back(last)
            raise

    def completed(self) -> Receipt:
        """Close what the run opened, drop the checkpoint, and write the final receipt (an
        incremental run's after the target was read back and compared)."""
        self.rejects.close()
        self.progress.close()
        self.checkpoint.remove()
        if self.transform:
            self.transform.close()
        if self.incremental is not None:
            self._prove(self.incremental)
        counts = self.state.counts
        status = "dry_run" if self.options.dry_run else (
            "completed_with_skips" if counts.skipped_total else "completed")
        receipt = self.receipt(status)
        receipt.write(self.receipt_path)
        return receipt

    def _prove(self, incremental: Incremental) -> None:
        """Read the target back for an incremental run's proof; a failure to read it is the
        run's failure (its receipt says so), though everything was written."""
        try:
            if not self.options.dry_run:
                incremental.prove(self.target, self.options.batch_size or DEFAULT_BATCH)
        except VexError as err:
            receipt = self.receipt("failed", redact(f"the target could not be read back to compare it"
                                                    f" with the source: {err}"))
            receipt.write(self.receipt_path)
            raise MigrationError(f"{self.operation} wrote every change but could not read the target"
                                 f" back to prove it: {err}", receipt=receipt,
                                 hint="fix the cause, then rerun the same command") from err
        finally:
            incremental.close()

    def stop(self, err: BaseException) -> BaseException | None:
        """After a failure in the loop or the finish: abort the writer, write the failed (or
        interrupted) receipt, and give the error to raise, or None to raise ``err`` itself (a
        bug, whose traceback is for a report, or a usage error)."""
        self._drop_early_read()  # a loop that failed before it took the read
        self._writer().abort()
        if self.incremental is not None:
            self.incremental.close()  # what the target acknowledged is kept
        self.rejects.close()
        self.progress.close()
        if self.transform:
            self.transform.close()  # a remote embedder's connections
        interrupted = isinstance(err, KeyboardInterrupt)
        expected = isinstance(err, (VexError, OSError, KeyboardInterrupt))
        message = redact(str(err) if expected else f"{type(err).__name__}: {err}")
        receipt = self.receipt("interrupted" if interrupted else "failed",
                               "interrupted" if interrupted else message)
        receipt.write(self.receipt_path)
        if interrupted:
            return RunInterrupted(receipt)
        if not expected or isinstance(err, UsageError):
            return None
        written = self.state.counts.written
        if isinstance(err, IntegrityError):
            return _integrity_failure(err, self.operation, written)
        return MigrationError(
            f"{self.operation} stopped after {written} records were written: {err}",
            receipt=receipt,
            hint="fix the cause, then rerun the same command with --resume to continue"
            if self.checkpoint.path.exists() and self.incremental is None
            else "fix the cause, then rerun the same command",
        )

    def receipt(self, status: str, error: str | None = None) -> Receipt:
        """The receipt of the run as it stands."""
        elapsed = time.monotonic() - self.started
        state, writer, incremental = self.state, self.writer, self.incremental
        namespaces = _namespace_digests(state)
        if incremental is not None and incremental.proof is not None:
            namespaces = _mirror_digests(incremental.proof)
        return Receipt(
            run_id=self.run_id, status=status, operation=self.operation,
            source=self.source.describe(), target=self.target.describe(), options=self.options.as_dict(),
            counts=state.counts, namespaces=namespaces,
            rejects_file=str(self.rejects_path) if self.rejects.count else None,
            checkpoint_file=str(self.checkpoint.path) if self.checkpoint.path.exists() else None,
            receipt_file=str(self.receipt_path),
            retries=self.retry.retried, versions=versions(self.source.extra, self.target.extra),
            started_at=self.started_at,
            finished_at=format_timestamp(utc_now_ms()), duration_s=round(elapsed, 3),
            records_per_s=round(state.counts.written / elapsed, 1) if elapsed > 0 else None,
            error=error, resumed=self.resumed,
            vector_spaces={"source": _spaces_json(self.spaces),
                           "target": _spaces_json(writer.vector_spaces() if writer else {})},
            embedding=self.transform.describe() if self.transform else None,
            incremental=incremental.describe() if incremental is not None else None,
        )

    def _refused(self, error: str) -> None:
        """``--verify-first`` refused the source: the failed receipt, nothing written."""
        self.receipt("failed", error).write(self.receipt_path)
        if self.transform:
            self.transform.close()

    def _writer(self) -> Writer:
        assert self.writer is not None, "the run's writer is opened in open()"
        return self.writer

    def _snapshot(self) -> dict[str, Any]:
        return _snapshot(self._writer(), self.state, self.source, self.target, self.run_id,
                         self.rejects)

    def _roll_back(self, snapshot: dict[str, Any]) -> None:
        """Back to the last acknowledged page: its rejects position, its checkpoint saved, the
        counts of what is durable (a resumed run repeats what came after, counting it once).
        The writer puts that page's output on the disk first; where it cannot (the disk is
        full), the run goes back to the last checkpoint saved instead, whose output is there."""
        try:
            self._writer().make_durable()
        except Exception:  # the run's own failure is what is raised, not this one
            snapshot = self.durable or snapshot
        self.rejects.truncate(snapshot["rejects_at"])
        _save(self.checkpoint, snapshot, self.state)
        _restore(self.state, snapshot)
        if self.incremental is not None:
            self.incremental.save()  # acknowledged writes after the snapshot are still held


_COLLECT_EVERY = 100_000


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Python's cyclic collector at a higher first-generation threshold while the loop runs
    (100,000 allocations instead of 700): a page makes tens of thousands of containers that
    live until it is written, and walking them every 700 allocations cost 15 % of a run.
    Cycles are still collected; the threshold is put back after (left alone when the
    application turned the collector off)."""
    before = gc.get_threshold()
    if before[0] == 0 or before[0] >= _COLLECT_EVERY:
        yield
        return
    gc.set_threshold(_COLLECT_EVERY, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _accept_bulk(target: Connector, options: RunOptions) -> None:
    """``--bulk``: the target loads through its server-side bulk import (its writer writes
    the import files; its ``finish`` imports and checks them), or refuses before anything is
    opened. One import per run: not with workers, and not incremental (an import cannot delete)."""
    if options.bulk and options.worker_count() > 1:
        raise UsageError("--bulk runs one import, from one process; leave --workers out")
    if options.bulk and options.incremental:
        raise UsageError("--bulk and --incremental contradict each other: a bulk import adds records"
                         " and cannot delete; give one")
    target.accept_bulk(options.bulk)


def _verify_first(source: Connector, operation: str, failed: Callable[[str], None]) -> None:
    """``--verify-first``: the source's checks over all of it, before the target is opened; a
    failure writes the failed receipt (``failed``) and is raised, nothing having been written."""
    if not source.read_checks:
        return
    try:
        source.verify_source()
    except IntegrityError as err:
        failed(str(err))
        raise IntegrityError(f"{operation} refused before writing anything: {err.message}",
                             hint=err.hint or "to read the source as it is, rerun with --no-verify"
                             ) from err


def _integrity_failure(err: IntegrityError, operation: str, written: int) -> IntegrityError:
    """The error a run that read a source failing its checks ends with (exit 3): the target
    was not finished, so nothing claims to be complete."""
    return IntegrityError(
        f"{operation} stopped before the target was finished ({written} records written): the"
        f" source failed its check: {err.message}",
        hint=(err.hint + "; " if err.hint else "") + "--verify-first checks a source before"
             " anything is written")


def _vector_transform(options: RunOptions, retry: RetryPolicy) -> VectorTransform | None:
    if not VectorTransform.wanted(options):
        return None
    return VectorTransform(reembed=options.reembed, embed_model=options.embed_model,
                           keep_old_vector=options.keep_old_vector,
                           on_dims_mismatch=options.on_dims_mismatch, adapter=options.adapter,
                           force_adapter=options.force_adapter, retry=retry)


def _with_metric(spaces: dict[str, VectorSpace], metric: str | None) -> dict[str, VectorSpace]:
    if metric is None:
        return spaces
    named = spaces or {"": VectorSpace()}
    return {name: VectorSpace(dims=s.dims, metric=metric) for name, s in named.items()}


def _spaces_json(spaces: dict[str, VectorSpace]) -> dict[str, Any]:
    return {name: {"dims": sp.dims, "metric": sp.metric} for name, sp in sorted(spaces.items())}


def _open_writer(target: Connector, target_state: dict[str, Any] | None, options: RunOptions,
                 retry: RetryPolicy, operation: str, spaces: dict[str, VectorSpace]) -> Writer:
    """Open the target, retrying transient failures (a locked database, a busy server)."""
    try:
        return retry.call(lambda: target.open_writer(resume=target_state, dry_run=options.dry_run,
                                                     spaces=spaces))
    except TransientError as err:
        raise MigrationError(
            f"{operation} could not start, nothing was written: {err}",
            hint="rerun the same command when the target is available",
        ) from err


def _counts_summary(counts: Counts) -> dict[str, Any]:
    return {"selected": counts.selected, "written": counts.written, "skipped": dict(counts.skipped)}


def _start_state(
    checkpoint: Checkpoint, source: Connector, target: Connector, options: RunOptions
) -> tuple[_State, str, dict[str, Any] | None]:
    """Fresh state, or the checkpoint's state and the target's resume state (never None then)."""
    seen = SeenIds(SeenIds.path_for(checkpoint.path))
    if not options.resume:
        checkpoint.remove()
        return _State(seen_ids=seen), uuid.uuid4().hex, None
    saved = checkpoint.load()
    if saved is None:
        raise UsageError(
            f"nothing to resume: no checkpoint at {checkpoint.path}",
            hint="run without --resume to start a new run",
        )
    if saved["source"] != source.describe() or saved["target"] != target.describe():
        raise UsageError("the checkpoint belongs to another source or target; refusing to resume")
    state = _State(pinned_dims=dict(saved.get("pinned_dims", {})), seen_ids=seen)
    _restore(state, saved)
    seen.load(int(saved.get("seen_ids", 0)))
    if saved.get("rejects_at") is not None:
        lines, size = saved["rejects_at"]
        state.rejects_at = (int(lines), int(size))
    return state, saved["run_id"], saved.get("target_state") or {}


def _save(checkpoint: Checkpoint, snapshot: dict[str, Any], state: _State) -> None:
    """The checkpoint, after the ids it covers (a checkpoint never names ids not on disk)."""
    assert state.seen_ids is not None
    state.seen_ids.persist(snapshot["seen_ids"])
    checkpoint.save(snapshot)


def _writer_takes_tables(writer: Writer) -> bool:
    # getattr: a wrapper that is not a Writer (a test's, a plugin's) writes records only
    return getattr(type(writer), "takes_table", Writer.takes_table) is not Writer.takes_table


def read_pages(source: Connector, batch_size: int, cursor: str | None, retry: RetryPolicy, *,
               in_process: bool = False, tables: bool = False, vector_text: bool = False,
               changed: Callable[[str | None], Iterator[Page]] | None = None,
               started: StartedRead | None = None) -> Generator[Page, None, None]:
    """Pages from the source; a transient read failure reopens the read at the last cursor.
    ``in_process``: decoded by a child process (read_process.py); ``tables``: a page may come
    as its table (``ColumnarPage``), from the child or read here; ``vector_text``: the child
    sends the JSON text vectors were read from too (``Writer.writes_vector_text``).
    ``changed``: an incremental run's read of the changed records only, from a cursor.
    ``started``: the reading child already given the first attempt's job (``StartedRead``);
    ``read_in_process`` owns it from the first page asked for."""
    failures = 0
    while True:
        pages: Iterator[Page] | None = None
        try:
            first, started = started, None
            if first is not None and (changed is not None or not in_process):
                first.close()  # not this read's: never the case for a run's own
                first = None
            pages = (changed(cursor) if changed is not None
                     else read_in_process(source, batch_size=batch_size, after=cursor, tables=tables,
                                          vector_text=vector_text, started=first)
                     if in_process
                     else read_tables_here(source, batch_size=batch_size, after=cursor) if tables
                     else source.read(batch_size=batch_size, after=cursor))
            for page in pages:
                failures = 0
                yield page
                cursor = page.cursor
            return
        except TransientError as err:
            failures += 1
            if failures >= retry.attempts:
                raise
            retry.note_retry()
            retry.sleep(retry.delay(failures, err))
        finally:
            close = getattr(pages, "close", None)
            if close is not None:  # a child process or an open file stops here
                close()


def _select(
    page: Page, options: RunOptions, state: _State, target: Connector, rejects: RejectsFile,
    transform: VectorTransform | None = None, incremental: Incremental | None = None,
) -> tuple[list[MemoryRecord], list[bytes], bool]:
    """The page's records the target should take, with the digests of what will be written.
    Source digests are of the records as read; a transform (new vectors) happens after. An
    incremental run leaves out, as ``unchanged``, what the target already holds as it is."""
    chosen: list[tuple[MemoryRecord, bytes]] = []
    counts = state.counts
    limit_reached = False
    taken = digests_of(page)  # the reading child's digests of these very records, if it took them
    filters = bool(options.namespaces) or options.since is not None or options.until is not None
    sums = _Sums(state.source_digests)
    items = page.items
    keys: list[bytes] | None = None  # the child's duplicate-id keys, when chosen is the whole page
    if (taken is not None and options.limit is None and not filters and incremental is None
            and len(taken) == len(items)):
        # the usual page: every item a record the child digested, nothing to filter or stop at
        keys = id_keys_of(page)
        counts.read += len(items)
        counts.selected += len(items)
        chosen = list(zip(items, taken, strict=True))  # type: ignore[arg-type]
        _add_digests(state.source_digests, [r.namespace for r in items], taken)
        items = []
    for at, item in enumerate(items):
        if options.limit is not None and counts.selected >= options.limit:
            limit_reached = True
            break
        counts.read += 1
        if isinstance(item, Reject):
            if options.namespaces and item.namespace is not None \
                    and item.namespace not in options.namespaces:
                counts.filtered += 1  # unreadable, but not in what was asked for
            else:
                if incremental is not None:
                    incremental.unreadable(item)
                _skip(item, state, rejects)
            continue
        if filters and not wanted(item, options):
            counts.filtered += 1
            continue
        digest = record_digest(item) if taken is None else taken[at]
        if incremental is not None and incremental.unchanged(item, digest):
            assert state.seen_ids is not None
            if state.seen_ids.add(item.namespace, item.id):  # else a duplicate: refused below
                counts.unchanged += 1
                continue
        counts.selected += 1
        sums.add(item.namespace, digest)
        chosen.append((item, digest))
    changed: list[MemoryRecord | Reject] = [r for r, _ in chosen]
    if transform is not None and chosen:
        changed, embedded, adapted = transform.apply([r for r, _ in chosen], state.pinned_dims, target)
        counts.reembedded += embedded
        counts.adapted += adapted
    batch: list[MemoryRecord] = []
    digests: list[bytes] = []
    check_each = not _vectors_fine(changed)
    checks = _Checks(state, target)
    if checks.any_normalising and not check_each:
        checks.norms_fine = _norms_fine(changed)
    for at, (record, (original, source_digest)) in enumerate(zip(changed, chosen, strict=True)):
        if isinstance(record, Reject):
            if record.record is None:
                record.record = _record_json(original)
            _skip(record, state, rejects)
            continue
        digest = source_digest if record is original else record_digest(record)
        problem = checks.problem(record, check_vectors=check_each,
                                 key=keys[at] if keys is not None and record is original else None)
        if problem:
            _skip(_reject_record(record, *problem), state, rejects)
            continue
        batch.append(record)
        digests.append(digest)
    return batch, digests, limit_reached or (
        options.limit is not None and counts.selected >= options.limit)


def _write_table(page: ColumnarPage, writer: Writer, state: _State, target: Connector,
                 retry: RetryPolicy) -> bool:
    """Write a page as its table when every record of it passes the checks (vectors column by
    column, ids by the child's keys, none seen before) and the writer takes the table as it
    is; the counts and digests are those of its records, as ``_select`` and
    ``_account_written`` would take them. False, with nothing done: make the records."""
    table = page.table
    assert state.seen_ids is not None
    if not (table.num_rows == len(page.digests) == len(page.keys) == len(page.namespaces)
            and table_vectors_fit(table, page.vectors, pinned=state.pinned_dims,
                                  normalising=state.normalising, caps=target.capabilities)
            and writer.takes_table(table) and state.seen_ids.add_new(page.keys)):
        return False
    counts = state.counts
    counts.read += table.num_rows
    counts.selected += table.num_rows
    _add_digests(state.source_digests, page.namespaces, page.digests)
    retry.call(functools.partial(writer.write_table, table))
    _add_digests(state.written_digests, page.namespaces, page.digests)
    counts.written += table.num_rows
    return True


def wanted(record: MemoryRecord, options: RunOptions) -> bool:
    if options.namespaces and record.namespace not in options.namespaces:
        return False
    if options.since is not None and (record.created_at is None or record.created_at < options.since):
        return False
    return options.until is None or (record.created_at is not None and record.created_at < options.until)


class _Sums:
    """Adds digests to per-namespace sums, looking a namespace's sum up once per run of
    records in it (a page is mostly one namespace) instead of once per record."""

    __slots__ = ("by_name", "name", "sum")

    def __init__(self, by_name: dict[str, NamespaceDigest]) -> None:
        self.by_name = by_name
        self.name: str | None = None
        self.sum: NamespaceDigest | None = None

    def add(self, namespace: str | None, digest: bytes) -> None:
        key = namespace_key(namespace)
        if key != self.name or self.sum is None:
            self.sum = self.by_name.get(key)
            if self.sum is None:
                self.sum = self.by_name[key] = NamespaceDigest()
            self.name = key
        self.sum.add(digest)


def _add_digests(by_name: dict[str, NamespaceDigest], namespaces: list[str | None],
                 digests: list[bytes]) -> None:
    """``NamespaceDigest.add`` of each digest to its record's namespace, for a whole page: a
    namespace's digests are added at once (``add_all``: the namespace digest is a sum modulo
    2**256, so neither order nor grouping changes it) instead of one big-integer step each."""
    for key, group in _by_namespace(namespaces, digests).items():
        target = by_name.get(key)
        if target is None:
            target = by_name[key] = NamespaceDigest()
        target.add_all(group)


def _by_namespace(namespaces: list[str | None], digests: list[bytes]) -> dict[str, list[bytes]]:
    """A page's digests by ``namespace_key``; a page of one namespace (the usual page) is told
    by one count, not a look at each record."""
    if not namespaces:
        return {}
    first = namespaces[0]
    if namespaces.count(first) == len(namespaces):
        return {namespace_key(first): digests}
    groups: dict[str, list[bytes]] = {}
    for namespace, digest in zip(namespaces, digests, strict=True):
        key = namespace_key(namespace)
        group = groups.get(key)
        if group is None:
            groups[key] = [digest]
        else:
            group.append(digest)
    return groups


class _Checks:
    """``_problem`` for one page: what it looks up for every record (the target's capabilities,
    the state's maps), looked up once."""

    def __init__(self, state: _State, target: Connector) -> None:
        assert state.seen_ids is not None
        self.state, self.target, self.seen = state, target, state.seen_ids
        self.caps = target.capabilities
        self.pinned = state.pinned_dims
        self.normalising = state.normalising
        self.any_normalising = any(state.normalising.values())
        self.norms_fine = False  # set per page by _norms_fine: every dense vector has a float32 unit vector

    def problem(self, record: MemoryRecord, *, check_vectors: bool = True,
                key: bytes | None = None) -> tuple[str, str] | None:
        """Why the target cannot take this record, or None (``_problem``). ``key``: its
        duplicate-id key (``SeenIds.key``), when the reading child took it."""
        if not (self.seen.add(record.namespace, record.id) if key is None else self.seen.add_key(key)):
            return "duplicate_id", f"id {record.id!r} already appeared in namespace {record.namespace!r}"
        vectors = record.vectors
        if len(vectors) == 1 and (self.norms_fine or not self.any_normalising) and not check_vectors:
            # the usual record: one vector of a page whose vectors are sound, no normalising target
            name, vec = next(iter(vectors.items()))
            if name == "" or self.caps.named_vectors:
                want = self.pinned.get(name)
                if (want == len(vec.data) >> 2) if want is not None else not self.caps.fixed_dims:
                    return None  # its dims are the pinned ones, or the target pins none
        return _problem(record, self.state, self.target, check_vectors=check_vectors, seen=True,
                        check_norms=not self.norms_fine)


def _problem(record: MemoryRecord, state: _State, target: Connector, *,
             check_vectors: bool = True, seen: bool = False, check_norms: bool = True
             ) -> tuple[str, str] | None:
    """Why the target cannot take this record, or None. ``check_vectors``: False when the
    whole page's vectors are already known to be sound (``_vectors_fine``); ``seen``: the
    duplicate-id check was made; ``check_norms``: False when the page's norms are known to be
    sound (``_norms_fine``)."""
    assert state.seen_ids is not None
    if not seen and not state.seen_ids.add(record.namespace, record.id):
        return "duplicate_id", f"id {record.id!r} already appeared in namespace {record.namespace!r}"
    broken = broken_vector(record) if check_vectors else None
    if broken:
        return "invalid_vector", broken
    caps = target.capabilities
    if not record.vectors and not caps.null_vectors:
        return "no_vector", f"{target.name} cannot store a record without a vector"
    if not caps.named_vectors and any(name for name in record.vectors):
        return "named_vectors_unsupported", f"{target.name} holds one vector per record"
    for name, vec in record.vectors.items():
        want = state.pinned_dims.get(name)
        if want is None and caps.fixed_dims:
            state.pinned_dims[name] = vec.dims
        elif want is not None and want != vec.dims:
            label = f"vector {name!r}" if name else "vector"
            return "dims_mismatch", f"{label} has {vec.dims} dims; the target holds {want}"
        if check_norms and state.normalising.get(name, state.normalising.get("\0default", False)):
            problem = not_normalisable(vec.array())
            if problem:
                label = f"vector {name!r}" if name else "vector"
                return "not_normalisable", (
                    f"{label} {problem}; {target.name} keeps cosine vectors L2-normalised in"
                    " float32, so it would hold zeros or NaN instead")
    return None


def _vectors_fine(items: list[MemoryRecord | Reject]) -> bool:
    """True when every vector of a page is a whole, non-empty, finite float32 array: one
    numpy check over the page's bytes instead of one per vector (a few µs a record)."""
    records = [item for item in items if not isinstance(item, Reject)]
    chunks = [vec.data for record in records for vec in record.vectors.values()]
    if not all(data and not len(data) & 3 for data in chunks):
        return False
    for record in records:
        if record.sparse:
            for sp in record.sparse.values():
                if len(sp.values) & 3 or len(sp.indices) != len(sp.values):
                    return False
                chunks.append(sp.values)
    return not chunks or bool(np.isfinite(np.frombuffer(b"".join(chunks), dtype="<f4")).all())


def _norms_fine(items: list[MemoryRecord | Reject]) -> bool:
    """True when every dense vector of a page (already known finite: ``_vectors_fine``) surely
    has a float32 unit vector: its sum of squares, taken in float64 over the page at once,
    lies well inside float32's range (above 1e-30, so some square is a normal float32 and the
    float32 sum is not 0; below 1e37, so no float32 partial sum overflows). A page with any
    vector outside that band is checked vector by vector with ``not_normalisable``, exactly."""
    by_size: dict[int, list[bytes]] = {}
    for item in items:
        if not isinstance(item, Reject):
            for vec in item.vectors.values():
                by_size.setdefault(len(vec.data), []).append(vec.data)
    for size, chunks in by_size.items():
        rows = np.frombuffer(b"".join(chunks), dtype="<f4").reshape(len(chunks), size >> 2).astype(np.float64)
        squares = np.einsum("ij,ij->i", rows, rows)
        if not bool(((squares > 1e-30) & (squares < 1e37)).all()):
            return False
    return True


def broken_vector(record: MemoryRecord) -> str | None:
    """What is wrong with a vector a source handed over (a store may give back NaN, or an
    empty or ragged array), or None. Never emitted as a record: it is a reject."""
    for name, vec in record.vectors.items():
        label = f"vector {name!r}" if name else "vector"
        if not vec.data or len(vec.data) % 4:
            return f"{label} has {len(vec.data)} bytes, not a whole, non-empty float32 array"
        if not np.isfinite(vec.array()).all():
            return f"{label} holds NaN or infinite values"
    for name, sp in record.sparse.items():
        if len(sp.indices) % 4 or len(sp.values) != len(sp.indices):
            return f"sparse vector {name!r} has {len(sp.indices)} index and {len(sp.values)} value bytes"
        if not np.isfinite(sp.value_array()).all():
            return f"sparse vector {name!r} holds NaN or infinite values"
    return None


def not_normalisable(values: np.ndarray) -> str | None:
    """Why a finite float32 vector has no float32 unit vector (its norm is 0, or its squares
    overflow or all underflow in float32), or None."""
    with np.errstate(over="ignore", under="ignore"):
        norm = np.sqrt(np.dot(values, values))  # float32 arithmetic, as the stores do it
    if not np.isfinite(norm):
        return "has a norm that overflows float32 (a component near 1.8e19 or more)"
    if norm == 0:
        return "has a norm of 0 in float32 (every component is 0 or too small to square)"
    return None


def _normalising(target: Connector, spaces: dict[str, VectorSpace]) -> dict[str, bool]:
    """Which vector names the target normalises: a declared metric, else the stores' default
    (cosine). The key "\0default" stands for every name the source does not declare."""
    caps = target.capabilities
    changed = set(caps.normalises) | set(caps.rounds)
    out = {name: (space.metric or "cosine") in changed for name, space in spaces.items()}
    out["\0default"] = "cosine" in changed
    return out


def _plan(source: Connector, target: Connector) -> None:
    """Refuse, before anything is opened, a source that cannot be read or a target that
    cannot be written: by its declared capabilities, or because it has no code for it."""
    if not source.can_read():
        raise UsageError(f"{source.name} cannot be read; it can only be a target")
    if not target.can_write():
        raise UsageError(f"{target.name} cannot be written; it can only be a source")


def _reject_record(record: MemoryRecord, reason: str, detail: str) -> Reject:
    return Reject(reason=reason, detail=detail, id=record.id, namespace=record.namespace,
                  record=_record_json(record))


def _record_json(record: MemoryRecord) -> Any:
    """The record as a .vmig.jsonl object, so a rejects file can be fixed and imported again;
    its repr when the record cannot be encoded (which may be why it was refused)."""
    try:
        return orjson.loads(encode_record(record))
    except (ValueError, TypeError):
        return {"id": record.id, "namespace": record.namespace, "unencodable": repr(record)}


def _skip(reject: Reject, state: _State, rejects: RejectsFile) -> None:
    skipped = state.counts.skipped
    skipped[reject.reason] = skipped.get(reject.reason, 0) + 1
    rejects.add(reject)


def _account_written(
    batch: list[MemoryRecord], digests: list[bytes], refused: list[Reject], state: _State,
    rejects: RejectsFile,
) -> None:
    refused_keys = {(r.namespace, r.id) for r in refused}
    if refused:
        by_key: dict[tuple[str | None, str | None], MemoryRecord] = {
            (r.namespace, r.id): r for r in batch}
        for reject in refused:
            match = by_key.get((reject.namespace, reject.id))
            if match is not None and reject.record is None:
                reject.record = _record_json(match)
            _skip(reject, state, rejects)
    if not refused:  # the usual batch: all of it written, summed a namespace's run at a time
        _add_digests(state.written_digests, [r.namespace for r in batch], digests)
        state.counts.written += len(batch)
        return
    sums = _Sums(state.written_digests)
    written = 0
    for record, digest in zip(batch, digests, strict=True):
        if refused_keys and (record.namespace, record.id) in refused_keys:
            continue
        written += 1
        sums.add(record.namespace, digest)
    state.counts.written += written


def _namespace_digests(state: _State) -> dict[str, NamespaceDigests]:
    names = sorted(set(state.source_digests) | set(state.written_digests))
    return {
        ns: NamespaceDigests(
            source=state.source_digests.get(ns, NamespaceDigest()).to_dict(),
            written=state.written_digests.get(ns, NamespaceDigest()).to_dict(),
        )
        for ns in names
    }


def _mirror_digests(proof: dict[str, Any]) -> dict[str, NamespaceDigests]:
    """An incremental receipt's namespaces: the whole source after the run and what the
    target holds of it, so ``vex verify TARGET --receipt`` checks the whole target."""
    source, expected = proof["source"], proof["expected"]
    empty = NamespaceDigest().to_dict()
    return {ns: NamespaceDigests(source=source.get(ns, empty), written=expected.get(ns, empty))
            for ns in sorted(set(source) | set(expected))}


def _snapshot(
    writer: Writer, state: _State, source: Connector, target: Connector, run_id: str,
    rejects: RejectsFile,
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "source": source.describe(),
        "target": target.describe(),
        "cursor": state.cursor,
        "target_state": writer.checkpoint(),
        "counts": {"read": state.counts.read, "filtered": state.counts.filtered,
                   "selected": state.counts.selected, "written": state.counts.written,
                   "skipped": dict(state.counts.skipped), "reembedded": state.counts.reembedded,
                   "adapted": state.counts.adapted, "unchanged": state.counts.unchanged,
                   "deleted": state.counts.deleted},
        "source_digests": {k: v.to_dict() for k, v in state.source_digests.items()},
        "written_digests": {k: v.to_dict() for k, v in state.written_digests.items()},
        "pinned_dims": dict(state.pinned_dims),
        "seen_ids": len(state.seen_ids or ()),
        "rejects_at": list(rejects.position()),
    }


def _restore(state: _State, snapshot: dict[str, Any]) -> None:
    """Roll the in-memory state back to a snapshot, so a failure receipt counts what is durable."""
    state.counts = Counts(**snapshot["counts"])
    state.source_digests = {k: NamespaceDigest.from_dict(v) for k, v in snapshot["source_digests"].items()}
    state.written_digests = {k: NamespaceDigest.from_dict(v) for k, v in snapshot["written_digests"].items()}
    state.cursor = snapshot["cursor"]

"""Parallel runs (``workers > 1``): a shard plan, one engine run per shard in worker processes,
and a receipt that merges them. docs/engine.md, "Parallel runs".

The coordinator asks the source for its plan (``Connector.shard_plan``) once and writes it into
the run's checkpoint; a resumed run takes the plan from there and never asks again. Each shard
is a whole engine run (engine/run.py) of its own, with its checkpoint, counts, rejects and
order-independent digests in ``<receipt>.shards/``, so a killed worker resumes its shard where
its checkpoint says and nothing is counted twice. What a worker does is ``run_shard(task)``: a
function of a plain task (the shard, the options, the connectors' classes and locations, the
run-file folder) that gives back the shard's receipt. Where those calls run is an
``Executor``'s business, chosen by ``options.engine``: local ``spawn`` processes
(``LocalExecutor``) or Ray tasks (engine/ray_engine.py); both hand each result to the same
``Coordinator``, whose checkpoint and merge do not depend on the executor, so a run started on
one resumes on the other.

Targets: a store that takes several writers (a server) is written by every worker through its
own writer (idempotent upserts; the first shard's worker starts alone until its first
checkpoint, so that one process creates the collection). A ``.vmig.jsonl`` target gets one part
file per shard, joined in shard order into one file byte-identical to a one-worker run, with its
sidecar. Any other file or embedded store (a cartridge, VEKTOR, Qdrant Edge, ``.mg``) gets its
parts replayed, in shard order, through one writer: the order-dependent checks (duplicate ids
across shards, the size a fixed-size target pins) are made there, as one worker makes them.

Secrets never travel in a task: they reach the worker processes once, through the spawn pipe
(the pool's initializer), or from the environment (the ``VEX_<CONNECTOR>_<NAME>`` variables a
local worker inherits; a Ray node's own environment, engine/ray_engine.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import fcntl
import importlib
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Protocol

import msgspec
import numpy as np
import orjson

from .._canonical import NamespaceDigest, namespace_key, record_digest
from .._time import format_timestamp, utc_now_ms
from ..codecs.vmig import decode_object, parse_line
from ..connectors._base import Capabilities, Connector, Page, Reject, Shard, VectorSpace, Writer
from ..connectors.vmig import VmigConnector, VmigPartWriter, join_parts, read_file
from ..errors import (
    IntegrityError,
    MigrationError,
    RunInterrupted,
    TransientError,
    UsageError,
    VexError,
    register_secret,
)
from ..record import MemoryRecord
from ..retry import RetryPolicy
from ..spec import StoreSpec
from .checkpoint import Checkpoint, SeenIds, forget_seen_ids, keep_seen_ids, reject_line
from .options import RunOptions
from .progress import NoProgress, Progress
from .receipt import Counts, NamespaceDigests, Receipt, load_receipt, versions
from .vectors import VectorTransform

__all__ = ["Coordinator", "Executor", "LocalExecutor", "Location", "ShardFiles", "die_with", "died",
           "open_executor", "parallel_run", "run_shard", "start_worker", "use_secrets", "watch_parent"]

_MOD = 1 << 256
_GATE_POLL_S = 0.05
_DONE = ("completed", "completed_with_skips")


@dataclasses.dataclass(frozen=True)
class Location:
    """A connector as a worker rebuilds it: its class (``module:qualname``) and its parsed
    location without secrets."""

    cls: str
    spec: StoreSpec

    @classmethod
    def of(cls, connector: Connector) -> Location | None:
        """None for a connector a worker cannot rebuild (a class made inside a function)."""
        kind = type(connector)
        if "<locals>" in kind.__qualname__ or not isinstance(getattr(connector, "spec", None), StoreSpec):
            return None
        return cls(f"{kind.__module__}:{kind.__qualname__}", dataclasses.replace(connector.spec, secrets={}))

    def open(self, secrets: Mapping[str, str]) -> Connector:
        module, _, name = self.cls.partition(":")
        kind: Any = importlib.import_module(module)
        for part in name.split("."):
            kind = getattr(kind, part)
        spec = dataclasses.replace(self.spec, secrets=dict(secrets))
        return kind.from_spec(spec)  # type: ignore[no-any-return]


class ShardFiles:
    """Where one shard's run keeps its receipt, checkpoint, rejects, part and lock."""

    def __init__(self, folder: Path, index: int) -> None:
        base = folder / f"shard-{index:05d}"
        self.receipt = base.with_name(base.name + ".receipt.json")
        self.checkpoint = self.receipt.with_name(self.receipt.name + ".checkpoint")
        self.rejects = base.with_name(base.name + ".rejects.jsonl")
        self.part = base.with_name(base.name + ".part.vmig.jsonl")
        self.tally = base.with_name(base.name + ".part.tally.json")
        self.lock = base.with_name(base.name + ".lock")
        self.ids = base.with_name(base.name + ".ids")
        """The 8-byte hashes of the ids the shard's run selected, in order (``keep_seen_ids``)."""
        self.deduped = base.with_name(base.name + ".dedup.part.vmig.jsonl")


# ------------------------------------------------------------------------------ the worker

_SECRETS: dict[str, dict[str, str]] = {"source": {}, "target": {}}


def use_secrets(secrets: Mapping[str, Mapping[str, str]]) -> None:
    """The secrets a worker opens its connectors with (``{"source": {...}, "target": {...}}``),
    handed over outside any task: by the local pool's initializer (the spawn pipe), by a Ray
    worker from its node's environment (engine/ray_engine.py). Each value is registered for
    redaction, so a worker's error message never shows one."""
    for role in ("source", "target"):
        values = dict(secrets.get(role, {}))
        for value in values.values():
            register_secret(value)
        _SECRETS[role] = values


def start_worker(secrets: Mapping[str, Mapping[str, str]], parent: int) -> None:
    """A local pool worker's initializer: die with the coordinator (``die_with``), then take
    the run's secrets (``use_secrets``)."""
    die_with(parent)
    use_secrets(secrets)


_PR_SET_PDEATHSIG = 1
_WATCH_S = 0.5


def die_with(parent: int) -> None:
    """End this process when ``parent`` (the coordinator) is gone, killed with -9 included,
    so no worker is left writing a shard of a run nobody waits for. On Linux the kernel
    sends SIGKILL at the parent's death (``prctl(PR_SET_PDEATHSIG)``, through ctypes);
    everywhere, and in case the parent died before that was set, a daemon thread
    (``watch_parent``) checks every half second that the parent is still ours."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no libc to call: the watch below still ends it
            pass
    watch_parent(parent)


def watch_parent(parent: int, interval: float = _WATCH_S) -> None:
    """The portable half of ``die_with``: exit at once if ``parent`` is not this process's
    parent any more (it died and this one was adopted), checked now and then every
    ``interval`` seconds on a daemon thread."""
    def gone() -> bool:
        return os.getppid() != parent

    def watch() -> None:
        while not gone():
            time.sleep(interval)
        os._exit(70)  # no cleanup: the coordinator's resume takes the shard from its checkpoint

    if gone():
        os._exit(70)
    threading.Thread(target=watch, name="vex-parent-watch", daemon=True).start()


def run_shard(task: dict[str, Any]) -> dict[str, Any]:
    """One shard's run: ``{"status": "done", "receipt": ..., "tally": ...}`` or
    ``{"status": "failed", "error": ..., "transient": bool}``. Holds the shard's lock for the
    whole run, so a worker left over from a killed coordinator and the resumed run's worker
    never write one shard at once (the second waits, then finds the shard done)."""
    shard = msgspec.convert(task["shard"], Shard)
    files = ShardFiles(Path(task["folder"]), shard.index)
    with open(files.lock, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = finished_shard(files, task["mode"])
        if done is not None:
            return done
        from .run import run  # the engine, imported here: run.py imports this module

        keep_seen_ids(files.checkpoint, files.ids)
        inner: Location = task["source"]
        outer: Location = task["target"]
        source = ShardSource(inner.open(_SECRETS["source"]), shard)
        real = outer.open(_SECRETS["target"])
        target: Connector = real if task["mode"] == "direct" else PartTarget(real, files, task["mode"])
        options = dataclasses.replace(RunOptions(**task["options"]), resume=files.checkpoint.exists(),
                                      workers=1)
        try:
            run(source, target, operation=task["operation"], options=options,
                receipt_path=files.receipt, rejects_path=files.rejects)
        except MigrationError as err:
            cause = err.__cause__
            # its hint is "rerun with --resume", which the coordinator's error gives once
            return {"status": "failed", "error": err.message, "transient": isinstance(cause, TransientError)}
        except VexError as err:
            return {"status": "failed", "error": str(err), "transient": isinstance(err, TransientError)}
        finally:
            forget_seen_ids(files.checkpoint)
            source.close()
            real.close()
        done = finished_shard(files, task["mode"])
        assert done is not None, "a shard's run that returned has its completed receipt"
        return done


def finished_shard(files: ShardFiles, mode: str) -> dict[str, Any] | None:
    """The result of a shard already run to its end (its receipt completed, its checkpoint
    gone, its part's tally written), else None."""
    if files.checkpoint.exists() or not files.receipt.exists():
        return None
    receipt = load_receipt(files.receipt)
    if receipt.status not in _DONE or not files.ids.exists():
        return None
    tally = None
    if mode != "direct":
        if not files.tally.exists():
            return None
        tally = msgspec.json.decode(files.tally.read_bytes())
    return {"status": "done", "receipt": receipt.to_dict(), "tally": tally}


class ShardSource(Connector):
    """The source, read one shard: a connector the engine runs like any other."""

    name = "shard"
    capabilities = Capabilities(read=True, write=False)

    def __init__(self, inner: Connector, shard: Shard) -> None:
        super().__init__(inner.spec)
        self.inner, self.shard = inner, shard
        self.extra = inner.extra  # type: ignore[misc]
        whole = shard.kind == "whole"
        self.read_checks = inner.read_checks if whole else ()  # type: ignore[misc]
        self.capabilities = Capabilities(  # type: ignore[misc]
            read=True, write=False, read_ahead=inner.capabilities.read_ahead)

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "shard": self.shard.index}

    def count(self) -> int | None:
        return self.inner.count() if self.shard.kind == "whole" else self.shard.records

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return self.inner.vector_spaces()

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        self.inner.verify_reads = self.verify_reads  # a shard read makes the checks that hold per record
        return self.inner.read_shard(self.shard, batch_size=batch_size, after=after)

    def verify_source(self) -> dict[str, Any]:
        return self.inner.verify_source() if self.shard.kind == "whole" else {}

    def close(self) -> None:
        self.inner.close()


class PartTarget(Connector):
    """A shard's part of a file target: its lines in a ``.vmig.jsonl`` part. For a vmig target
    (``join``) the part is checked as the target is (same capabilities, same ``compat``); for
    a target replayed at the end (``replay``) nothing order-dependent is checked here."""

    name = "part"
    capabilities = Capabilities(read=False, write=True, named_vectors=True)
    writer_takes = VmigConnector.writer_takes  # its writer is a .vmig.jsonl one

    def __init__(self, real: Connector, files: ShardFiles, mode: str) -> None:
        super().__init__(real.spec)
        self.real, self.files, self.mode = real, files, mode
        self.compat: str | None = None
        if mode == "join":
            self.capabilities = real.capabilities  # type: ignore[misc]

    def describe(self) -> dict[str, Any]:
        return {**self.real.describe(), "part": self.files.part.name}

    def accept_compat(self, compat: str | None) -> None:
        if self.mode == "join":
            self.real.accept_compat(compat)
            self.compat = compat

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        return _TalliedPart(self.files, resume=resume, dry_run=dry_run, spaces=spaces, compat=self.compat)


class _TalliedPart(VmigPartWriter):
    def __init__(self, files: ShardFiles, **kwargs: Any) -> None:
        super().__init__(files.part, **kwargs)
        self.files = files

    def finish(self, summary: dict[str, Any]) -> None:
        super().finish(summary)
        from .._atomic import atomic_write_bytes

        atomic_write_bytes(self.files.tally, msgspec.json.encode(self.tally()))


class PartsSource(Connector):
    """The parts of a replayed run, in shard order, as one source; the cursor is
    ``<part>:<vmig cursor>``. Read like the ``.vmig.jsonl`` files they are: in a reading child
    from ``read_process.MIN_RECORDS`` records, so the one writer is not also the one parser."""

    name = "parts"
    capabilities = Capabilities(read=True, write=False, read_ahead=True, read_in_process=True)
    child_rebuilds = True

    def __init__(self, parts: list[Path], folder: Path, records: int | None = None) -> None:
        super().__init__(StoreSpec("parts", str(folder)))
        self.parts, self.folder, self.records = parts, folder, records

    def describe(self) -> dict[str, Any]:
        return {"connector": "parts", "location": str(self.folder)}

    def count(self) -> int | None:
        return self.records

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        part, _, inner = (after or "0:").partition(":")
        for k in range(int(part), len(self.parts)):
            for page in read_file(self.parts[k], batch_size=batch_size, verify=False, after=inner or None):
                if page.cursor is not None:
                    cursor: str | None = f"{k}:{page.cursor}"
                else:  # the part's end: the next part from its start, or the end of all
                    cursor = None if k == len(self.parts) - 1 else f"{k + 1}:"
                yield Page(page.items, cursor)
            inner = ""


# ------------------------------------------------------------------------------ the coordinator

def _mode(target: Connector) -> str:
    if target.takes_concurrent_writers():
        return "direct"
    return "join" if type(target) is VmigConnector else "replay"


class Executor(Protocol):
    """Where the shards run: local processes (``LocalExecutor``) or Ray tasks
    (``ray_engine.RayExecutor``). An executor only runs tasks and hands each result to
    ``Coordinator.settle``; the plan, the checkpoint and the merge are the coordinator's, the
    same for both, so a run started on one resumes on the other."""

    def max_shards(self) -> int:
        """How many shards to ask the source for (``workers``; ``auto`` as the executor
        counts CPUs)."""

    def run(self, coordinator: Coordinator) -> None:
        """Every pending shard to its end, or raise the error ``settle`` gave back."""

    def close(self) -> None:
        """Let go of what ``open_executor`` took (a Ray connection); nothing for processes."""


def open_executor(options: RunOptions, secrets: Mapping[str, Mapping[str, str]]) -> Executor:
    """The executor ``options.engine`` names (``ray`` is imported only here, and only then)."""
    if options.engine == "ray":
        from .ray_engine import RayExecutor

        return RayExecutor(options, secrets)
    return LocalExecutor(options, secrets)


def _one_process(options: RunOptions) -> bool:
    """A fresh run that does not split: ``limit``, ``dry_run``, or one worker (``auto`` on
    Ray is the cluster's CPUs, counted once connected)."""
    if options.limit is not None or options.dry_run:
        return True
    if options.engine == "ray" and options.workers == "auto":
        return False
    return options.worker_count() <= 1


def parallel_run(source: Connector, target: Connector, *, operation: str, options: RunOptions,
                 receipt_path: Path, rejects_path: Path, progress: Progress | None,
                 retry: RetryPolicy | None) -> Receipt | None:
    """Run in parallel when the options ask for it and the run can be split; None when it
    runs as one worker (``workers`` 1, a resumed one-worker run, ``limit``, ``dry_run``, a
    source of one shard, a connector a worker cannot rebuild)."""
    checkpoint = Checkpoint(receipt_path.with_name(receipt_path.name + ".checkpoint"))
    saved = checkpoint.load() if options.resume else None
    if options.resume and (saved is None or not saved.get("parallel")):
        return None
    if saved is None and _one_process(options):
        return None
    where = Location.of(source), Location.of(target)
    if where[0] is None or where[1] is None:
        return None
    options.validate()
    if not source.can_read() or not target.can_write() or source.same_location(target):
        return None  # the one-worker run refuses it, with its message
    mode = _mode(target)
    if VectorTransform.wanted(options):
        return None  # new vectors: a size pinned in order, repeated ids decided on what was written
    if saved is not None and (saved["source"] != source.describe() or saved["target"] != target.describe()):
        raise UsageError("the checkpoint belongs to another source or target; refusing to resume")
    executor = open_executor(options, {"source": source.spec.secrets, "target": target.spec.secrets})
    try:
        folder = receipt_path.with_name(receipt_path.name + ".shards")
        if saved is None:
            source.verify_reads = options.verify
            plan = source.shard_plan(executor.max_shards())
            if len(plan) < 2:
                return None
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            saved = {"parallel": 1, "run_id": uuid.uuid4().hex, "source": source.describe(),
                     "target": target.describe(), "mode": mode,
                     "plan": [msgspec.to_builtins(s) for s in plan]}
            checkpoint.save(saved)
        coordinator = Coordinator(source, target, operation, options, receipt_path, rejects_path,
                                  progress or NoProgress(), retry or RetryPolicy(attempts=options.retries),
                                  checkpoint, saved, folder, (where[0], where[1]))
        return coordinator.execute(executor)
    finally:
        executor.close()


class LocalExecutor:
    """The shards in a ``spawn`` pool of worker processes; secrets through its initializer."""

    def __init__(self, options: RunOptions, secrets: Mapping[str, Mapping[str, str]]) -> None:
        self.options = options
        self.secrets = {role: dict(secrets.get(role, {})) for role in ("source", "target")}

    def max_shards(self) -> int:
        return self.options.worker_count()

    def close(self) -> None:
        pass

    def run(self, coordinator: Coordinator) -> None:
        """Rounds of one pool: a shard whose worker failed transiently, or died (the pool
        breaks, and the other workers of that round stop), runs again in the next round."""
        while pending := coordinator.pending():
            context = multiprocessing.get_context("spawn")
            workers = min(self.options.worker_count(), len(pending))
            with ProcessPoolExecutor(workers, mp_context=context, initializer=start_worker,
                                     initargs=(self.secrets, os.getpid())) as pool:
                futures: dict[Future[dict[str, Any]], int] = {}
                for _ in range(workers):  # the pool spawns a process per submit: start them all now, so
                    pool.submit(os.getpid)  # the shards after the gate do not wait for a spawn and imports
                if coordinator.take_gate():  # the first shard alone until it has written
                    first = pool.submit(run_shard, coordinator.task(pending[0]))
                    futures[first] = pending[0]
                    while not first.done() and not coordinator.has_started(pending[0]):
                        time.sleep(_GATE_POLL_S)
                for i in pending:
                    if i not in futures.values():
                        futures[pool.submit(run_shard, coordinator.task(i))] = i
                wait(futures)
            failure: VexError | None = None
            for future, index in sorted(futures.items(), key=lambda item: item[1]):
                try:
                    result = future.result()
                except BrokenProcessPool:  # a worker was killed: its shard goes on from its checkpoint
                    result = died("its worker process died")
                error = coordinator.settle(index, result)
                failure = failure or error  # the first in shard order stops the run
            coordinator.save()
            if failure is not None:
                raise failure


def check_source(source: Connector, mode: str) -> Future[Any]:
    """The checks over the whole source (``shard_checks``: a file's checksum), made once.
    A store target (``direct``) takes each worker's writes as they come, so they are made
    here, before any worker starts, and a failed one raises here; a file or embedded target
    shows nothing until the join or the replay, so they run on a thread beside the workers
    (hashing lets go of the interpreter lock), and the caller waits for the future, which
    raises what failed, before it joins or replays anything."""
    future: Future[Any] = Future()
    if mode == "direct":
        future.set_result(source.shard_checks())
        return future

    def check() -> None:
        future.set_running_or_notify_cancel()
        try:
            future.set_result(source.shard_checks())
        except BaseException as err:
            future.set_exception(err)

    # a daemon: an interrupted run does not wait for it
    threading.Thread(target=check, name="vex-source-check", daemon=True).start()
    return future


def died(why: str) -> dict[str, Any]:
    """The result of a shard whose worker died: transient, it goes on from its checkpoint."""
    return {"status": "failed", "error": why, "transient": True}


class Coordinator:
    """One parallel run: the plan from the checkpoint, the shards run by an ``Executor``, and
    the merge. What an executor uses: ``pending``, ``task``, ``take_gate``, ``has_started``,
    ``settle``, ``save``. The merge steps (``finish``, ``counts``, ``namespaces``,
    ``merge_rejects``) read only the shards' results and run files, whichever executor ran
    them."""

    def __init__(self, source: Connector, target: Connector, operation: str, options: RunOptions,
                 receipt_path: Path, rejects_path: Path, progress: Progress, retry: RetryPolicy,
                 checkpoint: Checkpoint, saved: dict[str, Any], folder: Path,
                 where: tuple[Location, Location]) -> None:
        self.source, self.target, self.operation, self.options = source, target, operation, options
        self.receipt_path, self.rejects_path, self.progress, self.retry = \
            receipt_path, rejects_path, progress, retry
        self.checkpoint, self.saved, self.folder, self.where = checkpoint, saved, folder, where
        self.plan = [msgspec.convert(s, Shard) for s in saved["plan"]]
        self.mode: str = saved["mode"]
        self.results: dict[int, dict[str, Any]] = {}
        self.attempts = {s.index: 0 for s in self.plan}
        self.gate = self.mode == "direct" and not options.resume
        self.joined: Receipt | None = None
        self.repeats: Repeats = Repeats(mode=self.mode)
        self.started = time.monotonic()
        self.started_at = format_timestamp(utc_now_ms())
        self.tasks = self._tasks()

    def execute(self, executor: Executor) -> Receipt:
        self.receipt("running").write(self.receipt_path)
        try:
            checked: Future[Any] | None = None
            if self.options.verify and self.source.read_checks:
                self.source.verify_reads = True
                checked = check_source(self.source, self.mode)
            self.progress.start(self.source.count())
            with contextlib.ExitStack() as held:
                if self.mode == "direct":  # a store down for a moment is retried, as a write is
                    self.retry.call(lambda: held.enter_context(self.target.parallel_writes()))
                executor.run(self)
                if checked is not None:
                    checked.result()
                self.repeats = find_repeats(self)
                self.finish()
        except BaseException as err:
            raise self.stop(err) from err
        self.progress.close()
        counts = self.counts()
        status = "completed_with_skips" if counts.skipped_total else "completed"
        self.merge_rejects()
        self.checkpoint.remove()
        receipt = self.receipt(status)
        receipt.write(self.receipt_path)
        shutil.rmtree(self.folder, ignore_errors=True)
        return receipt

    def _tasks(self) -> dict[int, dict[str, Any]]:
        fields = {f.name: getattr(self.options, f.name) for f in dataclasses.fields(RunOptions)}
        fields["namespaces"] = list(self.options.namespaces) if self.options.namespaces else None
        return {s.index: {"shard": msgspec.to_builtins(s), "mode": self.mode, "folder": str(self.folder),
                          "operation": self.operation, "options": fields, "source": self.where[0],
                          "target": self.where[1]} for s in self.plan}

    # -------------------------------------------------------------------- for an executor

    def pending(self) -> list[int]:
        """The shards not run to their end yet, in shard order."""
        return [s.index for s in self.plan if s.index not in self.results]

    def task(self, index: int) -> dict[str, Any]:
        """``run_shard``'s argument for a shard: plain data, no secret."""
        return self.tasks[index]

    def take_gate(self) -> bool:
        """Once per run, True when the first pending shard must start alone and the others
        wait until ``has_started`` says it has saved a checkpoint (a server target: one
        process creates the collection or table)."""
        gate, self.gate = self.gate, False
        return gate

    def has_started(self, index: int) -> bool:
        return ShardFiles(self.folder, index).checkpoint.exists()

    def settle(self, index: int, result: dict[str, Any]) -> VexError | None:
        """A shard's result: done (kept for the merge), or a failure counted against its
        attempts. Gives back the error that stops the run (a permanent failure, or the
        ``retries`` attempts used up), naming the shard; None when the shard is done or is to
        run again from its checkpoint."""
        if result["status"] == "done":
            self.results[index] = result
            self.progress.advance(*self._progress())
            return None
        self.attempts[index] += 1
        label = self.plan[index].label()
        if not result["transient"] or self.attempts[index] >= self.options.retries:
            return MigrationError(
                f"{self.operation} stopped: {label} of {len(self.plan)} failed: {result['error']}",
                hint="fix the cause, then rerun the same command with --resume to continue")
        self.retry.note_retry()
        return None

    def _progress(self) -> tuple[int, int, int]:
        counts = self.counts()
        return counts.read, counts.written, counts.skipped_total

    def save(self) -> None:
        self.checkpoint.save(self.saved)

    def finish(self) -> None:
        """A file target made complete: parts joined, or replayed through one writer."""
        parts = [ShardFiles(self.folder, s.index).part for s in self.plan]
        summary = {"source": self.source.describe(), "counts": {"written": self.counts().written}}
        if self.mode == "direct":
            self.repeats.rewrite_first(self)
        if self.mode == "join":
            tallies = [self.results[s.index]["tally"] for s in self.plan]
            parts, tallies = self.repeats.drop_later(self.folder, parts, tallies)
            self.target.accept_compat(self.options.compat)
            assert isinstance(self.target, VmigConnector)
            spaces = _target_spaces(self.results[0]["receipt"])
            join_parts(self.target.path, parts, tallies, summary=summary, spaces=spaces)
        elif self.mode == "replay":
            from .run import run

            parts, _ = self.repeats.drop_later(self.folder, parts, None)
            records = sum(self.results[s.index]["tally"]["count"] for s in self.plan) - sum(
                1 for r in self.repeats.items if r.reason is None)
            files = ShardFiles(self.folder, -1)
            joined = files.receipt.with_name("join.receipt.json")
            options = dataclasses.replace(
                self.options, namespaces=None, since=None, until=None, limit=None, verify=False,
                verify_first=False, workers=1,
                resume=joined.with_name(joined.name + ".checkpoint").exists())
            self.joined = run(PartsSource(parts, self.folder, records), self.target, operation=self.operation,
                              options=options, receipt_path=joined,
                              rejects_path=joined.with_name("join.rejects.jsonl"), retry=self.retry)

    def counts(self) -> Counts:
        total = Counts(skipped={})
        for result in self.results.values():
            _add_counts(total, msgspec.convert(result["receipt"]["counts"], Counts))
        if self.joined is not None:  # replayed: written is what the real target took
            total.written = self.joined.counts.written
            for reason, n in self.joined.counts.skipped.items():
                total.skipped[reason] = total.skipped.get(reason, 0) + n
        self.repeats.adjust(total)
        return total

    def namespaces(self) -> dict[str, NamespaceDigests]:
        source: dict[str, NamespaceDigest] = {}
        written: dict[str, NamespaceDigest] = {}
        for result in self.results.values():
            for ns, pair in result["receipt"]["namespaces"].items():
                _add_digest(source, ns, pair["source"])
                if self.joined is None:
                    _add_digest(written, ns, pair["written"])
        if self.joined is not None:
            for ns, digests in self.joined.namespaces.items():
                _add_digest(written, ns, digests.written)
        for ns, digest in self.repeats.unwritten():
            have = written[ns]
            less = (int(have.hex, 16) - int.from_bytes(digest, "big")) % _MOD
            written[ns] = NamespaceDigest(have.count - 1, f"{less:064x}")
        return {ns: NamespaceDigests(source=source.get(ns, NamespaceDigest()).to_dict(),
                                     written=written.get(ns, NamespaceDigest()).to_dict())
                for ns in sorted(set(source) | set(written))}

    def merge_rejects(self) -> None:
        """The shards' rejects, in shard order (then the replay's), as the run's rejects file;
        a shard's lines as the repeated ids across shards changed them (``Repeats``)."""
        self.rejects_path.unlink(missing_ok=True)
        with open(self.rejects_path, "wb") as out:
            for shard in self.plan:
                path = ShardFiles(self.folder, shard.index).rejects
                if shard.index in self.repeats.shards():
                    out.writelines(self.repeats.rejects_of(shard.index, path))
                elif path.exists():
                    with open(path, "rb") as part:
                        shutil.copyfileobj(part, out)
            joined = self.folder / "join.rejects.jsonl"
            if joined.exists():
                with open(joined, "rb") as part:
                    shutil.copyfileobj(part, out)
        if not self.rejects_path.stat().st_size:
            self.rejects_path.unlink()

    def stop(self, err: BaseException) -> BaseException:
        self.progress.close()
        interrupted = isinstance(err, KeyboardInterrupt)
        message = "interrupted" if interrupted else str(err)
        receipt = self.receipt("interrupted" if interrupted else "failed", message)
        receipt.write(self.receipt_path)
        if interrupted:
            return RunInterrupted(receipt)
        if isinstance(err, MigrationError):
            err.receipt = receipt
            return err
        if isinstance(err, IntegrityError):
            return err
        if isinstance(err, (VexError, OSError)):
            return MigrationError(f"{self.operation} stopped: {err}", receipt=receipt,
                                  hint="fix the cause, then rerun the same command with --resume")
        return err

    def receipt(self, status: str, error: str | None = None) -> Receipt:
        elapsed = time.monotonic() - self.started
        counts = self.counts()
        first = self.results.get(0, {}).get("receipt", {})
        retries = sum(r["receipt"].get("retries", 0) for r in self.results.values()) + self.retry.retried
        options = self.options.as_dict()
        options["workers"] = self.options.workers
        return Receipt(
            run_id=self.saved["run_id"], status=status, operation=self.operation,
            source=self.source.describe(), target=self.target.describe(), options=options,
            counts=counts, namespaces=self.namespaces(),
            rejects_file=str(self.rejects_path) if self.rejects_path.exists() and status in _DONE else None,
            checkpoint_file=str(self.checkpoint.path) if self.checkpoint.path.exists() else None,
            receipt_file=str(self.receipt_path), retries=retries,
            versions=versions(self.source.extra, self.target.extra), started_at=self.started_at,
            finished_at=format_timestamp(utc_now_ms()), duration_s=round(elapsed, 3),
            records_per_s=round(counts.written / elapsed, 1) if elapsed > 0 else None,
            error=error, resumed=self.options.resume,
            vector_spaces=first.get("vector_spaces", {}),
            embedding=first.get("embedding"),
        )


def _target_spaces(receipt: dict[str, Any]) -> dict[str, VectorSpace]:
    spaces = receipt.get("vector_spaces", {}).get("source", {})
    return {name: VectorSpace(dims=s.get("dims"), metric=s.get("metric")) for name, s in spaces.items()}


def _add_counts(total: Counts, more: Counts) -> None:
    total.read += more.read
    total.filtered += more.filtered
    total.selected += more.selected
    total.written += more.written
    total.reembedded += more.reembedded
    total.adapted += more.adapted
    for reason, n in more.skipped.items():
        total.skipped[reason] = total.skipped.get(reason, 0) + n


def _add_digest(into: dict[str, NamespaceDigest], ns: str, value: Mapping[str, Any]) -> None:
    """Order-independent digests add: a sum of record digests modulo 2**256."""
    have = into.get(ns, NamespaceDigest())
    total = (int(have.hex, 16) + int(str(value.get("digest") or "0"), 16)) % _MOD
    into[ns] = NamespaceDigest(have.count + int(value.get("count", 0)), f"{total:064x}")



# ------------------------------------------------------------------------------ ids repeated across shards

@dataclasses.dataclass
class Repeat:
    """An id whose first occurrence is in an earlier shard: the first occurrence in its own
    shard, which one worker would have refused as ``duplicate_id``."""

    shard: int
    record: MemoryRecord
    """As read from the source (the record the rejects file gets, whole)."""
    first: MemoryRecord
    """The occurrence one worker keeps, as read from the ``owner`` shard."""
    owner: int
    reason: str | None
    """What the shard's run did with it: None, written; else its reject's reason, at ``line``
    of the shard's rejects file."""
    line: int | None
    first_written: bool
    at: int
    """The line of the shard's rejects file it goes before, when the shard wrote it."""


class Repeats:
    """The ids repeated across shards of a run into a store or a ``.vmig.jsonl`` file, and how
    the merge corrects for them so the run accounts for them as one worker does: the later
    occurrence counted as ``skipped.duplicate_id`` (its written count or other reason given
    back), its written digest taken off, its reject line in its shard's place of the rejects
    file; the file's part loses its line at the join (``drop_later``), a store gets the first
    occurrence written again after every shard (``rewrite_first``)."""

    def __init__(self, repeats: list[Repeat] | None = None, mode: str = "direct") -> None:
        self.items = repeats or []
        self.mode = mode
        """A replayed target (``replay``) counts what its one writer took: the dropped lines
        are not in it, so neither its written count nor its digests are corrected again."""

    def shards(self) -> set[int]:
        return {r.shard for r in self.items}

    def adjust(self, total: Counts) -> None:
        for r in self.items:
            if r.reason is None:
                if self.mode != "replay":
                    total.written -= 1
            else:
                total.skipped[r.reason] -= 1
                if not total.skipped[r.reason]:
                    del total.skipped[r.reason]
            total.skipped["duplicate_id"] = total.skipped.get("duplicate_id", 0) + 1

    def unwritten(self) -> list[tuple[str, bytes]]:
        """(namespace, digest) of each written later occurrence, to take off the written digests."""
        return [(namespace_key(r.record.namespace), record_digest(r.record)) for r in self.items
                if r.reason is None and self.mode != "replay"]

    def rejects_of(self, index: int, path: Path) -> list[bytes]:
        """The shard's rejects lines as one worker writes them: a repeat refused for another
        reason becomes a ``duplicate_id`` in its place; a repeat the shard wrote is put where
        it is in the source (``Repeat.at``, found when the shard was read again)."""
        lines = path.read_bytes().splitlines(keepends=True) if path.exists() else []
        mine = [r for r in self.items if r.shard == index]
        for r in mine:
            if r.line is not None:
                lines[r.line] = _duplicate_line(r.record)
        for r in sorted((r for r in mine if r.line is None), key=lambda r: r.at, reverse=True):
            lines.insert(r.at, _duplicate_line(r.record))
        return lines

    def drop_later(self, folder: Path, parts: list[Path], tallies: list[dict[str, Any]] | None
                   ) -> tuple[list[Path], list[dict[str, Any]]]:
        """The parts without the lines of the written repeats (a copy of each part concerned,
        made again, the same bytes, whenever the join or the replay runs), and their
        tallies to match (a ``.vmig.jsonl`` target's sidecar)."""
        parts = list(parts)
        tallies = [dict(t) for t in tallies] if tallies is not None else [
            {"count": 0, "namespaces": {}, "dims": {}, "models": {}} for _ in parts]
        for index in sorted(self.shards()):
            drop = {(r.record.namespace, r.record.id) for r in self.items
                    if r.shard == index and r.reason is None}
            if not drop:
                continue
            files = ShardFiles(folder, index)
            with open(parts[index], "rb") as lines, open(files.deduped, "wb") as out:
                for line in lines:
                    record = _dropped(line, drop)
                    if record is None:
                        out.write(line)
                    elif self.mode == "join":
                        tallies[index] = _untally(tallies[index], record)
            parts[index] = files.deduped
        return parts, tallies

    def rewrite_first(self, coordinator: Coordinator) -> None:
        """A store target: the first occurrence of each repeat the later shard wrote over,
        written again now that every shard has finished (an idempotent upsert, again on
        resume), so the store holds what one worker leaves there."""
        records = [r.first for r in self.items if r.reason is None]
        if not records:
            return
        from .run import run

        c = coordinator
        options = dataclasses.replace(
            c.options, namespaces=None, since=None, until=None, limit=None, verify=False,
            verify_first=False, workers=1, resume=False)
        done = run(RecordsSource(records, c.source), c.target, operation=c.operation, options=options,
                   receipt_path=c.folder / "dedup.receipt.json",
                   rejects_path=c.folder / "dedup.rejects.jsonl", retry=c.retry)
        if done.counts.written != len(records):
            raise MigrationError(
                f"{c.operation} stopped: {len(records)} records whose ids repeat across shards could not"
                f" be written again ({done.counts.skipped})", hint="rerun the same command with --resume")


def _duplicate_line(record: MemoryRecord) -> bytes:
    from .run import _record_json

    return reject_line(Reject(
        reason="duplicate_id", detail=f"id {record.id!r} already appeared in namespace {record.namespace!r}",
        id=record.id, namespace=record.namespace, record=_record_json(record)))


def _dropped(line: bytes, drop: set[tuple[str | None, str]]) -> MemoryRecord | None:
    """The record of a part's line when it is one to drop, else None (its id is checked
    before the line is decoded whole)."""
    obj = orjson.loads(line)
    if not isinstance(obj, dict) or not any(str(obj.get("id")) == i for _, i in drop):
        return None
    record = decode_object(parse_line(line), line)
    return record if (record.namespace, record.id) in drop else None


def _untally(tally: dict[str, Any], record: MemoryRecord) -> dict[str, Any]:
    """A part's tally less one record (what ``VmigWriter._tally`` added for it)."""
    less: dict[str, Any] = {"count": int(tally["count"]) - 1}
    keys = {"namespaces": [record.namespace if record.namespace is not None else ""],
            "dims": [f"{n}:{v.dims}" if n else str(v.dims) for n, v in record.vectors.items()],
            "models": [v.model for v in record.vectors.values() if v.model]}
    for field, taken in keys.items():
        counter = dict(tally[field])
        for key in taken:
            counter[key] -= 1
            if not counter[key]:
                del counter[key]
        less[field] = counter
    return less


def find_repeats(coordinator: Coordinator) -> Repeats:
    """The ids repeated across shards, from the hashes each shard kept (``ShardFiles.ids``):
    one sort over 8 bytes a record when there are none. For each hash in two shards or more
    the shards concerned are read again (only those), the records found by their hash, the
    real ids compared (two ids with one hash are not a repeat), and what each shard did with
    its occurrence looked up in its rejects file."""
    c = coordinator
    hashes = [np.frombuffer(ShardFiles(c.folder, s.index).ids.read_bytes(), dtype="<u8") for s in c.plan]
    every = np.concatenate(hashes) if hashes else np.zeros(0, dtype="<u8")
    values, counts = np.unique(every, return_counts=True)
    repeated = values[counts > 1]
    if not repeated.size:
        return Repeats(mode=c.mode)
    owner: dict[bytes, int] = {}
    later: list[tuple[int, bytes]] = []
    wanted_in: dict[int, set[bytes]] = {}
    for shard, kept in zip(c.plan, hashes, strict=True):
        for value in kept[np.isin(kept, repeated)]:
            key = value.tobytes()
            if key in owner:
                later.append((shard.index, key))
            else:
                owner[key] = shard.index
            wanted_in.setdefault(shard.index, set()).add(key)
    later_in = {index for index, _ in later}
    found: dict[int, dict[bytes, tuple[MemoryRecord, int]]] = {}
    fates: dict[int, dict[tuple[str | None, str], tuple[str, int]]] = {}
    for index, keys in sorted(wanted_in.items()):
        path = ShardFiles(c.folder, index).rejects
        lines = [orjson.loads(line) for line in path.read_bytes().splitlines()] \
            if index in later_in and path.exists() else []
        found[index] = _find(c, c.plan[index], keys, lines)
        fates[index] = _fates(path, [record for record, _ in found[index].values()])
    items: list[Repeat] = []
    for index, key in later:
        record, at = found[index].get(key, (None, 0))
        first = found[owner[key]].get(key, (None, 0))[0]
        if record is None or first is None or (record.namespace, record.id) != (first.namespace, first.id):
            continue  # two ids with one 8-byte hash: not a repeat
        reason, line = fates[index].get((record.namespace, record.id), (None, None))
        first_written = (first.namespace, first.id) not in fates[owner[key]]
        if reason is None and not first_written and c.mode == "direct":
            continue  # the store holds the later one and cannot be told to drop it: counted as written
        items.append(Repeat(index, record, first, owner[key], reason, line, first_written, at))
    return Repeats(items, c.mode)


def _find(c: Coordinator, shard: Shard, keys: set[bytes],
          rejects: list[Any]) -> dict[bytes, tuple[MemoryRecord, int]]:
    """The first record of the shard with each hash, read again from the source as a shard
    run reads it (the selection of the run's options), with the line of the shard's
    ``rejects`` (parsed) that came next in the source: the shard's read is walked beside its
    rejects, a line taken by the source entry it is about."""
    from .run import wanted

    found: dict[bytes, tuple[MemoryRecord, int]] = {}
    seen: set[bytes] = set()
    at = 0
    c.source.verify_reads = False  # checked when the shard was run
    for page in c.source.read_shard(shard, batch_size=c.options.batch_size or 500):
        for item in page.items:
            line = rejects[at] if at < len(rejects) else {}
            if isinstance(item, Reject):
                if line.get("location") == item.location and line.get("reason") == item.reason:
                    at += 1
                continue
            if not wanted(item, c.options):
                continue
            key = SeenIds.key(item.namespace, item.id)
            if key in keys and key not in found:
                found[key] = (item, at)
            if (line.get("id"), line.get("namespace")) == (item.id, item.namespace) \
                    and (line.get("reason") == "duplicate_id") == (key in seen):
                at += 1
            if rejects:
                seen.add(key)
        if len(found) == len(keys):
            break
    return found


def _fates(path: Path, records: list[MemoryRecord]) -> dict[tuple[str | None, str], tuple[str, int]]:
    """For the records a shard refused (other than as ``duplicate_id``), the reason and the
    line of the shard's rejects file; a record not in it was written."""
    keys = {(r.namespace, r.id) for r in records}
    fates: dict[tuple[str | None, str], tuple[str, int]] = {}
    if not path.exists():
        return fates
    with open(path, "rb") as lines:
        for k, line in enumerate(lines):
            obj = orjson.loads(line)
            key = (obj.get("namespace"), obj.get("id"))
            if obj.get("reason") != "duplicate_id" and obj.get("location") is None and key in keys \
                    and key not in fates:
                fates[key] = (str(obj["reason"]), k)
    return fates


class RecordsSource(Connector):
    """A few records, held in memory, as a source: the first occurrences a store target gets
    written again (``Repeats.rewrite_first``)."""

    name = "repeats"
    capabilities = Capabilities(read=True, write=False)

    def __init__(self, records: list[MemoryRecord], source: Connector) -> None:
        super().__init__(source.spec)
        self.records, self.source = records, source

    def describe(self) -> dict[str, Any]:
        return {**self.source.describe(), "repeats": len(self.records)}

    def count(self) -> int | None:
        return len(self.records)

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return self.source.vector_spaces()

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        start = int(after or 0)
        for at in range(start, len(self.records), batch_size):
            end = min(at + batch_size, len(self.records))
            yield Page(list(self.records[at:end]), None if end == len(self.records) else str(end))

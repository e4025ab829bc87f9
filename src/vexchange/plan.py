"""``vex plan SOURCE TARGET``: what a migrate with the same options would do and cost, before
it runs (docs/plan.md).

Two passes, both through the engine's own run loop, so every count is the engine's, not a copy
of its rules:

1. A dry run over the whole source into the real target (``dry_run``: read, select, check,
   digest; the target's writer is opened and writes nothing). Its receipt gives the counts and
   every refusal by reason (duplicate ids, broken or un-normalisable vectors, sizes the target
   does not hold, named vectors a target cannot keep, records without text to re-embed), and its
   time is the read side of the run. The source is watched on the way (``_Observed``) for the
   sizes: bytes of vectors, text, metadata and ids.
2. For a target that is a file or directory, a timed sample: the first records through the real
   pipeline into a throwaway target of the same kind (a fresh directory beside the target, so on
   the same disk), scaled to the whole run, and measured on disk. A server store is never written
   to by a plan; its write side comes from the rate bench/RESULTS.md measured for it, or is left
   unknown.

Memory stays flat: the passes are runs, which stream; the watcher keeps counters only.
"""

from __future__ import annotations

import dataclasses
import math
import os
import resource
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Unpack

import msgspec
import numpy as np
import orjson

from ._canonical import record_digest
from .codecs.vmig import decode_object, encode_record, parse_line
from .connectors._base import Capabilities, Connector, Page, Reject, VectorSpace
from .connectors._registry import Location, open_store
from .engine.options import (DimsPolicy, Metric, NoOtherOptions, Reembed, RunOptions, Workers,
                             takes_run_options)
from .engine.read_process import reading_mode
from .engine.receipt import Receipt
from .engine.run import DEFAULT_BATCH, wanted, run
from .errors import MigrationError, RunInterrupted, UsageError
from .plan_results import PLAN_SAMPLE, PlanChange, PlanDisk, PlanMemory, PlanReport, PlanSizes, PlanTime
from .record import MemoryRecord, Vector

__all__ = ["WRITE_RATES", "machine_factor", "offers_scratch", "plan", "probe_timings", "scratch_store"]

DEFAULT_SAMPLE = PLAN_SAMPLE

WRITE_RATES: dict[str, float] = {
    "pgvector": 2000.0,
    "milvus": 6500.0,
    "chroma": 920.0,
    "redis": 820.0,
}
"""Records per second vexchange imports into each server store (bench/RESULTS.md, "Store
connectors against each store's own bulk path", runs 7 and 8: 100,000 records of 384 dims from a
``.vmig.jsonl`` file, on the project's 2-core machine). A plan never writes to a server, so
this is its write side; stores not here have none measured."""

_BENCH_READ_RATE = 20000.0
"""The read side of those imports: a dry-run import of the same file (bench/RESULTS.md, 19,895 -
21,325 records/s), taken off the rates above so the read is not counted twice."""

_PROBE_REFERENCE_S = 45e-6
"""What ``_probe`` takes per record on the machine and at the load the rates above were measured
at: calibrated beside a dry-run read of the bench's file, whose 50 µs a record (the 20,000/s
above) the probe takes about 0.9 of (0.6-1.05 in four pairs on the loaded machine, where the
two grow together). The write side of a server is scaled by how much slower the probe runs now:
a store on a loaded machine (or on this one, on loopback) writes slower too."""

_READER_STOP_S = 0.1
"""engine/read_ahead.py's poll: a reading thread stopped early is joined within it."""

_ID_BYTES = 70
"""Memory the duplicate-id set holds per selected record (bench/RESULTS.md, issue 2)."""
_HNSW_LINK_BYTES = 128
"""An HNSW graph's links per vector at M=16 (2*M neighbours of 4 bytes on the base layer)."""


@takes_run_options
def plan(
    source: Location,
    target: Location,
    *,
    namespaces: Sequence[str] | None = None,
    limit: int | None = None,
    since: str | int | None = None,
    until: str | int | None = None,
    batch_size: int | None = None,
    retries: int = 3,
    dry_run: bool = False,
    resume: bool = False,
    allow_skips: bool = False,
    metric: Metric | None = None,
    verify: bool = True,
    verify_first: bool = False,
    reembed: Reembed | None = None,
    embed_model: str | None = None,
    keep_old_vector: str | None = None,
    on_dims_mismatch: DimsPolicy = "skip",
    adapter: str | Path | None = None,
    force_adapter: bool = False,
    compat: Literal["vex"] | None = None,
    sign: str | Path | None = None,
    workers: Workers = 1,
    engine: Literal["local", "ray"] = "local",
    ray_address: str | None = None,
    incremental: bool = False,
    sample: int = DEFAULT_SAMPLE,
    scratch: bool = False,
    source_secrets: Mapping[str, str] | None = None,
    target_secrets: Mapping[str, str] | None = None,
    **more_options: Unpack[NoOtherOptions],
) -> PlanReport:
    """What ``migrate(source, target, ...)`` with the same options would do, and what it needs:
    counts, sizes, the estimated time, disk and memory, and every record it would refuse or
    change. Nothing is written to the target (docs/plan.md).

    ``sample``: records in the timed sample through the real pipeline into a throwaway copy of a
    file target (at least four pages of the run's batch size). With ``reembed`` the dry run
    embeds every record, as the run will, so the plan takes as long as the embedding. The
    estimate is for one worker; ``workers`` above 1 can only shorten the run.

    ``scratch``: for a server target that offers one (pgvector), time the sample too, in a
    throwaway table of the target's database, dropped afterwards (it needs the right to create
    tables there). Without it nothing is written to a server, and its write side is the rate
    bench/RESULTS.md measured for the store, scaled by this machine's speed now.
    """
    options = RunOptions.from_arguments({**locals(), **more_options})
    options.validate()
    if options.resume or options.incremental:
        raise UsageError("vex plan plans a fresh, full run; it takes neither --resume nor --incremental",
                         hint="leave the option out to plan the whole run")
    if sample < 1:
        raise UsageError("sample must be at least 1 record")
    src = open_store(source, secrets=source_secrets)
    dst = open_store(target, secrets=target_secrets)
    work = Path(tempfile.mkdtemp(prefix="vex-plan-"))
    try:
        return _Planner(src, dst, options, sample, work, scratch=scratch).report()
    except MigrationError as err:  # its receipt and any "--resume" hint are the plan's own passes'
        raise MigrationError(f"vex plan stopped: {err.message}",
                             hint="nothing was written to the target; fix the cause, then plan again"
                             ) from None
    except RunInterrupted:
        raise KeyboardInterrupt from None  # nothing to resume: the CLI says only "interrupted"
    finally:
        src.close()
        dst.close()
        shutil.rmtree(work, ignore_errors=True)


class _Tally:
    """The sizes of the selected records, and per vector name how many are not unit length
    (what a target that normalises changes). Counters only: constant memory."""

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.records = self.vectors = 0
        self.vector_bytes = self.text_bytes = self.metadata_bytes = self.id_bytes = 0
        self.dims: Counter[str] = Counter()
        self.per_name: Counter[str] = Counter()
        self.not_unit: Counter[str] = Counter()

    def add(self, record: MemoryRecord) -> None:
        limit = self.options.limit
        if (limit is not None and self.records >= limit) or not wanted(record, self.options):
            return  # the engine's own selection (--namespace, --since, --until), then --limit
        self.records += 1
        self.id_bytes += len(record.id.encode("utf-8", "surrogatepass"))
        if record.text:
            self.text_bytes += len(record.text.encode("utf-8", "surrogatepass"))
        if record.metadata:
            self.metadata_bytes += _json_size(record.metadata)
        for name, vec in record.vectors.items():
            self.vectors += 1
            self.per_name[name] += 1
            self.vector_bytes += len(vec.data)
            self.dims[f"{name}:{vec.dims}" if name else str(vec.dims)] += 1
            if vec.data and not len(vec.data) % 4:
                with np.errstate(over="ignore", invalid="ignore"):
                    norm = float(np.linalg.norm(vec.array().astype(np.float64)))
                if not abs(norm - 1.0) <= 1e-6:
                    self.not_unit[name] += 1
        for sp in record.sparse.values():
            self.vector_bytes += len(sp.values) + len(sp.indices)

    def sizes(self) -> PlanSizes:
        total = self.vector_bytes + self.text_bytes + self.metadata_bytes + self.id_bytes
        return PlanSizes(records=self.records, vectors=self.vectors, vector_bytes=self.vector_bytes,
                         text_bytes=self.text_bytes, metadata_bytes=self.metadata_bytes,
                         id_bytes=self.id_bytes, total_bytes=total, dims=dict(self.dims.most_common()))


def _json_size(value: Any) -> int:
    try:
        return len(orjson.dumps(value))
    except TypeError:  # an integer beyond 64 bits: the exact encoder's text
        from ._json import dumps_exact

        return len(dumps_exact(value).encode())


class _Observed(Connector):
    """The source as the dry run reads it, each page's records handed to a tally on the way.

    Everything else is the source's own (its description, count, spaces, checks), except that
    it reads on this process's threads (never a child process, whose pages the tally would not
    see)."""

    name = "observed"
    capabilities = Capabilities(read=True, write=False)

    def __init__(self, inner: Connector, tally: _Tally) -> None:
        super().__init__(inner.spec)
        self.inner, self.tally = inner, tally

    @classmethod
    def around(cls, inner: Connector, tally: _Tally) -> _Observed:
        caps = msgspec.structs.replace(inner.capabilities, read_in_process=False)
        kind = type(f"Observed{type(inner).__name__}", (cls,),
                    {"name": inner.name, "extra": inner.extra, "capabilities": caps,
                     "read_checks": inner.read_checks})
        observed: _Observed = kind(inner, tally)
        return observed

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def count(self) -> int | None:
        return self.inner.count()

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return self.inner.vector_spaces()

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        self.inner.verify_reads = self.verify_reads
        for page in self.inner.read(batch_size=batch_size, after=after):
            for item in page.items:
                if not isinstance(item, Reject):
                    self.tally.add(item)
            yield page

    def verify_source(self) -> dict[str, Any]:
        self.inner.verify_reads = self.verify_reads
        return self.inner.verify_source()

    def run_files_base(self) -> Path | None:
        return self.inner.run_files_base()


class _Clock:
    """A Progress that notes when the loop started and when each page was done."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.pages: list[tuple[float, int]] = []

    def start(self, total: int | None) -> None:
        self.started = time.monotonic()

    def advance(self, done: int, written: int, skipped: int) -> None:
        self.pages.append((time.monotonic(), done))

    def close(self) -> None:
        pass


class _Planner:
    def __init__(self, source: Connector, target: Connector, options: RunOptions, sample: int,
                 work: Path, *, scratch: bool) -> None:
        self.source, self.target, self.options, self.sample, self.work = source, target, options, sample, work
        self.scratch = scratch
        self.tally = _Tally(options)
        self.probes: list[float] = []

    def report(self) -> PlanReport:
        server = not self.target.takes_path and self.target.name in WRITE_RATES and not (
            self.scratch and offers_scratch(self.target))
        # a server's write side is scaled by the machine's speed now: probed on both sides of
        # the dry run, so a burst of load in one moment moves the median little
        self.probes = probe_timings(5) if server else []
        dry, dry_s = self._dry_run()
        if server:
            self.probes += probe_timings(5)
        counts = dry.counts
        file_target = self.target.takes_path and not self.options.dry_run
        sampled = None
        if counts.written and file_target:
            sampled = self._sample(counts.read)
        elif counts.written and self.scratch and not self.options.dry_run:
            sampled = self._server_sample(counts.read)
        changes = self._changes(dry, sampled)
        refused = sum(c.records for c in changes if c.kind.startswith("refused:"))
        # the dry run counts as written what its writer (which writes nothing) took; less what
        # only the sample's real writer refused
        will_write = max(0, counts.written - (refused - counts.skipped_total))
        time_ = self._time(dry, dry_s, sampled, will_write)
        disk = self._disk(sampled, will_write)
        index = self.tally.vector_bytes + _HNSW_LINK_BYTES * self.tally.vectors
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return PlanReport(
            ok=refused == 0, source=str(dry.source.get("location")), target=str(dry.target.get("location")),
            read=counts.read, filtered=counts.filtered, selected=counts.selected, will_write=will_write,
            refused=refused, sizes=self.tally.sizes(), time=time_, disk=disk,
            memory=PlanMemory(run_bytes=int(peak), index_bytes=index), changes=changes,
            vector_spaces=dry.vector_spaces or {}, examples=self._examples())

    # ------------------------------------------------------------------------ the passes

    def _dry_run(self) -> tuple[Receipt, float]:
        """The whole source through the engine into the real target, writing nothing."""
        options = dataclasses.replace(self.options, dry_run=True, workers=1, engine="local", sign=None)
        observed = _Observed.around(self.source, self.tally)
        started = time.monotonic()
        receipt = run(observed, self.target, operation="plan", options=options,
                      receipt_path=self.work / "dry.receipt.json",
                      rejects_path=self.work / "dry.rejects.jsonl")
        return receipt, time.monotonic() - started

    def _sample(self, total_read: int) -> _Sample:
        """The first records through the real pipeline into a throwaway target of the same kind,
        in a fresh directory beside the real one (the same disk), timed by page."""
        folder = Path(tempfile.mkdtemp(prefix=".vex-plan-", dir=_beside(self.target)))
        try:
            name = Path(self.target.spec.path or "target").name or "target"
            spec = dataclasses.replace(self.target.spec, path=str(folder / name))
            throwaway = type(self.target).from_spec(spec)
            try:
                receipt, started, ended, clock = self._timed(throwaway)
            finally:
                throwaway.close()
            size = _tree_size(folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return _Sample(receipt, started, ended, clock, size, total_read, self._reader_stop())

    def _server_sample(self, total_read: int) -> _Sample | None:
        """``scratch``: the sample into a throwaway table or collection on the target's own
        server, dropped afterwards; None for a store that offers none."""
        made = scratch_store(self.target)
        if made is None:
            return None
        throwaway, drop = made
        try:
            receipt, started, ended, clock = self._timed(throwaway)
        finally:
            drop()
        return _Sample(receipt, started, ended, clock, 0, total_read, self._reader_stop())

    def _reader_stop(self) -> float:
        """What stopping the sample's reader early costs, which the whole run never pays: a
        reading thread notices the stop at its next poll (engine/read_ahead.py, 0.1 s)."""
        return _READER_STOP_S if reading_mode(self.source, self.source.count()) != "main" else 0.0

    def _timed(self, throwaway: Connector) -> tuple[Receipt, float, float, _Clock]:
        batch = self.options.batch_size or self.target.capabilities.preferred_batch or DEFAULT_BATCH
        wanted = max(self.sample, 4 * batch)
        if self.options.limit is not None:
            wanted = min(wanted, self.options.limit)
        # verify=False: a run stopped by its limit checks the whole source at its finish (a
        # once-only cost the scaling would multiply); the dry run made the source's checks
        options = dataclasses.replace(self.options, limit=wanted, workers=1, engine="local", sign=None,
                                      batch_size=batch, verify=False, verify_first=False)
        clock = _Clock()
        started = time.monotonic()
        receipt = run(self.source, throwaway, operation="plan-sample", options=options,
                      receipt_path=self.work / "sample.receipt.json",
                      rejects_path=self.work / "sample.rejects.jsonl", progress=clock)
        return receipt, started, time.monotonic(), clock

    # ------------------------------------------------------------------------ the figures

    def _time(self, dry: Receipt, dry_s: float, sampled: _Sample | None, will_write: int) -> PlanTime:
        if self.options.dry_run:
            return PlanTime(estimated_s=round(dry_s, 3), basis="sample", sample_records=dry.counts.read,
                            sample_s=round(dry_s, 3), read_side_s=round(dry_s, 3),
                            note="a dry run: the whole source was read as the run will read it")
        if not dry.counts.written:
            return PlanTime(estimated_s=round(dry_s, 3), basis="empty", sample_records=0, sample_s=0.0,
                            read_side_s=round(dry_s, 3), note="nothing would be written")
        if sampled is not None:
            return PlanTime(estimated_s=round(sampled.estimate(), 3), basis="sample",
                            sample_records=sampled.receipt.counts.read, sample_s=round(sampled.elapsed, 3),
                            read_side_s=round(dry_s, 3),
                            note=f"the first {sampled.receipt.counts.read:,} records into a throwaway"
                                 f" {self.target.name} {'store' if self.target.takes_path else 'table'}"
                                 f", scaled to {sampled.total_read:,}")
        rate = WRITE_RATES.get(self.target.name)
        if rate is None:
            return PlanTime(estimated_s=None, basis="read-only", sample_records=0, sample_s=0.0,
                            read_side_s=round(dry_s, 3),
                            note=f"no write rate is measured for {self.target.name} and a plan never"
                                 f" writes to a server: the run takes about {dry_s:.1f} s to read,"
                                 " plus its writes")
        slower = machine_factor(self.probes)
        per_record = max(1.0 / rate - 1.0 / _BENCH_READ_RATE, 0.0) * slower
        return PlanTime(estimated_s=round(dry_s + will_write * per_record, 3), basis="read+rate",
                        sample_records=0, sample_s=0.0, read_side_s=round(dry_s, 3),
                        write_rate=round(1.0 / (per_record + 1.0 / _BENCH_READ_RATE), 1),
                        note=f"the read side measured here; the write side from {self.target.name}'s"
                             f" {rate:,.0f} records/s in bench/RESULTS.md (384-dim records), this"
                             f" machine running {slower:.2f}x as slow as there now")

    def _disk(self, sampled: _Sample | None, will_write: int) -> PlanDisk:
        rejects = self.work / "dry.rejects.jsonl"
        run_files = 8 * self.tally.records + (rejects.stat().st_size if rejects.exists() else 0) + 65536
        if sampled is not None and sampled.receipt.counts.written and self.target.takes_path:
            needed = int(sampled.disk_bytes * will_write / sampled.receipt.counts.written)
            where = _beside(self.target)
            free = shutil.disk_usage(where).free
            return PlanDisk(target_bytes=needed, basis="sample", free_bytes=free,
                            fits=needed + run_files <= free, run_files_bytes=run_files)
        return PlanDisk(target_bytes=self.tally.sizes().total_bytes, basis="payload",
                        run_files_bytes=run_files)

    def _changes(self, dry: Receipt, sampled: _Sample | None) -> list[PlanChange]:
        """Every refusal the dry run counted, the ones only the sample's writer made (scaled),
        and what the target changes in what it keeps."""
        details = self._first_details()
        out = [PlanChange(kind=f"refused:{reason}", records=n, detail=details.get(reason, ""))
               for reason, n in sorted(dry.counts.skipped.items())]
        if sampled is not None:
            seen = sampled.receipt.counts
            extra = {r: n for r, n in seen.skipped.items() if r not in dry.counts.skipped}
            for reason, n in sorted(extra.items()):
                scaled = round(n * dry.counts.selected / max(seen.selected, 1))
                out.append(PlanChange(kind=f"refused:{reason}", records=scaled,
                                      detail=f"the target refused {n:,} of the {seen.selected:,} records"
                                             " of the sample when they were written; scaled to the run"))
        counts = dry.counts
        if counts.reembedded:
            out.append(PlanChange(kind="reembedded", records=counts.reembedded,
                                  detail="default vectors computed again from the text"))
        if counts.adapted:
            out.append(PlanChange(kind="adapted", records=counts.adapted,
                                  detail="default vectors translated by the adapter"))
        out.extend(self._space_changes(dry))
        return out

    def _space_changes(self, dry: Receipt) -> list[PlanChange]:
        caps = self.target.capabilities
        spaces = (dry.vector_spaces or {}).get("source", {})
        out: list[PlanChange] = []
        for name, n in sorted(self.tally.per_name.items()):
            declared = (spaces.get(name) or spaces.get("") or {}).get("metric")
            metric = declared or "cosine"
            label = f"vector {name!r}" if name else "default vector"
            if declared is None:
                out.append(PlanChange(kind="metric", records=n, detail=(
                    f"the source declares no metric for the {label}; the target is created with"
                    " cosine (the default; --metric chooses another)")))
            if metric in caps.normalises:
                out.append(PlanChange(kind="normalised", records=n, detail=(
                    f"{self.target.name} keeps {metric} vectors L2-normalised: the {label} is stored"
                    f" scaled to length 1 ({self.tally.not_unit[name]:,} of them are not unit"
                    " length now), not bit for bit")))
            elif metric in caps.rounds:
                out.append(PlanChange(kind="rounded", records=n, detail=(
                    f"{self.target.name} may change the last bits of {metric} vectors ({label}),"
                    " keeping their direction and length")))
        return out

    def _first_details(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for entry in _rejects(self.work / "dry.rejects.jsonl", limit=10_000):
            found.setdefault(str(entry.get("reason")), str(entry.get("detail", "")))
        return found

    def _examples(self) -> list[dict[str, str | None]]:
        return [{"reason": e.get("reason"), "id": e.get("id"), "namespace": e.get("namespace"),
                 "detail": e.get("detail")}
                for e in _rejects(self.work / "dry.rejects.jsonl", limit=5)]


class _Sample:
    """The timed sample: the run's open (until its loop starts), its pages, its finish."""

    def __init__(self, receipt: Receipt, started: float, ended: float, clock: _Clock, disk_bytes: int,
                 total_read: int, reader_stop: float) -> None:
        self.receipt, self.clock, self.disk_bytes, self.total_read = receipt, clock, disk_bytes, total_read
        self.reader_stop = reader_stop
        self.started, self.ended = started, ended
        self.elapsed = ended - started

    def estimate(self) -> float:
        """Open once; the pages after the first at their measured rate per record read; the
        first page (warming up: a reading thread or child starting) once; the finish scaled
        as n log n (a cartridge is sorted, an HNSW index built there)."""
        read = self.receipt.counts.read
        pages = self.clock.pages
        loop_start = self.clock.started or self.started
        if not pages or read <= 0:
            return self.elapsed * self.total_read / max(read, 1)
        opened = loop_start - self.started
        last_at, last_done = pages[-1]
        stopping = min(self.reader_stop, self.ended - last_at) if read < self.total_read else 0.0
        finish = self.ended - last_at - stopping  # the reader's early stop is the sample's alone
        scale = self.total_read / read
        if len(pages) >= 3:
            first_at, first_done = pages[0]
            rate = (last_at - first_at) / max(last_done - first_done, 1)
            loop = (first_at - loop_start) + rate * max(self.total_read - first_done, 0)
        else:
            loop = (last_at - loop_start) * scale
        # a finish that builds an index or sorts grows as n log n: scaled by that, so a linear
        # finish (a rename, a sidecar) is overestimated a little, never the reverse
        grows = math.log(max(self.total_read, 2)) / math.log(max(read, 2))
        return opened + loop + finish * scale * max(grows, 1.0)


def machine_factor(timings: Sequence[float] | None = None) -> float:
    """How much slower this process runs the engine's per-record work now than on the machine
    the stores' rates were measured on (1.0: as fast; 2.0: half as fast): the median of short
    timings of ``_probe`` (``probe_timings``; five taken now when none are given) against its
    reference, kept within 0.25-20."""
    ordered = sorted(timings if timings else probe_timings(5))
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return min(max(median / _PROBE_REFERENCE_S, 0.25), 20.0)


def probe_timings(count: int) -> list[float]:
    """``count`` timings of ``_probe`` (seconds per record), about 10 ms each at rest."""
    records = _probe_records()
    return [_probe(records) for _ in range(count)]


def _probe_records() -> list[MemoryRecord]:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((200, 384)).astype("<f4")
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    text = "a memory of about eighty characters, the kind an agent keeps: {}"
    return [MemoryRecord(id=f"probe-{i}", text=text.format(i), namespace="ns",
                         vectors={"": Vector(vectors[i].tobytes(), "probe")},
                         metadata={"a": i, "b": "x", "c": [1, 2], "d": True},
                         created_at=1_700_000_000_000 + i)
            for i in range(len(vectors))]


def _probe(records: list[MemoryRecord]) -> float:
    """Seconds per record to encode a record as a .vmig.jsonl line, decode it, and digest it:
    the engine's own per-record work, a stand-in for the machine's speed now."""
    started = time.perf_counter()
    for record in records:
        line = encode_record(record)
        decode_object(parse_line(line), line)
        record_digest(record)
    return (time.perf_counter() - started) / len(records)


def offers_scratch(target: Connector) -> bool:
    """Whether ``scratch_store`` can make a throwaway store beside ``target``."""
    return callable(getattr(target, "scratch", None)) or target.name in _SCRATCH


def scratch_store(target: Connector) -> tuple[Connector, Callable[[], None]] | None:
    """A throwaway store of the same kind on the same server as ``target``, and the call that
    drops it; None when there is none. A connector may offer its own (a ``scratch()`` method
    giving the pair); pgvector's is here until it does (a new table in the same schema)."""
    offered = getattr(target, "scratch", None)
    if callable(offered):
        made: tuple[Connector, Callable[[], None]] = offered()
        return made
    maker = _SCRATCH.get(target.name)
    return maker(target) if maker is not None else None


def _pgvector_scratch(target: Connector) -> tuple[Connector, Callable[[], None]]:
    """A new table ``vexplan_<random>`` in the target's schema; dropped with the connector's own
    connection (no SQL library is imported here)."""
    table = f"vexplan_{uuid.uuid4().hex[:12]}"
    spec = dataclasses.replace(target.spec, params={**target.spec.params, "table": table})
    throwaway: Any = type(target).from_spec(spec)

    def drop() -> None:
        try:
            conn = throwaway.conn()
            conn.execute("DROP TABLE IF EXISTS " + throwaway.ident.as_string(conn))
        finally:
            throwaway.close()

    return throwaway, drop


_SCRATCH: dict[str, Callable[[Connector], tuple[Connector, Callable[[], None]]]] = {
    "pgvector": _pgvector_scratch,
}


def _beside(target: Connector) -> Path:
    """Where a throwaway copy of a file target goes: the directory the target will be in when
    it exists and can be written, else the system's temporary directory."""
    path = Path(target.spec.path or ".").expanduser().absolute()
    for where in (path.parent, Path(tempfile.gettempdir())):
        if where.is_dir() and os.access(where, os.W_OK):
            return where
    return Path(tempfile.gettempdir())


def _tree_size(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_blocks * 512
            except OSError:
                continue
    return total


def _rejects(path: Path, *, limit: int) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with open(path, "rb") as handle:
        for n, line in enumerate(handle):
            if n >= limit:
                return
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(entry, dict):
                yield entry

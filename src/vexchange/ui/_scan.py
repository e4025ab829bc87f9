"""The one streamed scan behind the overview: the library's ``inspect`` counting, with a tee.

The overview's numbers must be ``vexchange.inspect``'s, so the scan *is* ``inspect``: it is handed
the opened connector with its ``read`` wrapped, and the wrapper sees every page on the way past.
From those pages it keeps what ``inspect`` does not report, in bounded memory: a live count (the
progress), ``created_at`` per time bucket (coarsened as the span grows, so never more than a few
thousand buckets), the first unreadable entries, and a uniform sample of whole records (reservoir
sampling, Algorithm R, seeded: the same store gives the same sample). One pass over the store,
whatever its size; the page says when the other views show a sample rather than every record.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from .._time import format_timestamp
from ..api import Location, open_store
from ..checks import inspect
from ..connectors._base import Connector, Page, Reject
from ..errors import IntegrityError, VexError
from ..record import MemoryRecord
from ..results import InspectReport

__all__ = ["Scan"]

_MINUTE = 60_000
_GRAINS = (_MINUTE, 60 * _MINUTE, 24 * 60 * _MINUTE, 7 * 24 * 60 * _MINUTE, 365 * 24 * 60 * _MINUTE)
_MAX_BUCKETS = 20_000
_KEPT_REJECTS = 200
_BINS = 60


class _Stopped(Exception):
    """The server is shutting down: the scan ends where it is."""


class Scan:
    """A store's scan in a thread: state (``scanning``, ``ready``, ``failed``), progress, and
    once ready the inspect report, the time histogram and the sample."""

    def __init__(self, location: Location, *, sample_size: int) -> None:
        self.location = location
        self.sample_size = sample_size
        self.state = "scanning"
        self.error: str | None = None
        self.exception: VexError | None = None
        self.unverified: str | None = None
        """Why the read checks failed (the data is then shown as read, without them), else None."""
        """The error that failed the scan, when it is one of vexchange's (a missing file, a
        refused URL): ``serve`` raises it when the scan fails at once, before any page is open."""
        self.seen = 0
        self.expected: int | None = None
        """The store's own count, when it knows one cheaply (a sidecar's): the progress bar's end."""
        self.started = time.monotonic()
        self.seconds: float | None = None
        self.report: InspectReport | None = None
        self.sample: list[MemoryRecord] = []
        self.rejects: list[Reject] = []
        self._grain = 0
        self._buckets: Counter[int] = Counter()
        self._rng = random.Random(0)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="vex-ui-scan", daemon=True)

    def start(self) -> Scan:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def sampled(self) -> bool:
        """True when the views show a sample, not every record."""
        return self.report is not None and self.report.records > len(self.sample)

    def _run(self) -> None:
        try:
            store = open_store(self.location)
            try:
                self.expected = store.count()
            except Exception:  # a count is only for the progress bar: the scan goes on without it
                self.expected = None
            try:
                report = self._inspect(store)
            except IntegrityError as err:
                # what the format records does not match (a sidecar's checksum, a footer): the
                # page still shows the data, read again without the checks, and says so
                self.unverified = str(err)
                store = open_store(self.location)
                store.verify_reads = False
                report = self._inspect(store)
            with self._lock:
                self.report = report
                self.state = "ready"
        except _Stopped:
            self.state = "stopped"
        except VexError as err:
            self.error, self.state, self.exception = str(err), "failed", err
        except Exception as err:  # a store that breaks mid-scan: shown on the page, not a dead thread
            self.error, self.state = f"{type(err).__name__}: {err}", "failed"
        finally:
            self.seconds = time.monotonic() - self.started

    def _inspect(self, store: Connector) -> InspectReport:
        self.seen, self.sample, self.rejects = 0, [], []
        self._grain, self._buckets, self._rng = 0, Counter(), random.Random(0)
        _tee(store, self._observe)
        return inspect(store)

    def _observe(self, items: list[MemoryRecord | Reject]) -> None:
        if self._stop.is_set():
            raise _Stopped
        for item in items:
            if isinstance(item, Reject):
                if len(self.rejects) < _KEPT_REJECTS:
                    self.rejects.append(item)
                continue
            self.seen += 1
            if item.created_at is not None:
                self._count_time(item.created_at)
            if len(self.sample) < self.sample_size:
                self.sample.append(item)
            else:
                slot = self._rng.randrange(self.seen)
                if slot < self.sample_size:
                    self.sample[slot] = item

    def _count_time(self, ms: int) -> None:
        self._buckets[ms // _GRAINS[self._grain]] += 1
        while len(self._buckets) > _MAX_BUCKETS and self._grain + 1 < len(_GRAINS):
            ratio = _GRAINS[self._grain + 1] // _GRAINS[self._grain]
            coarse: Counter[int] = Counter()
            for bucket, count in self._buckets.items():
                coarse[bucket // ratio] += count
            self._buckets, self._grain = coarse, self._grain + 1

    def histogram(self) -> dict[str, Any]:
        """``created_at`` in up to 60 equal bins from the earliest to the latest bucket; every
        record with a ``created_at`` is counted (this is not sampled)."""
        grain = _GRAINS[self._grain]
        if not self._buckets:
            return {"bins": [], "grain_ms": grain}
        low, high = min(self._buckets), max(self._buckets)
        width = max(1, -(-(high - low + 1) // _BINS))
        counts = [0] * (-(-(high - low + 1) // width))
        for bucket, count in self._buckets.items():
            counts[(bucket - low) // width] += count
        bins = [{"from": format_timestamp((low + i * width) * grain),
                 "to": format_timestamp((low + (i + 1) * width) * grain), "count": c}
                for i, c in enumerate(counts)]
        return {"bins": bins, "grain_ms": grain * width}


def _tee(store: Connector, observe: Callable[[list[MemoryRecord | Reject]], None]) -> None:
    """Wrap this one connector's ``read`` so that ``observe`` sees every page ``inspect`` reads
    (an instance attribute: the class, and every other connector, are left as they are)."""
    original = store.read

    def read(*, batch_size: int, after: str | None = None) -> Iterator[Page]:
        for page in original(batch_size=batch_size, after=after):
            observe(page.items)
            yield page

    setattr(store, "read", read)  # noqa: B010 - an instance attribute, shadowing the method

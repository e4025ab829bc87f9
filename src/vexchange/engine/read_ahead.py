"""Reading one page ahead on a second thread.

A migration alternates between decoding a page of the source (Python: JSON, float32 checks,
records) and handing the page before to the target, whose client often works without holding
the GIL (Rust engines, network calls). Producing the next page on a second thread while the
target works overlaps the two. At most two pages wait besides the one being written, so memory
stays flat; pages arrive in order, so cursors, checkpoints and resume are unchanged.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator
from typing import TypeVar

from .reader_start import usable_cpus

__all__ = ["read_ahead", "usable_cpus"]

T = TypeVar("T")
_DONE = object()
_POLL_S = 0.1


def read_ahead(items: Generator[T, None, None], depth: int = 1) -> Generator[T, None, None]:
    """Yield ``items`` in order, produced on a daemon thread up to ``depth`` items ahead.

    An exception raised while producing is raised here, at the item where it happened. When
    the consumer stops early (an error, an interrupt, a limit reached) the producer is told to
    stop, finishes the item it is on, closes ``items`` on its own thread, and is joined.
    """
    handoff: queue.Queue[tuple[object, BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand(item: object, error: BaseException | None = None) -> bool:
        while not stop.is_set():
            try:
                handoff.put((item, error), timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not hand(item):
                    return
            hand(_DONE)
        except BaseException as err:  # handed to the consumer, raised there
            hand(_DONE, err)
        finally:
            items.close()

    worker = threading.Thread(target=produce, name="vex-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item, error = handoff.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        worker.join()

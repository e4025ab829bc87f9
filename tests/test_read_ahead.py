"""The engine's read-ahead: pages in order, errors where they happened, a bounded lead, and a
producer thread that always stops."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator

import pytest

from vexchange.engine.read_ahead import read_ahead


def _alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "vex-read-ahead"]


def test_items_arrive_in_order_and_the_thread_ends() -> None:
    assert list(read_ahead(iter_range(500))) == list(range(500))
    assert not _alive()


def iter_range(n: int) -> Generator[int, None, None]:
    yield from range(n)


def test_an_error_is_raised_after_the_items_before_it() -> None:
    def source() -> Generator[int, None, None]:
        yield 1
        yield 2
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for item in read_ahead(source()):
            got.append(item)
    assert got == [1, 2]
    assert not _alive()


def test_the_producer_stays_at_most_depth_plus_one_ahead() -> None:
    produced = []

    def source() -> Generator[int, None, None]:
        for i in range(50):
            produced.append(i)
            yield i

    for item in read_ahead(source(), depth=1):
        time.sleep(0.01)  # a slow writer: the producer waits for it
        # the item in hand, one in the queue, one being handed over
        assert len(produced) <= item + 3
    assert produced == list(range(50))


def test_stopping_early_closes_the_source_on_its_own_thread() -> None:
    closed_on = []

    def source() -> Generator[int, None, None]:
        try:
            yield from range(1000)
        finally:
            closed_on.append(threading.current_thread().name)

    pages = read_ahead(source())
    for item in pages:
        if item == 3:
            break
    pages.close()
    assert closed_on == ["vex-read-ahead"]
    assert not _alive()

"""The engine's read-ahead: pages in order, errors where they happened, a bounded lead, and a
producer thread that always stops."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

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


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_a_run_interrupted_while_writing_stops_the_reader_and_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, children: list[Any]) -> None:
    """Ctrl-C arrives on the main thread while the target writes and the next page is being
    read ahead, by a thread or a child process: the reader is stopped, and --resume completes
    without duplicates."""
    from vexchange import migrate
    from vexchange.engine import read_process

    monkeypatch.setenv("VEX_READ_AHEAD", mode)
    monkeypatch.setattr(read_process, "usable_cpus", lambda: 2)  # read ahead on any machine
    from vexchange.testing.conformance import fail_a_write, read_all, write_vmig
    from vexchange.testing.records import sample_records

    records = list(sample_records(60))
    source = write_vmig(tmp_path / "s.vmig.jsonl", records)
    target = f"cartridge://{tmp_path}/m.db"
    options = {"batch_size": 10, "receipt": tmp_path / "r.json", "rejects": tmp_path / "r.rej"}
    fail_a_write(monkeypatch, fail_on=3, error=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        migrate(source, target, **options)
    assert not _alive()
    assert len(children) == (mode == "process") and all(c.returncode is not None for c in children)
    monkeypatch.undo()
    receipt = migrate(source, target, resume=True, **options)
    assert receipt.resumed and receipt.counts.written == 60, receipt.counts  # counts carry over
    got = read_all(target)
    assert len(got) == len(records) == 60


def test_a_process_on_one_cpu_does_not_read_ahead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vexchange import migrate
    from vexchange.engine import read_process
    from vexchange.engine import run as engine_run
    from vexchange.testing.conformance import read_all, write_vmig
    from vexchange.testing.records import sample_records

    used: list[bool] = []
    monkeypatch.setattr(engine_run, "read_ahead", lambda pages: used.append(True) or pages)
    source = write_vmig(tmp_path / "s.vmig.jsonl", list(sample_records(30)))
    monkeypatch.setattr(read_process, "usable_cpus", lambda: 1)
    migrate(source, tmp_path / "a.vmig.jsonl", batch_size=10)
    assert used == []
    monkeypatch.setattr(read_process, "usable_cpus", lambda: 2)
    monkeypatch.setenv("VEX_READ_AHEAD", "off")
    migrate(source, tmp_path / "c.vmig.jsonl", batch_size=10)
    assert used == []
    monkeypatch.delenv("VEX_READ_AHEAD")
    migrate(source, tmp_path / "b.vmig.jsonl", batch_size=10)
    assert used == [True]
    assert len(read_all(str(tmp_path / "b.vmig.jsonl"))) == 30

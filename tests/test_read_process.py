"""Reading in a child process: the same pages, the same errors, a child that always stops,
and the rules for when the engine uses it."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest

from vexchange import VexError, migrate, open_store
from vexchange.engine import read_process
from vexchange.engine.read_process import read_in_process, reading_mode
from vexchange.errors import ConnectorError, IntegrityError, TransientError
from vexchange.connectors.vmig import VmigConnector
from vexchange.spec import StoreSpec
from vexchange.testing.conformance import read_all, write_vmig
from vexchange.testing.records import sample_records


def _source(tmp_path: Path, n: int = 90) -> Path:
    path = write_vmig(tmp_path / "s.vmig.jsonl", list(sample_records(n, named=("title",), sparse=True)))
    with open(path, "ab") as handle:  # a line that is a reject, not an error
        handle.write(b'{"id": "broken", "vector": [1, "x"]}\n')
    from vexchange.sidecar import sidecar_path

    sidecar_path(path).unlink()  # its checksum no longer holds: a file edited by hand
    return path


@pytest.mark.parametrize("kind", ["vmig", "cartridge", "vectorpack", "vektor"])
def test_the_child_reads_the_same_pages(tmp_path: Path, kind: str,
                                        children: list[subprocess.Popen[bytes]]) -> None:
    source: Any = _source(tmp_path)
    if kind == "vektor":
        from vexchange.testing.vektor_fixture import build

        build(tmp_path / "v.db", n=90, dims=8, edge_cases=True)
        source = f"vektor:{tmp_path / 'v.db'}"
    elif kind != "vmig":
        source = f"{kind}://{tmp_path}/m.{kind}"
        migrate(_source(tmp_path), source, allow_skips=True)
    store = open_store(source)
    direct = list(store.read(batch_size=7))
    through = list(read_in_process(store, batch_size=7))
    assert through == direct and len(direct) > 10
    assert children and all(child.returncode is not None for child in children)
    resumed = list(read_in_process(store, batch_size=7, after=direct[4].cursor))
    assert resumed == direct[5:]


def test_a_migration_read_in_a_process_writes_the_same_bytes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, children: list[subprocess.Popen[bytes]]) -> None:
    source = _source(tmp_path)
    monkeypatch.setenv("VEX_READ_AHEAD", "thread")
    by_thread = migrate(source, tmp_path / "a.vmig.jsonl", batch_size=10, allow_skips=True)
    assert not children
    monkeypatch.setenv("VEX_READ_AHEAD", "process")
    monkeypatch.setattr(read_process, "usable_cpus", lambda: 2)
    by_process = migrate(source, tmp_path / "b.vmig.jsonl", batch_size=10, allow_skips=True,
                         rejects=tmp_path / "b.rejects.jsonl")
    assert len(children) == 1 and children[0].returncode == 0
    assert (tmp_path / "a.vmig.jsonl").read_bytes() == (tmp_path / "b.vmig.jsonl").read_bytes()
    assert by_process.counts == by_thread.counts and by_process.counts.skipped_total == 1
    assert "broken" in (tmp_path / "b.rejects.jsonl").read_text()


def test_an_error_in_the_child_is_raised_here_with_its_type(tmp_path: Path) -> None:
    pack = tmp_path / "m.vpack"
    migrate(_source(tmp_path), f"vectorpack://{pack}", allow_skips=True)
    store = open_store(f"vectorpack://{pack}")
    database = pack / "tables" / "memory.db"
    data = bytearray(database.read_bytes())
    data[-10] ^= 1
    database.write_bytes(bytes(data))
    with pytest.raises(VexError) as direct:
        list(store.read(batch_size=10))
    with pytest.raises(VexError) as through:
        list(read_in_process(store, batch_size=10))
    assert type(through.value) is type(direct.value) and str(through.value) == str(direct.value)
    assert isinstance(through.value, IntegrityError)


def test_errors_keep_their_type_and_hint_across_the_pipe() -> None:
    import pickle

    err = pickle.loads(read_process._pickled_error(TransientError("locked", hint="wait")))
    assert isinstance(err, TransientError) and err.hint == "wait"

    class Odd(Exception):
        def __init__(self, a: int, b: int) -> None:
            super().__init__(a + b)

    described = pickle.loads(read_process._pickled_error(Odd(1, 2)))
    assert isinstance(described, ConnectorError) and "Odd: 3" in str(described)


def test_stopping_early_ends_the_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       children: list[subprocess.Popen[bytes]]) -> None:
    source = write_vmig(tmp_path / "s.vmig.jsonl", list(sample_records(3000)))
    monkeypatch.setenv("VEX_READ_AHEAD", "process")
    monkeypatch.setattr(read_process, "usable_cpus", lambda: 2)
    receipt = migrate(source, tmp_path / "o.vmig.jsonl", batch_size=10, limit=25)
    assert receipt.counts.written == 25
    assert len(children) == 1 and children[0].returncode is not None


def test_a_child_that_dies_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(_source(tmp_path))
    monkeypatch.setattr(read_process.subprocess, "Popen", _popen_that_dies())
    with pytest.raises(ConnectorError, match="stopped unexpectedly: boom") as err:
        list(read_in_process(store, batch_size=10))
    assert "VEX_READ_AHEAD=thread" in str(err.value)


def _popen_that_dies() -> Any:
    popen = subprocess.Popen

    def start(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        kwargs.pop("env", None)
        return popen([sys.executable, "-c", "import sys; sys.stderr.write('Traceback...\\nboom\\n');"
                      " sys.exit(1)"], **kwargs)

    return start


def in_child(source: Any) -> bool:
    return reading_mode(source, source.count()) == "process"


def test_when_the_engine_reads_in_a_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = open_store(write_vmig(tmp_path / "s.vmig.jsonl", list(sample_records(20))))
    monkeypatch.setattr(read_process, "usable_cpus", lambda: 2)
    monkeypatch.delenv("VEX_READ_AHEAD", raising=False)
    assert not in_child(small)  # fewer records than MIN_RECORDS
    assert reading_mode(small, 20) == "thread"
    monkeypatch.setattr(read_process, "MIN_RECORDS", 10)
    assert in_child(small)
    monkeypatch.setenv("VEX_READ_AHEAD", "thread")
    assert not in_child(small)
    monkeypatch.setenv("VEX_READ_AHEAD", "process")
    assert in_child(small)
    monkeypatch.setenv("VEX_READ_AHEAD", "fast")
    with pytest.raises(VexError, match="must be one of auto, process, thread, off"):
        in_child(small)
    monkeypatch.setenv("VEX_READ_AHEAD", "process")
    monkeypatch.setattr(read_process, "usable_cpus", lambda: 1)
    assert not in_child(small)  # one CPU: nothing to overlap with
    monkeypatch.setattr(read_process, "usable_cpus", lambda: 2)

    class Wrapped(type(small)):  # type: ignore[misc]
        """Not what its spec names in the registry: made here, it might not behave the same in
        a child."""

    assert not in_child(Wrapped(small.spec))
    monkeypatch.setattr(read_process.sys, "executable", "")  # no interpreter to start
    assert not in_child(small)
    assert read_all(str(tmp_path / "s.vmig.jsonl"))


def test_a_wrong_read_ahead_setting_is_a_clear_cli_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from vexchange.cli import main

    source = write_vmig(tmp_path / "s.vmig.jsonl", list(sample_records(5)))
    monkeypatch.setenv("VEX_READ_AHEAD", "fast")
    assert main(["migrate", str(source), str(tmp_path / "o.vmig.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "VEX_READ_AHEAD is 'fast'" in err and "Traceback" not in err
    assert not (tmp_path / "o.vmig.jsonl").exists()


def test_a_page_whose_digests_the_child_left_gets_them_here(tmp_path: Path) -> None:
    """The child leaves a page's digests to the engine when the engine had taken every frame
    before it (``_Pace``, ``_Outbox.put``); the engine then takes the same digests itself."""
    from vexchange._canonical import record_digest
    from vexchange.connectors._base import Page

    from vexchange.record import MemoryRecord, Vector

    records = [MemoryRecord(id=str(i), text=f"t{i}", namespace="a", metadata={"n": i, "x": 0.5},
                            vectors={"": Vector.from_values([float(i), 1.0, -2.5])}) for i in range(20)]
    for here in (True, False):
        kind, body = read_process._encode_page(Page(list(records), "7"), digests_here=here)
        assert kind == read_process._RECORDS
        page = read_process._decode_page(kind, body)
        assert page.items == records and page.cursor == "7"
        assert read_process.digests_of(page) == [record_digest(r) for r in records]
        assert read_process.id_keys_of(page) is not None


def test_the_child_reads_ahead_up_to_its_budget_and_says_when_the_engine_is_behind() -> None:
    """``_Outbox``: frames go out in order on a thread; ``put`` says whether an earlier frame was
    still held (the engine behind: the child keeps the digests), and waits while the budget is
    held, so the child is never more than that ahead, whatever the record count."""
    import threading

    read_end, write_end = os.pipe()
    frame = b"x" * (300 << 10)  # more than the pipe holds: held until the engine reads it
    with os.fdopen(read_end, "rb") as engine, os.fdopen(write_end, "wb") as out:
        outbox = read_process._Outbox(out, budget=700 << 10)
        assert outbox.put(read_process._RECORDS, frame) is False  # nothing was held before it
        assert outbox.put(read_process._RECORDS, frame) is True  # the engine has not read the first
        third = threading.Thread(target=outbox.put, args=(read_process._RECORDS, frame))
        third.start()
        third.join(0.5)
        assert third.is_alive()  # 900 KiB would be held: it waits for the engine
        received = []
        for _ in range(3):
            kind, body = read_process._read_frame(engine)
            received.append((kind, len(body)))
        third.join(5)
        assert not third.is_alive()
        outbox.put(read_process._DONE, b"")
        outbox.close()
        assert received == [(read_process._RECORDS, len(frame))] * 3
        assert read_process._read_frame(engine) == (read_process._DONE, b"")


class _SlowOpening(VmigConnector):
    """A vmig target whose writer takes a while to open (as a store whose client imports for a
    second), recording what the reading child had sent by then; ``writer_takes`` as given."""

    opened_with_pages_waiting: ClassVar[list[bool]] = []

    def open_writer(self, **kwargs: Any) -> Any:
        started = [read for read in _StartedReads.made if read.child.returncode is None]
        stdout = started[-1].child.stdout if started else None
        waiting = stdout is not None and bool(select.select([stdout], [], [], 10)[0])
        type(self).opened_with_pages_waiting.append(waiting)
        return super().open_writer(**kwargs)


class _StartedReads(read_process.StartedRead):
    made: ClassVar[list[read_process.StartedRead]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        type(self).made.append(self)


@pytest.fixture
def started_reads(monkeypatch: pytest.MonkeyPatch) -> list[read_process.StartedRead]:
    from vexchange.engine import run

    monkeypatch.setenv("VEX_READ_AHEAD", "process")
    monkeypatch.setattr(read_process, "usable_cpus", lambda: 2)
    monkeypatch.setattr(run, "StartedRead", _StartedReads)
    monkeypatch.setattr(_StartedReads, "made", [])
    monkeypatch.setattr(_SlowOpening, "opened_with_pages_waiting", [])
    return _StartedReads.made


@pytest.mark.parametrize("declared", [frozenset({"vector_text"}), frozenset()])
def test_the_child_reads_while_the_writer_opens_and_a_wrong_declaration_reads_again(
        tmp_path: Path, declared: frozenset[str], started_reads: list[read_process.StartedRead],
        children: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch) -> None:
    """The run gives the reading child its job before it opens the target's writer, so pages
    are waiting when the writer is open. A target that declares other than its writer takes
    (``writer_takes``: the vmig writer writes vectors' texts again) has that read stopped and
    the right one started: the same bytes either way, and every child ended."""
    source = _source(tmp_path)
    plain = migrate(source, tmp_path / "plain.vmig.jsonl", batch_size=10, allow_skips=True)
    monkeypatch.setattr(_SlowOpening, "writer_takes", declared)
    target = _SlowOpening(StoreSpec.parse(f"vmig:{tmp_path / 'slow.vmig.jsonl'}"))
    slow = migrate(source, target, batch_size=10, allow_skips=True)
    assert _SlowOpening.opened_with_pages_waiting == [True]
    assert (tmp_path / "slow.vmig.jsonl").read_bytes() == (tmp_path / "plain.vmig.jsonl").read_bytes()
    assert slow.counts == plain.counts
    assert len(started_reads) == 2  # each run's before its writer opened
    assert len(children) == (3 if declared != VmigConnector.writer_takes else 2)  # and a read again
    assert all(child.returncode is not None for child in children)


def test_a_writer_that_cannot_open_stops_the_child_already_reading(
        tmp_path: Path, started_reads: list[read_process.StartedRead],
        children: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Any, **kwargs: Any) -> Any:
        raise TransientError("the store is not there yet")

    monkeypatch.setattr(_SlowOpening, "open_writer", refuse)
    target = _SlowOpening(StoreSpec.parse(f"vmig:{tmp_path / 'never.vmig.jsonl'}"))
    with pytest.raises(VexError, match="nothing was written"):
        migrate(_source(tmp_path), target, batch_size=10, allow_skips=True, retries=1)
    assert len(started_reads) == 1 and started_reads[0].child.returncode is not None
    assert children and all(child.returncode is not None for child in children)
    assert not (tmp_path / "never.vmig.jsonl").exists()


def test_every_connector_declares_what_its_writer_takes() -> None:
    """``Connector.writer_takes`` against the writers of each builtin connector's module: a
    writer that takes tables or writes vectors' texts again is declared by its connector."""
    import importlib
    import inspect

    from vexchange.connectors import _registry
    from vexchange.connectors._base import Writer

    checked = 0
    for name, entry in _registry._BUILTINS.items():
        missing = _registry.missing_requirement(entry)
        assert missing is None or not os.environ.get("CI"), missing  # CI installs every extra
        if missing is not None:
            continue  # an extra this machine lacks: its module cannot be imported
        connector = _registry.get(name)
        checked += 1
        module = importlib.import_module(connector.__module__)
        writers = [cls for _, cls in inspect.getmembers(module, inspect.isclass)
                   if issubclass(cls, Writer) and cls.__module__ == module.__name__]
        takes = set()
        for writer in writers:
            if writer.takes_table is not Writer.takes_table:
                takes.add("tables")
            if writer.write_with_texts is not Writer.write_with_texts:
                takes.add("vector_text")
        assert connector.writer_takes == takes, name
    assert checked > 20
    from vexchange.engine.parallel import PartTarget, _TalliedPart  # a parallel run's part

    assert PartTarget.writer_takes == {"vector_text"}
    assert _TalliedPart.write_with_texts is not Writer.write_with_texts

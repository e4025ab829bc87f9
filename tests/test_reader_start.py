"""The reading child started before the CLI imports the engine (engine/reader_start.py): the
engine takes it and reads through it; one it does not take is stopped; and nothing starts it
where the engine would not read in a child."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from vexchange import open_store
from vexchange.cli import main
from vexchange.engine import read_process, reader_start
from vexchange.spec import StoreSpec
from vexchange.testing.conformance import read_all, write_vmig
from vexchange.testing.records import sample_records


@pytest.fixture
def early(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Any file counts as large, on a machine with two CPUs; no child is left held after."""
    monkeypatch.setattr(reader_start, "EARLY_MIN_BYTES", 0)
    monkeypatch.setattr(reader_start, "usable_cpus", lambda: 2)
    monkeypatch.delenv("VEX_READ_AHEAD", raising=False)
    yield reader_start
    reader_start.discard()


def _file(tmp_path: Path, n: int = 60) -> Path:
    return write_vmig(tmp_path / "s.vmig.jsonl", list(sample_records(n, named=("title",))))


def test_the_engine_reads_through_the_child_started_early(
        tmp_path: Path, early: Any, children: list[subprocess.Popen[bytes]]) -> None:
    source = _file(tmp_path)
    early.start_early(str(source))
    assert len(children) == 1 and children[0].poll() is None  # importing, or waiting for its job
    store = open_store(str(source))
    through = list(read_process.read_in_process(store, batch_size=7))
    assert through == list(store.read(batch_size=7))
    assert len(children) == 1 and children[0].returncode == 0  # the same child, and it has ended
    assert early.take() is None  # handed over once


def test_a_child_not_taken_is_stopped(tmp_path: Path, early: Any,
                                      children: list[subprocess.Popen[bytes]]) -> None:
    early.start_early(f"vmig://{_file(tmp_path)}")
    assert len(children) == 1
    early.discard()
    assert children[0].poll() is not None
    assert early.take() is None


def test_a_child_that_died_before_its_job_is_not_taken(tmp_path: Path, early: Any,
                                                       children: list[subprocess.Popen[bytes]]) -> None:
    early.start_early(StoreSpec("vmig", str(_file(tmp_path))))
    children[0].kill()
    children[0].wait()
    assert early.take() is None
    store = open_store(str(tmp_path / "s.vmig.jsonl"))
    assert list(read_process.read_in_process(store, batch_size=7)) == list(store.read(batch_size=7))
    assert len(children) == 2  # the engine started its own


@pytest.mark.parametrize("case", ["small", "two workers", "incremental", "thread", "server", "missing",
                                  "folder", "one cpu"])
def test_nothing_starts_early_where_the_engine_would_not_read_in_a_child(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, early: Any, case: str,
        children: list[subprocess.Popen[bytes]]) -> None:
    source: str = str(_file(tmp_path))
    options: dict[str, Any] = {}
    if case == "small":
        monkeypatch.setattr(reader_start, "EARLY_MIN_BYTES", 1 << 40)
    elif case == "two workers":
        options["workers"] = 2
    elif case == "incremental":
        options["incremental"] = True
    elif case == "thread":
        monkeypatch.setenv("VEX_READ_AHEAD", "thread")
    elif case == "server":
        source = "qdrant://localhost:6333/memories"
    elif case == "missing":
        source = str(tmp_path / "none.vmig.jsonl")
    elif case == "folder":
        source = f"lancedb://{tmp_path}"
    elif case == "one cpu":
        monkeypatch.setattr(reader_start, "usable_cpus", lambda: 1)
    early.start_early(source, **options)
    assert children == [] and early.take() is None


def test_vex_import_takes_the_child_it_started(tmp_path: Path, early: Any, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch,
                                               children: list[subprocess.Popen[bytes]]) -> None:
    monkeypatch.setattr(read_process, "MIN_RECORDS", 1)  # the engine reads this small file in a child
    monkeypatch.setattr(read_process, "usable_cpus", lambda: 2)
    source = _file(tmp_path, 80)
    target = tmp_path / "t.vmig.jsonl"
    assert main(["import", "--from", str(source), "--to", f"vmig://{target}"]) == 0
    assert "Traceback" not in "".join(capsys.readouterr())
    assert len(children) == 1 and children[0].returncode == 0
    assert read_all(str(target)) == read_all(str(source))


def test_vex_import_stops_the_child_it_did_not_take(tmp_path: Path, early: Any,
                                                    capsys: pytest.CaptureFixture[str],
                                                    children: list[subprocess.Popen[bytes]]) -> None:
    source = _file(tmp_path, 30)  # fewer than read_process.MIN_RECORDS: read in this process
    assert main(["import", "--from", str(source), "--to", f"vmig://{tmp_path / 't.vmig.jsonl'}"]) == 0
    capsys.readouterr()
    assert len(children) == 1 and children[0].poll() is not None
    assert early.take() is None


@pytest.mark.parametrize(("given", "path"), [
    ("/data/a.vmig.jsonl", "/data/a.vmig.jsonl"), ("a.vmig.jsonl", "a.vmig.jsonl"),
    ("vmig:///data/a.vmig.jsonl", "/data/a.vmig.jsonl"), ("vektor:/data/m.db", "/data/m.db"),
    ("vektor:relative.db", "relative.db"), ("qdrant://host:6333/c", "host:6333/c"),
])
def test_the_local_path_of_a_location(given: str, path: str) -> None:
    assert reader_start._local_path(given) == path


def test_the_library_starts_the_child_before_it_opens_the_stores(
        tmp_path: Path, early: Any, monkeypatch: pytest.MonkeyPatch,
        children: list[subprocess.Popen[bytes]]) -> None:
    """``vexchange.migrate`` (and so ``export`` and ``import_``) starts it too, before the
    stores' clients import: the engine takes it, or it is stopped when the call returns."""
    from vexchange import import_, migrate

    source = _file(tmp_path, 80)
    migrate(source, tmp_path / "small.vmig.jsonl")  # below MIN_RECORDS: read in this process
    assert len(children) == 1 and children[0].poll() is not None and early.take() is None
    monkeypatch.setattr(read_process, "MIN_RECORDS", 1)
    monkeypatch.setattr(read_process, "usable_cpus", lambda: 2)
    import_(source, f"vmig://{tmp_path / 'large.vmig.jsonl'}")
    assert len(children) == 2 and children[1].returncode == 0
    assert read_all(str(tmp_path / "large.vmig.jsonl")) == read_all(str(source))

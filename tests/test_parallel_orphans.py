"""Workers die with their coordinator (docs/engine.md, "Parallel runs", "Faults"): kill -9 of
the coordinator of a 4-worker run leaves no worker behind; the parent-pid watch alone (the
portable fallback of ``prctl(PR_SET_PDEATHSIG)``) ends a process whose parent was killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vexchange.sample_data import build

psutil = pytest.importorskip("psutil")

_DRIVER = """
import sys, vexchange
if __name__ == "__main__":
    vexchange.migrate(sys.argv[1], sys.argv[2], workers=4, batch_size=100)
"""


def _alive(pids: list[int]) -> list[int]:
    left = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                left.append(pid)
        except psutil.NoSuchProcess:
            continue
    return left


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := _alive(pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _children_die_with_the_run(tmp_path: Path, driver_code: str, match: str, count: int,
                               env: dict[str, str] | None = None) -> None:
    """Starts ``driver_code`` on a 30,000-record VEKTOR source, waits for ``count`` children
    whose command line holds ``match``, kills the driver with -9, and checks they are gone."""
    build(tmp_path / "m.db", n=30_000, dims=16)
    driver = tmp_path / "driver.py"
    driver.write_text(driver_code)
    proc = subprocess.Popen([sys.executable, str(driver), f"vektor:{tmp_path / 'm.db'}",
                             str(tmp_path / "out.vmig.jsonl")], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        children: list[int] = []
        deadline = time.monotonic() + 60
        while len(children) < count and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            children = [c.pid for c in psutil.Process(proc.pid).children()
                        if match in " ".join(c.cmdline())]
        assert len(children) == count, f"the run's {match} children did not start"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert _wait_gone(children, 5) == []
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
def test_workers_die_with_a_killed_coordinator(tmp_path: Path) -> None:
    _children_die_with_the_run(tmp_path, _DRIVER, "spawn_main", 4)


_MIDDLE = textwrap.dedent("""
    import os, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(os.getpid())])
    print(child.pid, flush=True)
    time.sleep(60)
""")
_CHILD = textwrap.dedent("""
    import sys, time
    from vexchange.engine.parallel import watch_parent
    watch_parent(int(sys.argv[1]), interval=0.1)
    print("watching", flush=True)
    time.sleep(60)
""")


def test_the_parent_watch_alone_ends_an_orphan() -> None:
    with subprocess.Popen([sys.executable, "-c", _MIDDLE, _CHILD], stdout=subprocess.PIPE,
                          text=True) as middle:
        _orphan(middle)


def _orphan(middle: subprocess.Popen[str]) -> None:
    try:
        assert middle.stdout is not None
        child = int(middle.stdout.readline())
        assert middle.stdout.readline().strip() == "watching"  # the child's output is the middle's
        assert _alive([child]) == [child]
        os.kill(middle.pid, signal.SIGKILL)
        middle.wait(10)
        assert _wait_gone([child], 5) == []
    finally:
        if middle.poll() is None:
            middle.kill()


_ONE_WORKER = """
import sys, vexchange
vexchange.migrate(sys.argv[1], sys.argv[2], batch_size=100)
"""


@pytest.mark.slow
def test_the_reading_child_dies_with_a_killed_run(tmp_path: Path) -> None:
    """A one-worker run's reading child (VEX_READ_AHEAD=process) goes with its parent too."""
    _children_die_with_the_run(tmp_path, _ONE_WORKER, "read_process", 1,
                               env={**os.environ, "VEX_READ_AHEAD": "process"})

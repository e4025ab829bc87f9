"""The reading child (read_process.py) started before a command has imported the engine.

Why: ``vex import`` spends about 0.2 s importing (click, numpy, the engine, the connectors)
before the engine decides to read in a child, and the child then spends about 0.15 s importing
the same before it sends its first page, while this process waits. Those two start-ups one
after the other are a tenth of a 50k-record import into VEKTOR. A child started first
(``start_early``: by the CLI's run commands as their first step, and by ``vexchange.migrate``
before it opens the stores, whose clients may take a second to import, as LanceDB's does)
imports beside this process and then waits for its job on stdin (``read_process._child_main``
reads the job only after its own imports), so the engine hands it the job when it gets there
(``take``). A child the engine does not take (it reads in this process after all, or in worker
processes) is stopped when the command or the call ends (``discard``): it has read nothing.

This module imports only the standard library: it runs before anything heavy is loaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any, NamedTuple

__all__ = ["EarlyChild", "child_command", "child_env", "discard", "read_ahead_mode", "start_early", "take"]

EARLY_MIN_BYTES = 64 << 20
"""A file source this large (about 12,000 records of 384 dimensions as ``.vmig.jsonl``) gets
its reading child started early. The engine reads in a child from ``read_process.MIN_RECORDS``
records; a smaller file that gets one anyway has cost a start-up on the other core, no wait."""

_MODES = ("auto", "process", "thread", "off")


def read_ahead_mode() -> str:
    """``VEX_READ_AHEAD``: ``auto`` (the default), ``process``, ``thread`` or ``off``."""
    from ..errors import UsageError

    mode = os.environ.get("VEX_READ_AHEAD", "auto").strip().lower() or "auto"
    if mode not in _MODES:
        raise UsageError(f"VEX_READ_AHEAD is {mode!r}; it must be one of {', '.join(_MODES)}")
    return mode


def usable_cpus() -> int:
    """The CPUs this process may run on. With one, a reading thread only takes turns with the
    main thread for the interpreter lock and the core: measured 4 % slower (vmig -> vmig pinned
    to one core), so the engine reads ahead only with two or more."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS and Windows have no affinity call
        return os.cpu_count() or 1


def child_command() -> list[str]:
    return [sys.executable, "-m", "vexchange.engine.read_process"]


def child_env() -> dict[str, str]:
    """The child imports this very vexchange, even when it is not installed (a source tree)."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return env


class EarlyChild(NamedTuple):
    process: subprocess.Popen[bytes]
    stderr: IO[bytes]


_held: EarlyChild | None = None


def start_early(source: Any, *, workers: Any = None, incremental: bool = False) -> None:
    """Start a reading child now when the engine will most likely want one for ``source`` (a
    location as the CLI has it: a path, a URL or a ``StoreSpec``): a local file of at least
    ``EARLY_MIN_BYTES``, one worker, not incremental, two CPUs or more, and ``VEX_READ_AHEAD``
    not saying otherwise. Never raises: whatever it cannot tell, it leaves to the engine."""
    global _held
    try:
        if _held is not None or workers not in (None, 1, "1") or incremental:
            return
        if read_ahead_mode() not in ("auto", "process") or usable_cpus() < 2:
            return
        path = _local_path(source)
        if path is None or not os.path.isfile(path) or os.path.getsize(path) < EARLY_MIN_BYTES:
            return
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - the child's, closed by _stop
        try:
            process = subprocess.Popen(child_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=stderr, env=child_env())
        except BaseException:
            stderr.close()
            raise
        _held = EarlyChild(process, stderr)
    except Exception:  # the engine starts its own child, as without this
        return


def _local_path(source: Any) -> str | None:
    if isinstance(source, os.PathLike):
        return str(os.fspath(source))
    path = getattr(source, "path", None)
    if path is not None:
        return str(path)
    if not isinstance(source, str):
        return None
    scheme, sep, rest = source.partition(":")
    if not sep or os.path.sep in scheme or len(scheme) == 1:  # a plain path (or a drive letter)
        return source
    return rest[2:] if rest.startswith("//") else rest


def take() -> EarlyChild | None:
    """The child started early, still waiting for its job, handed over once; else None."""
    global _held
    held, _held = _held, None
    if held is not None and held.process.poll() is not None:
        _stop(held)
        return None
    return held


def discard() -> None:
    """Stop a child started early that the engine did not take (it has read nothing)."""
    global _held
    held, _held = _held, None
    if held is not None:
        _stop(held)


def _stop(held: EarlyChild) -> None:
    process = held.process
    if process.poll() is None:
        process.kill()
    process.wait()
    for stream in (process.stdin, process.stdout, held.stderr):
        if stream is not None:
            stream.close()

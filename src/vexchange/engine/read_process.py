"""Reading a large file source in a second process, one page ahead of the engine.

Why a process and not only the reading thread (read_ahead.py): decoding a page is Python work
under the interpreter lock, and several targets' clients hold that lock while they write
(Qdrant Edge's engine, pymilvus building its gRPC request), so a thread cannot overlap them. A
child process has its own interpreter: it decodes page k+1 while this process writes page k.

How: the child is a fresh ``python -m vexchange.engine.read_process`` (not multiprocessing,
whose "spawn" re-imports the caller's main script). It gets the job on stdin (the connector's
registry name, its spec, the batch size and the cursor), rebuilds the connector through the
registry, and writes one frame per page to stdout: one byte of kind (``P`` page, ``E`` error,
``D`` done), eight bytes of length, a pickle. The pipe holds less than a page, so the child
blocks once it is a page ahead: memory stays flat. Pages arrive in order with their cursors,
so checkpoints, resume and counts are exactly as without it; an error is re-raised here with
its type (a ``TransientError`` is still retried). The child ignores Ctrl-C: the engine stops
it, by closing the pipe and killing it, whenever the run ends early. It only reads files.

When (:func:`reads_in_process`): the source declares ``read_in_process``, is exactly the class
its spec names in the registry (so the child builds the same reader), the process may use two
or more CPUs, and the source says it holds at least :data:`MIN_RECORDS` records; starting the
child costs about 0.3 s. ``VEX_READ_AHEAD=process`` forces it, ``thread`` or ``off`` refuse it.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import IO, Any

from ..connectors import _registry
from ..connectors._base import Connector, Page
from ..errors import ConnectorError, UsageError, VexError
from .read_ahead import usable_cpus

__all__ = ["MIN_RECORDS", "read_ahead_mode", "read_in_process", "reads_in_process"]

MIN_RECORDS = 50_000
"""Below this the child's start-up (about 0.3 s) costs more than the overlap gains."""

_HEADER = 9
_PAGE, _ERROR, _DONE = b"P", b"E", b"D"


_MODES = ("auto", "process", "thread", "off")


def read_ahead_mode() -> str:
    """``VEX_READ_AHEAD``: ``auto`` (the default), ``process``, ``thread`` or ``off``."""
    mode = os.environ.get("VEX_READ_AHEAD", "auto").strip().lower() or "auto"
    if mode not in _MODES:
        raise UsageError(f"VEX_READ_AHEAD is {mode!r}; it must be one of {', '.join(_MODES)}")
    return mode


def reads_in_process(source: Connector) -> bool:
    mode = read_ahead_mode()
    if mode not in ("auto", "process") or not source.capabilities.read_in_process:
        return False
    if usable_cpus() < 2 or _registered_class(source) is not type(source):
        return False
    if not (sys.executable and os.path.exists(sys.executable)):  # an embedded interpreter
        return False
    if mode == "process":
        return True
    try:
        count = source.count()
    except VexError:  # no count, no child: reading itself will say what is wrong
        return False
    return count is not None and count >= MIN_RECORDS


def _registered_class(source: Connector) -> type[Connector] | None:
    try:
        return _registry.get(source.spec.scheme)
    except Exception:  # noqa: BLE001 - any failure means: read in this process
        return None


def read_in_process(source: Connector, *, batch_size: int,
                    after: str | None = None) -> Generator[Page, None, None]:
    """``source.read(batch_size=..., after=...)``, decoded in a child process."""
    job = pickle.dumps({"scheme": source.spec.scheme, "spec": source.spec,
                        "batch_size": batch_size, "after": after})
    with tempfile.TemporaryFile() as child_stderr:
        child = subprocess.Popen([sys.executable, "-m", "vexchange.engine.read_process"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=child_stderr,
                                 env=_child_env())
        assert child.stdin is not None and child.stdout is not None
        finished = False
        try:
            child.stdin.write(job)
            child.stdin.close()
            frame: tuple[bytes, bytes] | None = _read_frame(child.stdout)
            while frame is not None and frame[0] == _PAGE:
                items, cursor = pickle.loads(frame[1])
                # after the last page (no cursor) the engine asks no more, so the frame that
                # ends the stream is read first: a child that finished is let exit, not killed
                frame = _read_frame(child.stdout) if cursor is None else None
                finished = frame is not None and frame[0] == _DONE
                yield Page(items, cursor)
                if frame is None:
                    frame = _read_frame(child.stdout)
            assert frame is not None
            kind, body = frame
            if kind == _DONE:
                finished = True
                return
            if kind == _ERROR:
                raise pickle.loads(body)
            child_stderr.seek(0)
            raise ConnectorError(
                f"the process reading {source.describe().get('location', 'the source')} stopped"
                f" unexpectedly: {_tail(child_stderr.read())}",
                hint="set VEX_READ_AHEAD=thread to read in this process instead")
        finally:
            child.stdout.close()
            _stop(child, finished)


def _stop(child: subprocess.Popen[bytes], finished: bool) -> None:
    """A child that sent everything is let exit; one stopped early is killed (it only reads)."""
    if finished:
        try:
            child.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            pass
    if child.poll() is None:
        child.kill()
    child.wait()


def _read_frame(stream: IO[bytes]) -> tuple[bytes, bytes]:
    """The next frame; ``(b"", b"")`` when the child stopped without finishing one."""
    head = stream.read(_HEADER)
    if len(head) < _HEADER:
        return b"", b""
    size = int.from_bytes(head[1:], "big")
    body = stream.read(size)
    return (head[:1], body) if len(body) == size else (b"", b"")


def _tail(stderr: bytes) -> str:
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else "no message"


def _child_env() -> dict[str, str]:
    """The child imports this very vexchange, even when it is not installed (a source tree)."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return env


def _pickled_error(err: BaseException) -> bytes:
    try:
        return pickle.dumps(err)
    except Exception:  # noqa: BLE001 - an exception that cannot travel is described instead
        return pickle.dumps(ConnectorError(f"{type(err).__name__}: {err}"))


def _child_main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when reading stops
    out = sys.stdout.buffer
    job: dict[str, Any] = pickle.load(sys.stdin.buffer)
    try:
        try:
            source = _registry.get(job["scheme"]).from_spec(job["spec"])
            try:
                for page in source.read(batch_size=job["batch_size"], after=job["after"]):
                    _write_frame(out, _PAGE, pickle.dumps((page.items, page.cursor), protocol=5))
            finally:
                source.close()
            _write_frame(out, _DONE, b"")
        except BrokenPipeError:
            raise
        except BaseException as err:  # noqa: BLE001 - every failure goes to the parent
            _write_frame(out, _ERROR, _pickled_error(err))
        out.flush()
    except BrokenPipeError:  # the parent stopped reading: nothing is left to do
        os._exit(0)


def _write_frame(out: IO[bytes], kind: bytes, body: bytes) -> None:
    out.write(kind + len(body).to_bytes(_HEADER - 1, "big"))
    out.write(body)


if __name__ == "__main__":
    _child_main()

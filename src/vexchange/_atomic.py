"""Atomic, resumable, hashed output files.

Data goes to ``<path>.partial`` and is renamed to ``<path>`` only when complete, so an interrupted
run never leaves a file that looks finished. The SHA-256 of the bytes is computed as they are
written. A resumed run truncates the partial file to the last checkpointed size, re-hashes that
prefix, and goes on appending.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO

from .errors import UsageError

__all__ = ["AtomicOutput", "atomic_write_bytes", "check_writable"]

_BUFFER = 1 << 20


def check_writable(path: Path) -> None:
    """Fail early, before any work, when the output's directory cannot be written."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise UsageError(f"cannot write {path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError(
            f"cannot write {path}: directory {directory} is not writable",
            hint="choose another --output location or fix the directory's permissions",
        )
    if path.is_dir():
        raise UsageError(f"cannot write {path}: it is a directory")


class AtomicOutput:
    """A file written under a temporary name and renamed into place by :meth:`commit`."""

    def __init__(self, path: Path, *, resume_size: int | None = None) -> None:
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        check_writable(path)
        self._hash = hashlib.sha256()
        self.size = 0
        self._file: BinaryIO = self._open(resume_size)

    def _open(self, resume_size: int | None) -> BinaryIO:
        if resume_size is None or not self.partial.exists():
            return open(self.partial, "wb", buffering=_BUFFER)
        handle = open(self.partial, "r+b", buffering=_BUFFER)
        handle.truncate(resume_size)
        while chunk := handle.read(_BUFFER):
            self._hash.update(chunk)
        self.size = resume_size
        return handle

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    def flush(self, *, sync: bool = False) -> None:
        """Push written bytes to the OS (enough to survive the process being killed); with
        ``sync`` also to the disk (done once, at commit, to keep checkpoints cheap)."""
        self._file.flush()
        if sync:
            os.fsync(self._file.fileno())

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def commit(self) -> None:
        self.flush(sync=True)
        self._file.close()
        os.replace(self.partial, self.path)

    def close_partial(self) -> None:
        """Close without renaming: the partial file stays for a resume."""
        if not self._file.closed:
            self._file.flush()
            self._file.close()

    def discard(self) -> None:
        self.close_partial()
        self.partial.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a small file (sidecar, receipt) atomically."""
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)

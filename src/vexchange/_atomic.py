"""Atomic, resumable, hashed output files.

Data goes to ``<path>.partial`` and is renamed to ``<path>`` only when complete, so an interrupted
run never leaves a file that looks finished. The SHA-256 of the bytes is computed as they are
written, and :meth:`AtomicOutput.state` gives a checkpoint the size written so far and the hash
of that prefix. A resumed run trusts neither: the prefix on disk must have that size and that
hash before anything is appended (a partial file that is missing, shorter or changed is refused,
never zero-filled or continued). A run killed after its rename, before its checkpoint was
removed, left the finished file instead: it is checked the same way and moved back to
``.partial`` while the run continues, so nothing looks complete that is not.

``bulk=True`` (a ``.vmig.jsonl``, written once and not read back soon) writes the file around
the page cache where the system allows (``vexchange._direct_io``): the same bytes, the same
promises (after :meth:`AtomicOutput.flush` the partial file is exactly the bytes written so far),
less system CPU.

A failed write (a full disk, a file size limit, a read-only folder, permission denied) is a
:class:`~vexchange.errors.CodecError` naming the file and the cause, never a bare ``OSError``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, cast

from ._direct_io import bulk_file, direct_opener, open_bulk
from .errors import CodecError, DecodeError, UsageError

__all__ = ["RESUME_HINT", "AtomicOutput", "atomic_write_bytes", "check_writable", "commit_partial",
           "describe_os_error", "hash_prefix", "join_files", "prefix_state", "write_failure"]

_BUFFER = 1 << 20
_JOIN_CHUNK = 8 << 20
_FULL = frozenset({errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)})
RESUME_HINT = "run the same command again without --resume to start that output over"


def describe_os_error(err: OSError) -> str:
    """What an ``OSError`` means for an output, in words (a full disk and a file size limit
    are the same thing to the user: the output did not fit)."""
    if err.errno in _FULL:
        return "no space left on the device (or the file size limit was reached)"
    if err.errno == errno.EROFS:
        return "the file system is read-only"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return err.strerror or str(err)


def write_failure(err: OSError, path: Path) -> CodecError:
    """The error a failed write of ``path`` becomes (the engine adds how to resume)."""
    return CodecError(f"cannot write {path}: {describe_os_error(err)}")


def _open_failure(err: OSError, path: Path) -> UsageError:
    """The error an output that cannot even be opened becomes: nothing was written yet."""
    return UsageError(f"cannot write {path}: {describe_os_error(err)}",
                      hint="choose another --output location, free some space or fix the"
                           " directory's permissions")


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


def prefix_state(state: Any, what: Path) -> tuple[int, str]:
    """The (size, SHA-256) a checkpoint recorded for an output; a checkpoint without both (an
    older vexchange's) cannot be trusted to continue."""
    if (not isinstance(state, Mapping) or not isinstance(state.get("size"), int)
            or isinstance(state.get("size"), bool) or state["size"] < 0
            or not isinstance(state.get("sha256"), str)):
        raise UsageError(f"the checkpoint does not record the size and SHA-256 of {what} written"
                         " so far, so the run cannot be continued safely", hint=RESUME_HINT)
    return state["size"], state["sha256"]


def hash_prefix(path: Path, size: int) -> Any:
    """A SHA-256 object over the first ``size`` bytes of ``path``; a DecodeError when the file
    holds fewer (a resume must never zero-fill what it expected to find)."""
    digest = hashlib.sha256()
    left = size
    with open(path, "rb") as handle:
        while left and (chunk := handle.read(min(_BUFFER, left))):
            digest.update(chunk)
            left -= len(chunk)
    if left:
        raise DecodeError(f"cannot resume: {path} holds {size - left} bytes, the checkpoint"
                          f" wrote {size}", location=str(path), hint=RESUME_HINT)
    return digest


class AtomicOutput:
    """A file written under a temporary name and renamed into place by :meth:`commit`.

    ``resume``: the :meth:`state` a checkpoint kept; the prefix must match it (see the module
    docstring). ``reclaim`` (with ``resume``): when the partial file is gone, take the finished
    file back if its prefix matches, first calling ``before_reclaim`` (which removes what
    describes the finished file: a sidecar, a container built from it). ``bulk``: written
    around the page cache where allowed (module docstring)."""

    def __init__(self, path: Path, *, resume: Mapping[str, Any] | None = None,
                 reclaim: bool = True, before_reclaim: Callable[[], None] | None = None,
                 bulk: bool = False) -> None:
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        self.bulk = bulk
        check_writable(path)
        self._hash: Any = hashlib.sha256()
        self.size = 0
        try:
            # no context manager (SIM115): the handle lives as long as the writer, which closes it
            self._file: BinaryIO = (self._open(None) if resume is None
                                    else self._resume(resume, reclaim, before_reclaim))
        except OSError as err:
            raise _open_failure(err, self.partial) from None

    def _open(self, append_at: int | None) -> BinaryIO:
        """The partial file, new or (``append_at``) cut to that length and written on from there."""
        raw = open(self.partial, "wb" if append_at is None else "r+b", buffering=0,  # noqa: SIM115
                   opener=direct_opener if self.bulk else None)
        return cast(BinaryIO, bulk_file(raw, append_at=append_at, buffering=_BUFFER))

    def _resume(self, resume: Mapping[str, Any], reclaim: bool,
                before_reclaim: Callable[[], None] | None) -> BinaryIO:
        size, expected = prefix_state(resume, self.partial)
        source = self.partial
        if not source.exists():
            if not (reclaim and self.path.is_file()):
                raise UsageError(f"cannot resume: {self.partial} is missing, so the records the"
                                 " checkpoint counts as written are not there", hint=RESUME_HINT)
            source = self.path
        digest = hash_prefix(source, size)
        if digest.hexdigest() != expected:
            raise DecodeError(f"cannot resume: the first {size} bytes of {source} are not the"
                              " ones the checkpoint wrote", location=str(source), hint=RESUME_HINT)
        if source == self.path:
            if before_reclaim is not None:
                before_reclaim()
            os.replace(self.path, self.partial)  # the run goes on: nothing looks complete
        handle = self._open(size)
        self._hash, self.size = digest, size
        return handle

    def write(self, data: bytes) -> None:
        try:
            self._file.write(data)
        except OSError as err:
            raise write_failure(err, self.partial) from None
        self._hash.update(data)
        self.size += len(data)

    def flush(self, *, sync: bool = False) -> None:
        """Push written bytes to the OS (enough to survive the process being killed); with
        ``sync`` also to the disk (done once, at commit, to keep checkpoints cheap)."""
        try:
            self._file.flush()
            if sync:
                os.fsync(self._file.fileno())
        except OSError as err:
            raise write_failure(err, self.partial) from None

    def state(self, *, flush: bool = True) -> dict[str, Any]:
        """What a checkpoint keeps to continue this file: its size so far and the SHA-256 of
        those bytes (flushed first, so a killed process leaves them on disk; ``flush=False``
        for a caller that flushes before it saves the checkpoint: ``Writer.make_durable``)."""
        if flush:
            self.flush()
        return {"size": self.size, "sha256": self.sha256}

    @property
    def sha256(self) -> str:
        return str(self._hash.hexdigest())

    def commit(self) -> None:
        self.flush(sync=True)
        self._file.close()
        try:
            os.replace(self.partial, self.path)
        except OSError as err:
            raise write_failure(err, self.path) from None

    def close_partial(self) -> None:
        """Close without renaming: the partial file stays for a resume. Never raises: it runs
        after a failure (a full disk fails the last flush again), and a resume cuts the file
        back to its checkpoint whatever this flush left."""
        if not self._file.closed:
            with contextlib.suppress(OSError):
                self._file.close()

    def discard(self) -> None:
        self.close_partial()
        self.partial.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a small file (sidecar, receipt, checkpoint) atomically; a failed write leaves the
    file as it was (and no temporary file) and is a CodecError naming the file."""
    tmp = path.with_name(path.name + ".partial")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise write_failure(err, path) from None


def join_files(target: Path, first: Path, first_state: Mapping[str, Any], rest: Sequence[Path]) -> str:
    """``<target>.partial`` made ``first`` followed by each of ``rest``, synced, and its SHA-256.

    ``first`` is not copied: it is renamed to the partial file, and the others are written
    onto its end around the page cache (``open_bulk``) while a thread hashes the whole by
    reading it (``first``'s bytes in the partial file, then the others). Run again after a
    kill, it finds ``first`` already renamed: the partial file is cut back to
    ``first_state["size"]`` and the rest written again. Either way those first bytes must hash
    to ``first_state["sha256"]``, what the writer of ``first`` computed as it wrote them, or
    nothing is claimed (a DecodeError). The caller renames the partial file into place
    (:func:`commit_partial`) once it has what else it needs."""
    partial = target.with_name(target.name + ".partial")
    size, expected = prefix_state(first_state, first)
    try:
        if first.exists():
            os.replace(first, partial)
        elif not partial.exists():
            raise UsageError(f"cannot join the parts of {target}: {first} is gone and {partial}"
                             " does not hold it", hint=RESUME_HINT)
        if partial.stat().st_size < size:
            raise DecodeError(f"cannot join: {partial} holds fewer than the {size} bytes of"
                              f" {first}", location=str(partial), hint=RESUME_HINT)
        out = open_bulk(partial, append_at=size, buffering=_BUFFER)
        try:
            with ThreadPoolExecutor(1) as pool:
                hashed = pool.submit(_hash_files, [(partial, size), *((p, None) for p in rest)])
                for part in rest:
                    with open(part, "rb", buffering=0) as source:
                        while chunk := source.read(_JOIN_CHUNK):
                            out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
                digest, first_digest = hashed.result()
        finally:
            out.close()
    except OSError as err:
        raise write_failure(err, partial) from None
    if first_digest != expected:
        raise DecodeError(f"cannot join: the first {size} bytes of {partial} are not the ones"
                          f" written to {first}", location=str(partial), hint=RESUME_HINT)
    return digest


def commit_partial(path: Path) -> None:
    """``<path>.partial`` renamed into place (``join_files``'s result, say)."""
    try:
        os.replace(path.with_name(path.name + ".partial"), path)
    except OSError as err:
        raise write_failure(err, path) from None


def _hash_files(files: Sequence[tuple[Path, int | None]]) -> tuple[str, str]:
    """The SHA-256 of the files' bytes one after the other (the first ``size`` bytes of each
    that gives one), and that of the first file's: hashlib lets go of the interpreter lock
    for each chunk, so this runs beside the copy."""
    digest = hashlib.sha256()
    first = ""
    for k, (path, size) in enumerate(files):
        left = size
        with open(path, "rb", buffering=0) as handle:
            while left is None or left > 0:
                chunk = handle.read(_BUFFER if left is None else min(_BUFFER, left))
                if not chunk:
                    break
                digest.update(chunk)
                if left is not None:
                    left -= len(chunk)
        if k == 0:
            first = digest.hexdigest()
    return digest.hexdigest(), first

"""Writing large write-once files around the page cache (``O_DIRECT``), where the system allows.

Why: a run writes its bulk data (a Parquet target's staged batches and data files, a
``.vmig.jsonl``) once and does not read it back, so copying it into the page cache buys
nothing and costs CPU: measured on this project's 2-core machines, a buffered write of 1 GB into
fresh page-cache pages spends 1-3 s of system time (the kernel allocating, charging and
copying into pages the virtual machine has to back first), against 0.04 s to hand the same
aligned buffer to the disk directly. Databases write their logs and bulk loads this way for the
same reason.

How: :func:`open_bulk` opens the file with ``O_DIRECT`` and returns :class:`DirectFile`, which
gathers writes in a page-aligned buffer (an anonymous ``mmap``) and hands the disk whole
aligned blocks; at ``close`` the last block goes out padded and the file is cut to its true
length. Where ``O_DIRECT`` is not there (another system, tmpfs, a file system that refuses it
at open or at the first write) the same object writes through the page cache instead, so
callers never need to know. ``VEX_DIRECT_IO=off`` turns it off. What is written is byte for
byte the same either way; ``close`` does not fsync (callers that promise durability sync the
path as before, which also covers the file's metadata).
"""

from __future__ import annotations

import errno
import io
import mmap
import os
from pathlib import Path
from typing import IO, Any, cast

__all__ = ["ALIGN", "BLOCK", "DirectFile", "direct_io_enabled", "open_bulk"]

ALIGN = 4096
"""Offsets, lengths and buffer addresses are multiples of this (every common disk's block)."""
BLOCK = 4 << 20
"""The buffer: writes reach the disk 4 MiB at a time."""
_REFUSED = (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP)


def direct_io_enabled() -> bool:
    """Whether bulk files may bypass the page cache (``VEX_DIRECT_IO``, default on)."""
    return (hasattr(os, "O_DIRECT")
            and os.environ.get("VEX_DIRECT_IO", "on").strip().lower() not in ("off", "0", "false", "no"))


def open_bulk(path: str | os.PathLike[str]) -> IO[bytes]:
    """A new file at ``path`` (truncated if it exists) for one sequential write of bulk data:
    a :class:`DirectFile`, or a plain buffered file where direct writes are not allowed."""
    if direct_io_enabled():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT | getattr(os, "O_CLOEXEC", 0),
                         0o666)
        except OSError as err:
            if err.errno not in _REFUSED:
                raise
        else:
            return cast(IO[bytes], DirectFile(fd, Path(path)))
    return open(path, "wb")


class DirectFile(io.RawIOBase):
    """A write-only file written in aligned blocks with ``O_DIRECT`` (module docstring).

    ``write`` copies into the aligned buffer and writes each full one; ``tell`` is the bytes
    written so far; ``flush`` puts what is buffered on the disk too (padded) and keeps it
    buffered, so the next full block overwrites the padding; ``close`` writes the rest and
    truncates the padding off. A file system that refuses a direct write falls back, on that
    file, to ordinary writes from then on."""

    def __init__(self, fd: int, path: Path) -> None:
        super().__init__()
        self.fd, self.path = fd, path
        self._buffer = mmap.mmap(-1, BLOCK)  # page-aligned, as O_DIRECT needs
        self._view = memoryview(self._buffer)
        self._used = 0  # bytes in the buffer
        self._written = 0  # bytes on disk before the buffer's first byte (a multiple of ALIGN)
        self._direct = True

    @property
    def name(self) -> str:
        return str(self.path)

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._written + self._used

    def write(self, data: Any) -> int:
        if self.closed:
            raise ValueError("write to a closed file")
        view = memoryview(data).cast("B")
        size = len(view)
        at = 0
        while at < size:
            take = min(BLOCK - self._used, size - at)
            self._view[self._used:self._used + take] = view[at:at + take]
            self._used += take
            at += take
            if self._used == BLOCK:
                self._put(BLOCK)
                self._written += BLOCK
                self._used = 0
        return size

    def flush(self) -> None:
        if not self.closed and self._used:
            self._put(self._padded())

    def close(self) -> None:
        if self.closed:
            return
        try:
            length = self._written + self._used
            if self._used:
                self._put(self._padded())
            os.ftruncate(self.fd, length)
        finally:
            self._used = 0  # RawIOBase.close flushes: nothing is left to
            os.close(self.fd)
            self._view.release()
            self._buffer.close()
            super().close()

    def _padded(self) -> int:
        """The buffered length rounded up to a whole block, the padding zeroed."""
        end = -(-self._used // ALIGN) * ALIGN
        self._view[self._used:end] = bytes(end - self._used)
        return end

    def _put(self, length: int) -> None:
        """The first ``length`` bytes of the buffer at the file offset ``_written``."""
        done = 0
        while done < length:
            try:
                done += os.pwrite(self.fd, self._view[done:length], self._written + done)
            except OSError as err:
                if not (self._direct and err.errno in _REFUSED):
                    raise
                self._buffered()

    def _buffered(self) -> None:
        """This file system takes no direct writes after all: write through the page cache."""
        import fcntl

        self._direct = False
        fcntl.fcntl(self.fd, fcntl.F_SETFL, fcntl.fcntl(self.fd, fcntl.F_GETFL) & ~os.O_DIRECT)

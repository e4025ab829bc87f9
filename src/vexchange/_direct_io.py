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
length. A full block is written by a thread while the caller fills a second buffer: a direct
write waits for the device (4 MiB took 4-5 ms here, 15 % of a one-process export's wall time
when the caller waited for it), and ``pwrite`` lets go of the GIL while it waits.

Where ``O_DIRECT`` is not there (another system, tmpfs, a file system that refuses it at open
or at the first write) the same object writes through the page cache instead, so callers never
need to know. ``VEX_DIRECT_IO=off`` turns it off. What is written is byte for
byte the same either way; ``close`` does not fsync (callers that promise durability sync the
path as before, which also covers the file's metadata).

A resumable output (``vexchange._atomic.AtomicOutput``, the ``.vmig.jsonl`` writer) opens the
file itself, with :func:`direct_opener`, and wraps it with :func:`bulk_file`; given
``append_at``, the file is cut to that many bytes and written on from there (the partial last
block read back into the buffer, so the next write to the disk rewrites that block whole).
After ``flush`` the file on disk is exactly the bytes written so far, no padding: a
checkpoint taken after a flush, then a kill, leaves just the prefix it recorded.
"""

from __future__ import annotations

import errno
import io
import mmap
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any, cast

__all__ = ["ALIGN", "BLOCK", "DirectFile", "bulk_file", "direct_io_enabled", "direct_opener", "open_bulk"]

ALIGN = 4096
"""Offsets, lengths and buffer addresses are multiples of this (every common disk's block)."""
BLOCK = 4 << 20
"""The buffer: writes reach the disk 4 MiB at a time."""
_REFUSED = (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP)


def direct_io_enabled() -> bool:
    """Whether bulk files may bypass the page cache (``VEX_DIRECT_IO``, default on)."""
    return (hasattr(os, "O_DIRECT")
            and os.environ.get("VEX_DIRECT_IO", "on").strip().lower() not in ("off", "0", "false", "no"))


def direct_opener(path: str | os.PathLike[str], flags: int) -> int:
    """An ``opener`` for the built-in ``open``: the file with ``O_DIRECT`` where that is on and
    the file system takes it at open, else as asked (tmpfs, for one, refuses it)."""
    if direct_io_enabled():
        try:
            return os.open(path, flags | os.O_DIRECT, 0o666)
        except OSError as err:
            if err.errno not in _REFUSED:
                raise
    return os.open(path, flags, 0o666)


def bulk_file(raw: io.FileIO, *, append_at: int | None = None, buffering: int = -1) -> IO[bytes]:
    """The writer for a file opened unbuffered (``buffering=0``) with :func:`direct_opener`:
    a :class:`DirectFile` when the descriptor has ``O_DIRECT``, else a ``BufferedWriter`` of
    ``buffering`` bytes. ``append_at``: cut the file to that many bytes and write on from there
    (the file must hold at least that many: a ``ValueError`` otherwise, never zero-filled).
    The writer owns ``raw`` (closing it closes ``raw``; so does a failure here)."""
    try:
        if _is_direct(raw.fileno()):
            return cast(IO[bytes], DirectFile(raw, append_at=append_at or 0))
        if append_at is not None:
            _check_length(raw.fileno(), append_at, raw.name)
            raw.truncate(append_at)
            raw.seek(append_at)
        return io.BufferedWriter(raw, buffering if buffering > 0 else io.DEFAULT_BUFFER_SIZE)
    except BaseException:
        raw.close()
        raise


def open_bulk(path: str | os.PathLike[str], *, append_at: int | None = None,
              buffering: int = -1) -> IO[bytes]:
    """A file at ``path`` for one sequential write of bulk data: new (truncated if it exists),
    or with ``append_at`` the existing file cut to that many bytes and written on from there
    (:func:`bulk_file`)."""
    # no context manager (SIM115): the handle is returned, its writer owns it
    raw = open(path, "wb" if append_at is None else "r+b", buffering=0, opener=direct_opener)  # noqa: SIM115
    return bulk_file(raw, append_at=append_at, buffering=buffering)


def _is_direct(fd: int) -> bool:
    import fcntl

    return bool(hasattr(os, "O_DIRECT") and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)


def _check_length(fd: int, length: int, name: object) -> None:
    """Writing on from ``length`` needs that many bytes there: a shorter file is refused."""
    size = os.fstat(fd).st_size
    if length < 0 or size < length:
        raise ValueError(f"{name} holds {size} bytes, fewer than the {length} to write on from")


class DirectFile(io.RawIOBase):
    """A write-only file written in aligned blocks with ``O_DIRECT`` (module docstring).

    ``write`` copies into the aligned buffer and hands each full one to the writing thread,
    going on in the other buffer (a failed write is raised by the next ``write``, ``flush`` or
    ``close``); ``tell`` is the bytes written so far; ``flush`` waits for that write and puts
    what is buffered on the disk too (padded, then the file cut to its true length) and keeps
    it buffered, so the next full block overwrites that block; ``close`` does the same and
    closes. A file system that refuses a direct write falls back,
    on that file, to ordinary writes from then on. ``append_at``: the file is cut to that
    length and written on from there; its last partial block is read back into the buffer."""

    def __init__(self, raw: io.FileIO, *, append_at: int = 0) -> None:
        super().__init__()
        self._raw = raw
        self.fd = raw.fileno()
        self._buffer = mmap.mmap(-1, BLOCK)  # page-aligned, as O_DIRECT needs
        self._view = memoryview(self._buffer)
        self._spare: tuple[mmap.mmap, memoryview] | None = None  # the buffer being written, or free
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None
        self._used = 0  # bytes in the buffer
        self._on_disk = 0  # the buffer's first bytes a flush already put on the disk (whole ALIGN blocks)
        self._written = 0  # bytes on disk before the buffer's first byte (a multiple of ALIGN)
        self._direct = True
        self._dirty = False  # the buffer holds bytes the disk does not have yet
        try:
            if append_at:
                self._take_back(append_at)
        except BaseException:
            self._release()
            raise

    @property
    def name(self) -> str:
        return str(self._raw.name)

    def fileno(self) -> int:
        return self.fd

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
            self._dirty = True
            at += take
            if self._used == BLOCK:
                self._put_behind()
                self._written += BLOCK
                self._used = self._on_disk = 0
                self._dirty = False
        return size

    def flush(self) -> None:
        """On the disk, exactly: the buffered tail goes out padded to a whole block and the
        file is cut back to what was written (so a process killed after this leaves no
        padding, and an fsync after it covers the true length)."""
        if self.closed:
            return
        self._wait()
        if not self._dirty:
            return
        if self._used:
            # from the last whole block a flush already wrote: a checkpoint's flush mostly comes
            # with the buffer part full, and rewriting the buffer from its start each time (once a
            # page, before make_durable) wrote the file about twice
            self._put(self._view, self._on_disk, self._padded(), self._written)
            self._on_disk = self._used - self._used % ALIGN
            os.ftruncate(self.fd, self._written + self._used)
        self._dirty = False

    def close(self) -> None:
        if self.closed:
            return
        try:
            self.flush()
        finally:
            self._dirty = False  # RawIOBase.close flushes: nothing is left to
            self._release()
            super().close()

    def _release(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)  # a write still going (after a failure) ends first
        self._raw.close()
        for buffer, view in ((self._buffer, self._view), *((self._spare,) if self._spare else ())):
            view.release()
            buffer.close()

    def _put_behind(self) -> None:
        """The full buffer to the disk on the writing thread; this one goes on in the other."""
        self._wait()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="vex-direct-write")
            spare = mmap.mmap(-1, BLOCK)
            self._spare = (spare, memoryview(spare))
        assert self._spare is not None
        self._pending = self._pool.submit(self._put, self._view, self._on_disk, BLOCK, self._written)
        (self._buffer, self._view), self._spare = self._spare, (self._buffer, self._view)

    def _wait(self) -> None:
        """The write handed to the thread is done (its failure raised here, once)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _take_back(self, length: int) -> None:
        """Write on from ``length``: the file cut there, the partial block before it back in
        the buffer (an aligned read, as ``O_DIRECT`` needs)."""
        _check_length(self.fd, length, self.name)
        self._written = length - length % ALIGN
        tail = length - self._written
        if tail:
            got = self._read_block()
            if got < tail:
                raise OSError(errno.EIO, f"read {got} of the {tail} bytes at {self._written} in {self.name}")
        self._used = tail
        os.ftruncate(self.fd, length)

    def _read_block(self) -> int:
        while True:
            try:
                return os.preadv(self.fd, [self._view[:ALIGN]], self._written)
            except OSError as err:
                if not (self._direct and err.errno in _REFUSED):
                    raise
                self._buffered()

    def _padded(self) -> int:
        """The buffered length rounded up to a whole block, the padding zeroed."""
        end = -(-self._used // ALIGN) * ALIGN
        self._view[self._used:end] = bytes(end - self._used)
        return end

    def _put(self, view: memoryview, start: int, end: int, offset: int) -> None:
        """``view[start:end]`` at the file offset ``offset + start``."""
        done = start
        while done < end:
            try:
                # released at once, even when a traceback keeps this frame: the buffer's mmap
                # cannot be closed while any view of it is alive
                with view[done:end] as chunk:
                    done += os.pwrite(self.fd, chunk, offset + done)
            except OSError as err:
                if not (self._direct and err.errno in _REFUSED):
                    raise
                self._buffered()

    def _buffered(self) -> None:
        """This file system takes no direct I/O after all: go through the page cache."""
        import fcntl

        self._direct = False
        fcntl.fcntl(self.fd, fcntl.F_SETFL, fcntl.fcntl(self.fd, fcntl.F_GETFL) & ~os.O_DIRECT)

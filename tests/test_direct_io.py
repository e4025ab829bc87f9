"""vexchange._direct_io: bulk files written around the page cache hold exactly what was written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vexchange._direct_io import ALIGN, BLOCK, DirectFile, open_bulk


def _pieces(seed: int) -> list[bytes]:
    """Writes of awkward sizes: empty, tiny, unaligned, exactly a block, more than a block."""
    rng = __import__("random").Random(seed)
    sizes = [0, 1, 7, ALIGN - 1, ALIGN, ALIGN + 1, BLOCK - 3, BLOCK, 2 * BLOCK + 5, 100]
    return [rng.randbytes(size) for size in sizes]


@pytest.mark.parametrize("flush_every", [0, 3])
def test_bytes_are_exactly_what_was_written(tmp_path: Path, flush_every: int) -> None:
    path = tmp_path / "bulk.bin"
    pieces = _pieces(1)
    with open_bulk(path) as handle:
        for i, piece in enumerate(pieces):
            assert handle.write(piece) == len(piece)
            if flush_every and i % flush_every == 0:
                handle.flush()  # padded on disk, overwritten by what follows
        assert handle.tell() == sum(map(len, pieces))
    assert path.read_bytes() == b"".join(pieces)


def test_direct_where_the_file_system_allows(tmp_path: Path) -> None:
    handle = open_bulk(tmp_path / "x.bin")
    handle.close()
    if hasattr(os, "O_DIRECT"):
        assert isinstance(handle, DirectFile) or _refuses_direct(tmp_path)


def _refuses_direct(directory: Path) -> bool:
    try:
        os.close(os.open(directory / "probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT))
        return False
    except OSError:
        return True


def test_off_switch_writes_through_the_page_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEX_DIRECT_IO", "off")
    with open_bulk(tmp_path / "x.bin") as handle:
        assert not isinstance(handle, DirectFile)
        handle.write(b"abc")
    assert (tmp_path / "x.bin").read_bytes() == b"abc"


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="no tmpfs at /dev/shm here")
def test_tmpfs_refuses_direct_and_still_gets_the_bytes(tmp_path: Path) -> None:
    path = Path("/dev/shm") / f"vex-direct-{os.getpid()}.bin"
    try:
        with open_bulk(path) as handle:
            handle.write(b"x" * (ALIGN + 3))
        assert path.read_bytes() == b"x" * (ALIGN + 3)
    finally:
        path.unlink(missing_ok=True)


def test_a_refused_write_falls_back_on_that_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.bin"
    handle = open_bulk(path)
    if not isinstance(handle, DirectFile):
        pytest.skip("no direct writes on this file system")
    real = os.pwrite
    calls = {"n": 0}

    def refusing(fd: int, data: bytes, offset: int) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(22, "Invalid argument")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", refusing)
    payload = os.urandom(BLOCK + 10)
    handle.write(payload)
    handle.close()
    assert path.read_bytes() == payload


def test_pyarrow_writes_parquet_through_it(tmp_path: Path) -> None:
    table = pa.table({"id": [str(i) for i in range(5000)], "v": pa.array(range(5000), pa.float32())})
    with open_bulk(tmp_path / "t.parquet") as handle, pq.ParquetWriter(handle, table.schema) as out:
        out.write_table(table, row_group_size=1000)
    assert pq.read_table(tmp_path / "t.parquet").equals(table)


@pytest.mark.parametrize("cut", [0, 1, ALIGN - 1, ALIGN, ALIGN + 7, BLOCK, BLOCK + ALIGN + 3])
def test_written_on_from_any_offset(tmp_path: Path, cut: int) -> None:
    """A resumed output: the file cut at an arbitrary (unaligned) offset, anything beyond it
    (a killed run's unflushed blocks) dropped, then written on."""
    path = tmp_path / "bulk.bin"
    first = os.urandom(BLOCK + 2 * ALIGN)
    path.write_bytes(first)
    more = b"".join(_pieces(2))
    with open_bulk(path, append_at=cut) as handle:
        assert handle.tell() == cut
        handle.write(more)
        assert handle.tell() == cut + len(more)
    assert path.read_bytes() == first[:cut] + more


def test_written_on_and_nothing_more(tmp_path: Path) -> None:
    path = tmp_path / "bulk.bin"
    path.write_bytes(b"a" * (ALIGN + 5) + b"garbage")
    open_bulk(path, append_at=ALIGN + 5).close()
    assert path.read_bytes() == b"a" * (ALIGN + 5)


def test_a_file_shorter_than_the_offset_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bulk.bin"
    path.write_bytes(b"abc")
    with pytest.raises(ValueError, match="fewer than"):
        open_bulk(path, append_at=10)
    assert path.read_bytes() == b"abc"


@pytest.mark.parametrize("direct", ["on", "off"])
def test_after_flush_the_disk_holds_exactly_what_was_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct: str) -> None:
    """What a checkpoint relies on: flushed, then killed (the file read by another handle while
    this one is open), the file is the bytes written so far, no padding."""
    monkeypatch.setenv("VEX_DIRECT_IO", direct)
    path = tmp_path / "bulk.bin"
    written = b""
    handle = open_bulk(path, buffering=1 << 20)
    for piece in _pieces(3):
        handle.write(piece)
        written += piece
        handle.flush()
        assert path.read_bytes() == written
        os.fsync(handle.fileno())  # what a commit does: the descriptor takes an fsync
    handle.close()
    resumed = open_bulk(path, append_at=len(written) - 3, buffering=1 << 20)
    resumed.write(b"xyz!")
    resumed.flush()
    assert path.read_bytes() == written[:-3] + b"xyz!"
    resumed.close()


def test_a_refused_read_back_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bulk.bin"
    path.write_bytes(b"q" * (ALIGN + 100))
    monkeypatch.setattr(os, "preadv", _refusing_once(os.preadv))
    with open_bulk(path, append_at=ALIGN + 50) as handle:
        handle.write(b"z")
    assert path.read_bytes() == b"q" * (ALIGN + 50) + b"z"


def _refusing_once(real: Any) -> Any:
    calls = {"n": 0}

    def refusing(*args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(22, "Invalid argument")
        return real(*args)

    return refusing


def test_the_descriptor_closes_with_the_file(tmp_path: Path) -> None:
    handle = open_bulk(tmp_path / "x.bin")
    fd = handle.fileno()
    handle.close()
    with pytest.raises(OSError):
        os.fstat(fd)


@pytest.mark.parametrize("surfaces_at", ["write", "flush", "close"])
def test_a_write_that_fails_on_the_thread_is_raised_not_lost(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, surfaces_at: str) -> None:
    """A full block goes to the disk on the writing thread; its failure (a full disk) comes
    back from the next call on the file, whichever it is, and the file's handles still close."""
    import errno

    handle = open_bulk(tmp_path / "x.bin")
    if not isinstance(handle, DirectFile):
        pytest.skip("no direct writes on this file system")

    def full(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    handle.write(b"a" * BLOCK)  # handed to the thread
    with pytest.raises(OSError) as caught:
        if surfaces_at == "write":
            handle.write(b"b" * BLOCK)  # the second full block waits for the first
        elif surfaces_at == "flush":
            handle.flush()
        else:
            handle.close()
    assert caught.value.errno == errno.ENOSPC
    monkeypatch.undo()
    handle.close()
    assert handle.closed


def test_blocks_written_behind_keep_their_order(tmp_path: Path) -> None:
    """Many full blocks in a row, two buffers taking turns: each lands at its own offset."""
    path = tmp_path / "bulk.bin"
    blocks = [bytes([i]) * BLOCK for i in range(7)] + [b"tail"]
    with open_bulk(path) as handle:
        for block in blocks:
            handle.write(block)
    assert path.read_bytes() == b"".join(blocks)


def test_a_flush_writes_only_what_the_last_one_did_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpoints flush after every page: each flush writes from the last whole block already
    on the disk, so the file is written about once, not once per flush, and stays exact."""
    path = tmp_path / "bulk.bin"
    handle = open_bulk(path)
    if not isinstance(handle, DirectFile):
        pytest.skip("no direct writes on this file system")
    real, written = os.pwrite, []

    def counting(fd: int, data: Any, offset: int) -> int:
        written.append(len(data))
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", counting)
    pieces = [os.urandom(ALIGN * 100 + 17) for _ in range(25)]  # 25 flushes, about 2.5 buffers
    for piece in pieces:
        handle.write(piece)
        handle.flush()
        assert path.stat().st_size == handle.tell()
    handle.close()
    assert path.read_bytes() == b"".join(pieces)
    assert sum(written) < sum(map(len, pieces)) + 26 * ALIGN

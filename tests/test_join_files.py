"""Joining a parallel run's parts into one file (``_atomic.join_files``, vmig.py ``join_parts``):
the first part renamed, the others written after it while a thread hashes the whole, checked
against the first part's recorded size and SHA-256, and the same file again after a kill."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

import vexchange
import vexchange._atomic as atomic
from vexchange._atomic import commit_partial, join_files
from vexchange.errors import DecodeError, UsageError
from vexchange.sample_data import build


def _parts(tmp_path: Path, sizes: list[int]) -> tuple[list[Path], bytes]:
    parts, whole = [], b""
    for k, size in enumerate(sizes):
        data = bytes((k * 31 + i) % 251 for i in range(size))
        path = tmp_path / f"part{k}"
        path.write_bytes(data)
        parts.append(path)
        whole += data
    return parts, whole


def _state(data: bytes) -> dict[str, object]:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_the_parts_joined_with_the_first_renamed(tmp_path: Path) -> None:
    parts, whole = _parts(tmp_path, [3 << 20, 5, 0, (1 << 20) + 3])
    target = tmp_path / "out.vmig.jsonl"
    first = _state(parts[0].read_bytes())
    assert join_files(target, parts[0], first, parts[1:]) == hashlib.sha256(whole).hexdigest()
    assert not parts[0].exists() and all(p.exists() for p in parts[1:])
    commit_partial(target)
    assert target.read_bytes() == whole


def test_run_again_after_a_kill_it_cuts_back_to_the_first_part(tmp_path: Path) -> None:
    parts, whole = _parts(tmp_path, [70_000, 40_000, 10])
    target = tmp_path / "out.vmig.jsonl"
    first = _state(parts[0].read_bytes())
    partial = target.with_name(target.name + ".partial")
    os.replace(parts[0], partial)
    with open(partial, "ab") as half_copied:
        half_copied.write(parts[1].read_bytes()[:1234])
    assert join_files(target, parts[0], first, parts[1:]) == hashlib.sha256(whole).hexdigest()
    assert partial.read_bytes() == whole


def test_a_partial_file_that_does_not_begin_with_the_first_part_is_refused(tmp_path: Path) -> None:
    parts, _ = _parts(tmp_path, [50_000, 10])
    target = tmp_path / "out.vmig.jsonl"
    first = _state(parts[0].read_bytes())
    partial = target.with_name(target.name + ".partial")
    os.replace(parts[0], partial)
    data = bytearray(partial.read_bytes())
    data[777] ^= 1
    partial.write_bytes(bytes(data))
    with pytest.raises(DecodeError, match="are not the ones written"):
        join_files(target, parts[0], first, parts[1:])
    partial.write_bytes(bytes(data[:100]))
    with pytest.raises(DecodeError, match="fewer than"):
        join_files(target, parts[0], first, parts[1:])
    partial.unlink()
    with pytest.raises(UsageError, match="is gone"):
        join_files(target, parts[0], first, parts[1:])
    assert not target.exists()


def test_without_direct_io_the_same_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEX_DIRECT_IO", "off")
    parts, whole = _parts(tmp_path, [10_000, 300_000, 20_000])
    target = tmp_path / "out.vmig.jsonl"
    assert join_files(target, parts[0], _state(parts[0].read_bytes()), parts[1:]) == \
        hashlib.sha256(whole).hexdigest()
    assert target.with_name(target.name + ".partial").read_bytes() == whole


def test_a_coordinator_killed_in_the_join_resumes_to_the_one_worker_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "m.db"
    build(db, n=3000, dims=8)
    one = tmp_path / "one.vmig.jsonl"
    vexchange.migrate(f"vektor:{db}", str(one), workers=1)
    real = atomic.open_bulk

    class Killed:
        """The joined file's writer, stopped (like Ctrl-C) after its first 5000 bytes."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.inner = real(*args, **kwargs)

        def write(self, data: bytes) -> int:
            self.inner.write(data[:5000])
            self.inner.flush()
            raise KeyboardInterrupt

        def close(self) -> None:
            self.inner.close()

    monkeypatch.setattr(atomic, "open_bulk", Killed)
    target = tmp_path / "two.vmig.jsonl"
    with pytest.raises(KeyboardInterrupt):
        vexchange.migrate(f"vektor:{db}", str(target), workers=2)
    assert not target.exists()
    monkeypatch.setattr(atomic, "open_bulk", real)
    receipt = vexchange.migrate(f"vektor:{db}", str(target), workers=2, resume=True)
    assert receipt.counts.written == 3000
    assert target.read_bytes() == one.read_bytes()
    assert vexchange.verify(str(target)).ok

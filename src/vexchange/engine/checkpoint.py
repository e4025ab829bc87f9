"""Run files beside the receipt: the checkpoint that makes a run resumable, the ids it has
seen, and the rejects file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson

from .._atomic import atomic_write_bytes
from .._json import loads_exact
from ..connectors._base import Reject
from ..errors import DecodeError

__all__ = ["Checkpoint", "RejectsFile", "SeenIds", "forget_seen_ids", "keep_seen_ids", "reject_line"]

_KEEP: dict[Path, Path] = {}
"""Checkpoint path -> where its id hashes are kept when the run completes (``keep_seen_ids``)."""
_LIVE: dict[Path, SeenIds] = {}
"""Id-file path -> the ``SeenIds`` of this process's run, for the checkpoints in ``_KEEP``."""


def keep_seen_ids(checkpoint: Path, kept: Path) -> None:
    """Keep the id hashes of the run whose checkpoint is ``checkpoint``, all of them in the
    order they were seen, in ``kept`` when the run completes (a parallel run's shard: the
    coordinator finds ids repeated across shards in them, docs/engine.md "Parallel runs").
    The run itself drops its checkpoint and id file as any run does."""
    _KEEP[checkpoint] = kept


def forget_seen_ids(checkpoint: Path) -> None:
    """Undo ``keep_seen_ids`` once its run has ended (a worker runs more shards after it, and
    would otherwise hold every finished shard's hashes in memory)."""
    _KEEP.pop(checkpoint, None)
    _LIVE.pop(SeenIds.path_for(checkpoint), None)


class Checkpoint:
    """``<receipt>.checkpoint``: the source cursor, target state and counts after the last
    acknowledged page. It exists only while a run is unfinished."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def save(self, state: dict[str, Any]) -> None:
        atomic_write_bytes(self.path, orjson.dumps(state))

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            state = loads_exact(self.path.read_bytes())
        except ValueError:  # bad JSON or UTF-8, or nested beyond what is read
            state = None
        if not isinstance(state, dict):
            raise DecodeError("checkpoint is damaged; run again without --resume",
                              location=str(self.path))
        return state

    def remove(self) -> None:
        ids = SeenIds.path_for(self.path)
        kept = _KEEP.get(self.path)
        if kept is not None:  # copied, not moved: until the checkpoint is gone it still needs them
            live = _LIVE.get(ids)
            if live is not None:
                live.persist(len(live))
            atomic_write_bytes(kept, ids.read_bytes() if ids.exists() else b"")
        self.path.unlink(missing_ok=True)
        ids.unlink(missing_ok=True)


class SeenIds:
    """The (namespace, id) pairs a run has selected, as 8-byte BLAKE2b hashes, to refuse a
    repeated id as ``duplicate_id``; kept in ``<checkpoint>.ids`` so that a resumed run still
    knows the ids of the pages before its cursor.

    The file only grows: each checkpoint appends the hashes added since the one before, and
    the checkpoint records how many of them it covers, so hashes of a page that never finished
    are cut off on resume. Python's ``hash()`` is salted per process and cannot be kept.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._hashes: set[bytes] = set()
        self._pending: list[bytes] = []
        self._persisted = 0
        if path.with_name(path.name[: -len(".ids")]) in _KEEP:
            _LIVE[path] = self

    @staticmethod
    def key(namespace: str | None, record_id: str) -> bytes:
        """The 8-byte hash a pair is kept as."""
        return hashlib.blake2b(orjson.dumps([namespace, record_id]), digest_size=8).digest()

    @staticmethod
    def path_for(checkpoint: Path) -> Path:
        return checkpoint.with_name(checkpoint.name + ".ids")

    def __len__(self) -> int:
        return self._persisted + len(self._pending)

    def add(self, namespace: str | None, record_id: str) -> bool:
        """Add the pair; False when it was seen before."""
        return self.add_key(SeenIds.key(namespace, record_id))

    def add_key(self, key: bytes) -> bool:
        """``add`` of a pair by its ``key`` (taken elsewhere: the reading child takes a page's)."""
        if key in self._hashes:
            return False
        self._hashes.add(key)
        self._pending.append(key)
        return True

    def add_new(self, keys: list[bytes]) -> bool:
        """``add_key`` of every key when none was seen before and none repeats; else add
        nothing and give False (the caller then adds them one by one, naming the repeats)."""
        fresh = set(keys)
        if len(fresh) != len(keys) or not fresh.isdisjoint(self._hashes):
            return False
        self._hashes |= fresh
        self._pending.extend(keys)
        return True

    def persist(self, upto: int) -> None:
        """Append to the file the hashes added up to the ``upto``-th one."""
        wanted = upto - self._persisted
        if wanted <= 0:
            return
        with open(self.path, "ab") as out:
            out.write(b"".join(self._pending[:wanted]))
            out.flush()
            os.fsync(out.fileno())
        del self._pending[:wanted]
        self._persisted = upto

    def load(self, count: int) -> None:
        """Take the first ``count`` hashes of the file (those a checkpoint covers)."""
        data = self.path.read_bytes()[: count * 8] if self.path.exists() else b""
        if len(data) != count * 8:
            raise DecodeError(f"the checkpoint's id file holds {len(data) // 8} of {count} ids;"
                              " run again without --resume", location=str(self.path))
        if self.path.exists():
            with open(self.path, "r+b") as out:
                out.truncate(len(data))
        self._hashes = set(np.frombuffer(data, dtype="S8").tolist()) if data else set()
        self._persisted = count
        self._pending = []


def reject_line(reject: Reject) -> bytes:
    """A rejects file's line for ``reject``, newline included."""
    fields = {name: getattr(reject, name) for name in reject.__struct_fields__}
    return orjson.dumps(fields, default=str, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY)


class RejectsFile:
    """``*.rejects.jsonl``: one JSON line per record that was not written, with its reason.

    Created only when there is something to put in it, so a clean run leaves no empty file.
    """

    def __init__(self, path: Path, *, append: bool = False) -> None:
        self.path = path
        self.count = 0
        self._append = append
        self._file: BinaryIO | None = None
        if append and path.exists():
            with open(path, "rb") as existing:
                self.count = sum(1 for _ in existing)
        elif not append:
            path.unlink(missing_ok=True)  # an earlier run's rejects are not this run's

    def add(self, reject: Reject) -> None:
        self._open()
        assert self._file is not None
        self._file.write(reject_line(reject))
        self.count += 1

    def _open(self) -> None:
        if self._file is None:
            # no context manager (SIM115): the file stays open across pages until the writer is closed
            self._file = open(self.path, "ab" if self._append else "wb")  # noqa: SIM115
            self._append = True

    def position(self) -> tuple[int, int]:
        """(lines, bytes) written so far: what a checkpoint records, so that the rejects of a
        page that never finished can be cut off and the file matches the receipt's counts."""
        if self._file is None:
            size = self.path.stat().st_size if self._append and self.path.exists() else 0
            return self.count, size
        self._file.flush()
        return self.count, self._file.tell()

    def truncate(self, position: tuple[int, int]) -> None:
        """Cut the file back to a recorded ``position``."""
        lines, size = position
        if self._file is not None:
            self._file.flush()
            self._file.truncate(size)
        elif self.path.exists():
            with open(self.path, "r+b") as existing:
                existing.truncate(size)
        self.count = lines

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

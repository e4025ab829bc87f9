"""Run files beside the receipt: the checkpoint that makes a run resumable, and the rejects file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import orjson

from .._atomic import atomic_write_bytes
from ..connectors._base import Reject
from ..errors import DecodeError

__all__ = ["Checkpoint", "RejectsFile"]


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
            state = orjson.loads(self.path.read_bytes())
        except orjson.JSONDecodeError:
            raise DecodeError("checkpoint is damaged; run again without --resume",
                              location=str(self.path)) from None
        return state  # type: ignore[no-any-return]

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


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

    def add(self, reject: Reject) -> None:
        if self._file is None:
            self._file = open(self.path, "ab" if self._append else "wb")
        fields = {name: getattr(reject, name) for name in reject.__struct_fields__}
        self._file.write(orjson.dumps(
            fields, default=str, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY))
        self.count += 1

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

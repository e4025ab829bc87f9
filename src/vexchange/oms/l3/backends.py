"""Where envelopes live: in the index database itself (one SQLite file), or as one file each in
a directory beside ``index.sqlite`` (docs/formats/oms-level3.md §8).

The directory backend writes an envelope under a temporary name, fsyncs it, renames it into
place and fsyncs the directory *before* the index row commits; a rolled-back or killed write
leaves a file no row names, which :meth:`DirBlobs.reconcile` removes at the next open. Removal
is the other way round: the row goes first, the file after the commit.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from ...errors import UsageError

__all__ = ["DirBlobs", "SqliteBlobs"]


class SqliteBlobs:
    """Envelopes in the ``grains.envelope`` column."""

    in_row = True

    def write(self, address: str, envelope: bytes) -> None:  # the row carries it
        pass

    def read(self, address: str, row_value: bytes | None) -> bytes | None:
        return None if row_value is None else bytes(row_value)

    def remove(self, address: str) -> None:
        pass

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass

    def reconcile(self, db: sqlite3.Connection) -> dict[str, int]:
        missing = db.execute("SELECT count(*) FROM grains WHERE envelope IS NULL").fetchone()[0]
        return {"orphan_blobs": 0, "missing_blobs": int(missing)}


class DirBlobs:
    """Envelopes as ``grains/<aa>/<address>.vxl3`` files."""

    in_row = False
    SUFFIX = ".vxl3"

    def __init__(self, root: Path) -> None:
        # one process at a time: another's recovery would take this one's uncommitted files
        # for orphans. The OS drops the lock when the process dies, so a killed writer never
        # leaves the store locked.
        self._lock = open(root / "lock", "a+b")  # noqa: SIM115 - held as long as the store is open
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            raise UsageError(f"{root} is open in another process") from None
        self.root = root / "grains"
        self.root.mkdir(parents=True, exist_ok=True)
        self._written: list[Path] = []
        self._doomed: list[Path] = []

    def _path(self, address: str) -> Path:
        return self.root / address[:2] / (address + self.SUFFIX)

    def write(self, address: str, envelope: bytes) -> None:
        path = self._path(address)
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as handle:
            handle.write(envelope)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._written.append(path)

    def read(self, address: str, row_value: bytes | None) -> bytes | None:
        try:
            return self._path(address).read_bytes()
        except FileNotFoundError:
            return None

    def remove(self, address: str) -> None:
        self._doomed.append(self._path(address))

    def commit(self) -> None:
        for path in self._doomed:
            path.unlink(missing_ok=True)
        self._written, self._doomed = [], []

    def rollback(self) -> None:
        for path in self._written:
            path.unlink(missing_ok=True)
        self._written, self._doomed = [], []

    def files(self) -> Iterator[Path]:
        for sub in sorted(self.root.iterdir()):
            if sub.is_dir():
                yield from sorted(sub.iterdir())

    def close(self) -> None:
        self._lock.close()

    def reconcile(self, db: sqlite3.Connection) -> dict[str, int]:
        """Remove temporary files and envelopes no row names; count rows with no file."""
        orphans = 0
        for path in self.files():
            name = path.name
            address = name[:-len(self.SUFFIX)] if name.endswith(self.SUFFIX) else None
            known = address is not None and db.execute(
                "SELECT 1 FROM grains WHERE address = ?", (address,)).fetchone() is not None
            if not known:
                with contextlib.suppress(OSError):
                    path.unlink()
                orphans += 1
        missing = sum(1 for (address,) in db.execute("SELECT address FROM grains")
                      if not self._path(address).is_file())
        return {"orphan_blobs": orphans, "missing_blobs": missing}

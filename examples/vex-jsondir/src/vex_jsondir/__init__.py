"""``jsondir:///path/to/dir``: one JSON file per record, named by a hash of (namespace, id).

A complete small vexchange connector (docs/writing-a-connector.md): it reads in pages with a
resume cursor, writes idempotently (a record's file is replaced, never duplicated), keeps every
field of a record exactly (it stores each record as one ``.vmig.jsonl`` line), and refuses nothing.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from vexchange.codecs.vmig import RecordError, decode_object, encode_record, parse_line
from vexchange.connectors import Capabilities, Connector, Page, Reject, Writer
from vexchange.errors import UsageError
from vexchange.record import MemoryRecord
from vexchange.spec import StoreSpec

__all__ = ["JsonDirConnector"]


class JsonDirConnector(Connector):
    name = "jsondir"
    url_options = frozenset()  # it reads no ?option=...; any other is refused as a typo
    suffixes = (".jsondir",)  # a bare path ending in .jsondir is a jsondir store
    takes_path = True  # jsondir:///abs/dir or jsondir:relative/dir, never a host
    capabilities = Capabilities(read=True, write=True, named_vectors=True)

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if not spec.path:
            raise UsageError("jsondir needs a directory: jsondir:///path/to/dir")
        self.root = Path(spec.path)

    def count(self) -> int | None:
        return len(self._files()) if self.root.is_dir() else 0

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        """Files in name order; the cursor is the last file name handed out."""
        if not self.root.is_dir():
            raise UsageError(f"no such directory: {self.root}")
        names = [n for n in self._files() if after is None or n > after]
        for start in range(0, len(names), batch_size):
            chunk = names[start:start + batch_size]
            items: list[MemoryRecord | Reject] = [self._decode(name) for name in chunk]
            yield Page(items, chunk[-1])
        if not names:
            yield Page([], None)

    def _decode(self, name: str) -> MemoryRecord | Reject:
        raw = (self.root / name).read_bytes()
        try:  # parse_line, not orjson.loads: it keeps integers beyond 64 bits exact
            return decode_object(parse_line(raw), raw)
        except (ValueError, RecordError) as err:  # a damaged file: a counted reject
            return Reject(reason="unreadable", detail=str(err), location=str(self.root / name),
                          record=raw.decode("utf-8", "replace"))

    def _files(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.suffix == ".json")

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: Any = None) -> Writer:
        return _JsonDirWriter(self.root, dry_run=dry_run)


class _JsonDirWriter(Writer):
    def __init__(self, root: Path, *, dry_run: bool) -> None:
        self.root, self.dry_run = root, dry_run
        if not dry_run:
            root.mkdir(parents=True, exist_ok=True)

    def write(self, batch: list[MemoryRecord]) -> list[Reject]:
        for record in batch:
            key = orjson.dumps([record.namespace, record.id])
            path = self.root / f"{hashlib.sha256(key).hexdigest()}.json"
            if not self.dry_run:  # write-then-rename: a retried batch replaces, never doubles
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(encode_record(record))
                os.replace(tmp, path)
        return []

    def finish(self, summary: dict[str, Any]) -> None:
        """Every file is complete when written; nothing to commit."""

    def abort(self) -> None:
        """Files written so far stay; a resumed run rewrites the page that failed."""

"""``letta-af``: a Letta Agent File (``.af``) read as records and written from them.
docs/connectors/letta.md.

``letta-af:///path/agent.af`` (or a bare ``agent.af``). Each object of the file is a record
(connectors/_letta_doc.py says how); a file read and written back is the same document, with
its secrets kept out both ways.

An ``.af`` is one JSON document whose messages sit inside their agent, and Letta itself makes
and reads it whole, so reading parses the file whole (memory is a few times the file's size),
and writing stages the records on disk as they come (resumable, like every file target here)
and builds the document once at the end.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import orjson

from .._atomic import AtomicOutput, check_writable, prefix_state, write_failure
from .._json import dumps_exact, loads_exact, with_big_ints_as_fragments
from ..errors import DecodeError, InvalidSpecError, UsageError
from ..record import MemoryRecord
from ..spec import StoreSpec
from ._base import AtPath, Capabilities, Connector, Page, Reject, VectorSpace, Writer
from ._letta_doc import build_document, letta_object, read_document
from .vmig import LastBatch

__all__ = ["LettaAgentFileConnector"]

_LEGACY_KEYS = frozenset({"core_memory", "in_context_message_indices"})


class LettaAgentFileConnector(AtPath, Connector):
    name = "letta-af"
    url_options = frozenset({"namespace"})
    suffixes = (".af",)
    takes_path = True
    capabilities = Capabilities(read=True, write=True, named_vectors=True, null_vectors=True)

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if not spec.path:
            raise UsageError("letta-af needs a file path, e.g. letta-af:agent.af")
        self.path = Path(spec.path)
        self.namespace = spec.params.get("namespace")
        if self.namespace == "":
            raise InvalidSpecError("letta-af: ?namespace= needs a name")

    def describe(self) -> dict[str, Any]:
        return {"connector": self.name, "location": str(self.path.resolve())}

    # ------------------------------------------------------------------------------ reading

    def _document(self) -> dict[str, Any]:
        where = str(self.path)
        if not self.path.is_file():
            raise UsageError(f"no such Letta agent file: {self.path}")
        try:
            doc = loads_exact(self.path.read_bytes())
            if isinstance(doc, str):  # an export saved as a JSON string holding the document
                doc = loads_exact(doc)
        except orjson.JSONDecodeError as err:
            raise DecodeError(f"not JSON: {err}", location=where) from None
        except OSError as err:
            raise UsageError(f"cannot read {self.path}: {err.strerror or err}") from None
        if not isinstance(doc, dict):
            raise DecodeError("the file is not a JSON object, as a Letta agent file is", location=where)
        if "agents" not in doc and _LEGACY_KEYS & doc.keys():
            raise DecodeError("this is the legacy single-agent .af format, which vexchange does not"
                              " read", location=where,
                              hint="import it into a Letta server and export it again")
        if not isinstance(doc.get("agents"), list):
            raise DecodeError("the file has no 'agents' list: it is not a Letta agent file", location=where)
        return doc

    def _items(self) -> list[MemoryRecord | Reject]:
        return list(read_document(self._document(), namespace=self.namespace, where=str(self.path)))

    def count(self) -> int | None:
        return len(self._items())

    def vector_spaces(self) -> dict[str, VectorSpace]:
        for item in self._items():
            if isinstance(item, MemoryRecord) and item.vector is not None:
                return {"": VectorSpace(dims=item.vector.dims)}
        return {}

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        """Pages in file order; the cursor is how many items were handed over."""
        items = self._items()
        start = int(after) if after else 0
        if start >= len(items):
            yield Page([], None)
            return
        for begin in range(start, len(items), batch_size):
            end = min(begin + batch_size, len(items))
            yield Page(items[begin:end], str(end) if end < len(items) else None)

    # ------------------------------------------------------------------------------ writing

    def open_writer(self, *, resume: dict[str, Any] | None = None, dry_run: bool = False,
                    spaces: dict[str, VectorSpace] | None = None) -> Writer:
        return AgentFileWriter(self.path, resume=resume, dry_run=dry_run)


def staged_path(path: Path) -> Path:
    """Where a run into ``path`` stages its records (``AtomicOutput`` adds ``.partial``)."""
    return path.with_name(path.name + ".records")


class AgentFileWriter(Writer):
    """Records staged (each a u32 length and its JSON, integers beyond 64 bits exact) as they
    come, then the document."""

    def __init__(self, path: Path, *, resume: dict[str, Any] | None, dry_run: bool) -> None:
        self.path = path
        self.keys: dict[tuple[str, str], tuple[str | None, str]] = {}
        if dry_run:
            self.staged: AtomicOutput | None = None
        else:
            check_writable(path)
            state = None if resume is None else resume.get("records")
            if resume is not None:
                prefix_state(state, Path("the .af export's staged records"))
            self.staged = AtomicOutput(staged_path(path), resume=state, reclaim=False)
            if state is not None:
                for record in _staged(self.staged.partial, self.staged.size):
                    self._claim(record)
        self.held: LastBatch[bytes] = LastBatch(self._append)

    def _claim(self, record: MemoryRecord) -> str | None:
        """Takes the object's place in the file for the record; the holder's (namespace, id)
        when another record holds it (two sources' records with one id in one list)."""
        section, obj = letta_object(record)
        key = (section.key if section is not None else "", str(obj.get("id", record.id)))
        holder = self.keys.setdefault(key, (record.namespace, record.id))
        if holder != (record.namespace, record.id):
            return f"{holder[1]!r} (namespace {holder[0]!r})"
        return None

    def write(self, batch: list[MemoryRecord]) -> list[Reject]:
        rejects: list[Reject] = []
        blobs: list[bytes] = []
        for record in batch:
            taken = self._claim(record)
            if taken is not None:
                rejects.append(Reject(reason="duplicate_id", detail=f"the file already holds the record"
                                      f" {taken} in that place: one .af list holds one object per id",
                                      id=record.id, namespace=record.namespace))
                continue
            try:
                blobs.append(dumps_exact(msgspec.to_builtins(record)).encode())
            except (OverflowError, TypeError, ValueError) as err:
                rejects.append(Reject(reason="unencodable", detail=str(err), id=record.id,
                                      namespace=record.namespace))
        self.held.hold(batch, blobs)
        return rejects

    def _append(self, blobs: list[bytes]) -> None:
        if self.staged is not None:
            for blob in blobs:
                self.staged.write(struct.pack(">I", len(blob)) + blob)

    def checkpoint(self) -> dict[str, Any]:
        self.held.release()
        return {"records": None if self.staged is None else self.staged.state()}

    def finish(self, summary: dict[str, Any]) -> None:
        """Build the document from the staged records (the last copy of a record sent twice),
        write it under ``<file>.partial`` and rename it into place."""
        self.held.release()
        if self.staged is None:
            return
        self.staged.flush(sync=True)
        self.staged.close_partial()
        latest: dict[tuple[str | None, str], MemoryRecord] = {}
        for record in _staged(self.staged.partial, self.staged.size):
            latest[record.namespace, record.id] = record
        built = build_document(iter(latest.values()))
        summary["letta_extension_records"] = built.overrides
        summary["letta_unplaced_messages"] = built.unplaced
        body = orjson.dumps(with_big_ints_as_fragments(built.document), option=orjson.OPT_INDENT_2) + b"\n"
        partial = self.path.with_name(self.path.name + ".partial")
        try:
            with open(partial, "wb") as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, self.path)
        except OSError as err:
            raise write_failure(err, self.path) from None
        self.staged.discard()

    def abort(self) -> None:
        """Keep the staged records: a resumed run cuts them back to its checkpoint."""
        if self.staged is not None:
            self.staged.close_partial()


def _staged(path: Path, size: int) -> Iterator[MemoryRecord]:
    with open(path, "rb") as staged:
        read = 0
        while read < size and (head := staged.read(4)):
            length = struct.unpack(">I", head)[0]
            yield msgspec.convert(loads_exact(staged.read(length)), MemoryRecord)
            read += 4 + length

"""What the ``claude-export`` and ``chatgpt-export`` sources share. docs/connectors/claude-export.md
and docs/connectors/chatgpt-export.md hold the record contract this module implements.

Three parts:

- ``JsonElements``: the elements of a JSON file's top-level array, one at a time, as raw bytes,
  read from a file or a zip member in 64 KiB chunks. A conversations.json is one array that can
  be hundreds of megabytes, and nothing in the venv splits one without loading it (Vex does one
  ``JSON.parse`` of the whole file), so this small splitter finds each element's end by
  structure alone (strings, escapes, bracket depth) and orjson parses each element by itself.
  Memory is one element, never the file.
- ``conversation_records``: a conversation's messages (a tree, or a list treated as one path)
  as records, one per message or one per exchange, with their positions along the main path
  and every other branch kept.
- ``ConversationExport``: the read-only connector both sources are, over the export's zip, its
  folder or its ``conversations.json``, with a cursor that resumes inside a conversation.

Nothing is sent anywhere and no vector is computed: re-embedding is the engine's ``--reembed``.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, ClassVar

import orjson

from .._time import parse_timestamp
from ..errors import DecodeError, InvalidSpecError, UsageError
from ..record import MemoryRecord
from ..spec import StoreSpec
from ._base import AtPath, Capabilities, Connector, Page, Reject
from .vmig import max_line_bytes

__all__ = ["ConversationExport", "JsonElements", "Node", "Part", "Truncated", "Turn",
           "conversation_records", "nonempty", "pick", "reject_at", "timestamp"]

CHUNK = 1 << 16
"""Bytes read at a time: small enough that memory is one element, large enough to be fast."""

_NON_WS = re.compile(rb"[^ \t\r\n]")
_STRUCTURE = re.compile(rb'[\[\]{}"]')
_STRING_END = re.compile(rb'["\\]')
_SCALAR_END = re.compile(rb"[ \t\r\n,\]}]")
_BOM = b"\xef\xbb\xbf"


class Truncated(DecodeError):
    """The file ends inside an element (or before its array closes): what was read of it is
    handed over as a counted ``truncated`` reject, and reading stops there."""

    def __init__(self, where: str, offset: int, partial: bytes) -> None:
        super().__init__(f"the file ends inside the element that starts at byte {offset}",
                         location=where)
        self.offset = offset
        self.partial = partial


class JsonElements:
    """The elements of the top-level array of a JSON stream, as ``(byte offset, raw bytes)``.

    The top level may also be an object: with ``key``, the array under that key is split (the
    ``{"conversations": [...]}`` form some tools write); without, the object is one element
    (a ``memories.json`` holding one object). ``start`` > 0 resumes at an element's offset
    (the stream already positioned there). Only structure is checked here: each element's
    JSON is checked by whoever parses it, so a bad element is one reject, not the end of the
    file. Broken structure between elements is a DecodeError naming the byte."""

    def __init__(self, stream: IO[bytes], *, where: str, key: str | None = None, start: int = 0,
                 max_element: int | None = None) -> None:
        self.stream, self.where, self.key = stream, where, key
        self.buf = bytearray()
        self.pos = 0
        self.base = start
        self.resumed = start > 0
        self.mark: int | None = None
        self.max = max_element or max_line_bytes()

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        if not self.resumed:
            first = self._top_level()
            if first is not None:  # the whole top-level object is the one element
                yield first
                return
        first_element = True
        while True:
            char = self._peek()
            if char is None:
                raise Truncated(self.where, self.base + self.pos, b"")
            if char == 0x5D:  # ]
                return
            if not first_element:
                if char != 0x2C:  # ,
                    raise self._broken("a ',' or ']' between elements")
                self.pos += 1
                char = self._peek()
                if char is None:
                    raise Truncated(self.where, self.base + self.pos, b"")
                if char == 0x5D:
                    return
            first_element = False
            offset = self.base + self.pos
            yield offset, self._value(keep=True)

    def _top_level(self) -> tuple[int, bytes] | None:
        """Past the opening ``[`` (or into the keyed array); the element when the top level
        is one object and no key is asked for."""
        while len(self.buf) < len(_BOM) and self._fill():
            pass
        if self.buf.startswith(_BOM):
            self.pos = len(_BOM)
        char = self._peek()
        if char is None:
            raise DecodeError("the file is empty; a JSON array was expected", location=self.where)
        if char == 0x5B:  # [
            self.pos += 1
            return None
        if char == 0x7B:  # {
            if self.key is None:
                offset = self.base + self.pos
                return offset, self._value(keep=True)
            self._enter_key(self.key)
            return None
        raise self._broken("a JSON array")

    def _enter_key(self, key: str) -> None:
        """Into the array under ``key`` of the top-level object; other values are skipped
        without being kept."""
        self.pos += 1
        first = True
        while True:
            char = self._need()
            if char == 0x7D:  # }
                raise DecodeError(f"the top-level object has no {key!r} array",
                                  location=self.where,
                                  hint="an export's conversations.json is an array of conversations")
            if not first:
                if char != 0x2C:
                    raise self._broken("a ',' or '}' in the top-level object")
                self.pos += 1
                char = self._need()
            first = False
            if char != 0x22:
                raise self._broken("a key of the top-level object")
            name = orjson.loads(self._value(keep=True))
            if self._need() != 0x3A:  # :
                raise self._broken("a ':' after a key")
            self.pos += 1
            if name == key and self._need() == 0x5B:
                self.pos += 1
                return
            self._need()
            self._value(keep=False)

    def _broken(self, expected: str) -> DecodeError:
        return DecodeError(f"the JSON structure is broken at byte {self.base + self.pos}:"
                           f" {expected} was expected", location=self.where,
                           hint="the export is damaged; download it again")

    def _fill(self) -> bool:
        """More bytes. What is neither kept (an element being read) nor still to scan is
        dropped first, so the buffer holds at most one element and one chunk."""
        keep = self.mark if self.mark is not None else min(self.pos, len(self.buf))
        if keep:
            del self.buf[:keep]
            self.base += keep
            self.pos -= keep
            if self.mark is not None:
                self.mark = 0
        data = self.stream.read(CHUNK)
        if not data:
            return False
        self.buf += data
        if self.mark is not None and len(self.buf) - self.mark > self.max:
            raise DecodeError(
                f"the element at byte {self.base + self.mark} is longer than {self.max:,} bytes;"
                " refusing to read it whole", location=self.where,
                hint="if the export is sound, set VEX_MAX_LINE_BYTES to a larger number of bytes")
        return True

    def _peek(self) -> int | None:
        """The next byte that is not whitespace (the position moved onto it), None at the end."""
        while True:
            found = _NON_WS.search(self.buf, self.pos)
            if found is not None:
                self.pos = found.start()
                return self.buf[self.pos]
            self.pos = len(self.buf)
            if not self._fill():
                return None

    def _need(self) -> int:
        char = self._peek()
        if char is None:
            raise self._truncated()
        return char

    def _truncated(self) -> Truncated:
        start = self.mark if self.mark is not None else self.pos
        return Truncated(self.where, self.base + start, bytes(self.buf[start:]))

    def _value(self, *, keep: bool) -> bytes:
        """Past one JSON value starting at the position; its bytes when ``keep``."""
        self.mark = self.pos if keep else None
        char = self.buf[self.pos]
        if char == 0x22:
            self.pos += 1
            self._string()
        elif char in (0x5B, 0x7B):
            self._nested()
        else:
            self._scalar()
        raw = bytes(self.buf[self.mark:self.pos]) if self.mark is not None else b""
        self.mark = None
        return raw

    def _string(self) -> None:
        while True:
            found = _STRING_END.search(self.buf, self.pos)
            if found is None:
                self.pos = len(self.buf)
                if not self._fill():
                    raise self._truncated()
                continue
            if self.buf[found.start()] == 0x5C:  # a backslash: the next byte is escaped
                self.pos = found.start() + 2
                while self.pos > len(self.buf):
                    if not self._fill():
                        raise self._truncated()
                continue
            self.pos = found.start() + 1
            return

    def _nested(self) -> None:
        depth = 0
        while True:
            found = _STRUCTURE.search(self.buf, self.pos)
            if found is None:
                self.pos = len(self.buf)
                if not self._fill():
                    raise self._truncated()
                continue
            char = self.buf[found.start()]
            self.pos = found.start() + 1
            if char == 0x22:
                self._string()
            elif char in (0x5B, 0x7B):
                depth += 1
            else:
                depth -= 1
                if depth == 0:
                    return

    def _scalar(self) -> None:
        while True:
            found = _SCALAR_END.search(self.buf, self.pos)
            if found is not None:
                self.pos = found.start()
                return
            self.pos = len(self.buf)
            if not self._fill():
                return


# ------------------------------------------------------------------------------ records


@dataclass
class Turn:
    """One message as the record contract needs it, whatever the export's shape."""

    id: str
    role: str
    text: str | None
    created_at: int | None = None
    updated_at: int | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    """Source-specific metadata (``content_type``, ``model``...), after the contract's keys."""


@dataclass
class Node:
    """A place in a conversation's tree: a message, a message that could not be read (its
    reject, handed over where it stands), or nothing (ChatGPT's empty root, an empty message).
    ``parent`` None (or an id that is no node) makes it a root."""

    id: str
    parent: str | None
    turn: Turn | Reject | None


@dataclass(frozen=True)
class Conversation:
    id: str
    name: str | None
    source_format: str
    namespace: str
    source_store: str
    extra: dict[str, Any] = field(default_factory=dict)
    """Conversation-level metadata every record of it carries (``project_id``)."""


def nonempty(value: Any) -> str | None:
    """A non-empty string, else None (an export's missing and empty fields are alike)."""
    return value if isinstance(value, str) and value else None


def reject_at(where: str, reason: str, detail: str, record: Any, *, namespace: str | None = None,
              conversation: str | None = None, record_id: str | None = None) -> Reject:
    """A counted reject carrying the element or message as it was (with its conversation's
    id for a message), so the rejects file holds everything that was not read."""
    kept = record if conversation is None else {"conversation_id": conversation, "message": record}
    return Reject(reason=reason, detail=detail, id=record_id, namespace=namespace, location=where,
                  record=kept)


def pick(item: dict[str, Any], keys: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """An attachment's reference: for each ``(export key, our key)``, the first string or
    integer the export has; nothing else of the item (never its content)."""
    picked: dict[str, Any] = {}
    for source, target in keys:
        value = item.get(source)
        if target not in picked and isinstance(value, (str, int)) and not isinstance(value, bool):
            picked[target] = value
    return picked


def timestamp(value: Any) -> int | None:
    """Epoch ms from an export's time (ISO text, or epoch seconds as a float); ValueError."""
    return parse_timestamp(value)


def conversation_records(conv: Conversation, nodes: list[Node], leaf: str | None, *,
                         unit: str, branches: str) -> list[MemoryRecord | Reject]:
    """The records of one conversation: every message (or exchange) of the main path (the
    path from the root to ``leaf``; the last leaf in order when ``leaf`` is not a node), then
    each other branch (``branches="all"``) as records with ``branch`` > 0. Nodes no root leads
    to (a parent cycle) are rejected by name, never dropped."""
    by_id: dict[str, Node] = {}
    items: list[MemoryRecord | Reject] = []
    for node in nodes:
        if node.id in by_id:
            items.append(_reject(conv, node, "duplicate_id",
                                 f"message id {node.id!r} appears twice in the conversation"))
        else:
            by_id[node.id] = node
    segments, unreachable = _segments(by_id, leaf)
    if branches == "main":
        segments = segments[:1]
    for node in unreachable:
        items.append(_reject(conv, node, "unreachable",
                             "the message's parents form a cycle: no root leads to it"))
    walk = _Walk(conv, by_id)
    for index, segment in enumerate(segments):
        items.extend(walk.segment(index, segment, unit))
    return items


def _reject(conv: Conversation, node: Node, reason: str, detail: str) -> Reject:
    turn = node.turn
    record = turn.record if isinstance(turn, Reject) else (
        {"id": turn.id, "role": turn.role, "text": turn.text} if isinstance(turn, Turn) else None)
    return Reject(reason=reason, detail=detail, id=node.id, namespace=conv.namespace,
                  location=f"conversation {conv.id}", record=record)


def _segments(by_id: dict[str, Node], leaf: str | None) -> tuple[list[list[Node]], list[Node]]:
    """The main path, then each other branch: for every leaf in depth-first order, the part
    of its path from the root that no earlier segment holds (so every node is in exactly one
    segment, and each segment hangs off an earlier one). Also the nodes no root leads to."""
    children: dict[str | None, list[str]] = {}
    for node in by_id.values():
        parent = node.parent if node.parent in by_id and node.parent != node.id else None
        children.setdefault(parent, []).append(node.id)
    order: list[str] = []
    stack = list(reversed(children.get(None, [])))
    while stack:
        visiting = stack.pop()
        order.append(visiting)
        stack.extend(reversed(children.get(visiting, [])))
    reached = set(order)
    unreachable = [node for node in by_id.values() if node.id not in reached]
    if leaf not in reached:
        leaf = next((n for n in reversed(order) if n not in children), None)
    assigned: set[str] = set()
    segments: list[list[Node]] = []
    for end in ([leaf] if leaf is not None else []) + [n for n in order if n not in children]:
        path: list[Node] = []
        current: str | None = end
        while current is not None and current not in assigned:
            assigned.add(current)
            path.append(by_id[current])
            parent = by_id[current].parent
            current = parent if parent in reached else None
        if path:
            segments.append(path[::-1])
    return segments, unreachable


class _Walk:
    """Positions along each node's path from the root, carried from segment to segment: an
    off-path message has the position of the main-path message it stands in for, and an
    off-path exchange the position of the exchange it replaces."""

    def __init__(self, conv: Conversation, by_id: dict[str, Node]) -> None:
        self.conv, self.by_id = conv, by_id
        self.messages: dict[str, int] = {}
        self.exchanges: dict[str, int] = {}
        self.last: dict[str, str | None] = {}

    def segment(self, branch: int, segment: list[Node], unit: str) -> list[MemoryRecord | Reject]:
        items: list[MemoryRecord | Reject] = []
        group: list[tuple[Turn, int]] = []
        for node in segment:
            parent = node.parent if node.parent in self.by_id else None
            before = self.messages.get(parent, 0) if parent else 0
            exchanges = self.exchanges.get(parent, 0) if parent else 0
            previous = self.last.get(parent) if parent else None
            turn = node.turn
            if not isinstance(turn, Turn):
                self.messages[node.id], self.exchanges[node.id] = before, exchanges
                self.last[node.id] = previous
                if isinstance(turn, Reject):
                    items.append(turn)
                continue
            starts = turn.role == "user" or exchanges == 0
            self.messages[node.id] = before + 1
            self.exchanges[node.id] = exchanges + starts
            self.last[node.id] = turn.id
            if unit == "message":
                items.append(self._message(turn, before, branch, previous))
                continue
            if group and starts:
                items.append(self._exchange(group, branch))
                group = []
            group.append((turn, exchanges + starts - 1))
        if group:
            items.append(self._exchange(group, branch))
        return items

    def _metadata(self, role: str, position: int, branch: int) -> dict[str, Any]:
        conv = self.conv
        return {"role": role, "conversation_id": conv.id, "conversation_name": conv.name,
                "position": position, "branch": branch, "source_format": conv.source_format,
                **conv.extra}

    def _message(self, turn: Turn, position: int, branch: int, parent: str | None) -> MemoryRecord:
        metadata = self._metadata(turn.role, position, branch)
        metadata["parent_id"] = parent
        if turn.attachments:
            metadata["attachments"] = turn.attachments
        metadata.update(turn.extra)
        return MemoryRecord(id=turn.id, text=turn.text, namespace=self.conv.namespace,
                            metadata=metadata, created_at=turn.created_at,
                            updated_at=turn.updated_at, source_store=self.conv.source_store)

    def _exchange(self, group: list[tuple[Turn, int]], branch: int) -> MemoryRecord:
        turns = [turn for turn, _ in group]
        metadata = self._metadata("exchange", group[0][1], branch)
        metadata["turns"] = [{"role": t.role, "text": t.text, "id": t.id} for t in turns]
        attachments = [{**a, "message_id": t.id} for t in turns for a in t.attachments]
        if attachments:
            metadata["attachments"] = attachments
        text = "\n\n".join(f"[{t.role.upper()}]\n{t.text}" for t in turns if t.text is not None)
        times = [v for t in turns for v in (t.created_at, t.updated_at) if v is not None]
        return MemoryRecord(id=f"{self.conv.id}:{turns[0].id}", text=text or None,
                            namespace=self.conv.namespace, metadata=metadata,
                            created_at=turns[0].created_at, updated_at=max(times) if times else None,
                            source_store=self.conv.source_store)


# ---------------------------------------------------------------------------- the store


@dataclass(frozen=True)
class Part:
    """One JSON file of an export: its name and, for an object at its top level, the key of
    the array to split (None: the object is one element)."""

    name: str
    required: bool = False
    key: str | None = None


class ExportFiles:
    """Where an export's JSON files are: members of its zip (found by name at the shallowest
    depth, so a zip holding one top folder works), files of its folder, or one file given
    alone (then it is the conversations file and the other files are not read)."""

    def __init__(self, path: Path, scheme: str, main: str) -> None:
        self.path, self.scheme, self.main = path, scheme, main
        if not path.exists():
            raise UsageError(f"no such file or folder: {path}",
                             hint=f"{scheme} reads the export's zip, its folder or its {main}")
        self.zipped = path.is_file() and zipfile.is_zipfile(path)
        self.members: dict[str, str] = self._members() if self.zipped else {}
        if self.find(main) is None:
            where = "zip" if self.zipped else "folder"
            raise UsageError(f"{path}: the {where} holds no {main}",
                             hint=f"give the export's zip or folder (it has a {main}), or the file itself")

    def _members(self) -> dict[str, str]:
        found: dict[str, tuple[int, str]] = {}
        with self._zip() as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                member = PurePosixPath(info.filename)
                depth = len(member.parts)
                held = found.get(member.name)
                if held is not None and held[0] == depth and held[1] != info.filename:
                    raise UsageError(f"{self.path} holds two {member.name} files ({held[1]},"
                                     f" {info.filename})", hint="give the export's folder instead")
                if held is None or depth < held[0]:
                    found[member.name] = (depth, info.filename)
        return {name: member for name, (_, member) in found.items()}

    @contextmanager
    def _zip(self) -> Iterator[zipfile.ZipFile]:
        try:
            with zipfile.ZipFile(self.path) as archive:
                yield archive
        except zipfile.BadZipFile as err:
            raise DecodeError(f"the zip cannot be read: {err}", location=str(self.path),
                              hint="the download is damaged; download the export again") from None

    def find(self, name: str) -> str | None:
        """Where ``name`` is (a member name or a file path), or None."""
        if self.zipped:
            return self.members.get(name)
        if self.path.is_dir():
            return str(self.path / name) if (self.path / name).is_file() else None
        return str(self.path) if name == self.main else None

    @contextmanager
    def open(self, name: str, offset: int) -> Iterator[tuple[IO[bytes], str] | None]:
        """The file's bytes from ``offset`` and a name for messages; None when absent."""
        where = self.find(name)
        if where is None:
            yield None
            return
        if not self.zipped:
            with open(where, "rb") as handle:
                handle.seek(offset)
                yield handle, where
            return
        with self._zip() as archive:
            try:
                member = archive.open(where)
            except (RuntimeError, NotImplementedError) as err:  # encrypted, unknown compression
                raise UsageError(f"{self.path}: {where} cannot be read: {err}",
                                 hint="unpack the export with a zip tool and give its folder") from None
            with member:
                try:
                    if offset:
                        member.seek(offset)  # decompresses up to there: constant memory
                    yield member, f"{self.path}!{where}"
                except (zipfile.BadZipFile, zlib.error, EOFError) as err:
                    raise DecodeError(f"{where} cannot be read from the zip: {err}",
                                      location=str(self.path),
                                      hint="the download is damaged; download the export again") from None


def _choice(spec: StoreSpec, option: str, choices: tuple[str, ...]) -> str:
    value = spec.params.get(option, choices[0])
    if value not in choices:
        raise InvalidSpecError(f"{spec.scheme}: ?{option}={value} is not one of {', '.join(choices)}")
    return value


class ConversationExport(AtPath, Connector):
    """A conversation export as a read-only store (docs/connectors/claude-export.md)."""

    takes_path = True
    url_options = frozenset({"branches", "namespace", "unit"})
    capabilities = Capabilities(read=True, write=False, read_ahead=True, read_in_process=True)
    parts: ClassVar[tuple[Part, ...]]
    """The export's files in the order they are read; the first is the conversations file."""
    source_format: ClassVar[str]

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__(spec)
        if not spec.path:
            raise InvalidSpecError(f"{self.name} needs a path: {self.name}:///path/export.zip")
        self.path = Path(spec.path)
        self.unit = _choice(spec, "unit", ("message", "exchange"))
        self.branches = _choice(spec, "branches", ("all", "main"))
        self.namespace = spec.params.get("namespace")
        if self.namespace == "":
            raise InvalidSpecError(f"{self.name}: ?namespace= needs a name")

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"connector": self.name, "location": str(self.path.resolve()),
                                     "unit": self.unit, "branches": self.branches}
        if self.namespace is not None:
            described["namespace"] = self.namespace
        return described

    def conversation(self, conv_id: str, name: Any, default_namespace: str,
                     **extra: Any) -> Conversation:
        return Conversation(id=conv_id, name=name if isinstance(name, str) else None,
                            source_format=self.source_format,
                            namespace=self.namespace or default_namespace, source_store=self.name,
                            extra={k: v for k, v in extra.items() if v is not None})

    def element_items(self, part: Part, element: Any, index: int,
                      where: str) -> list[MemoryRecord | Reject]:
        """The records (and rejects) one parsed element of ``part`` becomes."""
        raise NotImplementedError

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        stage, offset, index, done = _cursor(after)
        files = ExportFiles(self.path, self.name, self.parts[0].name)
        items: list[MemoryRecord | Reject] = []
        for number, part in enumerate(self.parts):
            if number < stage:
                continue
            here = number == stage
            for position, item in self._part_items(files, part, offset if here else 0,
                                                   index if here else 0, done if here else 0):
                items.append(item)
                if len(items) >= batch_size:
                    yield Page(items, f"{number}:{position}")
                    items = []
        yield Page(items, None)

    def _part_items(self, files: ExportFiles, part: Part, offset: int, index: int,
                    done: int) -> Iterator[tuple[str, MemoryRecord | Reject]]:
        """Each item of the part with the cursor position after it: the offset and index of
        its element and how many of the element's items are handed over with it."""
        with files.open(part.name, offset) as opened:
            if opened is None:
                return
            stream, where = opened
            try:
                for start, raw in JsonElements(stream, where=where, key=part.key, start=offset):
                    produced = self._parse(part, raw, index, f"{where} element {index}")
                    for count, item in enumerate(produced, 1):
                        if count > done:
                            yield f"{start}:{index}:{count}", item
                    done = 0
                    index += 1
            except Truncated as cut:
                if done == 0:
                    yield f"{cut.offset}:{index}:1", Reject(
                        reason="truncated", detail=f"{cut}; the rest of the file is missing",
                        location=f"{where} element {index}",
                        record=cut.partial.decode("utf-8", "replace") or None)

    def _parse(self, part: Part, raw: bytes, index: int, where: str) -> list[MemoryRecord | Reject]:
        try:
            element = orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            return [Reject(reason="bad_json", detail=f"not valid JSON: {err}", location=where,
                           record=raw.decode("utf-8", "replace"))]
        return self.element_items(part, element, index, where)


def _cursor(after: str | None) -> tuple[int, int, int, int]:
    """``"<part>:<element offset>:<element index>:<items of it handed over>"``."""
    if not after:
        return 0, 0, 0, 0
    try:
        stage, offset, index, done = (int(p) for p in after.split(":"))
    except ValueError:
        raise UsageError(f"not a conversation-export cursor: {after!r}") from None
    return stage, offset, index, done

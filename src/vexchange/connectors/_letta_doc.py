"""A Letta Agent File (``.af``) document as records, and records as a document, with no I/O.
docs/connectors/letta.md has the record contract this module implements.

Every object of the file (the file itself, each agent, each message inside an agent, block, tool,
group, file, source, MCP server, skill, and each archival passage) is one record. The object
travels whole in ``metadata["letta"]``, less the one text field lifted into ``text`` (an agent's
``system``, a block's ``value``, a message's only text part, ...) and a passage's embedding
lifted into the default vector, so ``document -> records -> document`` gives the same document.

Letta's published schema has no archival passages (its roadmap) and no place for what a record
says beyond a Letta object, so the file carries two extension keys that Letta's importer ignores
(its ``AgentFileSchema`` takes no notice of unknown top-level keys): ``passages`` (Letta's own
Passage shape) and ``vexchange`` (each record that reading the file back would not give exactly:
a record from another source, a namespace chosen by the user, a vector on a block). Reading a
file checks nothing against them that Letta would need: they are ours.

Secrets never pass: tool environment variables and agent secrets keep their keys with empty
values (what Letta's own export writes), and an MCP server's token, headers and ``stdio_config``
environment are dropped (what Letta's export leaves out), whichever way a record goes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from .._time import format_timestamp, parse_timestamp
from ..record import DEFAULT_VECTOR, MemoryRecord, Vector
from ._base import Reject

__all__ = ["DOCUMENT_ID", "EXTENSION", "SECTIONS", "Section", "build_document", "default_namespace",
           "read_document", "scrub"]

EXTENSION = "vexchange"
"""The top-level key holding what only vexchange reads (see the module docstring)."""
DOCUMENT_ID = "agent-file"
"""The id of the record that holds the file's own fields (``metadata``, ``created_at``)."""
SOURCE = "letta-af"
SHORT_EMBEDDING = "letta_embedding_digits"
"""Metadata of a passage whose embedding the file wrote in float32's shortest decimal form."""


@dataclass(frozen=True)
class Section:
    key: str
    """The top-level key of the file (``blocks``), or ``messages`` inside an agent."""
    kind: str
    """``metadata["letta_kind"]`` of its records."""
    text: str | None
    """The object's field lifted into the record's text (when it is a string)."""


AGENTS = Section("agents", "agent", "system")
MESSAGES = Section("messages", "message", None)
PASSAGES = Section("passages", "passage", "text")
SECTIONS = (AGENTS, Section("groups", "group", "description"), Section("blocks", "block", "value"),
            Section("files", "file", "content"), Section("sources", "source", "description"),
            Section("tools", "tool", "description"), Section("mcp_servers", "mcp_server", None),
            Section("skills", "skill", None), PASSAGES)
"""In the order Letta's ``AgentFileSchema`` declares them (``passages`` is ours)."""
LETTA_REQUIRED = ("agents", "groups", "blocks", "files", "sources", "tools", "mcp_servers")
"""The lists Letta's schema requires: a file written from scratch has each, empty or not."""
_BY_KIND = {s.kind: s for s in (*SECTIONS, MESSAGES)}
DOCUMENT_KIND = "agent_file"
_SECRET_MAPS = ("tool_exec_environment_variables", "secrets")
_MCP_SECRETS = ("token", "custom_headers", "auth_header", "auth_token")


def default_namespace(kind: str) -> str:
    """``letta-messages``, ``letta-blocks``, ... (``letta-agent-file`` for the file's record)."""
    if kind == DOCUMENT_KIND:
        return "letta-agent-file"
    return "letta-" + _BY_KIND[kind].key.replace("_", "-")


# ----------------------------------------------------------------------------- secrets


def scrub(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The object with its secrets removed as Letta's export removes them (a new dict)."""
    if kind == "agent":
        obj = dict(obj)
        for key in _SECRET_MAPS:
            value = obj.get(key)
            if isinstance(value, dict):
                obj[key] = {k: "" for k in value}
            elif isinstance(value, list):  # the legacy list of {key, value} rows
                obj[key] = [{**row, "value": None} if isinstance(row, dict) else row for row in value]
    elif kind == "mcp_server":
        obj = {k: v for k, v in obj.items() if k not in _MCP_SECRETS}
        config = obj.get("stdio_config")
        if isinstance(config, dict) and "env" in config:
            obj["stdio_config"] = {k: v for k, v in config.items() if k != "env"}
    return obj


# ----------------------------------------------------------------------------- reading


def read_document(doc: dict[str, Any], *, namespace: str | None,
                  where: str) -> Iterator[MemoryRecord | Reject]:
    """The records of a parsed file, in file order: the file's own record, each agent followed
    by its messages, then each other list; then the records only the extension holds."""
    found = doc.get(EXTENSION)
    extension: dict[str, Any] = found if isinstance(found, dict) else {}
    overrides = _overrides(extension)
    if extension.get("document", True):
        rest = {k: v for k, v in doc.items() if k not in _SECTION_KEYS and k != EXTENSION}
        rest["letta_sections"] = [k for k in doc if k in _SECTION_KEYS]
        yield _finish(MemoryRecord(id=DOCUMENT_ID, metadata={"letta_kind": DOCUMENT_KIND, "letta": rest},
                                   namespace=namespace or default_namespace(DOCUMENT_KIND),
                                   source_store=SOURCE), overrides)
    for section in SECTIONS:
        values = doc.get(section.key)
        if not isinstance(values, list):
            continue
        for position, obj in enumerate(values):
            at = f"{where} {section.key}[{position}]"
            item = object_record(section, obj, position, namespace=namespace, where=at)
            yield _finish(item, overrides) if isinstance(item, MemoryRecord) else item
            if section is AGENTS and isinstance(item, MemoryRecord):
                for number, message in enumerate(obj.get("messages") or []):
                    got = object_record(MESSAGES, message, number, namespace=namespace, agent=item.id,
                                        where=f"{at} messages[{number}]")
                    yield _finish(got, overrides) if isinstance(got, MemoryRecord) else got
    for entry in extension.get("unplaced") or []:
        yield _decode(entry)


_SECTION_KEYS = frozenset(s.key for s in SECTIONS)


def object_record(section: Section, obj: Any, position: int, *, namespace: str | None,
                  where: str, agent: str | None = None) -> MemoryRecord | Reject:
    """The record of one object of the file (its secrets removed first)."""
    ns = namespace or default_namespace(section.kind)
    if not isinstance(obj, dict):
        return Reject(reason="not_an_object", detail=f"{where} is not a JSON object", namespace=ns,
                      location=where, record=obj)
    rest = dict(scrub(section.kind, obj))  # a copy: the caller's object stays whole
    if section is AGENTS and isinstance(rest.get("messages"), list):
        rest["messages"] = []  # each message is a record of its own
    record_id = rest["id"] if isinstance(rest.get("id"), str) and rest["id"] else f"{section.kind}:{position}"
    metadata: dict[str, Any] = {"letta_kind": section.kind, "letta_position": position}
    text: str | None = None
    if section is MESSAGES:
        text = _lift_message(rest, metadata, agent)
    elif section.text is not None and isinstance(rest.get(section.text), str):
        text = rest.pop(section.text)
    vectors: dict[str, Vector] = {}
    if section is PASSAGES and _is_numbers(rest.get("embedding")):
        arr = np.asarray(rest["embedding"], dtype=np.float64)
        single = arr.astype("<f4")
        exact = bool(np.isfinite(arr).all()) and np.array_equal(single.astype(np.float64), arr)
        if not exact and bool(np.isfinite(arr).all()) and np.array_equal(_shortest(single), arr):
            metadata[SHORT_EMBEDDING] = "float32"  # Letta's API writes float32s this way
        elif not exact:
            return Reject(reason="not_float32", detail=f"{where}: the embedding holds values that are not"
                          " float32 numbers, which vexchange keeps bit for bit", id=record_id,
                          namespace=ns, location=where, record=obj)
        rest.pop("embedding")
        config = rest.get("embedding_config")
        model = config.get("embedding_model") if isinstance(config, dict) else None
        vectors[DEFAULT_VECTOR] = Vector(single.tobytes(), model if isinstance(model, str) else None)
    metadata["letta"] = rest
    return MemoryRecord(id=record_id, text=text, vectors=vectors, namespace=ns, metadata=metadata,
                        created_at=_time(obj.get("created_at")), updated_at=_time(obj.get("updated_at")),
                        source_store=SOURCE)


def _lift_message(rest: dict[str, Any], metadata: dict[str, Any], agent: str | None) -> str | None:
    """A message's role, model and agent (its conversation) into the metadata an Event grain
    reads; its one text part into the text (the part stays, without its ``text``)."""
    if isinstance(rest.get("role"), str):
        metadata["role"] = rest.pop("role")
    if agent is not None:
        metadata["conversation_id"] = agent
    if isinstance(rest.get("model"), str):
        metadata["model"] = rest.pop("model")
    content = rest.get("content")
    if isinstance(content, str):
        return str(rest.pop("content"))
    if isinstance(content, list):
        texts = [i for i, part in enumerate(content) if isinstance(part, dict) and part.get("type") == "text"
                 and isinstance(part.get("text"), str)]
        if len(texts) == 1:
            part = dict(content[texts[0]])
            text = part.pop("text")
            rest["content"] = [*content[:texts[0]], part, *content[texts[0] + 1:]]
            return str(text)
    return None


def _shortest(single: np.ndarray) -> np.ndarray:
    """Each float32 as the double of its shortest decimal form (``0.0022848654``), which is how
    Letta's REST API writes embeddings; parsing that text gives back the same float32."""
    return np.array([float(str(v)) for v in single], dtype=np.float64)


def _embedding_json(record: MemoryRecord, vector: Vector) -> list[float]:
    """A passage's embedding as numbers in the form its file had them: float32 values written
    exactly as doubles (vexchange's, and Letta's server types'), or their shortest decimal form
    (Letta's REST API) when the record says so; either reads back as the same float32s."""
    if (record.metadata or {}).get(SHORT_EMBEDDING) == "float32":
        return [float(v) for v in _shortest(np.frombuffer(vector.data, dtype="<f4"))]
    return vector.tolist()


def _is_numbers(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def _time(value: Any) -> int | None:
    """Epoch ms of a Letta time, for ``--since``/``--until`` and Event grains; the exact text stays
    in the object (Letta writes microseconds, a record holds milliseconds)."""
    try:
        return parse_timestamp(value) if isinstance(value, str) else None
    except ValueError:
        return None


# ----------------------------------------------------------------------------- the extension


def _encode(record: MemoryRecord) -> dict[str, Any]:
    return msgspec.to_builtins(record)  # type: ignore[no-any-return]


def _decode(entry: Any) -> MemoryRecord | Reject:
    try:
        return msgspec.convert(entry, MemoryRecord)
    except (msgspec.ValidationError, TypeError) as err:
        return Reject(reason="bad_extension", detail=f"a {EXTENSION} record cannot be read: {err}",
                      record=entry)


def _overrides(extension: dict[str, Any]) -> dict[tuple[str, str], Any]:
    found: dict[tuple[str, str], Any] = {}
    for entry in extension.get("records") or []:
        if isinstance(entry, dict) and isinstance(entry.get("kind"), str) \
                and isinstance(entry.get("id"), str):
            found[entry["kind"], entry["id"]] = entry
    return found


def _finish(record: MemoryRecord, overrides: dict[tuple[str, str], Any]) -> MemoryRecord | Reject:
    """The record as the file says it, or as the extension says it was written (its object and
    vector data taken from the file where the entry leaves them out)."""
    kind = (record.metadata or {}).get("letta_kind")
    entry = overrides.get((str(kind), record.id))
    if entry is None:
        return record
    exact = _decode(entry.get("record"))
    if isinstance(exact, Reject):
        return exact
    metadata = exact.metadata
    if entry.get("object") == "file" and isinstance(metadata, dict):
        metadata = {**metadata, "letta": (record.metadata or {}).get("letta")}
    vectors = {name: Vector(record.vectors[name].data, vec.model)
               if not vec.data and name in record.vectors else vec for name, vec in exact.vectors.items()}
    return exact.replace(metadata=metadata, vectors=vectors)


# ----------------------------------------------------------------------------- writing


@dataclass
class _Placed:
    section: Section
    record: MemoryRecord
    obj: dict[str, Any]
    order: tuple[float, int]


@dataclass
class Built:
    """What ``build_document`` made: the document, and what it could only keep in the extension."""

    document: dict[str, Any]
    unplaced: int = 0
    overrides: int = 0


def letta_object(record: MemoryRecord) -> tuple[Section | None, dict[str, Any]]:
    """The section and Letta object a record is written as: its own object when it is one of a
    Letta file's records, else an archival passage made from it."""
    metadata = record.metadata if isinstance(record.metadata, dict) else {}
    kind = metadata.get("letta_kind")
    letta = metadata.get("letta")
    if kind == DOCUMENT_KIND and isinstance(letta, dict):
        return None, dict(letta)
    if isinstance(kind, str) and kind in _BY_KIND and isinstance(letta, dict):
        section = _BY_KIND[kind]
        obj = dict(letta)
        if section is MESSAGES:
            for key in ("role", "model"):
                if key in metadata and key not in obj:
                    obj[key] = metadata[key]
            if record.text is not None:
                obj["content"] = _with_text(obj.get("content"), record.text)
        elif section.text is not None and section.text not in obj and record.text is not None:
            obj[section.text] = record.text
        vector = record.vectors.get(DEFAULT_VECTOR)
        if section is PASSAGES and vector is not None and "embedding" not in obj:
            obj["embedding"] = _embedding_json(record, vector)
        return section, scrub(kind, obj)
    return PASSAGES, _passage(record)


def _with_text(content: Any, text: str) -> Any:
    """The message's content with its text put back (into the one text part without text)."""
    if isinstance(content, list):
        for i, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "text" and "text" not in part:
                return [*content[:i], {**part, "text": text}, *content[i + 1:]]
    if content is None:
        return text
    return content


def _passage(record: MemoryRecord) -> dict[str, Any]:
    """An archival passage (Letta's Passage shape) made from a record of another source."""
    vector = record.vector
    obj: dict[str, Any] = {"id": record.id, "text": record.text or "",
                           "embedding": vector.tolist() if vector is not None else None,
                           "embedding_config": None,
                           "created_at": format_timestamp(record.created_at) if record.created_at is not None
                           else None,
                           "metadata": record.metadata if isinstance(record.metadata, dict) else {},
                           "tags": None}
    if vector is not None and vector.model:
        obj["embedding_config"] = {"embedding_model": vector.model, "embedding_dim": vector.dims,
                                   "embedding_endpoint_type": "openai"}
    return obj


def build_document(records: Iterator[MemoryRecord]) -> Built:
    """The file the records make, in Letta's order (each list by the records' positions, then in
    the order they came). A record that reading the file back would not give exactly is kept in
    the extension, and so is a message whose agent is not among the records."""
    document: tuple[MemoryRecord, dict[str, Any]] | None = None
    placed: dict[str, list[_Placed]] = {}
    for arrival, incoming in enumerate(records):
        record = _scrubbed(incoming)
        section, obj = letta_object(record)
        if section is None:
            document = (record, obj)
            continue
        position = (record.metadata or {}).get("letta_position")
        order = (float(position) if isinstance(position, int) and not isinstance(position, bool)
                 else math.inf, arrival)
        placed.setdefault(section.key, []).append(_Placed(section, record, obj, order))
    for entries in placed.values():
        entries.sort(key=lambda p: p.order)
    checks: list[tuple[MemoryRecord, MemoryRecord | Reject]] = []
    agents = {p.record.id: p for p in placed.get("agents", [])}
    messages: dict[str, list[_Placed]] = {}
    unplaced: list[dict[str, Any]] = []
    for message in placed.pop("messages", []):
        agent_id = (message.record.metadata or {}).get("conversation_id")
        if isinstance(agent_id, str) and agent_id in agents:
            messages.setdefault(agent_id, []).append(message)
        else:
            unplaced.append(_encode(message.record))
    for agent_id, owned in messages.items():
        owner = agents[agent_id].obj
        owner["messages"] = [*(owner.get("messages") or []), *(m.obj for m in owned)]
        start = len(owner["messages"]) - len(owned)
        checks.extend((m.record, object_record(MESSAGES, m.obj, start + i, namespace=None, where="",
                                               agent=agent_id)) for i, m in enumerate(owned))
    for key, entries in placed.items():
        section = next(s for s in SECTIONS if s.key == key)
        checks.extend((p.record, object_record(section, p.obj, i, namespace=None, where=""))
                      for i, p in enumerate(entries))
    rest = document[1] if document is not None else None
    keys = (rest or {}).get("letta_sections")
    sections = [k for k in keys if k in _SECTION_KEYS] if isinstance(keys, list) else list(LETTA_REQUIRED)
    sections += [k for k in placed if k not in sections]
    doc: dict[str, Any] = {s.key: [p.obj for p in placed.get(s.key, [])] for s in SECTIONS
                           if s.key in sections}
    if rest is None:
        doc["metadata"] = {}
    else:
        doc.update({k: v for k, v in rest.items() if k != "letta_sections"})
        read_back = {**{k: v for k, v in rest.items() if k != "letta_sections"},
                     "letta_sections": [k for k in doc if k in _SECTION_KEYS]}
        checks.append((document[0] if document else _never(), _document_record(read_back)))
    overrides = [entry for record, derived in checks if (entry := _difference(derived, record)) is not None]
    extension: dict[str, Any] = {}
    if rest is None:
        extension["document"] = False
    if overrides:
        extension["records"] = overrides
    if unplaced:
        extension["unplaced"] = unplaced
    if extension:
        doc[EXTENSION] = {"v": 1, **extension}
    return Built(doc, unplaced=len(unplaced), overrides=len(overrides))


def _never() -> MemoryRecord:  # pragma: no cover - only reached with a document record
    raise AssertionError("no document record")


def _scrubbed(record: MemoryRecord) -> MemoryRecord:
    """The record with the secrets of its Letta object removed (before anything keeps it)."""
    metadata = record.metadata
    if not isinstance(metadata, dict) or not isinstance(metadata.get("letta"), dict):
        return record
    kind = metadata.get("letta_kind")
    clean = scrub(str(kind), metadata["letta"])
    return record if clean == metadata["letta"] else record.replace(metadata={**metadata, "letta": clean})


def _document_record(rest: dict[str, Any]) -> MemoryRecord:
    return MemoryRecord(id=DOCUMENT_ID, metadata={"letta_kind": DOCUMENT_KIND, "letta": rest},
                        namespace=default_namespace(DOCUMENT_KIND), source_store=SOURCE)


def _difference(derived: MemoryRecord | Reject, record: MemoryRecord) -> dict[str, Any] | None:
    """The extension entry for a record that reading its object back would not give exactly
    (None when it would): the whole record, less its object when the file holds the same one
    and less the vector data the object holds."""
    if not isinstance(derived, MemoryRecord):
        raise AssertionError(f"a written object does not read back: {derived.detail}")
    if derived == record:
        return None
    exact = record
    entry: dict[str, Any] = {"kind": str((derived.metadata or {}).get("letta_kind")), "id": derived.id}
    metadata = record.metadata
    if isinstance(metadata, dict) and "letta" in metadata and metadata["letta"] == (
            derived.metadata or {}).get("letta"):
        exact = exact.replace(metadata={k: v for k, v in metadata.items() if k != "letta"})
        entry["object"] = "file"
    held = derived.vectors
    exact = exact.replace(vectors={n: Vector(b"", v.model) if n in held and held[n].data == v.data else v
                                   for n, v in record.vectors.items()})
    entry["record"] = _encode(exact)
    return entry

"""Records as conversation turns: what ``vex convert`` reads from each record.

The record contract (docs/convert.md): a message record carries ``metadata.role``,
``metadata.conversation_id``, ``metadata.conversation_name`` and ``metadata.position`` (its
0-based place in the conversation); an exchange record (role ``"exchange"``) carries
``metadata.turns``, a list of ``{"role", "text", "id"}`` in order, and stands for those turns.
A record with no conversation id is a conversation of its own (keyed by its record id, as Vex
does); a record with no role takes the default role (``"user"``, Vex's default).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from ..record import MemoryRecord

__all__ = ["Conversation", "Row", "Turn", "normalise_role", "record_rows"]

_ROLES = {"human": "user", "user": "user", "assistant": "assistant", "system": "system"}


def normalise_role(raw: str) -> str:
    """A role as the chat formats name it: ``human`` and ``user`` are ``user`` (Claude exports
    say ``human``); ``assistant`` and ``system`` stay; any other role (``tool``, ``function``)
    is kept, lower-cased, for each format to express or refuse. Vex turns every role it does
    not know, ``system`` included, into ``user``: a tool's output would then train as if the
    person had said it."""
    lowered = raw.strip().lower()
    return _ROLES.get(lowered, lowered)


class Turn(NamedTuple):
    """One message of a conversation, in the order the conversation had."""

    id: str
    """The record id, or for a turn of an exchange record its own id (else ``<record id>#<i>``)."""
    role: str
    """Normalised (:func:`normalise_role`)."""
    raw_role: str
    """As the record gave it (or the default role), for the rejects file."""
    text: str


class Conversation(NamedTuple):
    """A conversation as a format sees it: ``turns`` are those left after ``--drop-role`` and
    empty texts; ``all_turns`` every turn read, for the rejects file."""

    id: str
    name: str | None
    turns: list[Turn]
    all_turns: list[Turn]


class Row(NamedTuple):
    """One turn as it waits in the spill (``_spill.py``): its conversation key and sort keys."""

    key: str
    """``c:<conversation_id>``, or ``r:<record id>`` for a record that is its own conversation."""
    name: str | None
    position: int | None
    created_at: int | None
    record_id: str
    sub: int
    """The turn's index within an exchange record (0 for a message record)."""
    turn: Turn


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _position(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _conversation_id(value: Any) -> str | None:
    if isinstance(value, bool) or value is None or value == "":
        return None
    if isinstance(value, (str, int)):
        return str(value)
    return None


def _exchange_turns(value: Any) -> list[Any] | None:
    """``metadata.turns``: a list, or the same list written as a JSON string (a format that
    keeps only flat metadata may carry it so)."""
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
    return value if isinstance(value, list) else None


def record_rows(record: MemoryRecord, default_role: str) -> list[Row]:
    """The turns a record stands for: one for a message record, one per entry of
    ``metadata.turns`` for an exchange record. An exchange record whose ``turns`` is missing or
    not a list of objects stays one turn with the role ``exchange``, which no chat format
    expresses, so its conversation is refused with that reason rather than silently emptied."""
    meta = record.metadata or {}
    raw_role = meta.get("role")
    role = raw_role if isinstance(raw_role, str) and raw_role.strip() else default_role
    conversation = _conversation_id(meta.get("conversation_id"))
    key = f"c:{conversation}" if conversation is not None else f"r:{record.id}"
    name = meta.get("conversation_name")
    name = name if isinstance(name, str) and name else None
    position = _position(meta.get("position"))

    def row(sub: int, turn: Turn) -> Row:
        return Row(key, name, position, record.created_at, record.id, sub, turn)

    if normalise_role(role) == "exchange":
        turns = _exchange_turns(meta.get("turns"))
        if turns is not None and turns and all(isinstance(t, dict) for t in turns):
            rows = []
            for i, entry in enumerate(turns):
                turn_role = entry.get("role")
                turn_role = turn_role if isinstance(turn_role, str) and turn_role.strip() else default_role
                turn_id = entry.get("id")
                tid = str(turn_id) if isinstance(turn_id, (str, int)) and not isinstance(turn_id, bool) \
                    and str(turn_id) else f"{record.id}#{i}"
                rows.append(row(i, Turn(tid, normalise_role(turn_role), turn_role, _text(entry.get("text")))))
            return rows
    return [row(0, Turn(record.id, normalise_role(role), role, _text(record.text)))]


def display_id(key: str) -> str:
    """The conversation id a key stands for (the record id for a record of its own)."""
    return key[2:]

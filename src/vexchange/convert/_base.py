"""What every output format shares: the rules it checks, how a refusal is counted, and the
rejects file (one JSON line per conversation refused or left out, holding all its turns)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import orjson

from .._atomic import AtomicOutput
from ..connectors._base import Reject
from ._turns import Conversation, Turn

__all__ = ["Format", "Options", "PerConversation", "Refusal", "Tally", "dumps"]


@dataclass(frozen=True)
class Options:
    """The options a format may read; ``convert`` refuses one that its format does not take."""

    system_prompt: str | None = None
    max_tokens: int | None = None
    separator: str | None = None


class Refusal(NamedTuple):
    """Why a format cannot express a conversation: a stable ``reason`` (counted) and a
    ``detail`` a person can act on (in the rejects file)."""

    reason: str
    detail: str


def dumps(value: Any) -> bytes:
    """Compact JSON, as Vex's ``JSON.stringify`` writes it (no spaces, non-ASCII as is)."""
    return orjson.dumps(value)


def _turn(turn: Turn) -> dict[str, str]:
    return {"id": turn.id, "role": turn.raw_role, "text": turn.text}


class Tally:
    """The counts of a conversion and its rejects file, opened at the first reject (atomically,
    like the output: it is renamed into place only when the run completes)."""

    def __init__(self, rejects_path: Path) -> None:
        self.rejects_path = rejects_path
        self._rejects: AtomicOutput | None = None
        self.refused: Counter[str] = Counter()
        self.unreadable: Counter[str] = Counter()
        self.turns_dropped: Counter[str] = Counter()
        self.written = self.turns_written = self.over_budget = self.truncated = 0

    def _reject(self, line: dict[str, Any]) -> None:
        if self._rejects is None:
            self._rejects = AtomicOutput(self.rejects_path)
        self._rejects.write(orjson.dumps(line, default=str, option=orjson.OPT_APPEND_NEWLINE))

    def unreadable_entry(self, reject: Reject) -> None:
        self.unreadable[reject.reason] += 1
        fields = {name: getattr(reject, name) for name in reject.__struct_fields__}
        self._reject({"kind": "unreadable", **fields})

    def refuse(self, conversation: Conversation, refusal: Refusal) -> None:
        self.refused[refusal.reason] += 1
        self._conversation("refused", conversation, refusal, conversation.all_turns)

    def left_out(self, conversation: Conversation, refusal: Refusal, turns: list[Turn], *,
                 whole: bool) -> None:
        """A conversation, or the end of one (``turns``), that a budget left out."""
        if whole:
            self.over_budget += 1
        else:
            self.truncated += 1
        self._conversation("left_out" if whole else "truncated", conversation, refusal, turns)

    def _conversation(self, kind: str, conversation: Conversation, refusal: Refusal,
                      turns: list[Turn]) -> None:
        self._reject({"kind": kind, "conversation_id": conversation.id,
                      "conversation_name": conversation.name, "reason": refusal.reason,
                      "detail": refusal.detail, "turns": [_turn(t) for t in turns]})

    def wrote(self, turns: int) -> None:
        self.written += 1
        self.turns_written += turns

    @property
    def has_rejects(self) -> bool:
        return self._rejects is not None

    def commit(self) -> None:
        """The rejects file into place (before the output, so an output never looks complete
        without the rejects that go with it); an earlier run's rejects file, when this run has
        none, is removed."""
        if self._rejects is not None:
            self._rejects.commit()
        else:
            self.rejects_path.unlink(missing_ok=True)

    def discard(self) -> None:
        if self._rejects is not None:
            self._rejects.discard()


class Format(ABC):
    """One output format. ``write`` is given the conversations in order (each with the turns
    left after ``--drop-role`` and empty texts) and writes the output's bytes."""

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    extension: ClassVar[str]
    description: ClassVar[str]
    documentation: ClassVar[str]
    roles: ClassVar[frozenset[str] | None] = frozenset({"user", "assistant", "system"})
    """The roles (normalised) the format can express; None for all."""
    takes: ClassVar[frozenset[str]] = frozenset({"system_prompt"})
    """The ``Options`` fields it reads."""

    def __init__(self, options: Options) -> None:
        self.options = options

    @abstractmethod
    def write(self, conversations: Iterable[Conversation], out: AtomicOutput, tally: Tally) -> None:
        """Write the output, counting in ``tally`` what is written, refused or left out."""

    def check(self, conversation: Conversation) -> Refusal | None:
        """The rules every format shares: some text, and only roles it can express."""
        if self.roles is not None:
            foreign = sorted({t.role for t in conversation.turns} - self.roles)
            if foreign:
                return Refusal("unsupported_role",
                               f"{self.name} cannot express the role {', '.join(map(repr, foreign))};"
                               f" leave such turns out with --drop-role {foreign[0]}")
        if not conversation.turns:
            return Refusal("no_text", "no turn has text")
        return None


class PerConversation(Format):
    """A format that writes each conversation on its own (every format but openai-context)."""

    def write(self, conversations: Iterable[Conversation], out: AtomicOutput, tally: Tally) -> None:
        for conversation in conversations:
            refusal = self.check(conversation)
            if refusal is None:
                try:
                    rendered = self.render(conversation)
                except (orjson.JSONEncodeError, UnicodeEncodeError) as err:
                    rendered = Refusal("unencodable_text",
                                       f"a turn's text cannot be written (a lone surrogate?): {err}")
            else:
                rendered = refusal
            if isinstance(rendered, Refusal):
                tally.refuse(conversation, rendered)
                continue
            out.write(rendered)
            tally.wrote(len(conversation.turns))

    @abstractmethod
    def render(self, conversation: Conversation) -> bytes | Refusal:
        """The conversation's bytes in this format, or why it cannot be written."""


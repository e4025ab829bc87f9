"""``plain-text`` (alias ``txt``): a transcript to read, Vex's layout: per conversation a
separator line, ``CONVERSATION: <name>``, ``ID: <id>``, a blank line, then each turn as
``[LABEL]``, its text and a blank line; conversations separated by a blank line. Labels are
``HUMAN`` and ``ASSISTANT`` as in Vex; any other role is shown by its own name (``[SYSTEM]``,
``[TOOL]``), where Vex labels every role but ``user`` ``ASSISTANT``, ``human`` included."""

from __future__ import annotations

from ._base import PerConversation, Refusal
from ._turns import Conversation

__all__ = ["PlainText"]

SEPARATOR = "═" * 72
_LABELS = {"user": "HUMAN", "assistant": "ASSISTANT"}


class PlainText(PerConversation):
    name = "plain-text"
    aliases = ("txt",)
    extension = "txt"
    description = "Human-readable transcript: one block per conversation, turns labelled by role."
    documentation = "https://www.npmjs.com/package/@vektormemory/vex"
    roles = None
    takes = frozenset({"separator"})

    def render(self, conversation: Conversation) -> bytes | Refusal:
        separator = self.options.separator if self.options.separator is not None else SEPARATOR
        lines = [separator, f"CONVERSATION: {conversation.name or 'Untitled'}", f"ID: {conversation.id}", ""]
        for turn in conversation.turns:
            lines += [f"[{_LABELS.get(turn.role, turn.role.upper())}]", turn.text, ""]
        return ("\n".join(lines) + "\n").encode("utf-8", "strict")

"""``openai-finetune``: OpenAI's chat fine-tuning file, one ``{"messages": [...]}`` line per
conversation (https://platform.openai.com/docs/guides/supervised-fine-tuning). A training
example needs a user turn and an assistant turn (the assistant turns are what it trains on), so
a conversation lacking either is refused, as Vex does; system turns stay in place, after the
``--system-prompt`` when one is given."""

from __future__ import annotations

from typing import ClassVar

from ._base import PerConversation, Refusal, dumps
from ._turns import Conversation

__all__ = ["OpenAIFinetune", "chat_messages"]


def chat_messages(conversation: Conversation, system_prompt: str | None) -> list[dict[str, str]]:
    """``{role, content}`` messages, the system prompt first when given (shared with
    generic-chat, whose lines are the same messages)."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.extend({"role": t.role, "content": t.text} for t in conversation.turns)
    return messages


class OpenAIFinetune(PerConversation):
    name = "openai-finetune"
    extension = "jsonl"
    description = ("OpenAI fine-tuning JSONL: one {messages: [{role, content}]} line per conversation,"
                   " each with a user and an assistant turn.")
    documentation = "https://platform.openai.com/docs/guides/supervised-fine-tuning"

    rules: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("user", "no_user_turn", "a fine-tuning example needs a user turn"),
        ("assistant", "no_assistant_turn", "a fine-tuning example needs an assistant turn to train on"),
    )

    def render(self, conversation: Conversation) -> bytes | Refusal:
        roles = {t.role for t in conversation.turns}
        for role, reason, detail in self.rules:
            if role not in roles:
                return Refusal(reason, detail)
        return dumps({"messages": chat_messages(conversation, self.options.system_prompt)}) + b"\n"

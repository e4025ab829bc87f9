"""``generic-chat`` (aliases ``perplexity``, ``groq``, ``mistral``, ``together``): the
OpenAI-compatible ``{"messages": [{role, content}]}`` line that those providers' chat and
fine-tuning APIs take (e.g. https://docs.together.ai/docs/fine-tuning/data-preparation), with
Vex's ``_meta`` (conversation id and name) beside it. A conversation with no user or assistant
turn (nothing but system text) is refused, as Vex does."""

from __future__ import annotations

from ._base import PerConversation, Refusal, dumps
from ._turns import Conversation
from .openai_finetune import chat_messages

__all__ = ["GenericChat"]


class GenericChat(PerConversation):
    name = "generic-chat"
    aliases = ("perplexity", "groq", "mistral", "together")
    extension = "jsonl"
    description = ("OpenAI-compatible {messages: [{role, content}], _meta} JSONL for Perplexity, Groq,"
                   " Mistral, Together and other providers taking the OpenAI chat format.")
    documentation = "https://platform.openai.com/docs/api-reference/chat/create"

    def render(self, conversation: Conversation) -> bytes | Refusal:
        if all(t.role == "system" for t in conversation.turns):
            return Refusal("no_chat_turn", "only system text: no user or assistant turn")
        return dumps({"messages": chat_messages(conversation, self.options.system_prompt),
                      "_meta": {"conversation_id": conversation.id,
                                "conversation_name": conversation.name or "Untitled"}}) + b"\n"

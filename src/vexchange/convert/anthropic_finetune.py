"""``anthropic-finetune`` (alias ``anthropic``): Claude fine-tuning on Amazon Bedrock, one
``{"system"?, "messages": [...]}`` line per conversation
(https://platform.claude.com/cookbook/finetuning-finetuning-on-bedrock and
https://docs.aws.amazon.com/bedrock/latest/userguide/model-customization-prepare.html): user and
assistant turns alternate, the first is the user's and the last the assistant's, and no other
key is allowed. Consecutive turns of one role are merged (joined by a blank line, as Vex does);
system turns go into ``system`` after ``--system-prompt``. Vex refuses a conversation that
starts with the assistant but writes one that ends with the user, which Bedrock rejects; both
are refused here, with their reason."""

from __future__ import annotations

from typing import Any, ClassVar

from ._base import PerConversation, Refusal, dumps
from ._turns import Conversation

__all__ = ["AnthropicFinetune"]


class AnthropicFinetune(PerConversation):
    name = "anthropic-finetune"
    aliases = ("anthropic",)
    extension = "jsonl"
    description = ("Anthropic Messages JSONL for Claude fine-tuning on Bedrock: alternating user/assistant"
                   " turns (same-role turns merged), user first, assistant last, system on top.")
    documentation = "https://platform.claude.com/cookbook/finetuning-finetuning-on-bedrock"
    joiner: ClassVar[str] = "\n\n"

    def render(self, conversation: Conversation) -> bytes | Refusal:
        system = [self.options.system_prompt] if self.options.system_prompt else []
        messages: list[dict[str, str]] = []
        for turn in conversation.turns:
            if turn.role == "system":
                system.append(turn.text)
            elif messages and messages[-1]["role"] == turn.role:
                messages[-1]["content"] += self.joiner + turn.text
            else:
                messages.append({"role": turn.role, "content": turn.text})
        if not messages:
            return Refusal("no_chat_turn", "only system text: no user or assistant turn")
        if messages[0]["role"] != "user":
            return Refusal("starts_with_assistant", "the first message must be the user's")
        if messages[-1]["role"] != "assistant":
            return Refusal("ends_with_user", "the last message must be the assistant's")
        line: dict[str, Any] = {"messages": messages}
        if system:
            line["system"] = self.joiner.join(system)
        return dumps(line) + b"\n"

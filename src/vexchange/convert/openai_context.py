"""``openai-context``: one ``{"messages": [...]}`` JSON document for the Chat Completions API
(https://platform.openai.com/docs/api-reference/chat/create), the history to continue from,
within a token budget.

As in Vex: a system message first (``--system-prompt``, default Vex's own; an empty one gives
none), then the turns, conversation after conversation (``--conversation-id`` picks some),
pretty-printed with two spaces; tokens are estimated as 4 characters each, the system prompt
included. Where Vex adds turns while the budget is not yet spent (so the last one may overrun
it by any amount), a turn is written here only when it fits whole, and writing stops at the
first that does not: the history stays contiguous and within ``--max-tokens``. What the budget
leaves out is counted (``over_budget``, ``truncated``, ``turns_dropped.over_token_budget``)
and listed in the rejects file; it is what the user asked for, so it is not a refusal.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from .._atomic import AtomicOutput
from ..errors import UsageError
from ._base import Format, Refusal, Tally
from ._turns import Conversation

__all__ = ["DEFAULT_SYSTEM_PROMPT", "OpenAIContext"]

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant. The following is prior conversation history."
CHARS_PER_TOKEN = 4


def _message(role: str, content: str) -> bytes:
    return (b'    {\n      "role": ' + orjson.dumps(role) + b',\n      "content": '
            + orjson.dumps(content) + b"\n    }")


class OpenAIContext(Format):
    name = "openai-context"
    extension = "json"
    description = ("OpenAI chat context: one {messages: [...]} JSON document for POST /v1/chat/completions,"
                   " within --max-tokens (4 characters a token).")
    documentation = "https://platform.openai.com/docs/api-reference/chat/create"
    takes = frozenset({"system_prompt", "max_tokens"})

    estimated_tokens: int | None = None

    def write(self, conversations: Iterable[Conversation], out: AtomicOutput, tally: Tally) -> None:
        prompt = self.options.system_prompt
        prompt = DEFAULT_SYSTEM_PROMPT if prompt is None else prompt
        budget = None if self.options.max_tokens is None else self.options.max_tokens * CHARS_PER_TOKEN
        used = len(prompt)
        if budget is not None and used > budget:
            raise UsageError(f"the system prompt alone ({used} characters, about {-(-used // 4)} tokens)"
                             f" is over --max-tokens {self.options.max_tokens}")
        out.write(b'{\n  "messages": [')
        written = 0

        def put(message: bytes) -> None:
            nonlocal written
            out.write((b",\n" if written else b"\n") + message)
            written += 1

        if prompt:
            put(_message("system", prompt))
        spent = False
        for conversation in conversations:
            refusal = self.check(conversation)
            if refusal is not None:
                tally.refuse(conversation, refusal)
                continue
            try:
                rendered = [_message(t.role, t.text) for t in conversation.turns]
            except orjson.JSONEncodeError as err:
                tally.refuse(conversation,
                             Refusal("unencodable_text", f"a turn's text cannot be written: {err}"))
                continue
            kept = 0
            for turn, data in zip(conversation.turns, rendered, strict=True):
                if spent or (budget is not None and used + len(turn.text) > budget):
                    spent = True
                    break
                put(data)
                used += len(turn.text)
                kept += 1
            if kept < len(rendered):
                omitted = conversation.turns[kept:]
                tally.turns_dropped["over_token_budget"] += len(omitted)
                tally.left_out(conversation, Refusal(
                    "over_token_budget", f"{len(omitted)} of {len(rendered)} turns did not fit in"
                    f" --max-tokens {self.options.max_tokens}"), omitted, whole=kept == 0)
            if kept:
                tally.wrote(kept)
        out.write(b"\n  ]\n}\n" if written else b"]\n}\n")
        self.estimated_tokens = -(-used // CHARS_PER_TOKEN)

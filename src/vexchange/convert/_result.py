"""What ``vex convert`` returns: a typed result (its fields are described in docs/convert.md)."""

from __future__ import annotations

from ..results import Result

__all__ = ["ConvertResult", "FormatInfo"]


class ConvertResult(Result, frozen=True, kw_only=True):
    """Every conversation read is written (whole or, with a token budget, in part), refused
    with a counted reason, or left out by the budget; every refused or left-out one is in the
    rejects file whole. ``complete`` is False when a conversation was refused or a source
    entry was unreadable (the CLI exits 4 then, unless ``--allow-skips``)."""

    format: str
    """The format's own name (an alias given is resolved: ``groq`` is ``generic-chat``)."""
    source: str
    """The source's location, without secrets."""
    output: str
    rejects_file: str | None
    """Where the refused and left-out conversations and the unreadable entries are; None when
    there were none."""
    records: int
    """Records read from the source (after ``conversation_ids``)."""
    filtered: int
    """Records left out because their conversation is not one of ``conversation_ids``."""
    unreadable: dict[str, int]
    """Source entries that could not be read, by reason."""
    conversations: int
    written: int
    """Conversations written, whole or in part."""
    refused: dict[str, int]
    """Conversations the format cannot express, by reason (see docs/convert.md)."""
    over_budget: int
    """openai-context: conversations left out whole because the token budget was spent."""
    truncated: int
    """openai-context: conversations written in part, the budget spent within them."""
    turns_written: int
    turns_dropped: dict[str, int]
    """Turns left out (of conversations written or not), by reason: ``empty_text``,
    ``role:<role>`` (``drop_roles``), ``over_token_budget``."""
    estimated_tokens: int | None
    """openai-context: the tokens the output holds, estimated as Vex does (4 characters each)."""
    complete: bool


class FormatInfo(Result, frozen=True, kw_only=True):
    """One output format, as ``vex convert --format list`` shows it."""

    name: str
    aliases: list[str]
    extension: str
    description: str
    documentation: str
    """Where the format is published."""

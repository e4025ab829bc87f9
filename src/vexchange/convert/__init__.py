"""``vex convert``: conversations from any source vexchange reads, as chat fine-tuning, chat
context or plain-text files (docs/convert.md).

Records are grouped by conversation through a temporary SQLite file (``_spill.py``), so the
source may hand them over in any order at constant memory; each format then checks its rules
and writes, and what it cannot express is refused with a counted reason and kept whole in the
rejects file. The output and the rejects file are written under temporary names and renamed
into place only when the run completes, and neither may be a file of the source.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from .._atomic import AtomicOutput, check_writable
from ..connectors._base import Reject
from ..connectors._registry import Location, open_store
from ..errors import UsageError
from ._base import Format, Options, Tally
from ._paths import default_output, refuse_source_files
from ._result import ConvertResult, FormatInfo
from ._spill import Spill
from ._turns import Conversation, normalise_role, record_rows
from .anthropic_finetune import AnthropicFinetune
from .generic_chat import GenericChat
from .openai_context import OpenAIContext
from .openai_finetune import OpenAIFinetune
from .plain_text import PlainText

__all__ = ["FORMATS", "ConvertResult", "FormatInfo", "convert", "format_names", "formats"]

FORMATS: dict[str, type[Format]] = {
    cls.name: cls for cls in (OpenAIFinetune, OpenAIContext, GenericChat, AnthropicFinetune, PlainText)
}
"""Each format by its own name (aliases: :func:`resolve`)."""
_PAGE = 1000


def format_names() -> list[str]:
    """Every name ``format`` takes: the formats' own names, then their aliases."""
    return [*FORMATS, *(alias for cls in FORMATS.values() for alias in cls.aliases)]


def formats() -> list[FormatInfo]:
    """The output formats, as ``vex convert --format list`` shows them."""
    return [FormatInfo(name=c.name, aliases=list(c.aliases), extension=c.extension,
                       description=c.description, documentation=c.documentation) for c in FORMATS.values()]


def resolve(name: str) -> type[Format]:
    """The format a name or alias stands for (case does not matter)."""
    wanted = name.strip().lower()
    for cls in FORMATS.values():
        if wanted == cls.name or wanted in cls.aliases:
            return cls
    raise UsageError(f"no convert format named {name!r}; known: {', '.join(format_names())}")


def _options(cls: type[Format], system_prompt: str | None, max_tokens: int | None,
             separator: str | None) -> Options:
    given = {"system_prompt": system_prompt, "max_tokens": max_tokens, "separator": separator}
    for option, value in given.items():
        if value is not None and option not in cls.takes:
            takers = [c.name for c in FORMATS.values() if option in c.takes]
            raise UsageError(f"--{option.replace('_', '-')} does not apply to {cls.name}; it is for"
                             f" {', '.join(takers)}")
    if max_tokens is not None and max_tokens < 1:
        raise UsageError("--max-tokens must be at least 1")
    return Options(system_prompt=system_prompt, max_tokens=max_tokens, separator=separator)


def convert(source: Location, output: str | Path | None = None, format: str = "openai-finetune", *,
            system_prompt: str | None = None, max_tokens: int | None = None,
            conversation_ids: Sequence[str] = (), separator: str | None = None,
            default_role: str = "user", drop_roles: Sequence[str] = (),
            rejects: str | Path | None = None,
            source_secrets: Mapping[str, str] | None = None) -> ConvertResult:
    """Write the conversations of ``source`` (any location :func:`vexchange.open_store`
    takes) to ``output`` in ``format`` (a name of :data:`FORMATS` or an alias).

    ``output`` defaults to a ``.vmig.jsonl`` source's name with the format's extension.
    ``system_prompt``: a system message first (openai-finetune, generic-chat), the ``system``
    field (anthropic-finetune), or the context's system message (openai-context, default Vex's;
    "" for none). ``max_tokens``: openai-context's budget (4 characters a token).
    ``conversation_ids``: only these conversations. ``separator``: plain-text's line between
    conversations. ``default_role``: the role of a record that names none (Vex's ``user``).
    ``drop_roles``: roles to leave out (counted) rather than refuse their conversations for,
    e.g. ``tool``. ``rejects``: the rejects file [default: ``<output>.rejects.jsonl``].
    """
    cls = resolve(format)
    options = _options(cls, system_prompt, max_tokens, separator)
    dropped = {normalise_role(r) for r in drop_roles}
    wanted = {str(c) for c in conversation_ids}
    store = open_store(source, secrets=source_secrets)
    out_path = Path(output) if output is not None else default_output(store, cls.extension)
    rejects_path = (Path(rejects) if rejects is not None
                    else out_path.with_name(out_path.name + ".rejects.jsonl"))
    if out_path.resolve() == rejects_path.resolve():
        raise UsageError(f"the output and the rejects file are both {out_path}")
    refuse_source_files(store, out_path, rejects_path)
    check_writable(out_path)
    check_writable(rejects_path)
    tally = Tally(rejects_path)
    records = filtered = 0
    writer = cls(options)
    out: AtomicOutput | None = None
    try:
        with store, Spill() as spill:
            for page in store.read(batch_size=_PAGE):
                rows = []
                for item in page.items:
                    if isinstance(item, Reject):
                        tally.unreadable_entry(item)
                        continue
                    turns = record_rows(item, default_role)
                    if wanted and turns[0].key[2:] not in wanted:
                        filtered += 1
                        continue
                    records += 1
                    rows.extend(turns)
                spill.add(rows)
            if wanted and not spill.conversations:
                raise UsageError(f"no conversation {', '.join(sorted(wanted))} in"
                                 f" {store.describe()['location']}")
            out = AtomicOutput(out_path)
            writer.write(_prepared(spill.conversations_in_order(), dropped, tally), out, tally)
            conversations = spill.conversations
        tally.commit()
        out.commit()
    except BaseException:
        if out is not None:
            out.discard()
        tally.discard()
        raise
    return ConvertResult(
        format=cls.name, source=str(store.describe().get("location", source)), output=str(out_path),
        rejects_file=str(rejects_path) if tally.has_rejects else None, records=records, filtered=filtered,
        unreadable=dict(tally.unreadable), conversations=conversations, written=tally.written,
        refused=dict(tally.refused), over_budget=tally.over_budget, truncated=tally.truncated,
        turns_written=tally.turns_written, turns_dropped=dict(tally.turns_dropped),
        estimated_tokens=getattr(writer, "estimated_tokens", None),
        complete=not tally.refused and not tally.unreadable)


def _prepared(conversations: Iterator[Conversation], dropped: set[str],
              tally: Tally) -> Iterator[Conversation]:
    """Each conversation with the turns its format sees: without the ``drop_roles`` and
    without empty texts (both counted in ``turns_dropped``)."""
    for conversation in conversations:
        kept = []
        for turn in conversation.all_turns:
            if turn.role in dropped:
                tally.turns_dropped[f"role:{turn.role}"] += 1
            elif not turn.text:
                tally.turns_dropped["empty_text"] += 1
            else:
                kept.append(turn)
        yield conversation._replace(turns=kept)

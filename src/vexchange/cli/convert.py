"""``vex convert``: records (from any source) as chat fine-tune, context or plain-text files.

Exit codes: 0 when every conversation was written (a token budget that leaves some out is
what was asked, so it still exits 0); 4 when a conversation was refused or a source entry was
unreadable (all are in the rejects file; ``--allow-skips`` exits 0 then); 2 for a usage error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ._app import EXIT_SKIPPED, cli, emit
from ._options import aliased, source_secret_option
from ._running import location

if TYPE_CHECKING:
    from ..convert import ConvertResult

FORMAT_NAMES = ["openai-finetune", "openai-context", "generic-chat", "anthropic-finetune", "plain-text",
                "perplexity", "groq", "mistral", "together", "anthropic", "txt"]
"""``vexchange.convert.format_names()``, written out so ``vex --help`` loads no converter (a test
holds the two equal)."""
_NAMES = [*FORMAT_NAMES, "list"]


def _summary(result: ConvertResult) -> None:
    click.echo(f"converted {result.written:,} of {result.conversations:,} conversations"
               f" ({result.turns_written:,} turns, {result.records:,} records) to {result.format}:"
               f" {result.output}")
    for label, counts in (("refused", result.refused), ("unreadable", result.unreadable),
                          ("turns left out", result.turns_dropped)):
        if counts:
            click.echo(f"  {label}: " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())))
    if result.over_budget or result.truncated:
        click.echo(f"  token budget: {result.over_budget:,} conversations left out,"
                   f" {result.truncated:,} cut short")
    if result.estimated_tokens is not None:
        click.echo(f"  estimated tokens: {result.estimated_tokens:,}")
    if result.rejects_file:
        click.echo(f"  rejects: {result.rejects_file}")


@cli.command()
@click.argument("source_url", required=False)
@click.option("--from", "from_", metavar="CONNECTOR|URL", help="Source: a connector name or URL.")
@click.option("--db", help="Database path for the vektor connector.")
@aliased("--format", "-f", "format_", hidden_aliases=("--adapter",), metavar="NAME",
         type=click.Choice(_NAMES, case_sensitive=False),
         help="Output format: " + ", ".join(_NAMES[:-1]) + "; list shows them (--adapter, Vex's name,"
              " works too).")
@click.option("--output", "-o", type=click.Path(dir_okay=False),
              help="Output file [default: a .vmig.jsonl source's name with the format's extension].")
@click.option("--system-prompt", help="System message (openai-finetune, generic-chat, anthropic-finetune,"
              " openai-context; \"\" for none in openai-context).")
@click.option("--max-tokens", type=click.IntRange(min=1),
              help="openai-context's budget (4 characters a token).")
@click.option("--conversation-id", "conversation_ids", multiple=True, metavar="ID",
              help="Only this conversation (repeatable).")
@click.option("--separator", help="plain-text's line before each conversation [default: 72 '═'].")
@click.option("--default-role", default="user", show_default=True,
              help="Role of a record that names none.")
@click.option("--drop-role", "drop_roles", multiple=True, metavar="ROLE",
              help="Leave turns of this role out (counted) instead of refusing their conversations.")
@click.option("--rejects", type=click.Path(dir_okay=False),
              help="Rejects path [default: <output>.rejects.jsonl].")
@click.option("--allow-skips", is_flag=True, help="Exit 0 even when conversations were refused.")
@source_secret_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option("--quiet", is_flag=True, help="No summary.")
@click.pass_context
def convert(ctx: click.Context, /, source_url: str | None, from_: str | None, db: str | None,
            format_: str | None, allow_skips: bool, as_json: bool, quiet: bool, **options: Any) -> None:
    """Write a source's conversations as openai-finetune, openai-context, generic-chat,
    anthropic-finetune or plain-text; refused conversations are counted and kept whole in the
    rejects file (exit 4 unless --allow-skips)."""
    if format_ == "list":
        if as_json:
            emit(_convert().formats(), True)
        for info in [] if as_json else _convert().formats():
            aliases = f" (also {', '.join(info.aliases)})" if info.aliases else ""
            click.echo(f"{info.name}{aliases}  .{info.extension}\n  {info.description}\n"
                       f"  {info.documentation}")
        return
    if format_ is None:
        raise click.UsageError("give the output format: --format NAME (--format list shows them)")
    source = location(source_url or from_, db=db, path=None, role="source")
    result = _convert().convert(source, format=format_, **options)
    if as_json:
        emit(result, True)
    elif not quiet:
        _summary(result)
    if not result.complete and not allow_skips:
        if not as_json:
            click.echo("some conversations were refused or entries unreadable; see the rejects file."
                       " Exit code 4 (use --allow-skips to accept).", err=True)
        ctx.exit(EXIT_SKIPPED)


def _convert() -> Any:
    """The converters, loaded when the command runs."""
    import vexchange.convert

    return vexchange.convert

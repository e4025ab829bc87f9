"""``vex export``, ``vex import`` and ``vex migrate``: the commands that run a migration (what
every such command shares, ``location`` and ``run_command``, is in _running.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ._app import EXIT_SKIPPED, cli, lazy_module
from ._options import run_options
from ._running import location, read_early, run_command

if TYPE_CHECKING:
    from .. import api, errors
else:  # imported when a command first uses them (_app.lazy_module)
    api = lazy_module("api")
    errors = lazy_module("errors")

__all__ = ["EXIT_SKIPPED", "location", "run_command"]


@cli.command()
@click.argument("source_url", required=False)
@click.option("--from", "from_", metavar="CONNECTOR|URL", help="Source: a connector name or URL.")
@click.option("--db", help="Database path for the vektor connector.")
@click.option("--output", "-o", required=True, help="Output file (.vmig.jsonl).")
@run_options(lazy=True)
@click.pass_context
def export(ctx: click.Context, /, source_url: str | None, from_: str | None, db: str | None,
           output: str, target_secrets: dict[str, str], **options: Any) -> None:
    """Write a store's records to a .vmig.jsonl file with its sidecar and a receipt."""
    source = location(source_url or from_, db=db, path=None, role="source")
    if target_secrets:
        raise errors.UsageError("an export's target is a file: it takes no --target-secret")
    read_early(source, options)
    run_command(ctx, api.export, source, output, **options)


@cli.command(name="import")
@click.argument("input_file", required=False)
@click.option("--from", "from_", metavar="FILE", help="The .vmig.jsonl file to import.")
@click.option("--to", "to", metavar="CONNECTOR|URL", required=True, help="Target store.")
@click.option("--db", help="Database path for the vektor connector.")
@click.option("--output", help="Output file when the target is a file connector.")
@run_options(lazy=True)
@click.pass_context
def import_(ctx: click.Context, /, input_file: str | None, from_: str | None, to: str,
            db: str | None, output: str | None, source_secrets: dict[str, str],
            **options: Any) -> None:
    """Load a .vmig.jsonl file into a store."""
    source = input_file or from_
    if not source:
        raise errors.UsageError("give the file to import: vex import --from FILE --to TARGET")
    target = location(to, db=db, path=output, role="target")
    if source_secrets:
        raise errors.UsageError("an import's source is a file: it takes no --source-secret")
    read_early(source, options)
    run_command(ctx, api.import_, source, target, **options)


@cli.command()
@click.argument("source_url", required=False)
@click.argument("target_url", required=False)
@click.option("--from", "from_", metavar="CONNECTOR|URL")
@click.option("--to", "to", metavar="CONNECTOR|URL")
@click.option("--db", help="Database path for the side that is a vektor connector.")
@click.option("--file", "file_", help="Input file when the source is a file connector.")
@click.option("--output", help="Output file when the target is a file connector.")
@run_options(lazy=True)
@click.pass_context
def migrate(ctx: click.Context, /, source_url: str | None, target_url: str | None,
            from_: str | None, to: str | None, db: str | None, file_: str | None,
            output: str | None, **options: Any) -> None:
    """Copy records from one store to another: vex migrate SOURCE_URL TARGET_URL."""
    src, dst = source_url or from_, target_url or to
    if src == "vektor" and dst == "vektor":
        raise errors.UsageError("both sides are vektor: give two URLs, "
                         "vex migrate vektor:///a.db vektor:///b.db")
    source = location(src, db=db, path=file_, role="source")
    target = location(dst, db=db, path=output, role="target")
    read_early(source, options)
    run_command(ctx, api.migrate, source, target, **options)

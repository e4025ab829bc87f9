"""``vex export``, ``vex import`` and ``vex migrate``: the commands that run a migration, and
what every such command shares (``run_command``: the receipt shown, exit 4 on skips)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click
import orjson

from ..errors import UsageError
from ..spec import StoreSpec
from ._app import EXIT_SKIPPED, cli, lazy_module
from ._options import run_options
from ._render import CliProgress, print_summary

if TYPE_CHECKING:
    from .. import api
    from ..connectors import _registry
    from ..engine.receipt import Receipt
else:  # imported when a command first uses them (_app.lazy_module)
    api = lazy_module("api")
    _registry = lazy_module("connectors._registry")

__all__ = ["EXIT_SKIPPED", "location", "run_command"]

_FILE_CONNECTORS = {"vmig", "jsonl"}


def location(value: str | None, *, db: str | None, path: str | None, role: str) -> str | StoreSpec:
    """A URL or path as given, or a connector name completed by --db / --file / --output."""
    if not value:
        raise UsageError(f"give the {role}")
    if ":" in value or "/" in value or "." in value:
        return value
    if value == "vektor":
        if not db:
            raise UsageError(f"the vektor {role} needs --db PATH")
        return StoreSpec("vektor", db)
    if value in _FILE_CONNECTORS:
        if not path:
            flag = "--file" if role == "source" else "--output"
            raise UsageError(f"the {value} {role} needs {flag} PATH")
        return StoreSpec("vmig", path)
    _registry.get(value)
    raise UsageError(f"give {value} as a URL, e.g. {value}://HOST/COLLECTION")


def run_command(ctx: click.Context, call: Callable[..., Receipt], *args: Any, as_json: bool,
                quiet: bool, **options: Any) -> None:
    """Call an API function with the command's run options (named as its parameters); show the
    receipt (a summary, or JSON with ``--json``) and exit 4 when records were skipped."""
    progress = None if quiet or as_json else CliProgress()
    receipt = call(*args, progress=progress, **options)
    if as_json:
        click.echo(orjson.dumps(receipt.to_dict(), option=orjson.OPT_INDENT_2).decode())
    elif not quiet:
        print_summary(receipt)
    if receipt.counts.skipped_total and not options.get("allow_skips"):
        ctx.exit(EXIT_SKIPPED)


@cli.command()
@click.argument("source_url", required=False)
@click.option("--from", "from_", metavar="CONNECTOR|URL", help="Source: a connector name or URL.")
@click.option("--db", help="Database path for the vektor connector.")
@click.option("--output", "-o", required=True, help="Output file (.vmig.jsonl).")
@run_options()
@click.pass_context
def export(ctx: click.Context, /, source_url: str | None, from_: str | None, db: str | None,
           output: str, target_secrets: dict[str, str], **options: Any) -> None:
    """Write a store's records to a .vmig.jsonl file with its sidecar and a receipt."""
    source = location(source_url or from_, db=db, path=None, role="source")
    if target_secrets:
        raise UsageError("an export's target is a file: it takes no --target-secret")
    run_command(ctx, api.export, source, output, **options)


@cli.command(name="import")
@click.argument("input_file", required=False)
@click.option("--from", "from_", metavar="FILE", help="The .vmig.jsonl file to import.")
@click.option("--to", "to", metavar="CONNECTOR|URL", required=True, help="Target store.")
@click.option("--db", help="Database path for the vektor connector.")
@click.option("--output", help="Output file when the target is a file connector.")
@run_options()
@click.pass_context
def import_(ctx: click.Context, /, input_file: str | None, from_: str | None, to: str,
            db: str | None, output: str | None, source_secrets: dict[str, str],
            **options: Any) -> None:
    """Load a .vmig.jsonl file into a store."""
    source = input_file or from_
    if not source:
        raise UsageError("give the file to import: vex import --from FILE --to TARGET")
    target = location(to, db=db, path=output, role="target")
    if source_secrets:
        raise UsageError("an import's source is a file: it takes no --source-secret")
    run_command(ctx, api.import_, source, target, **options)


@cli.command()
@click.argument("source_url", required=False)
@click.argument("target_url", required=False)
@click.option("--from", "from_", metavar="CONNECTOR|URL")
@click.option("--to", "to", metavar="CONNECTOR|URL")
@click.option("--db", help="Database path for the side that is a vektor connector.")
@click.option("--file", "file_", help="Input file when the source is a file connector.")
@click.option("--output", help="Output file when the target is a file connector.")
@run_options()
@click.pass_context
def migrate(ctx: click.Context, /, source_url: str | None, target_url: str | None,
            from_: str | None, to: str | None, db: str | None, file_: str | None,
            output: str | None, **options: Any) -> None:
    """Copy records from one store to another: vex migrate SOURCE_URL TARGET_URL."""
    src, dst = source_url or from_, target_url or to
    if src == "vektor" and dst == "vektor":
        raise UsageError("both sides are vektor: give two URLs, "
                         "vex migrate vektor:///a.db vektor:///b.db")
    source = location(src, db=db, path=file_, role="source")
    target = location(dst, db=db, path=output, role="target")
    run_command(ctx, api.migrate, source, target, **options)

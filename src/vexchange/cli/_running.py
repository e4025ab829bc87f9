"""What the commands that run a migration share: a location from ``--from``/``--db``/``--file``
(``location``) and the call that shows the receipt and exits 4 on skips (``run_command``).

Apart from run.py (export, import, migrate) so that a command that uses them (convert, backup,
sync, pack, adapter) does not import run.py's commands and their option table; what they
need to run (the spec, the errors, orjson, the registry) is imported when they are called."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from ._app import EXIT_SKIPPED

if TYPE_CHECKING:
    from ..engine.receipt import Receipt
    from ..spec import StoreSpec

__all__ = ["location", "run_command"]

_FILE_CONNECTORS = {"vmig", "jsonl"}


def location(value: str | None, *, db: str | None, path: str | None, role: str) -> str | StoreSpec:
    """A URL or path as given, or a connector name completed by --db / --file / --output."""
    from ..errors import UsageError
    from ..spec import StoreSpec

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
    from ..connectors import _registry

    _registry.get(value)
    raise UsageError(f"give {value} as a URL, e.g. {value}://HOST/COLLECTION")


def read_early(source: str | StoreSpec, options: dict[str, Any]) -> None:
    """Start the reading child of a large file source now, before the command imports the
    engine, so that the two start-ups overlap (engine/reader_start.py). ``run_command`` stops
    it if the engine did not take it."""
    from ..engine import reader_start

    reader_start.start_early(source, workers=options.get("workers"),
                             incremental=bool(options.get("incremental")))


def run_command(ctx: click.Context, call: Callable[..., Receipt], *args: Any, as_json: bool,
                quiet: bool, **options: Any) -> None:
    """Call an API function with the command's run options (named as its parameters); show the
    receipt (a summary, or JSON with ``--json``) and exit 4 when records were skipped."""
    from ..engine import reader_start
    from ._render import CliProgress, print_summary

    progress = None if quiet or as_json else CliProgress()
    try:
        receipt = call(*args, progress=progress, **options)
    finally:
        reader_start.discard()  # a reading child started early that the engine did not take
    if as_json:
        import orjson

        click.echo(orjson.dumps(receipt.to_dict(), option=orjson.OPT_INDENT_2).decode())
    elif not quiet:
        print_summary(receipt)
    if receipt.counts.skipped_total and not options.get("allow_skips"):
        ctx.exit(EXIT_SKIPPED)

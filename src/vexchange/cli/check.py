"""``vex inspect``, ``vex validate`` and ``vex verify``: what a store or file holds, and the
proof that it holds what it should (exit 3 when it does not)."""

from __future__ import annotations

import click

from .. import checks
from ._app import cli, emit, emit_report


@cli.command(name="inspect")
@click.argument("location")
@click.option("--json", "as_json", is_flag=True)
def inspect_cmd(location: str, as_json: bool) -> None:
    """Counts, models, dims, namespaces, sources, time range and sidecar state."""
    emit(checks.inspect(location), as_json)


@cli.command()
@click.argument("file")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def validate(ctx: click.Context, file: str, as_json: bool) -> None:
    """Check every record of a .vmig.jsonl file; exit 3 on any error."""
    emit_report(ctx, checks.validate(file), as_json)


@cli.command()
@click.argument("target")
@click.option("--receipt", type=click.Path(dir_okay=False), help="Compare with a run's receipt.")
@click.option("--against", metavar="SOURCE", help="Compare record by record with a source.")
@click.option("--namespace", "namespaces", multiple=True, metavar="NS")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def verify(ctx: click.Context, target: str, receipt: str | None, against: str | None,
           namespaces: tuple[str, ...], as_json: bool) -> None:
    """Prove a target holds what it should (checksum, receipt digests, or a source)."""
    report = checks.verify(target, receipt=receipt, against=against, namespaces=namespaces or None)
    emit_report(ctx, report, as_json)

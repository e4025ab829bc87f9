"""``vex grains``: OMS memory grains and .mg files (docs/formats/oms.md)."""

from __future__ import annotations

import click
import orjson

from ._app import cli, emit, emit_report


@cli.group()
def grains() -> None:
    """OMS memory grains and .mg files: inspect, verify, decode, encode."""


@grains.command(name="inspect")
@click.argument("file")
@click.option("--json", "as_json", is_flag=True)
def grains_inspect(file: str, as_json: bool) -> None:
    """Grain count, types, namespaces and flags of a .mg file."""
    from ..oms.tools import inspect_grains

    emit(inspect_grains(file), as_json)


@grains.command(name="verify")
@click.argument("file")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def grains_verify(ctx: click.Context, file: str, as_json: bool) -> None:
    """Footer checksum and every grain's address; exit 3 on any failure."""
    from ..oms.tools import verify_grains

    emit_report(ctx, verify_grains(file), as_json)


@grains.command(name="decode")
@click.argument("file")
@click.option("--index", type=click.IntRange(min=0), help="Only grain N of a .mg file.")
def grains_decode(file: str, index: int | None) -> None:
    """Print grains as JSON with full field names (one per line)."""
    from ..oms.tools import decode_grains

    for grain in decode_grains(file, index=index):
        click.echo(orjson.dumps(grain).decode())


@grains.command(name="encode")
@click.argument("input")
@click.option("--output", "-o", required=True, help="A .mg file, or a file for one raw blob.")
@click.option("--shape", type=click.Choice(["conversation", "tool_call", "state", "runbook",
                                            "sensor", "task"]),
              help="The input is a JSONL log of this shape (docs/formats/oms.md).")
@click.option("--namespace", help="Namespace of every grain (overrides the lines').")
def grains_encode(input: str, output: str, shape: str | None, namespace: str | None) -> None:
    """Build canonical grains from JSON (full field names) or a shaped log; print addresses."""
    from ..oms.tools import encode_grains

    for address in encode_grains(input, output, shape=shape, namespace=namespace):
        click.echo(address)

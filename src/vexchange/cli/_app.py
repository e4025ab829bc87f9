"""The ``vex`` command group and what its commands share: printing a report, its exit code."""

from __future__ import annotations

from typing import Any

import click
import msgspec
import orjson

from .._version import __version__
from ._render import print_mapping

__all__ = ["EXIT_INTEGRITY", "cli", "emit", "emit_report"]

EXIT_INTEGRITY = 3


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="vex")
def cli() -> None:
    """vexchange: move agent and vector memory between stores and files, with proof.

    \b
    vex export  --from vektor --db memory.db --output memory.vmig.jsonl
    vex import  --from memory.vmig.jsonl --to vektor --db copy.db
    vex migrate vektor:///data/memory.db other.vmig.jsonl
    vex verify  other.vmig.jsonl --against vektor:///data/memory.db
    """


def emit(report: Any, as_json: bool) -> None:
    """A report on stdout: indented JSON with ``--json``, else one ``key: value`` per line. A
    typed report (a msgspec Struct) is shown as its fields."""
    report = msgspec.to_builtins(report)  # typed results, lists of them, or plain data
    if as_json:
        click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        print_mapping(report)


def emit_report(ctx: click.Context, report: Any, as_json: bool) -> None:
    """A check's report (with an ``ok`` field or key); exit 3 (integrity failure) when not ok."""
    emit(report, as_json)
    if not (report["ok"] if isinstance(report, dict) else report.ok):
        ctx.exit(EXIT_INTEGRITY)

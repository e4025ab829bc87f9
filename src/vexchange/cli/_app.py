"""The ``vex`` command group and what its commands share: printing a report, its exit code."""

from __future__ import annotations

import importlib.util
import sys
import types
from typing import Any

import click

from .._version import __version__
from ._render import print_mapping

__all__ = ["EXIT_INTEGRITY", "cli", "emit", "emit_report", "lazy_module"]

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


def lazy_module(name: str) -> types.ModuleType:
    """``vexchange.<name>``, imported when an attribute is first read (importlib's LazyLoader).

    The commands call the library (api, checks, signing), which brings numpy, the engine and
    every format: imported with the command modules, ``vex --help`` took 0.3 s more than the
    published Vex to start. A command that runs reads the attribute and pays then."""
    full = f"vexchange.{name}"
    if full in sys.modules:
        return sys.modules[full]
    spec = importlib.util.find_spec(full)
    assert spec is not None and spec.loader is not None
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[full] = module
    loader.exec_module(module)
    return module


def emit(report: Any, as_json: bool) -> None:
    """A report on stdout: indented JSON with ``--json``, else one ``key: value`` per line. A
    typed report (a msgspec Struct) is shown as its fields."""
    import msgspec
    import orjson

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

"""``vex connectors`` (every connector, plugins included, with what it can hold) and ``vex demo``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ._app import EXIT_INTEGRITY, cli, emit, lazy_module
from ._render import CliProgress

if TYPE_CHECKING:
    from .. import errors
    from ..connectors import _registry
else:  # imported when a command first uses them (_app.lazy_module)
    _registry = lazy_module("connectors._registry")
    errors = lazy_module("errors")

_FLAGS = ("read", "write", "named_vectors", "null_vectors", "fixed_dims")


@cli.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False),
              help="Work here [default: a new temp dir].")
@click.option("--records", type=click.IntRange(min=1), default=5000, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def demo(ctx: click.Context, directory: str | None, records: int, as_json: bool) -> None:
    """Build a demo VEKTOR database, export it, import it into a new one, and verify the copy."""
    from ..demo import demo as run_demo

    report = run_demo(directory, records=records, progress=None if as_json else CliProgress())
    emit(report, as_json)
    if not report["verified"]:
        ctx.exit(EXIT_INTEGRITY)


@cli.command()
@click.option("--json", "as_json", is_flag=True,
              help='As JSON: each connector\'s name and "installed" or the command that installs it.')
@click.option("--capabilities", is_flag=True,
              help="With --json: each connector's capabilities, URL options and package instead.")
def connectors(as_json: bool, capabilities: bool) -> None:
    """Every connector, plugins included: what it can hold (read, write, named vectors, records
    without a vector, one size per store, normalised vectors), the URL options it reads, and
    whether what it needs is installed."""
    entries = _registry.available()
    if as_json and not capabilities:  # without importing any connector
        emit({name: _install_status(name, entry) for name, entry in entries.items()}, True)
        return
    described = {name: describe_connector(name, entry) for name, entry in entries.items()}
    if as_json:
        emit(described, True)
    else:
        _print_table(described)


def _install_status(name: str, entry: _registry.Entry) -> str:
    missing = _registry.missing_requirement(entry)
    return "installed" if not missing else f'missing: pip install "vexchange[{entry.extra or name}]"'


def describe_connector(name: str, entry: _registry.Entry) -> dict[str, Any]:
    """What ``vex connectors`` says of one connector. Its class is imported to read its
    capabilities; one that cannot be (a missing extra, a broken plugin) says why instead."""
    out: dict[str, Any] = {"builtin": entry.builtin, "package": entry.distribution,
                           "extra": entry.extra, "installed": False, "install": None, "error": None}
    try:
        connector = _registry.get(name)
    except errors.MissingDependencyError as err:
        out["install"] = err.hint
        return out
    except Exception as err:  # a plugin that fails on import or breaks the contract: listed, not fatal
        out["error"] = f"{type(err).__name__}: {err}"
        return out
    caps = connector.capabilities
    out.update({flag: getattr(caps, flag) for flag in _FLAGS})
    out.update(installed=True, alias_of=connector.name if connector.name != name else None,
               normalises=list(caps.normalises), rounds=list(caps.rounds),
               preferred_batch=caps.preferred_batch, read_checks=list(connector.read_checks),
               url_options=None if connector.url_options is None else sorted(connector.url_options),
               suffixes=list(connector.suffixes), takes_path=connector.takes_path,
               url_userinfo=connector.url_userinfo, url_secret=connector.url_secret)
    return out


def _print_table(described: dict[str, dict[str, Any]]) -> None:
    heads = ("connector", "read", "write", "named", "no vector", "fixed dims", "normalises",
             "url options", "installed")
    rows: list[tuple[str, ...]] = [heads]
    for name, info in described.items():
        if not info["installed"]:
            why = info["install"] or info["error"] or "no"
            rows.append((name, "?", "?", "?", "?", "?", "?", "?", f"no: {why}"))
            continue
        label = name + (f" (= {info['alias_of']})" if info["alias_of"] else "")
        source = "yes" if info["builtin"] else f"yes, plugin from {info['package'] or 'unknown package'}"
        options = info["url_options"]
        rows.append((label, *(_yes(info[flag]) for flag in _FLAGS),
                     ", ".join(info["normalises"] + [f"{m} (rounds)" for m in info["rounds"]]) or "-",
                     "not declared" if options is None else (", ".join(options) or "none"), source))
    widths = [max(len(row[i]) for row in rows) for i in range(len(heads) - 1)]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        click.echo("  ".join(cells) + "  " + row[-1])


def _yes(flag: bool) -> str:
    return "yes" if flag else "-"

"""``vex ui``: a local web inspector over any location vexchange reads (docs/ui.md)."""

from __future__ import annotations

import click

from ._app import cli


@cli.command()
@click.argument("location")
@click.option("--against", metavar="OTHER",
              help="Also show the verify diff of LOCATION against OTHER (missing, changed, extra).")
@click.option("--no-open", is_flag=True, help="Do not open a browser.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default="a free port")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Listen here; any non-loopback host requires the token printed at start.")
def ui(location: str, against: str | None, no_open: bool, port: int, host: str) -> None:
    """Inspect LOCATION in the browser: overview, embedding map, search, records, runs.

    \b
    vex ui memory.vmig.jsonl
    vex ui copy.vmig.jsonl --against vektor:///data/memory.db
    """
    from ..ui import serve

    serve(location, against=against, no_open=no_open, port=port, host=host,
          announce=lambda line: click.echo(line, err=True))

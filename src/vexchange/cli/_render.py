"""What the CLI shows a person: the live progress bar (stderr) and the summary block (stdout)."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # only an annotation here: the receipt module is imported by a run
    from ..engine.receipt import Receipt

_CELLS = 24


class CliProgress:
    """A progress bar on stderr, redrawn at most ten times a second; silent when not a terminal."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.total: int | None = None
        self.started = time.monotonic()
        self.drawn = 0.0

    def start(self, total: int | None) -> None:
        self.total = total
        self.started = time.monotonic()

    def advance(self, done: int, written: int, skipped: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.drawn < 0.1:
            return
        self.drawn = now
        rate = done / max(now - self.started, 1e-9)
        if self.total:
            share = min(done / self.total, 1.0)
            filled = int(share * _CELLS)
            bar = "█" * filled + "░" * (_CELLS - filled)
            head = f"[{bar}] {share:4.0%} {done:,}/{self.total:,}"
        else:
            head = f"{done:,} read"
        sys.stderr.write(f"\r{head}  written {written:,}  skipped {skipped:,}  {rate:,.0f} rec/s ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()


def print_summary(receipt: Receipt) -> None:
    counts = receipt.counts
    skipped = ", ".join(f"{k}: {v:,}" for k, v in sorted(counts.skipped.items()))
    rows = [
        ("status", receipt.status),
        ("source", f"{receipt.source['connector']}  {receipt.source['location']}"),
        ("target", f"{receipt.target['connector']}  {receipt.target['location']}"),
        ("read", f"{counts.read:,}"),
        ("filtered", f"{counts.filtered:,}"),
        ("written", f"{counts.written:,}"),
        ("skipped", f"{counts.skipped_total:,}" + (f"  ({skipped})" if skipped else "")),
        ("namespaces", f"{len(receipt.namespaces):,}"),
        ("duration", f"{receipt.duration_s or 0:.2f} s  ({receipt.records_per_s or 0:,.0f} records/s)"),
    ]
    if receipt.embedding:
        if counts.reembedded or receipt.embedding.get("embedder"):
            model = (receipt.embedding.get("embedder") or {}).get("model", "")
            rows.append(("reembedded", f"{counts.reembedded:,}  ({model})"))
        if counts.adapted or receipt.embedding.get("adapter"):
            method = (receipt.embedding.get("adapter") or {}).get("method", "")
            rows.append(("adapted", f"{counts.adapted:,}  ({method} adapter)"))
    if receipt.incremental:
        rows.append(("unchanged", f"{counts.unchanged:,}"))
        rows.append(("deleted", f"{counts.deleted:,}"))
        rows.append(("in step", str(receipt.incremental.get("in_step"))))
    if receipt.retries:
        rows.append(("retries", str(receipt.retries)))
    if receipt.rejects_file:
        rows.append(("rejects", receipt.rejects_file))
    if receipt.receipt_file:
        rows.append(("receipt", receipt.receipt_file))
    title = f"┌─ {receipt.operation} summary "
    click.echo(title + "─" * max(4, 60 - len(title)))
    for label, value in rows:
        click.echo(f"│ {label:<11} {value}")
    click.echo("└" + "─" * 59)
    if counts.skipped_total and not receipt.options.get("allow_skips"):
        click.echo(f"{counts.skipped_total:,} record(s) were skipped; see the rejects file. "
                   "Exit code 4 (use --allow-skips to accept).", err=True)


def print_mapping(report: dict[str, Any], indent: int = 0) -> None:
    pad = "  " * indent
    for key, value in report.items():
        if isinstance(value, dict):
            click.echo(f"{pad}{key}:" + ("" if value else " -"))
            print_mapping(value, indent + 1)
        elif isinstance(value, list):
            click.echo(f"{pad}{key}:" + ("" if value else " -"))
            for item in value:
                if isinstance(item, dict):
                    click.echo(f"{pad}  - " + ", ".join(f"{k}={v}" for k, v in item.items()))
                else:
                    click.echo(f"{pad}  - {item}")
        else:
            click.echo(f"{pad}{key}: {value}")

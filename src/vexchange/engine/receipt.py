"""Receipts: the JSON record of one run, written whatever the outcome.

A receipt names source and target (never a secret), the options, counts per outcome and reject
reason, an order-independent digest per namespace of what was selected from the source and of
what the target acknowledged, versions, timings, and the error if the run stopped. ``vex verify``
compares a target with the ``written`` digests. docs/receipts.md describes every field.
"""

from __future__ import annotations

import importlib.metadata
import platform
import re
from pathlib import Path
from typing import Any

import msgspec

from .._atomic import atomic_write_bytes
from .._version import __version__
from .._json import loads_exact
from ..errors import DecodeError

__all__ = ["RECEIPT_VERSION", "Counts", "NamespaceDigests", "Receipt", "load_receipt", "versions"]

RECEIPT_VERSION = 1


class Counts(msgspec.Struct, kw_only=True):
    read: int = 0
    """Records and unreadable entries seen in the source."""
    filtered: int = 0
    """Left out on purpose by --namespace, --since, --until or --limit."""
    selected: int = 0
    """Records the run set out to write."""
    written: int = 0
    """Records the target acknowledged."""
    skipped: dict[str, int] = {}
    """Records not written, by reason; every one is in the rejects file."""
    reembedded: int = 0
    """Selected records whose default vector was computed again from their text."""
    adapted: int = 0
    """Selected records whose default vector was translated by an adapter."""
    unchanged: int = 0
    """An incremental run: records read that the target already holds as they are (not
    selected, not written); read = filtered + unchanged + selected."""
    deleted: int = 0
    """An incremental run: records deleted from the target because the source no longer
    holds them."""

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


class NamespaceDigests(msgspec.Struct, kw_only=True):
    source: dict[str, Any] = {}
    written: dict[str, Any] = {}


class Receipt(msgspec.Struct, kw_only=True):
    receipt_version: int = RECEIPT_VERSION
    run_id: str
    status: str
    """completed, completed_with_skips, dry_run, failed or interrupted; "running" while the
    run goes on (so a run killed without a chance to say so leaves "running")."""
    operation: str
    source: dict[str, Any]
    target: dict[str, Any]
    options: dict[str, Any]
    counts: Counts
    namespaces: dict[str, NamespaceDigests] = {}
    rejects_file: str | None = None
    checkpoint_file: str | None = None
    receipt_file: str | None = None
    """Where this receipt was written (printed at the end of a run: a store target's run
    files are named after the whole target, so they are easy to lose track of)."""
    retries: int = 0
    versions: dict[str, str] = {}
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    records_per_s: float | None = None
    error: str | None = None
    resumed: bool = False
    vector_spaces: dict[str, Any] = {}
    """Dims and metric per vector name, as the source declared them and as the target holds them."""
    embedding: dict[str, Any] | None = None
    """The embedder and adapter a run used (docs/embeddings.md), else None."""
    incremental: dict[str, Any] | None = None
    """An incremental run (docs/engine.md, "Incremental runs"): how it found what changed
    (``by``, ``since``, ``high_water``, ``read``), the state file, whether deletions were
    propagated, and the proof: per namespace the digests of the source after the run, of what
    the target should hold and of what it holds when read back (``in_step``). None otherwise."""
    verify: dict[str, Any] | None = None
    """What ``vex verify --receipt`` added afterwards (``search``: the search check's figures,
    docs/search-check.md), kept when the receipt is loaded and written again. None otherwise."""

    def write(self, path: Path) -> None:
        atomic_write_bytes(path, msgspec.json.format(msgspec.json.encode(self), indent=2) + b"\n")

    def to_dict(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]


def load_receipt(path: Path) -> Receipt:
    """A receipt from its file; a damaged one (bad UTF-8, deep nesting, wrong fields) is a
    DecodeError naming the file, never a traceback."""
    try:
        value = loads_exact(path.read_bytes())  # bounded depth; then the typed conversion
        return msgspec.convert(value, type=Receipt)
    except FileNotFoundError:
        raise DecodeError("no such receipt file", location=str(path)) from None
    except DecodeError:
        raise
    except (ValueError, msgspec.ValidationError) as err:  # JSONDecodeError, UnicodeDecodeError
        raise DecodeError(f"not a vexchange receipt ({err})", location=str(path)) from None


def versions(*extras: str | None) -> dict[str, str]:
    """Versions of what produced the output: vexchange, Python, the core libraries, and the
    vendor SDKs of the connectors' extras (read from vexchange's own package metadata, so the
    list cannot drift from pyproject)."""
    import numpy
    import orjson

    found = {
        "vexchange": __version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "orjson": orjson.__version__,
        "msgspec": msgspec.__version__,
    }
    for extra in sorted({e for e in extras if e}):
        for dist in _extra_distributions(extra):
            try:
                found[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
    return found


def _extra_distributions(extra: str) -> list[str]:
    try:
        requires = importlib.metadata.requires("vexchange") or []
    except importlib.metadata.PackageNotFoundError:
        return []
    marker = re.compile(rf"""extra\s*==\s*["']{re.escape(extra)}["']""")
    names = [re.match(r"[A-Za-z0-9_.\-]+", r) for r in requires if marker.search(r)]
    return [m.group(0) for m in names if m]

"""The quick-start job: a VEKTOR database -> .vmig.jsonl -> a new VEKTOR database, verified.

Everything happens in one directory (a new temporary one unless given), with nothing to install
beyond vexchange itself: the demo database is built by ``vexchange.sample_data``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import orjson

from .api import export, import_
from .checks import verify
from .engine.progress import Progress
from .sample_data import build

__all__ = ["demo"]


def demo(directory: str | Path | None = None, *, records: int = 5000,
         progress: Progress | None = None) -> dict[str, Any]:
    """Run the round trip and return what happened, with paths to every file it wrote."""
    where = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="vex-demo-"))
    where.mkdir(parents=True, exist_ok=True)
    source = where / "slipstream-memory.db"
    if not source.exists():
        build(source, n=records, edge_cases=True)
    exported = export(f"vektor:{source}", where / "memory.vmig.jsonl", allow_skips=True,
                      progress=progress)
    copy = where / "copy.db"
    copy.unlink(missing_ok=True)
    imported = import_(where / "memory.vmig.jsonl", f"vektor:{copy}", progress=progress)
    checked = verify(f"vektor:{copy}", against=f"vektor:{source}")["checks"][0]
    return {
        "directory": str(where),
        "exported": exported.counts.written,
        "skipped_on_export": exported.counts.skipped,
        "imported": imported.counts.written,
        "verified": _accounted_for(checked, exported.rejects_file),
        "verify": checked,
        "files": sorted(p.name for p in where.iterdir()),
    }


def _accounted_for(check: dict[str, Any], rejects_file: str | None) -> bool:
    """The copy holds every readable source record exactly, and the source rows it cannot hold
    (unreadable, such as the demo's truncated vector blob) are exactly the export's rejects:
    nothing missing, changed or extra, and nothing left out without a line in the rejects file.
    (``verify`` alone fails on an unreadable source row: it cannot be in the copy.)"""
    if check["missing"] or check["changed"] or check["extra"] or check["target_unreadable"]:
        return False
    unreadable = {(u["namespace"], u["id"]) for u in check["unreadable"] if u["side"] == "source"}
    rejected: set[tuple[Any, Any]] = set()
    if rejects_file:
        for line in Path(rejects_file).read_bytes().splitlines():
            reject = orjson.loads(line)
            rejected.add((reject.get("namespace"), reject.get("id")))
    return len(unreadable) == check["source_unreadable"] and unreadable == rejected

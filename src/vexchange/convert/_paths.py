"""Where a conversion writes, and what it must never write over: any file of its source.

Vex writes to ``--output`` or, without it, to the input path with ``.vmig.jsonl`` replaced by
the format's extension, which for any other input name is the input itself (it overwrites its
own input). Here the default exists only for a ``.vmig.jsonl`` source; an output (or rejects
path) that is the source, a file beside it that belongs to it (its sidecar, signature and key,
a SQLite database's ``-wal``/``-shm``/``-journal``), or a file inside a source directory is
refused before anything is read.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..connectors._base import Connector
from ..errors import UsageError
from ..sidecar import sidecar_path

__all__ = ["default_output", "refuse_source_files"]

_VMIG = ".vmig.jsonl"
_COMPANIONS = ("-wal", "-shm", "-journal", ".meta.json", ".sig", ".key")


def default_output(store: Connector, extension: str) -> Path:
    base = store.run_files_base()
    if base is None or not base.name.lower().endswith(_VMIG):
        raise UsageError("give the output file: --output PATH",
                         hint="only a .vmig.jsonl source has a default output (its name with the"
                              " format's extension)")
    return base.with_name(base.name[: -len(_VMIG)] + "." + extension)


def _source_files(base: Path) -> list[Path]:
    files = [base, sidecar_path(base), *(base.with_name(base.name + s) for s in _COMPANIONS)]
    if base.name.lower().endswith(_VMIG):
        stem = base.name[: -len(_VMIG)]
        files += [base.with_name(stem + ".vmig.sig"), base.with_name(stem + ".vmig.key")]
    return files


def _same(a: Path, b: Path) -> bool:
    if os.path.abspath(a) == os.path.abspath(b) or a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def refuse_source_files(store: Connector, *paths: Path) -> None:
    """A UsageError when one of ``paths`` is a file of the source (see the module docstring)."""
    base = store.run_files_base()
    if base is None:
        return
    for path in paths:
        for own in _source_files(base):
            if _same(path, own):
                what = "the source" if own == base else f"a file of the source ({own.name})"
                raise UsageError(f"refusing to write {path}: it is {what}; the input is never overwritten",
                                 hint="give another --output (or --rejects) path")
        if base.is_dir() and path.resolve().is_relative_to(base.resolve()):
            raise UsageError(f"refusing to write {path}: it is inside the source directory {base}",
                             hint="give an --output path outside the source")

"""The ``.vmig.meta.json`` sidecar: what a data file holds and the checksum that proves it.

Path rule: ``x.vmig.jsonl`` has ``x.vmig.meta.json``; any other data file ``f`` has
``f.meta.json``. The data file itself is never the sidecar path (Vex's bug 2).

Checksum: ``"sha256:<hex>"`` over the data file's bytes exactly. Verification also accepts Vex's
convention, the bytes without the final newline, and says which one matched. ``StreamChecksum``
computes both forms in one pass over bytes as they are read (an import checks the file while it
reads it, docs/engine.md "Read integrity"); ``file_checksum`` is it over a whole file.

An empty export: Vex 0.8.8 writes ``checksum: null`` with ``record_count: 0`` (it hashes
records, and has none). Such a sidecar is a claim too, that the file holds no record: it
verifies as "ok-empty" when the file holds none (blank and ``#`` lines aside), and as
"mismatch" when it holds any. vexchange itself always writes a checksum, also for no records.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson

from ._atomic import atomic_write_bytes
from ._json import loads_exact
from ._time import format_timestamp, utc_now_ms
from ._version import __version__
from .codecs.vmig import FORMAT_VERSION
from .errors import DecodeError

__all__ = [
    "SIDECAR_FORMAT",
    "ChecksumResult",
    "StreamChecksum",
    "checksum_status",
    "claims_empty",
    "file_checksum",
    "holds_no_records",
    "read_sidecar",
    "record_import",
    "recorded_checksum",
    "sidecar_path",
    "verify_checksum",
    "write_sidecar",
]

SIDECAR_FORMAT = "vexchange-sidecar/1"


def sidecar_path(data_path: Path) -> Path:
    name = data_path.name
    if name.lower().endswith(".vmig.jsonl"):
        return data_path.with_name(name[: -len(".vmig.jsonl")] + ".vmig.meta.json")
    return data_path.with_name(name + ".meta.json")


def write_sidecar(data_path: Path, fields: dict[str, Any]) -> Path:
    """Write a fresh export sidecar. ``fields`` must hold record_count, checksum and the source."""
    body: dict[str, Any] = {
        "exported_at": format_timestamp(utc_now_ms()),
        "source_store": fields.get("source_store"),
        "source_version": fields.get("source_version"),
        "record_count": fields["record_count"],
        "checksum": fields["checksum"],
        "vex_version": FORMAT_VERSION,
        "format": SIDECAR_FORMAT,
        "writer": f"vexchange {__version__}",
    }
    body.update({k: v for k, v in fields.items() if k not in body})
    path = sidecar_path(data_path)
    atomic_write_bytes(path, orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n")
    return path


def read_sidecar(data_path: Path) -> dict[str, Any] | None:
    path = sidecar_path(data_path)
    if not path.exists():
        return None
    try:
        value = loads_exact(path.read_bytes())  # bounded nesting, exact big integers
    except orjson.JSONDecodeError as err:
        raise DecodeError(f"sidecar is not valid JSON ({err})", location=str(path)) from None
    if not isinstance(value, dict):
        raise DecodeError("sidecar is not a JSON object", location=str(path))
    return value


def record_import(data_path: Path, target: str, records: int) -> None:
    """Append an import to the sidecar's history, keeping Vex's imported_to/imported_at current.

    Export fields (exported_at, checksum, record_count) are never touched.
    """
    current = read_sidecar(data_path)
    if current is None:
        return
    now = format_timestamp(utc_now_ms())
    history = current.get("imports")
    current["imports"] = (history if isinstance(history, list) else []) + [
        {"imported_to": target, "imported_at": now, "records": records}
    ]
    current["imported_to"] = target
    current["imported_at"] = now
    atomic_write_bytes(sidecar_path(data_path), orjson.dumps(current, option=orjson.OPT_INDENT_2) + b"\n")


class StreamChecksum:
    """SHA-256 of a file's bytes fed in order, in both forms a sidecar may record: of every
    byte, and of the bytes without a final newline (Vex's convention). One hash is kept: the
    last piece fed is held back, so the final newline can be left out at the end."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._held = b""
        self.size = 0

    def update(self, data: bytes) -> None:
        if not data:
            return
        if self._held:
            self._hash.update(self._held)
        self._held = data
        self.size += len(data)

    def update_from(self, path: Path, end: int) -> None:
        """Feed the first ``end`` bytes of ``path`` (what a resumed read starts after)."""
        with open(path, "rb") as handle:
            left = end
            while left > 0 and (chunk := handle.read(min(left, 1 << 20))):
                self.update(chunk)
                left -= len(chunk)

    def digests(self) -> tuple[str, str]:
        """(hex SHA-256 of every byte, hex SHA-256 without the final newline)."""
        whole, trimmed = self._hash.copy(), self._hash.copy()
        whole.update(self._held)
        trimmed.update(self._held[:-1] if self._held.endswith(b"\n") else self._held)
        return whole.hexdigest(), trimmed.hexdigest()


def file_checksum(path: Path) -> tuple[str, str]:
    """SHA-256 of the whole file, and of the file without its final newline (Vex's form)."""
    stream = StreamChecksum()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            stream.update(chunk)
    return stream.digests()


def recorded_checksum(data_path: Path) -> str | None:
    """The hex SHA-256 a data file's sidecar records, or None (no sidecar, or no checksum)."""
    meta = read_sidecar(data_path)
    recorded = meta.get("checksum") if meta else None
    if not isinstance(recorded, str) or not recorded.startswith("sha256:"):
        return None
    return recorded.split(":", 1)[1].lower()


def claims_empty(meta: dict[str, Any] | None) -> bool:
    """A sidecar of an empty export as Vex writes it: no checksum (null) and 0 records."""
    return meta is not None and meta.get("checksum") is None and meta.get("record_count") == 0


def holds_no_records(data_path: Path) -> bool:
    """True when the data file has no line a reader takes as a record (blank lines, ``#``
    comments and a BOM aside: the reading rules of connectors/vmig.iter_lines)."""
    from .connectors.vmig import iter_lines  # the connector imports this module

    return next(iter(iter_lines(data_path)), None) is None


def checksum_status(expected: str, whole: str, trimmed: str) -> str:
    """"ok", "ok-vex-convention" (the bytes without the final newline match) or "mismatch"."""
    if expected == whole:
        return "ok"
    return "ok-vex-convention" if expected == trimmed else "mismatch"


class ChecksumResult(dict[str, Any]):
    """``status`` is "ok", "ok-vex-convention", "ok-empty" (Vex's sidecar of an empty export,
    and the file holds no record), "mismatch" or "no-sidecar"/"no-checksum"."""

    @property
    def ok(self) -> bool:
        return str(self["status"]).startswith("ok")


def verify_checksum(data_path: Path) -> ChecksumResult:
    meta = read_sidecar(data_path)
    if meta is None:
        return ChecksumResult(status="no-sidecar", sidecar=str(sidecar_path(data_path)))
    expected = recorded_checksum(data_path)
    if expected is None:
        if claims_empty(meta):
            status = "ok-empty" if holds_no_records(data_path) else "mismatch"
            return ChecksumResult(status=status, expected=None, sidecar=str(sidecar_path(data_path)))
        return ChecksumResult(status="no-checksum", sidecar=str(sidecar_path(data_path)))
    whole, trimmed = file_checksum(data_path)
    return ChecksumResult(status=checksum_status(expected, whole, trimmed), expected=expected,
                          actual=whole, sidecar=str(sidecar_path(data_path)))

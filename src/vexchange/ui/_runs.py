"""The runs view: the receipts and rejects files that belong to the locations given.

Which files may be read is decided once, at start: the receipt a run into a location leaves
(``<base>.receipt.json``, where ``<base>`` is the library's run-file base for that location, so
the same place ``vex migrate`` writes to), the rejects file beside it, and a receipt or rejects
file given as the location itself. A receipt's ``rejects_file`` is followed only when it sits in
the receipt's own folder. No request names a path: the browser asks for run 0, 1, ...
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from ..api import _run_base
from ..connectors._base import Connector
from ..engine.receipt import Receipt, load_receipt
from ..errors import DecodeError

__all__ = ["RunFiles", "is_run_file"]

_RECEIPT = ".receipt.json"
_REJECTS = ".rejects.jsonl"
_ROWS = 200
_SEARCHED = 32 * 1024 * 1024
"""Rejects files up to this size are searched for the record a record view shows."""


def is_run_file(location: str) -> bool:
    return location.endswith((_RECEIPT, _REJECTS))


class _Run:
    def __init__(self, receipt: Path | None, rejects: Path | None, role: str) -> None:
        self.receipt, self.rejects, self.role = receipt, rejects, role
        self._by_reason: tuple[Counter[str], int] | None = None

    def load(self) -> Receipt | None:
        return None if self.receipt is None else load_receipt(self.receipt)

    def reason_counts(self) -> tuple[Counter[str], int]:
        """Rejected lines per reason, over the whole file (counted once, then kept)."""
        if self._by_reason is None:
            counts: Counter[str] = Counter()
            lines = 0
            for _, row in self.rows():
                lines += 1
                counts[str(row.get("reason", "(unreadable line)"))] += 1
            self._by_reason = (counts, lines)
        return self._by_reason

    def rows(self) -> Iterator[tuple[int, dict[str, Any]]]:
        if self.rejects is None or not self.rejects.is_file():
            return
        with self.rejects.open("rb") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError:
                    row = {"reason": "(unreadable line)", "detail": line[:200].decode("utf-8", "replace")}
                yield n, row if isinstance(row, dict) else {"reason": "(not an object)", "record": row}


class RunFiles:
    """The run files of the locations given, found at start."""

    def __init__(self, locations: list[tuple[str, str | None, Connector | None]]) -> None:
        self.runs: list[_Run] = []
        for role, given, store in locations:
            if given is not None and is_run_file(given):
                path = Path(given)
                if given.endswith(_RECEIPT):
                    self._add(path, None, role)
                else:
                    self.runs.append(_Run(None, path, role))
            elif store is not None:
                base = _run_base(store, None)
                receipt = base.with_name(base.name + _RECEIPT)
                rejects = base.with_name(base.name + _REJECTS)
                if receipt.is_file():
                    self._add(receipt, rejects, role)
                elif rejects.is_file():
                    self.runs.append(_Run(None, rejects, role))

    def _add(self, receipt: Path, rejects: Path | None, role: str) -> None:
        named = rejects
        try:
            saved = load_receipt(receipt)
            if saved.rejects_file:
                candidate = Path(saved.rejects_file)
                if candidate.parent.resolve() == receipt.parent.resolve():
                    named = candidate
        except DecodeError:
            pass  # shown as the receipt's error by summary()
        self.runs.append(_Run(receipt, named, role))

    def summary(self) -> list[dict[str, Any]]:
        out = []
        for index, run in enumerate(self.runs):
            entry: dict[str, Any] = {"run": index, "role": run.role,
                                     "receipt_file": None if run.receipt is None else str(run.receipt),
                                     "rejects_file": None if run.rejects is None else str(run.rejects),
                                     "receipt": None, "error": None}
            try:
                saved = run.load()
                if saved is not None:
                    entry["receipt"] = {k: v for k, v in saved.to_dict().items() if k != "namespaces"}
                    entry["receipt"]["namespaces"] = {
                        ns: {"source": pair.source.get("count"), "written": pair.written.get("count")}
                        for ns, pair in saved.namespaces.items()}
            except DecodeError as err:
                entry["error"] = str(err)
            counts, lines = run.reason_counts()
            entry["rejects"] = {"lines": lines, "by_reason": dict(counts.most_common())}
            out.append(entry)
        return out

    def rejected(self, run: int, *, offset: int = 0, reason: str | None = None,
                 limit: int = _ROWS) -> dict[str, Any]:
        """A page of a run's rejects file: line number, reason, detail, id, namespace, location
        and the whole record as the file holds it."""
        if not 0 <= run < len(self.runs):
            return {"rows": [], "total": 0}
        rows, matched = [], 0
        for line, row in self.runs[run].rows():
            if reason is not None and str(row.get("reason")) != reason:
                continue
            matched += 1
            if offset < matched <= offset + limit:
                record = row.get("record")
                rows.append({"line": line, "reason": row.get("reason"), "detail": row.get("detail"),
                             "id": row.get("id"), "namespace": row.get("namespace"),
                             "location": row.get("location"),
                             "record": None if record is None
                             else orjson.dumps(record).decode()[:20_000]})
        return {"rows": rows, "total": matched, "offset": offset}

    def rejects_of(self, key: tuple[str | None, str]) -> list[dict[str, Any]]:
        """Where a record was refused, for the record view: run, line, reason, detail."""
        out = []
        for index, run in enumerate(self.runs):
            if run.rejects is None or not run.rejects.is_file() or run.rejects.stat().st_size > _SEARCHED:
                continue  # a very large rejects file is read page by page in the runs view instead
            for line, row in run.rows():
                if row.get("id") == key[1] and row.get("namespace") == key[0]:
                    out.append({"run": index, "line": line, "reason": row.get("reason"),
                                "detail": row.get("detail")})
        return out

"""What the page asks for, as plain JSON-ready data: one method per endpoint.

The inspector holds the scan of the location (and of ``--against``'s ``verify`` diff, in its own
thread), the sample the map and the search work on, and the run files found at start. Every
read goes through the library (``inspect``, ``open_store``, ``verify``, ``Searcher``), and only
to the locations given.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import msgspec

from ..api import Location, open_store
from ..checks import verify
from ..connectors._base import Connector
from ..errors import UsageError, VexError
from ..record import MemoryRecord
from ..results import AgainstCheck
from . import _map, _search
from ._records import Key, diff_records, find_records, record_key, record_view
from ._runs import RunFiles, is_run_file
from ._scan import Scan

__all__ = ["Inspector"]

_CHANGED_DIFFS = 50
_CACHED = 64


class Inspector:
    def __init__(self, location: Location, *, against: Location | None, sample_size: int) -> None:
        self.location, self.against = location, against
        run_only = isinstance(location, str | Path) and is_run_file(str(location))
        self.read_checks: tuple[str, ...] = ()
        self.scan: Scan | None = None if run_only else Scan(location, sample_size=sample_size)
        self.pack: Path | None = None
        described: dict[str, Any] = {"location": str(location)}
        store: Connector | None = None
        if not run_only:
            store = open_store(location)
            described = store.describe()
            self.read_checks = store.read_checks
            if store.name in ("cartridge", "vectorpack"):
                self.pack = store.run_files_base()
        other = None if against is None else open_store(against)
        self.described = {"connector": None if store is None else store.name, **described,
                          "against": None if other is None else other.describe()["location"]}
        self.runs = RunFiles([("location", None if isinstance(location, Connector) else str(location), store),
                              *([] if other is None else [("against", None, other)])])
        self._lock = threading.Lock()
        self._index: dict[Key, int] | None = None
        self._keywords: _search.Keywords | None = None
        self._manifest: dict[str, Any] | None = None
        self._matrices: dict[str, _search.Matrix] = {}
        self._maps: dict[tuple[str, str], dict[str, Any]] = {}
        self._found: OrderedDict[tuple[str, Key], MemoryRecord | None] = OrderedDict()
        self.diff_state = "none" if against is None else "running"
        self.diff_error: str | None = None
        self.diff: dict[str, Any] | None = None

    def start(self) -> Inspector:
        if self.scan is not None:
            self.scan.start()
        if self.against is not None:
            threading.Thread(target=self._run_diff, name="vex-ui-verify", daemon=True).start()
        return self

    def stop(self) -> None:
        if self.scan is not None:
            self.scan.stop()

    # ------------------------------------------------------------------------------ overview

    def status(self) -> dict[str, Any]:
        scan = self.scan
        return {"store": self.described, "pack": self.pack is not None,
                "scan": None if scan is None else {
                    "state": scan.state, "seen": scan.seen, "expected": scan.expected,
                    "seconds": scan.seconds, "error": scan.error},
                "diff": {"state": self.diff_state, "error": self.diff_error},
                "embedders": _search.embedders()}

    def overview(self) -> dict[str, Any]:
        scan = self._ready()
        assert scan.report is not None
        return {"store": self.described, "inspect": msgspec.to_builtins(scan.report),
                "checks": self._checks(),
                "histogram": scan.histogram(), "sample": self._sample_info(scan),
                "scan_seconds": scan.seconds,
                "unreadable_first": [msgspec.to_builtins(r) | {"record": None} for r in scan.rejects[:50]]}

    def _checks(self) -> dict[str, Any]:
        """What the format records to check against, beside the sidecar: the checks the scan's
        read made as it went (a failure would have failed the scan), and a VectorPack's manifest
        and hashes (``verify_pack``, once)."""
        with self._lock:
            if self._manifest is None and self.pack is not None and self.pack.is_dir():
                from ..pack.vectorpack import verify_pack

                try:
                    self._manifest = verify_pack(self.pack)
                except VexError as err:
                    self._manifest = {"ok": False, "problems": [str(err)]}
        return {"read_checks": list(self.read_checks), "manifest": self._manifest, "bytes": self._size(),
                "unverified": None if self.scan is None else self.scan.unverified}

    def _size(self) -> int | None:
        """The location's size on disk: a file's, or a directory's files' (a VectorPack)."""
        store = open_store(self.location)
        path = store.run_files_base()
        if path is None or not path.exists():
            return None
        if path.is_file():
            return path.stat().st_size
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())

    def _sample_info(self, scan: Scan) -> dict[str, Any]:
        assert scan.report is not None
        return {"size": len(scan.sample), "records": scan.report.records, "sampled": scan.sampled,
                "limit": scan.sample_size}

    def _ready(self) -> Scan:
        if self.scan is None:
            raise UsageError("this location is a run file: only the runs view applies")
        if self.scan.state != "ready":
            raise UsageError(f"the scan is {self.scan.state}" +
                             (f": {self.scan.error}" if self.scan.error else ""))
        return self.scan

    # ----------------------------------------------------------------------------------- map

    def vector_names(self) -> dict[str, int]:
        scan = self._ready()
        names: dict[str, int] = {}
        for record in scan.sample:
            for name in record.vectors:
                names[name] = names.get(name, 0) + 1
        return dict(sorted(names.items(), key=lambda kv: -kv[1]))

    def matrix(self, vector: str) -> _search.Matrix:
        scan = self._ready()
        with self._lock:
            if vector not in self._matrices:
                self._matrices[vector] = _search.Matrix.of(scan.sample, vector)
            return self._matrices[vector]

    def map(self, vector: str | None, method: str, colour: str) -> dict[str, Any]:
        scan = self._ready()
        names = self.vector_names()
        if not names:
            return {"points": 0, "vectors": {}, "reason": "no record in the sample has a vector"}
        vector = next(iter(names)) if vector is None else vector
        if vector not in names:
            raise UsageError(f"no vector named {vector!r} in the sample")
        if method not in _map.methods():
            raise UsageError(f"projection {method!r} is not available",
                             hint="pca, or umap with umap-learn installed")
        m = self.matrix(vector)
        with self._lock:
            if (vector, method) not in self._maps:
                self._maps[vector, method] = _map.project(m.raw, method)
        projected = self._maps[vector, method]
        records = [scan.sample[i] for i in m.rows]
        return {"vector": vector, "dims": m.dims, "method": method, "methods": _map.methods(),
                "vectors": names, "points": len(m.rows), "rows": m.rows.tolist(),
                "left_out": m.left_out, **projected,
                "colour": _map.colour_by(records, colour, vector), "colour_keys": _map.colour_keys(records),
                "sample": self._sample_info(scan)}

    def point(self, index: int) -> dict[str, Any]:
        scan = self._ready()
        if not 0 <= index < len(scan.sample):
            raise UsageError("no such sample point")
        record = scan.sample[index]
        return {"i": index, "key": [record.namespace, record.id], "text": (record.text or "")[:300]}

    # -------------------------------------------------------------------------------- search

    def search(self, mode: str, query: str | None, index: int | None, key: Key | None,
               vector: str | None, embedder: str | None, k: int) -> dict[str, Any]:
        scan = self._ready()
        k = max(1, min(k, 200))
        record = self._record_for_search(index, key, scan) if mode == "record" else None
        if self.pack is not None:
            hits = _search.pack_search(self.pack, mode, query, record, vector or "", embedder, k)
        else:
            names = self.vector_names()
            name = vector if vector is not None else next(iter(names), "")
            matrix = self.matrix(name) if mode != "keyword" else None
            hits = _search.sample_search(scan.sample, self.keywords() if mode == "keyword" else None,
                                         matrix, mode, query, record, name, embedder, k)
        index_of = self._sample_index()
        for hit in hits:
            hit["i"] = index_of.get((hit["key"][0], hit["key"][1]))
        return {"mode": mode, "hits": hits, "pack": self.pack is not None,
                "sample": self._sample_info(scan), "embedders": _search.embedders()}

    def keywords(self) -> _search.Keywords:
        scan = self._ready()
        with self._lock:
            if self._keywords is None:
                self._keywords = _search.Keywords(scan.sample)
            return self._keywords

    def _record_for_search(self, index: int | None, key: Key | None, scan: Scan) -> MemoryRecord:
        if index is not None and 0 <= index < len(scan.sample):
            return scan.sample[index]
        if key is not None:
            found = self._find("location", key)
            if found is not None:
                return found
        raise UsageError("no such record to search from")

    def _sample_index(self) -> dict[Key, int]:
        scan = self._ready()
        with self._lock:
            if self._index is None:
                self._index = {record_key(r): i for i, r in enumerate(scan.sample)}
            return self._index

    # -------------------------------------------------------------------------------- record

    def record(self, side: str, index: int | None, key: Key | None, record_id: str | None = None,
               ) -> dict[str, Any]:
        """One record, by its place in the sample, its key, or (for the ids a diff lists, which
        name no namespace) its id alone: then the first record with that id."""
        if side not in ("location", "against") or (side == "against" and self.against is None):
            raise UsageError("no such side")
        record: MemoryRecord | None = None
        in_sample = False
        if side == "location" and index is not None:
            scan = self._ready()
            if 0 <= index < len(scan.sample):
                record, in_sample = scan.sample[index], True
        if record is None and key is not None:
            if side == "location" and self.scan is not None and self.scan.state == "ready":
                at = self._sample_index().get(key)
                if at is not None:
                    record, in_sample, index = self.scan.sample[at], True, at
            if record is None:
                record = self._find(side, key)
        if record is None and key is None and record_id is not None:
            location = self.location if side == "location" else self.against
            assert location is not None
            found = find_records(location, ids=[record_id])
            record = next(iter(found.values()), None)
        if record is None:
            raise UsageError("no such record in this location")
        view = record_view(record)
        view.update(side=side, in_sample=in_sample, i=index if in_sample else None,
                    rejected_in=self.runs.rejects_of(record_key(record)),
                    lineage=self._lineage(record, side))
        return view

    def _find(self, side: str, key: Key) -> MemoryRecord | None:
        cache_key = (side, key)
        with self._lock:
            if cache_key in self._found:
                return self._found[cache_key]
        location = self.location if side == "location" else self.against
        assert location is not None
        found = find_records(location, [key]).get(key)
        with self._lock:
            self._found[cache_key] = found
            while len(self._found) > _CACHED:
                self._found.popitem(last=False)
        return found

    def _lineage(self, record: MemoryRecord, side: str) -> dict[str, Any]:
        """Where the record came from, as far as the format says: its source_store, the file's
        sidecar (exported from, imported to), and the runs whose receipts name its namespace."""
        sidecar = None
        location = self.location if side == "location" else self.against
        store = open_store(location) if location is not None else None
        base = store.run_files_base() if store is not None else None
        if store is not None and store.name == "vmig" and base is not None:
            from ..sidecar import read_sidecar

            try:
                meta = read_sidecar(base)
            except VexError:
                meta = None
            if meta is not None:
                sidecar = {k: v for k, v in meta.items() if k in (
                    "exported_at", "source_store", "imported_to", "imported_at", "history", "imports",
                    "record_count", "vmig_version", "format")}
        ns = "" if record.namespace is None else record.namespace
        runs = []
        for entry in self.runs.summary():
            receipt = entry["receipt"]
            if receipt is not None and ns in receipt.get("namespaces", {}):
                runs.append({"run": entry["run"], "role": entry["role"], "status": receipt.get("status"),
                             "operation": receipt.get("operation"),
                             "finished_at": receipt.get("finished_at")})
        return {"source_store": record.source_store, "sidecar": sidecar, "runs": runs}

    # ---------------------------------------------------------------------------------- runs

    def runs_view(self) -> dict[str, Any]:
        return {"runs": self.runs.summary(), "diff": self.diff_view()}

    def rejected(self, run: int, offset: int, reason: str | None) -> dict[str, Any]:
        return self.runs.rejected(run, offset=offset, reason=reason)

    def diff_view(self) -> dict[str, Any]:
        return {"state": self.diff_state, "error": self.diff_error, **(self.diff or {})}

    def _run_diff(self) -> None:
        assert self.against is not None
        try:
            report = verify(self.location, against=self.against)
            check = next(c for c in report.checks if isinstance(c, AgainstCheck))
            ids = check.changed_ids[:_CHANGED_DIFFS]
            mine = find_records(self.location, ids=ids)
            theirs = find_records(self.against, ids=ids)
            changes = [{"key": [k[0], k[1]], "fields": diff_records(theirs[k], mine[k])}
                       for k in mine if k in theirs and mine[k] != theirs[k]]
            self.diff = {"report": msgspec.to_builtins(report), "changes": changes}
            self.diff_state = "ready"
        except VexError as err:
            self.diff_error, self.diff_state = str(err), "failed"
        except Exception as err:  # shown on the page: the other views go on
            self.diff_error, self.diff_state = f"{type(err).__name__}: {err}", "failed"


def parse_key(text: str | None) -> Key | None:
    """A record key from the page: JSON ``[namespace or null, id]``."""
    if text is None:
        return None
    try:
        value = msgspec.json.decode(text.encode())
    except msgspec.DecodeError:
        raise UsageError("a record key is JSON: [namespace or null, id]") from None
    if (not isinstance(value, list) or len(value) != 2 or not isinstance(value[1], str)
            or not (value[0] is None or isinstance(value[0], str))):
        raise UsageError("a record key is JSON: [namespace or null, id]")
    return (value[0], value[1])


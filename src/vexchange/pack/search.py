"""Retrieval governance over a cartridge: ranked search, and feedback that moves a memory's Elo.

Search ranks candidates by

    score = w_similarity * similarity + w_elo * tanh((elo - 1200) / 400)
            + w_recency * 2 ** (-age_days / half_life_days)

``similarity`` is the cosine between the query and the record's vector (vector search) or the
record's BM25 score divided by the best candidate's (keyword search, FTS5). ``elo`` is 1200
when a record has none; ``age`` counts from ``updated_at``, else ``created_at`` (no timestamp:
the recency term is 0). Defaults: w_similarity 1.0, w_elo 0.1, w_recency 0.1, half-life 30
days. The exact search scans every vector in chunks (flat memory); the ``candidates`` best by
similarity (default 10 x k) are then re-ranked. Ties break by namespace, then id.

Feedback records that a memory was used and whether it helped: Elo moves as a game against
a 1200 opponent (K = 32), ``uses``/``helpful`` count up, and the update is written to the
cartridge's ``feedback`` table and as one line of ``<cartridge>.feedback.jsonl``, the receipt,
whose SHA-256 the table keeps.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import orjson

from .._json import dumps_exact, loads_exact
from .._time import format_timestamp, utc_now_ms
from ..embed import query_vector
from ..errors import UsageError
from ..results import SearchHit
from .cartridge import Cartridge, nskey

__all__ = ["SearchHit", "Searcher", "Weights", "feedback", "search"]

BASE_ELO = 1200.0
K_FACTOR = 32.0
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Weights:
    similarity: float = 1.0
    elo: float = 0.1
    recency: float = 0.1
    half_life_days: float = 30.0


class Searcher:
    """A cartridge, or a VectorPack directory, opened once for many queries. A pack is checked
    when opened (its cartridge's hash, and its indexes' when ``vex pack reindex`` built them,
    which are then memory-mapped); queries after that cost only the search.

    With a usearch index in the pack (``vex pack reindex --ann usearch``) a vector query takes
    its candidates from the HNSW graph (approximate: a true neighbour can be missed) and scores
    them exactly from the flat index; ``exact=True`` scans every vector instead."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.manifest: dict[str, Any] | None = None
        self._derived: dict[tuple[str, str], Any] = {}
        if self.path.is_dir():
            from .vectorpack import open_pack

            self.cartridge, _, self.manifest = open_pack(self.path)
        else:
            self.cartridge = Cartridge(self.path)

    def index(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The pack's flat index of vector ``name`` (hash-checked, memory-mapped), if built."""
        return self._derived_index("flat", name)  # type: ignore[no-any-return]

    def ann_index(self, name: str) -> Any:
        """The pack's usearch graph of vector ``name`` (hash- and header-checked), if built."""
        return self._derived_index("ann", name)

    def _derived_index(self, kind: str, name: str) -> Any:
        """Each derived index is checked and loaded once, on first use; a bare cartridge has none."""
        if self.manifest is None:
            return None
        if (kind, name) not in self._derived:
            from .vectorpack import ann_index, flat_index

            load = flat_index if kind == "flat" else ann_index
            self._derived[kind, name] = load(self.path, self.manifest, name)
        return self._derived[kind, name]

    def search(self, *, query: str | None = None, vector: list[float] | None = None,
               keyword: str | None = None, k: int = 10, embed_model: str | None = None,
               vector_name: str = "", weights: Weights = Weights(), candidates: int | None = None,
               now_ms: int | None = None, exact: bool = False) -> list[SearchHit]:
        """The ``k`` best records for a text query (embedded with ``embed_model``), a vector,
        or a keyword query; each hit with its score and the terms that made it. ``exact``
        ignores an approximate index."""
        pool = candidates or max(10 * k, 50)
        if keyword is not None:
            found = _keyword(self.cartridge, keyword, pool)
        else:
            q = query_vector(query, vector, embed_model)[0]
            index = self.index(vector_name)
            if index is None:
                found = _nearest(self.cartridge, q, vector_name, pool)
            else:
                ann = None if exact else self.ann_index(vector_name)
                found = _nearest_flat(index, q, pool) if ann is None else _nearest_ann(ann, index, q, pool)
        return _rank(self.cartridge, found, k, weights, now_ms if now_ms is not None else utc_now_ms())

    def close(self) -> None:
        self.cartridge.close()


def search(path: str | Path, **options: Any) -> list[SearchHit]:
    """One query (``Searcher.search``'s options) on a cartridge or VectorPack directory."""
    searcher = Searcher(path)
    try:
        return searcher.search(**options)
    finally:
        searcher.close()


def _nearest(cartridge: Cartridge, q: np.ndarray, name: str, pool: int) -> dict[int, float]:
    dims = cartridge.embeddings().get(name, {}).get("dims")
    if dims is None:
        raise UsageError(f"the cartridge has no vector named {name!r}")
    if dims != q.size:
        raise UsageError(f"the cartridge's {name or 'default'} vectors have {dims} dims;"
                         f" the query has {q.size}")
    best_rids = np.zeros(0, dtype=np.int64)
    best_scores = np.zeros(0)
    q32 = q.astype(np.float32)
    for rids, matrix in cartridge.iter_vectors(name):
        norms = np.linalg.norm(matrix, axis=1).astype(np.float64)
        norms[norms == 0] = 1.0
        scores = (matrix @ q32).astype(np.float64) / norms
        best_rids = np.concatenate([best_rids, rids])
        best_scores = np.concatenate([best_scores, scores])
        if best_scores.size > pool:
            keep = np.argpartition(-best_scores, pool - 1)[:pool]
            best_rids, best_scores = best_rids[keep], best_scores[keep]
    return {int(r): float(s) for r, s in zip(best_rids, best_scores, strict=False)}


def _nearest_flat(index: tuple[np.ndarray, np.ndarray], q: np.ndarray, pool: int) -> dict[int, float]:
    """Exact search over a memory-mapped matrix of normalised vectors: cosine is a dot product."""
    rids, matrix = index
    if matrix.shape[1] != q.size:
        raise UsageError(f"the index holds {matrix.shape[1]}-dim vectors; the query has {q.size}")
    q32 = q.astype(np.float32)
    scores = np.concatenate([matrix[i:i + 65_536] @ q32 for i in range(0, len(matrix), 65_536)]
                            or [np.zeros(0, dtype=np.float32)]).astype(np.float64)
    keep = np.argpartition(-scores, min(pool, len(scores)) - 1)[:pool] if len(scores) > pool else slice(None)
    return {int(r): float(s) for r, s in zip(rids[keep], scores[keep], strict=False)}


def _nearest_ann(ann: Any, index: tuple[np.ndarray, np.ndarray], q: np.ndarray,
                 pool: int) -> dict[int, float]:
    """Candidates from the HNSW graph, each scored exactly from the flat index (whose rows are
    in record-number order, so a candidate's row is found by bisection)."""
    rids, matrix = index
    if matrix.shape[1] != q.size:
        raise UsageError(f"the index holds {matrix.shape[1]}-dim vectors; the query has {q.size}")
    if not len(rids):
        return {}
    keys = np.asarray(ann.search(q.astype(np.float32), min(pool, len(rids)), threads=1).keys, dtype=np.int64)
    rows = np.searchsorted(rids, keys)
    rows = np.sort(rows[(rows < len(rids)) & (rids[np.minimum(rows, len(rids) - 1)] == keys)])
    scores = (matrix[rows] @ q.astype(np.float32)).astype(np.float64)
    return {int(r): float(s) for r, s in zip(rids[rows], scores, strict=False)}


def _keyword(cartridge: Cartridge, text: str, pool: int) -> dict[int, float]:
    phrase = '"' + text.replace('"', '""') + '"'  # an FTS5 string, so user text is not syntax
    rows = cartridge.db.execute("SELECT rowid, bm25(records_fts) FROM records_fts WHERE records_fts"
                                " MATCH ? ORDER BY bm25(records_fts) LIMIT ?", (phrase, pool)).fetchall()
    if not rows:
        return {}
    top = max(-score for _, score in rows) or 1.0
    return {int(rid): -score / top for rid, score in rows}


def _rank(cartridge: Cartridge, found: dict[int, float], k: int, weights: Weights,
          now: int) -> list[SearchHit]:
    if not found:
        return []
    rids = sorted(found)
    marks = ",".join("?" * len(rids))
    info = {row[0]: row[1:] for row in cartridge.db.execute(
        f"SELECT r.rid, r.namespace, r.id, r.text, r.created_at, r.updated_at, s.elo FROM records r"
        f" LEFT JOIN scores s ON s.rid = r.rid WHERE r.rid IN ({marks})", rids)}
    scored = []
    for rid in rids:
        namespace, rid_id, text, created, updated, elo = info[rid]
        elo_value = BASE_ELO if elo is None else float(elo)
        when = updated if updated is not None else created
        recency = 0.0 if when is None else 2 ** (-max(0, now - when) / DAY_MS / weights.half_life_days)
        elo_term = math.tanh((elo_value - BASE_ELO) / 400)
        score = (weights.similarity * found[rid] + weights.elo * elo_term + weights.recency * recency)
        scored.append(SearchHit(score=round(score, 6), similarity=round(found[rid], 6), elo=elo_value,
                                recency=round(recency, 6), namespace=namespace, id=rid_id, text=text,
                                rank=0))  # ranked once sorted
    scored.sort(key=lambda h: (-h.score, nskey(h.namespace), h.id))
    return [msgspec.structs.replace(hit, rank=rank) for rank, hit in enumerate(scored[:k], 1)]


def feedback(path: str | Path, record_id: str, *, helpful: bool, namespace: str | None = None,
             note: str | None = None, now_ms: int | None = None) -> dict[str, Any]:
    """Record one use of a memory; its Elo moves, and the receipt is returned and written."""
    target = Path(path)
    if target.parent.name == "tables" and (target.parent.parent / "manifest.yaml").exists():
        raise UsageError(f"{target} is inside a VectorPack: feedback would change it and break the"
                         " pack's hashes", hint="unpack it to a cartridge first: vex pack unpack DIR"
                         " cartridge:///path/memory.db")
    cartridge = Cartridge(target, writable=True)
    db = cartridge.db
    now = now_ms if now_ms is not None else utc_now_ms()
    try:
        row = db.execute("SELECT rid, payload FROM records WHERE nskey = ? AND id = ?",
                         (nskey(namespace), record_id)).fetchone()
        if row is None:
            raise UsageError(f"no record {record_id!r} in namespace {namespace!r} in {target}")
        rid, payload = row
        held = db.execute("SELECT elo, uses, helpful FROM scores WHERE rid = ?", (rid,)).fetchone()
        before = float(held[0]) if held and held[0] is not None else BASE_ELO
        expected = 1 / (1 + 10 ** ((BASE_ELO - before) / 400))
        after = round(before + K_FACTOR * ((1.0 if helpful else 0.0) - expected), 4)
        uses = (held[1] if held else 0) + 1
        helped = (held[2] if held else 0) + int(helpful)
        receipt = {"kind": "feedback", "cartridge": str(target.resolve()), "namespace": namespace,
                   "id": record_id, "helpful": helpful, "elo_before": before, "elo_after": after,
                   "uses": uses, "at": format_timestamp(now), "note": note,
                   "rule": f"Elo against {BASE_ELO:g}, K={K_FACTOR:g}"}
        line = orjson.dumps(receipt, option=orjson.OPT_SORT_KEYS)
        body = loads_exact(payload)
        extra = body.setdefault("extra", {})
        scores = dict(extra.get("scores") or {})
        scores.update({"elo": after, "uses": uses, "helpful": helped, "last_used_at": now})
        extra["scores"] = scores
        db.execute("BEGIN")
        db.execute("INSERT INTO scores (rid, elo, uses, helpful, last_used_at) VALUES (?,?,?,?,?)"
                   " ON CONFLICT (rid) DO UPDATE SET elo = excluded.elo, uses = excluded.uses,"
                   " helpful = excluded.helpful, last_used_at = excluded.last_used_at",
                   (rid, after, uses, helped, now))
        db.execute("UPDATE records SET payload = ? WHERE rid = ?", (dumps_exact(body), rid))
        db.execute("INSERT INTO feedback (rid, at, helpful, elo_before, elo_after, note, receipt_sha256)"
                   " VALUES (?,?,?,?,?,?,?)", (rid, now, int(helpful), before, after, note,
                                                hashlib.sha256(line).hexdigest()))
        db.execute("COMMIT")
    finally:
        cartridge.close()
    with open(target.with_name(target.name + ".feedback.jsonl"), "ab") as handle:
        handle.write(line + b"\n")
    return receipt

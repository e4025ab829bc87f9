"""Search: keyword and nearest-neighbour over the sample, or ``vex search`` over a pack.

Over a store or file the search runs on the sample the scan kept (every record when the store
holds no more than the sample's size; the page says which): keywords scored like BM25 over the
text, and cosine similarity to a record's vector or to a typed text embedded by an installed
embedder. A cartridge or VectorPack is searched whole with the library's ``Searcher``, so the
ranking is ``vex search``'s (similarity, Elo, recency), each term shown.
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from ..embed import _ALIASES, EMBEDDERS, get_embedder
from ..errors import UsageError
from ..record import MemoryRecord

__all__ = ["Keywords", "Matrix", "embedders", "pack_search", "sample_search"]

_WORD = re.compile(r"\w+", re.UNICODE)
_PREVIEW = 240


class Matrix(msgspec.Struct):
    """The sample's vectors of one name and size (the commonest size: a store may mix them),
    as rows of the sample, raw and unit-length."""

    rows: np.ndarray
    raw: np.ndarray
    unit: np.ndarray
    dims: int
    left_out: int

    @classmethod
    def of(cls, sample: list[MemoryRecord], name: str) -> Matrix:
        sizes = Counter(r.vectors[name].dims for r in sample if name in r.vectors)
        dims = sizes.most_common(1)[0][0] if sizes else 0
        rows = [i for i, r in enumerate(sample) if name in r.vectors and r.vectors[name].dims == dims]
        raw = (np.frombuffer(b"".join(sample[i].vectors[name].data for i in rows), dtype="<f4")
               .reshape(len(rows), dims) if rows else np.zeros((0, dims), dtype=np.float32))
        norms = np.linalg.norm(raw.astype(np.float64), axis=1, keepdims=True)
        unit = (raw / np.where(norms == 0, 1.0, norms)).astype(np.float32)
        return cls(np.asarray(rows, dtype=np.int64), raw, unit, dims,
                   sum(sizes.values()) - len(rows))


def embedders() -> list[str]:
    """The local embedders whose packages are installed."""
    return [name for name, (_, modules, _) in EMBEDDERS.items()
            if all(importlib.util.find_spec(m) is not None for m in modules)]


def embedder_for(sample: list[MemoryRecord], name: str) -> str | None:
    """The embedder that made the sample's vectors of ``name``, when it is a known one."""
    models = Counter(r.vectors[name].model for r in sample[:2000] if name in r.vectors)
    model = models.most_common(1)[0][0] if models else None
    return None if model is None else _ALIASES.get(model.lower(), model.lower() if model.lower()
                                                   in EMBEDDERS else None)


def _hit(rank: int, record: MemoryRecord, score: float, **terms: float) -> dict[str, Any]:
    return {"rank": rank, "key": [record.namespace, record.id], "score": score,
            "text": (record.text or "")[:_PREVIEW], **terms}


def sample_search(sample: list[MemoryRecord], keywords: Keywords | None, matrix: Matrix | None, mode: str,
                  query: str | None, record: MemoryRecord | None, vector: str, embedder: str | None,
                  k: int) -> list[dict[str, Any]]:
    if mode == "keyword":
        assert keywords is not None
        return _keyword(sample, keywords, query or "", k)
    assert matrix is not None
    if mode == "record":
        assert record is not None
        vec = record.vectors.get(vector)
        if vec is None:
            raise UsageError(f"this record has no vector named {vector!r}")
        q = vec.array().astype(np.float64)
    elif mode == "text":
        if not query:
            raise UsageError("type a text to search for")
        name = embedder or embedder_for(sample, vector)
        if name is None:
            raise UsageError("the vectors' model is not one of the local embedders: pick one",
                             hint="installed: " + (", ".join(embedders()) or "none (pip install "
                                                   "'vexchange[embed]')"))
        made = get_embedder(name)
        try:
            if made.dims != matrix.dims:
                raise UsageError(f"embedder {name} makes {made.dims}-dim vectors; these are"
                                 f" {matrix.dims}-dim: the text cannot be compared with them")
            q = made.embed([query])[0].astype(np.float64)
        finally:
            made.close()
    else:
        raise UsageError(f"no search mode {mode!r}")
    if len(q) != matrix.dims:
        raise UsageError(f"the query vector has {len(q)} dims; the sample's have {matrix.dims}")
    norm = float(np.linalg.norm(q))
    if not norm or not len(matrix.rows):
        return []
    scores = matrix.unit @ (q / norm).astype(np.float32)
    top = np.argsort(-scores, kind="stable")[:k]
    return [_hit(rank + 1, sample[int(matrix.rows[j])], float(scores[j]), similarity=float(scores[j]))
            for rank, j in enumerate(top)]


class Keywords:
    """The sample's words, counted once: an inverted index (word -> rows, counts) and lengths."""

    def __init__(self, sample: list[MemoryRecord]) -> None:
        self.postings: dict[str, tuple[list[int], list[int]]] = {}
        lengths = []
        for row, record in enumerate(sample):
            words = Counter(w.lower() for w in _WORD.findall(record.text or ""))
            lengths.append(sum(words.values()))
            for word, count in words.items():
                rows, counts = self.postings.setdefault(word, ([], []))
                rows.append(row)
                counts.append(count)
        self.lengths = np.asarray(lengths, dtype=np.float64)
        self.average = float(self.lengths.mean()) if lengths else 1.0


def _keyword(sample: list[MemoryRecord], keywords: Keywords, query: str, k: int) -> list[dict[str, Any]]:
    """BM25 (k1 1.2, b 0.75) of the query's words over the records' text."""
    terms = list(dict.fromkeys(w.lower() for w in _WORD.findall(query)))
    if not terms:
        raise UsageError("type a word to search for")
    n = len(sample)
    scores = np.zeros(n)
    for term in terms:
        rows, counts = keywords.postings.get(term, ([], []))
        if not rows:
            continue
        at = np.asarray(rows, dtype=np.int64)
        freq = np.asarray(counts, dtype=np.float64)
        idf = math.log(1 + (n - len(rows) + 0.5) / (len(rows) + 0.5))
        norm = 1.2 * (0.25 + 0.75 * keywords.lengths[at] / (keywords.average or 1.0))
        scores[at] += idf * freq * 2.2 / (freq + norm)
    found = np.flatnonzero(scores > 0)
    top = found[np.argsort(-scores[found], kind="stable")][:k]
    return [_hit(rank + 1, sample[int(j)], float(scores[j])) for rank, j in enumerate(top)]


def pack_search(path: Path, mode: str, query: str | None, record: MemoryRecord | None, vector: str,
                embedder: str | None, k: int) -> list[dict[str, Any]]:
    """``vex search`` on a cartridge or VectorPack: the Elo-modulated ranking, every term."""
    from ..pack.search import Searcher

    searcher = Searcher(path)
    try:
        if mode == "keyword":
            hits = searcher.search(keyword=query or "", k=k)
        elif mode == "text":
            if not embedder:
                raise UsageError("pick an embedder for a text query")
            hits = searcher.search(query=query, embed_model=embedder, k=k, vector_name=vector)
        elif mode == "record" and record is not None and vector in record.vectors:
            hits = searcher.search(vector=record.vectors[vector].tolist(), k=k, vector_name=vector)
        else:
            raise UsageError("no such search")
    finally:
        searcher.close()
    return [{"rank": h.rank, "key": [h.namespace, h.id], "score": h.score, "text": (h.text or "")[:_PREVIEW],
             "similarity": h.similarity, "elo": h.elo, "recency": h.recency} for h in hits]

"""``verify --search``: proof that search still finds the same records after a move.

Counts and digests prove the records arrived; this proves that a query still finds what it
found before. It follows Qdrant's published migration check (probe queries, recall@10 against
an exact baseline, 0.85 as the line below which an index differs) and runs it on any two
stores that have a query API (``Connector.query``). docs/search-check.md explains every figure.

1. Probes: ``probes`` records sampled from the source (the target when there is no source) by
   seeded reservoir sampling over one read, among the records in the selected namespaces that
   have the vector ``vector_name``. A probe is the record's stored vector ("vector"), or its
   text embedded with the model its vectors carry ("text", when an embedder for that model is
   installed). A vector probe's own record is left out of every result list, since finding
   itself says nothing about the index.
2. Exact search: each side's records read once more, every probe scored against every vector of
   its namespace by the reference metric (the source's declared metric, else the target's, else
   cosine), keeping only the best ``k`` per probe while scanning (memory: probes x k, plus a
   page).
3. Store search: each probe through each side's own query API (a side without one is searched
   exactly, and says so), timed.
4. Figures: overlap@k between the two sides' results, recall@k of each against its exact
   results, the metric, sizes and normalisation each side uses, latency. The check fails when
   the target's recall@k, or the overlap, is below ``threshold``, and says why.

With a source, the target is scanned first, and the probe records' vectors there are compared
with the source's. When most differ (rewritten by ``--adapter`` or ``--reembed``: another space,
where the source's probes and results mean nothing), overlap is not the question: the check
judges the target's own search instead (probes from the target, exact search over its own
vectors by its own metric) and says so first in its notes or reasons.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .connectors._base import Connector, QueryHit
from .errors import UsageError
from .record import MemoryRecord
from .results import Latency, SearchCheck, SearchSide

__all__ = ["SearchOptions", "check_search"]

_PAGE = 1000
_UNIT = 1e-3
"""A vector counts as normalised when its L2 norm is within this of 1."""
_SAME = 0.999
"""Cosine at or above which a target vector counts as the source's vector of that record."""
_OVERFETCH = 4
"""How many times more hits to ask a store for when it must be filtered here (a probe without a
namespace in a store that also holds namespaced records)."""

Key = tuple[str | None, str]


@dataclass(frozen=True)
class SearchOptions:
    """How ``verify(..., search=SearchOptions(...))`` checks search (``search=True``: these
    defaults)."""

    k: int = 10
    probes: int = 100
    threshold: float = 0.85
    seed: int = 0
    probe: Literal["vector", "text"] = "vector"
    vector_name: str = ""
    embed_model: str | None = None
    """For text probes: the embedder to use; default the model the sampled records carry."""

    def checked(self) -> SearchOptions:
        if self.k < 1 or self.probes < 1:
            raise UsageError("--search-k and --search-probes must be at least 1")
        if not 0.0 <= self.threshold <= 1.0:
            raise UsageError(f"--search-threshold is a fraction between 0 and 1, not {self.threshold}")
        if self.probe not in ("vector", "text"):
            raise UsageError(f"--search-probe is 'vector' or 'text', not {self.probe!r}")
        return self


@dataclass
class _Probe:
    key: Key
    vector: np.ndarray
    text: str | None
    model: str | None


@dataclass
class _Scan:
    """What one side's exact scan saw, and each probe's best ``depth`` (score, key)."""

    records: int = 0
    dims: Counter[int] = field(default_factory=Counter)
    unit: int = 0
    zero: int = 0
    namespaces: set[str | None] = field(default_factory=set)
    best: list[list[tuple[float, Key]]] = field(default_factory=list)
    held: dict[Key, np.ndarray] = field(default_factory=dict)
    """The vectors of the records asked for (``want``): the probes' own records."""


def check_search(target: Connector, source: Connector | None, options: SearchOptions,
                 namespaces: Sequence[str] | None) -> SearchCheck:
    """Run the search check (module docstring). ``target`` must have a query API."""
    opts = options.checked()
    if not target.can_query():
        raise UsageError(f"{target.name} has no query API vexchange can use, so its search cannot be"
                         " checked", hint="verify --search needs a target store that answers vector"
                                          " queries (docs/search-check.md lists them)")
    with target:
        t_space = target.vector_spaces().get(opts.vector_name)
    s_space = None
    if source is not None:
        with source:
            s_space = source.vector_spaces().get(opts.vector_name)
    metric = (s_space.metric if s_space and s_space.metric else None) or (
        t_space.metric if t_space and t_space.metric else None) or "cosine"
    probes, queries = _probes(source if source is not None else target, opts, namespaces)
    depth = opts.k + (1 if opts.probe == "vector" else 0)
    scans: dict[str, _Scan] = {}
    rewritten: tuple[int, int] | None = None
    if source is not None:  # the target first: are its vectors the source's at all?
        with target:
            scans["target"] = _exact(target, probes, queries, metric, opts.vector_name, depth, namespaces,
                                     want={p.key for p in probes})
        rewritten = _rewritten(probes, scans["target"])
        if 2 * rewritten[0] > rewritten[1]:
            # vectors rewritten on the way (--adapter, --reembed): judge the target's own search
            source, s_space, scans = None, None, {}
            metric = (t_space.metric if t_space and t_space.metric else None) or "cosine"
            probes, queries = _probes(target, opts, namespaces)
    sides: list[tuple[Literal["source", "target"], Connector]] = [("target", target)]
    if source is not None:
        sides.insert(0, ("source", source))
    results: dict[str, SearchSide] = {}
    lists: dict[str, list[list[Key]]] = {}
    for label, store in sides:
        with store:
            scan = scans.get(label) or _exact(store, probes, queries, metric, opts.vector_name, depth,
                                              namespaces)
            exact = [_top(best, probe.key if opts.probe == "vector" else None, opts.k)
                     for best, probe in zip(scan.best, probes, strict=True)]
            if store.can_query():
                found, times = _store_search(store, probes, queries, opts, scan)
            else:
                found, times = exact, []
        space = (s_space if label == "source" else t_space)
        lists[label] = found
        results[label] = _side(store, scan, space, found, exact, times, metric, opts.vector_name)
    overlap = None
    if source is not None:
        overlap = _mean([_share(a, b) for a, b in zip(lists["source"], lists["target"], strict=True)])
    reasons, notes = _judge(results.get("source"), results["target"], overlap, opts, metric, rewritten)
    return SearchCheck(ok=not reasons, k=opts.k, probes=len(probes), probe=opts.probe, seed=opts.seed,
                       threshold=opts.threshold, metric=metric, vector_name=opts.vector_name,
                       overlap=overlap, source=results.get("source"), target=results["target"],
                       reasons=reasons, notes=notes)


def _probes(store: Connector, opts: SearchOptions,
            namespaces: Sequence[str] | None) -> tuple[list[_Probe], np.ndarray]:
    with store:
        probes = _sample(store, opts, namespaces)
    if not probes:
        raise UsageError(f"no record with a{' text and a' if opts.probe == 'text' else ''}"
                         f" {opts.vector_name or 'default'} vector to sample probe queries from",
                         hint="--search-vector NAME picks a named vector")
    return probes, _probe_vectors(probes, opts)


def _rewritten(probes: list[_Probe], scan: _Scan) -> tuple[int, int]:
    """(probe records whose target vector is not the source's, probe records found in the
    target). "Not the source's": another size, or another direction (cosine below ``_SAME``:
    normalising, or a store's rounding, keeps the direction)."""
    differ = compared = 0
    for probe in probes:
        held = scan.held.get(probe.key)
        if held is None:
            continue
        compared += 1
        a, b = probe.vector.astype(np.float64), held.astype(np.float64)
        if a.size != b.size:
            differ += 1
            continue
        na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
        same = (na == nb == 0.0) or (na > 0 and nb > 0 and float(a @ b) / (na * nb) >= _SAME)
        differ += not same
    return differ, compared


# ------------------------------------------------------------------------------------- probes


def _records(store: Connector, namespaces: Sequence[str] | None) -> Iterator[list[MemoryRecord]]:
    for page in store.read(batch_size=_PAGE):
        yield [item for item in page.items if isinstance(item, MemoryRecord)
               and (not namespaces or item.namespace in namespaces)]


def _sample(store: Connector, opts: SearchOptions, namespaces: Sequence[str] | None) -> list[_Probe]:
    """Seeded reservoir sampling (Algorithm R, one draw per eligible record, drawn a page at a
    time): the same records read in the same order give the same probes."""
    rng = np.random.default_rng(opts.seed)
    kept: list[_Probe] = []
    seen = 0
    for records in _records(store, namespaces):
        eligible = [r for r in records if opts.vector_name in r.vectors
                    and (opts.probe == "vector" or r.text)]
        if not eligible:
            continue
        draws = rng.integers(0, np.arange(seen, seen + len(eligible)) + 1)
        for record, draw in zip(eligible, draws, strict=True):
            vec = record.vectors[opts.vector_name]
            if len(kept) < opts.probes:
                kept.append(_Probe((record.namespace, record.id), vec.array(), record.text, vec.model))
            elif draw < opts.probes:
                kept[int(draw)] = _Probe((record.namespace, record.id), vec.array(), record.text, vec.model)
            seen += 1
    return kept


def _probe_vectors(probes: list[_Probe], opts: SearchOptions) -> np.ndarray:
    """The query vectors, one row a probe (float32). Text probes are embedded here."""
    if opts.probe == "vector":
        return np.stack([p.vector.astype(np.float32) for p in probes])
    from .embed import get_embedder

    name = opts.embed_model
    if name is None:
        models = Counter(p.model for p in probes if p.model)
        if not models:
            raise UsageError("text probes need the model that embedded the records, and the sampled"
                             " records name none", hint="give --search-embed-model NAME")
        name = models.most_common(1)[0][0]
    try:
        embedder = get_embedder(name)
    except UsageError as err:
        whose = "was asked for" if opts.embed_model else "embedded the records"
        raise UsageError(f"the model {name!r} {whose}, and no embedder for it is installed ({err})",
                         hint="give --search-embed-model NAME, or probe with stored vectors"
                              " (--search-probe vector)") from None
    try:
        vectors = np.asarray(embedder.embed([p.text or "" for p in probes]), dtype=np.float32)
    finally:
        embedder.close()
    if vectors.shape[1] != probes[0].vector.size:
        raise UsageError(f"the embedder {name!r} makes {vectors.shape[1]}-dim vectors; the records"
                         f" hold {probes[0].vector.size}-dim ones", hint="give the records' own model")
    return vectors


# -------------------------------------------------------------------------------- exact search


def _scores(queries: np.ndarray, matrix: np.ndarray, metric: str) -> np.ndarray:
    """Similarity (higher is nearer) of each query row to each matrix row, in float64."""
    q = queries.astype(np.float64)
    m = matrix.astype(np.float64)
    out: np.ndarray
    if metric == "dot":
        out = q @ m.T
    elif metric == "euclidean":
        out = -np.sqrt(np.maximum((q * q).sum(1)[:, None] - 2 * q @ m.T + (m * m).sum(1)[None, :], 0))
    elif metric == "manhattan":  # a query at a time: a (probes, rows, dims) block would not be small
        out = np.stack([-np.abs(m - row).sum(1) for row in q])
    else:
        qn = np.linalg.norm(q, axis=1)[:, None]
        mn = np.linalg.norm(m, axis=1)[None, :]
        out = (q @ m.T) / np.where(qn * mn == 0, 1.0, qn * mn)
    return out


def _exact(store: Connector, probes: list[_Probe], queries: np.ndarray, metric: str, name: str,
           depth: int, namespaces: Sequence[str] | None, want: set[Key] | None = None) -> _Scan:
    """One streaming read: each probe's ``depth`` best records of its namespace, the sizes
    and norms of what the side holds, and the vectors of the records in ``want``."""
    scan = _Scan(best=[[] for _ in probes])
    by_namespace: dict[str | None, list[int]] = {}
    for i, probe in enumerate(probes):
        by_namespace.setdefault(probe.key[0], []).append(i)
    dims = queries.shape[1]
    for records in _records(store, namespaces):
        groups: dict[str | None, list[MemoryRecord]] = {}
        for record in records:
            vec = record.vectors.get(name)
            scan.namespaces.add(record.namespace)
            if vec is None:
                continue
            scan.records += 1
            scan.dims[vec.dims] += 1
            norm = float(np.linalg.norm(vec.array().astype(np.float64)))
            scan.unit += abs(norm - 1.0) < _UNIT
            scan.zero += norm == 0.0
            if want and (record.namespace, record.id) in want:
                scan.held[(record.namespace, record.id)] = vec.array()
            if vec.dims == dims:
                groups.setdefault(record.namespace, []).append(record)
        for ns, group in groups.items():
            rows = by_namespace.get(ns)
            if not rows:
                continue
            matrix = np.stack([r.vectors[name].array() for r in group])
            scores = _scores(queries[rows], matrix, metric)
            keep = min(depth, len(group))
            top = np.argpartition(-scores, keep - 1, axis=1)[:, :keep]
            for at, (row, picks) in enumerate(zip(rows, top, strict=True)):
                merged = scan.best[row] + [(float(scores[at, j]), (ns, group[j].id)) for j in picks]
                merged.sort(key=lambda hit: (-hit[0], str(hit[1][0]), hit[1][1]))
                scan.best[row] = merged[:depth]
    return scan


def _top(best: list[tuple[float, Key]], own: Key | None, k: int) -> list[Key]:
    return [key for _, key in best if key != own][:k]


# -------------------------------------------------------------------------------- store search


def _store_search(store: Connector, probes: list[_Probe], queries: np.ndarray, opts: SearchOptions,
                  scan: _Scan) -> tuple[list[list[Key]], list[float]]:
    """Each probe through the store's own query API, filtered to its namespace, timed."""
    exclude_self = opts.probe == "vector"
    mixed = len(scan.namespaces) > 1
    found: list[list[Key]] = []
    times: list[float] = []
    for probe, vector in zip(probes, queries, strict=True):
        ns = probe.key[0]
        fetch = opts.k + (1 if exclude_self else 0)
        if ns is None and mixed:
            fetch *= _OVERFETCH
        start = time.perf_counter()
        hits: list[QueryHit] = store.query(vector, fetch, namespace=ns, vector_name=opts.vector_name)
        times.append(time.perf_counter() - start)
        keys = [(hit.namespace, hit.id) for hit in hits if hit.namespace == ns]
        found.append([key for key in keys if not (exclude_self and key == probe.key)][:opts.k])
    return found, times


# ------------------------------------------------------------------------------------- figures


def _share(found: list[Key], expected: list[Key]) -> float | None:
    """|found & expected| / |expected| (recall), or the overlap of two result lists; None when
    there is nothing to find."""
    size = max(len(found), len(expected))
    if size == 0:
        return None
    return len(set(found) & set(expected)) / size


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(sum(kept) / len(kept), 4) if kept else None


def _side(store: Connector, scan: _Scan, space: object, found: list[list[Key]], exact: list[list[Key]],
          times: list[float], metric: str, name: str) -> SearchSide:
    declared = getattr(space, "metric", None)
    dims = getattr(space, "dims", None)
    searches_by = (store.query_metric(name) or declared or "cosine") if store.can_query() else metric
    recall = _mean([_share(f, e) if e else None for f, e in zip(found, exact, strict=True)])
    latency = None
    if times:
        ms = np.asarray(times) * 1000.0
        latency = Latency(p50=round(float(np.percentile(ms, 50)), 3),
                          p95=round(float(np.percentile(ms, 95)), 3), mean=round(float(ms.mean()), 3))
    return SearchSide(
        location=store.describe()["location"], method="query" if store.can_query() else "exact",
        metric=declared, searches_by=searches_by, dims=dims, records=scan.records,
        sizes={str(d): n for d, n in scan.dims.most_common()},
        normalised=round(scan.unit / scan.records, 4) if scan.records else None,
        zero=scan.zero,
        keeps_normalised=bool(declared and declared in store.capabilities.normalises),
        recall=recall, latency_ms=latency)


def _judge(source: SearchSide | None, target: SearchSide, overlap: float | None, opts: SearchOptions,
           metric: str, rewritten: tuple[int, int] | None) -> tuple[list[str], list[str]]:
    """Why the check fails (reasons; empty when it passes), and what is worth knowing anyway.
    ``rewritten``: (probe records whose vectors differ, compared) when a source was given."""
    k, line = opts.k, opts.threshold
    reasons: list[str] = []
    if target.recall is not None and target.recall < line:
        reasons.append(f"the target's recall@{k} against exact {metric} search is {target.recall:.3f},"
                       f" below {line}")
    if overlap is not None and overlap < line:
        reasons.append(f"overlap@{k} between source and target results is {overlap:.3f}, below {line}")
    why: list[str] = []
    for side, label in ((source, "source"), (target, "target")):
        if side is not None and side.metric and side.metric != side.searches_by:
            why.append(f"the {label} declares {side.metric}, but its query API ranks by {side.searches_by}")
    if source is not None:
        if source.searches_by != target.searches_by:
            why.append(f"the target's metric differs: the source searches by {source.searches_by},"
                       f" the target by {target.searches_by}")
        if source.dims and target.dims and source.dims != target.dims:
            why.append(f"the vector sizes differ: the source has {source.dims} dims, the target"
                       f" {target.dims}")
        if (source.normalised is not None and target.normalised is not None
                and abs(source.normalised - target.normalised) > 0.01):
            keeper = next((label for side, label in ((source, "source"), (target, "target"))
                           if side.keeps_normalised), None)
            kept = ""
            if keeper and source.searches_by == target.searches_by == "cosine":
                kept = f": the {keeper} keeps cosine vectors at unit length, which cosine ranks the same"
            elif keeper:
                kept = f": the {keeper} keeps its vectors at unit length"
            why.append(f"normalisation differs: {source.normalised:.0%} of the source's vectors are at"
                       f" unit length, {target.normalised:.0%} of the target's{kept}")
        if source.records != target.records:
            why.append(f"the source holds {source.records} searchable records, the target"
                       f" {target.records}")
        if source.recall is not None and source.recall < line:
            why.append(f"the source's own recall@{k} is {source.recall:.3f}: its index is approximate"
                       " too, so the two cannot agree more than each agrees with exact search")
    elif target.searches_by != metric:
        why.append(f"the target searches by {target.searches_by}, the exact search by {metric}")
    if reasons and not why:
        why.append("the metric, sizes and records agree: the target's index itself is approximate"
                   " (rebuild it, or raise its search effort: ef, nprobe)")
    if rewritten is not None and source is None:
        differ, compared = rewritten
        why.insert(0, f"the target's vectors are not the source's ({differ} of {compared} probe records"
                      " hold other vectors: rewritten by --adapter or --reembed, or another model), so"
                      " overlap with the source's results is not measured; judged instead: the"
                      f" target's own search, recall@{k} of its query API against exact {metric}"
                      " search over its own stored vectors, with probes sampled from the target")
    elif rewritten is not None and rewritten[0]:
        why.append(f"{rewritten[0]} of {rewritten[1]} probe records hold other vectors in the target"
                   " than in the source")
    if reasons:
        return reasons + why, []
    return [], why

"""``vex doctor SOURCE``: what is wrong with a source before anything is moved (docs/plan.md).

One streaming read of the source, through the engine's own page reader (retries included) and
selection (``--namespace``, ``--since``, ``--until``, ``--limit``), with the engine's own vector
checks, so doctor calls a vector broken exactly when a run would refuse it:

* per vector: non-finite or ragged (a run refuses it as ``invalid_vector``), all zeros, NaN-prone
  (a float32 norm that overflows or underflows: a normalising target refuses it as
  ``not_normalisable``), not unit length;
* per source: mixed models or sizes, the declared metric against the vectors (cosine declared
  over vectors that are not unit length), no metric declared;
* across records, in a temporary SQLite index on disk (constant memory whatever the size):
  duplicate ids per namespace, exact duplicate vectors (by a 16-byte hash), records without
  text among those that would need re-embedding (no usable vector, or a model or size other
  than the most common one);
* near duplicates: cosine >= 0.99 between the vectors of a bounded, seeded reservoir sample.
"""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .connectors._base import Connector, Reject
from .connectors._registry import Location, open_store
from .engine.options import RunOptions
from .engine.run import DEFAULT_BATCH, broken_vector, not_normalisable, read_pages, wanted
from .errors import UsageError
from .plan_results import DOCTOR_SAMPLE, DoctorFinding, DoctorReport
from .record import MemoryRecord
from .retry import RetryPolicy

__all__ = ["NEAR_DUPLICATE", "doctor"]

NEAR_DUPLICATE = 0.99
"""Cosine at or above which two different vectors of the sample are near duplicates."""
DEFAULT_SAMPLE = DOCTOR_SAMPLE
_SAMPLED_SIZES = 4
"""Vector sizes sampled for near duplicates; vectors of further sizes are not compared."""
_UNIT_TOLERANCE = 1e-3
"""How far a vector's length may be from 1 and still count as normalised (float32 rounding of
a unit vector is far inside this; an unnormalised model output is far outside)."""
_EXAMPLES = 5

Severity = Literal["error", "warning", "info"]


def doctor(
    source: Location,
    *,
    namespaces: Sequence[str] | None = None,
    limit: int | None = None,
    since: str | int | None = None,
    until: str | int | None = None,
    batch_size: int | None = None,
    retries: int = 3,
    verify: bool = True,
    sample: int = DEFAULT_SAMPLE,
    source_secrets: Mapping[str, str] | None = None,
) -> DoctorReport:
    """Read ``source`` once and report what is wrong with it: mixed models or sizes, zero,
    non-finite, NaN-prone or unnormalised vectors, duplicate ids, records without the text a
    re-embedding needs, a declared metric the vectors contradict, exact and near duplicates.

    The options are the run options of the same names (``migrate``'s): which records, how they
    are read. ``sample``: vectors per size compared pairwise for near duplicates. ``ok`` is
    False when something a run would refuse or lose was found (a finding of severity
    ``error``)."""
    options = RunOptions.from_arguments(locals())
    options.validate()
    if sample < 2:
        raise UsageError("sample must be at least 2 vectors (near duplicates are pairs)")
    store = open_store(source, secrets=source_secrets)
    try:
        if not store.can_read():
            raise UsageError(f"{store.name} cannot be read; it can only be a target")
        with tempfile.TemporaryDirectory(prefix="vex-doctor-") as work:
            examiner = _Examiner(store, options, sample, Path(work) / "index.db")
            try:
                return examiner.examine()
            finally:
                examiner.close()
    finally:
        store.close()


class _Examiner:
    def __init__(self, store: Connector, options: RunOptions, sample: int, index: Path) -> None:
        self.store, self.options, self.sample_size = store, options, sample
        self.db = sqlite3.connect(index)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-16000", "temp_store=FILE"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.execute("CREATE TABLE r (ns BLOB, id BLOB, vh BLOB, key TEXT, needs INTEGER,"
                        " has_text INTEGER)")
        self.records = self.with_vector = self.without_text = 0
        self.unreadable: Counter[str] = Counter()
        self.models: Counter[str] = Counter()
        self.dims: Counter[str] = Counter()
        self.per_name: Counter[str] = Counter()
        self.not_unit: Counter[str] = Counter()
        self.bad: dict[str, Counter[str]] = {
            k: Counter() for k in ("non_finite", "zero_vectors", "nan_prone")}
        self.examples: dict[str, list[str]] = {}
        self.rng = np.random.default_rng(0)
        self.reservoir: dict[int, _Reservoir] = {}

    def close(self) -> None:
        self.db.close()

    def examine(self) -> DoctorReport:
        options = self.options
        self.store.verify_reads = options.verify
        batch = options.batch_size or DEFAULT_BATCH
        retry = RetryPolicy(attempts=options.retries)
        done = False
        for page in read_pages(self.store, batch, None, retry):
            rows: list[tuple[Any, ...]] = []
            for item in page.items:
                if options.limit is not None and self.records >= options.limit:
                    done = True
                    break
                if isinstance(item, Reject):
                    if not (options.namespaces and item.namespace is not None
                            and item.namespace not in options.namespaces):
                        self.unreadable[item.reason] += 1
                        self._example("unreadable", item.namespace, item.id)
                    continue
                if wanted(item, options):
                    rows.append(self._look(item))
            self.db.executemany("INSERT INTO r VALUES (?, ?, ?, ?, ?, ?)", rows)
            if done:
                break
        return self._report()

    # ------------------------------------------------------------------ one record

    def _look(self, record: MemoryRecord) -> tuple[Any, ...]:
        self.records += 1
        has_text = bool((record.text or "").strip())
        if not has_text:
            self.without_text += 1
        broken = broken_vector(record)
        if broken:
            self.bad["non_finite"][""] += 1
            self._example("non_finite", record.namespace, record.id)
        usable, digest = False, None
        for name, vec in record.vectors.items():
            self.per_name[name] += 1
            self.dims[f"{name}:{vec.dims}" if name else str(vec.dims)] += 1
            if broken or not vec.data or len(vec.data) % 4:
                continue
            values = vec.array()
            if not values.any():
                self.bad["zero_vectors"][name] += 1
                self._example("zero_vectors", record.namespace, record.id)
                continue
            if not_normalisable(values):
                self.bad["nan_prone"][name] += 1
                self._example("nan_prone", record.namespace, record.id)
                continue
            norm = float(np.linalg.norm(values.astype(np.float64)))
            if abs(norm - 1.0) > _UNIT_TOLERANCE:
                self.not_unit[name] += 1
                self._example(f"unnormalised:{name}", record.namespace, record.id)
            if name == "":
                usable = True
                digest = hashlib.blake2b(vec.data, digest_size=16).digest()
                self._sample(record, values / norm, digest[:8])
        vector = record.vectors.get("")
        if vector is not None:
            self.with_vector += 1
            self.models[vector.model or "(none)"] += 1
        key = f"{vector.model or ''}\0{vector.dims}" if vector is not None and usable else None
        return (_blob(record.namespace), _blob(record.id), digest, key, 0 if usable else 1, int(has_text))

    def _sample(self, record: MemoryRecord, unit: np.ndarray, digest: bytes) -> None:
        """Reservoir sampling (Algorithm R, seeded): every vector of a size equally likely kept."""
        dims = len(unit)
        pool = self.reservoir.get(dims)
        if pool is None:
            if len(self.reservoir) >= _SAMPLED_SIZES:
                return
            pool = self.reservoir[dims] = _Reservoir(self.sample_size, dims)
        pool.offer(self.rng, _label(record.namespace, record.id), unit.astype(np.float32), digest)

    def _example(self, kind: str, namespace: str | None, record_id: str | None) -> None:
        found = self.examples.setdefault(kind, [])
        if len(found) < _EXAMPLES:
            found.append(_label(namespace, record_id))

    # ------------------------------------------------------------------ the report

    def _report(self) -> DoctorReport:
        findings: list[DoctorFinding] = []
        add = findings.append
        if self.unreadable:
            detail = ", ".join(f"{reason}: {n:,}" for reason, n in self.unreadable.most_common())
            add(_finding("unreadable", "error", sum(self.unreadable.values()),
                         f"entries the source holds that cannot be read as records ({detail}); a run"
                         " refuses each, with its reason, into the rejects file", self.examples))
        bad = self.bad
        if bad["non_finite"]:
            add(_finding("non_finite", "error", bad["non_finite"].total(),
                         "records with a vector holding NaN or infinity, or not a whole float32 array;"
                         " a run refuses them as invalid_vector", self.examples))
        if bad["zero_vectors"]:
            add(_finding("zero_vectors", "warning", bad["zero_vectors"].total(),
                         "vectors of zeros only: no direction, so cosine similarity is undefined; a"
                         " target that normalises (Qdrant cosine) refuses them as not_normalisable",
                         self.examples))
        if bad["nan_prone"]:
            add(_finding("nan_prone", "warning", bad["nan_prone"].total(),
                         "vectors whose float32 length overflows or underflows (a component near"
                         " 1.8e19 or more, or every component tiny): normalising them gives NaN or"
                         " zeros, so a normalising target refuses them as not_normalisable",
                         self.examples))
        findings.extend(self._space_findings())
        findings.extend(self._mix_findings())
        findings.extend(self._index_findings())
        findings.extend(self._near_duplicates())
        spaces = self.store.vector_spaces()
        return DoctorReport(
            ok=not any(f.severity == "error" for f in findings),
            location=str(self.store.describe().get("location")), records=self.records,
            unreadable=sum(self.unreadable.values()), with_vector=self.with_vector,
            without_vector=self.records - self.with_vector, without_text=self.without_text,
            models=dict(self.models.most_common()), dims=dict(self.dims.most_common()),
            metrics={name: space.metric for name, space in sorted(spaces.items())},
            near_duplicate_sample=sum(len(p) for p in self.reservoir.values()), findings=findings)

    def _space_findings(self) -> list[DoctorFinding]:
        spaces = self.store.vector_spaces()
        out: list[DoctorFinding] = []
        for name, count in sorted(self.per_name.items()):
            label = f"vector {name!r}" if name else "default vector"
            space = spaces.get(name) or spaces.get("")
            metric = space.metric if space is not None else None
            loose = self.not_unit[name]
            examples = {"x": self.examples.get(f"unnormalised:{name}", [])}
            if loose:
                out.append(DoctorFinding(
                    kind="unnormalised", severity="info", records=loose,
                    detail=f"{loose:,} of {count:,} {label}s are not unit length (|length - 1| >"
                           f" {_UNIT_TOLERANCE}); dot product and euclidean rank them differently"
                           " from cosine", examples=examples["x"]))
            if metric == "cosine" and loose:
                out.append(DoctorFinding(
                    kind="metric_mismatch", severity="warning", records=loose,
                    detail=f"the source declares cosine for the {label} but {loose:,} of its vectors"
                           " are not unit length: a target that ranks by dot product gives other"
                           " neighbours, and one that keeps cosine vectors normalised (Qdrant)"
                           " stores other values", examples=examples["x"]))
            if metric is None:
                out.append(DoctorFinding(
                    kind="no_metric", severity="info", records=count,
                    detail=f"the source declares no metric for the {label}: a target is created"
                           " with cosine unless --metric says otherwise"
                           + ("; these vectors are not all unit length, so the choice changes"
                              " the neighbours" if loose else ""), examples=[]))
        return out

    def _mix_findings(self) -> list[DoctorFinding]:
        out: list[DoctorFinding] = []
        if len(self.models) > 1:
            top, n = self.models.most_common(1)[0]
            listed = ", ".join(f"{m}: {c:,}" for m, c in self.models.most_common(6))
            out.append(DoctorFinding(
                kind="mixed_models", severity="warning", records=self.with_vector - n,
                detail=f"default vectors come from {len(self.models)} models ({listed}); vectors of"
                       f" different models are not comparable: re-embed the {self.with_vector - n:,}"
                       f" that are not {top}, or keep them in separate collections", examples=[]))
        by_name: dict[str, Counter[str]] = {}
        for label, n in self.dims.items():
            name, _, dims = label.rpartition(":")
            by_name.setdefault(name, Counter())[dims] += n
        for name, sizes in sorted(by_name.items()):
            if len(sizes) > 1:
                top, n = sizes.most_common(1)[0]
                listed = ", ".join(f"{d}: {c:,}" for d, c in sizes.most_common(6))
                label = f"vector {name!r}" if name else "default vector"
                out.append(DoctorFinding(
                    kind="mixed_dims", severity="warning", records=sizes.total() - n,
                    detail=f"the {label} has {len(sizes)} sizes ({listed}); a target that fixes one"
                           f" size refuses the {sizes.total() - n:,} others as dims_mismatch unless"
                           " they are re-embedded or adapted (--on-dims-mismatch)", examples=[]))
        return out

    def _index_findings(self) -> list[DoctorFinding]:
        db, out = self.db, []
        db.execute("CREATE INDEX r_key ON r (ns, id)")
        extra, groups = 0, 0
        examples: list[str] = []
        for ns, rid, n in db.execute("SELECT ns, id, COUNT(*) FROM r GROUP BY ns, id HAVING COUNT(*) > 1"):
            extra, groups = extra + n - 1, groups + 1
            if len(examples) < _EXAMPLES:
                examples.append(_label(_text(ns), _text(rid)))
        if extra:
            out.append(DoctorFinding(
                kind="duplicate_ids", severity="error", records=extra,
                detail=f"{groups:,} ids appear more than once in their namespace; a run writes the"
                       f" first and refuses the {extra:,} later copies as duplicate_id", examples=examples))
        db.execute("CREATE INDEX r_vh ON r (vh)")
        shared, groups = 0, 0
        examples = []
        for vh, n in db.execute("SELECT vh, COUNT(*) FROM r WHERE vh IS NOT NULL GROUP BY vh"
                                " HAVING COUNT(*) > 1"):
            shared, groups = shared + n, groups + 1
            if len(examples) < _EXAMPLES:
                ns, rid = db.execute("SELECT ns, id FROM r WHERE vh = ? LIMIT 1", (vh,)).fetchone()
                examples.append(_label(_text(ns), _text(rid)))
        if shared:
            out.append(DoctorFinding(
                kind="duplicate_vectors", severity="info", records=shared,
                detail=f"{shared:,} records share their default vector bit for bit with another"
                       f" ({groups:,} distinct vectors): repeated memories, or one text embedded"
                       " twice; search returns them side by side", examples=examples))
        out.extend(self._missing_text())
        return out

    def _missing_text(self) -> list[DoctorFinding]:
        """Records without text among those a re-embedding would have to compute: no usable
        default vector, or a model and size other than the most common one."""
        db = self.db
        top = db.execute("SELECT key FROM r WHERE key IS NOT NULL GROUP BY key ORDER BY COUNT(*) DESC,"
                         " key LIMIT 1").fetchone()
        where = "has_text = 0 AND (needs = 1 OR key IS NOT ?)"
        count = db.execute(f"SELECT COUNT(*) FROM r WHERE {where}", (top[0] if top else None,)).fetchone()[0]
        if not count:
            return []
        examples = [_label(_text(ns), _text(rid)) for ns, rid in db.execute(
            f"SELECT ns, id FROM r WHERE {where} LIMIT {_EXAMPLES}", (top[0] if top else None,))]
        return [DoctorFinding(
            kind="missing_text", severity="warning", records=count,
            detail=f"{count:,} records would need a new vector (none usable, or not the most common"
                   " model and size) and have no text to embed: --reembed refuses them as no_text",
            examples=examples)]

    def _near_duplicates(self) -> list[DoctorFinding]:
        out: list[DoctorFinding] = []
        for dims, pool in sorted(self.reservoir.items()):
            if len(pool) < 2:
                continue
            matrix = pool.vectors()
            similar = matrix @ matrix.T
            hashes = np.frombuffer(b"".join(pool.digests), dtype="<u8")
            exact = hashes[:, None] == hashes[None, :]  # the same vector bit for bit: counted apart
            upper = np.triu((similar >= NEAR_DUPLICATE) & ~exact, k=1)
            pairs = int(upper.sum())
            if not pairs:
                continue
            involved = np.flatnonzero(upper.any(axis=0) | upper.any(axis=1))
            first = np.argwhere(upper)[:_EXAMPLES]
            examples = [f"{pool.labels[i]} ~ {pool.labels[j]}" for i, j in first]
            out.append(DoctorFinding(
                kind="near_duplicates", severity="info", records=len(involved),
                detail=f"in a sample of {len(pool):,} {dims}-dim vectors, {pairs:,} pairs of different"
                       f" vectors have cosine >= {NEAR_DUPLICATE} ({len(involved):,} records, about"
                       f" {len(involved) / len(pool):.1%} of the sample): near-repeated memories",
                examples=examples))
        return out


class _Reservoir:
    """Up to ``size`` unit vectors of one size, each vector seen equally likely kept."""

    def __init__(self, size: int, dims: int) -> None:
        self.size = size
        self.data = np.zeros((size, dims), dtype=np.float32)
        self.labels: list[str] = []
        self.digests: list[bytes] = []
        self.seen = 0

    def __len__(self) -> int:
        return len(self.labels)

    def offer(self, rng: np.random.Generator, label: str, unit: np.ndarray, digest: bytes) -> None:
        """``digest``: 8 bytes of the vector's hash as stored (not of the unit vector)."""
        self.seen += 1
        if len(self.labels) < self.size:
            self.data[len(self.labels)] = unit
            self.labels.append(label)
            self.digests.append(digest)
            return
        slot = int(rng.integers(0, self.seen))
        if slot < self.size:
            self.data[slot] = unit
            self.labels[slot] = label
            self.digests[slot] = digest

    def vectors(self) -> np.ndarray:
        return self.data[:len(self.labels)]


def _finding(kind: str, severity: Severity, records: int, detail: str,
             examples: dict[str, list[str]]) -> DoctorFinding:
    return DoctorFinding(kind=kind, severity=severity, records=records, detail=detail,
                         examples=list(examples.get(kind, [])))


def _label(namespace: str | None, record_id: str | None) -> str:
    return f"{namespace}/{record_id}" if namespace is not None else str(record_id)


def _blob(text: str | None) -> bytes | None:
    """Text as UTF-8 bytes for the index, lone surrogates kept (SQLite text refuses them)."""
    return None if text is None else text.encode("utf-8", "surrogatepass")


def _text(blob: bytes | None) -> str | None:
    return None if blob is None else blob.decode("utf-8", "surrogatepass")

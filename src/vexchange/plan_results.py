"""Typed results of ``vex plan`` and ``vex doctor`` (docs/plan.md says how to read each figure).

Frozen msgspec Structs like results.py's: ``to_dict()`` is what ``--json`` prints, and the
dict-style reads (``report["ok"]``) work as they do there. Kept apart from results.py so the
two commands' shapes can grow without touching the results every other command shares.
"""

from __future__ import annotations

from typing import Literal

from .results import Result

__all__ = ["DOCTOR_SAMPLE", "PLAN_SAMPLE", "DoctorFinding", "DoctorReport", "PlanChange", "PlanDisk",
           "PlanMemory", "PlanReport", "PlanSizes", "PlanTime"]

PLAN_SAMPLE = 2000
"""``vex plan --sample``'s default: records in the timed sample (at least four pages of the run's
batch size). Here, not in plan.py, so the CLI shows it without importing the engine."""
DOCTOR_SAMPLE = 1000
"""``vex doctor --sample``'s default: vectors per size compared pairwise for near duplicates (a
1000 x 1000 comparison: 4 MB)."""


class PlanSizes(Result, frozen=True, kw_only=True):
    """What the selected records hold, in bytes as vexchange keeps them: float32 vectors (4
    bytes a value, sparse values and indices included), text as UTF-8, metadata as compact JSON."""

    records: int
    """Records the run would select (read less filtered, before any refusal)."""
    vectors: int
    """Dense vectors among them (a record with a named vector beside its default counts two)."""
    vector_bytes: int
    text_bytes: int
    metadata_bytes: int
    id_bytes: int
    total_bytes: int
    """The sum of the four: the payload a target has to hold at least."""
    dims: dict[str, int]
    """Vectors per size, "384" or "name:384", most first (as ``vex inspect`` counts them)."""


class PlanTime(Result, frozen=True, kw_only=True):
    """The estimated wall time of the run, and what it was estimated from."""

    estimated_s: float | None
    """Seconds the run should take on this machine now; None when nothing measured the write
    side (a server store without a measured rate: the run then takes about ``read_side_s`` to
    read, plus its writes)."""
    basis: Literal["sample", "read+rate", "read-only", "empty"]
    """``sample``: the real pipeline ran on the first records into a throwaway target of the
    same kind and was scaled; ``read+rate``: the whole source was read and checked (the dry
    run), and the write side is the store's measured rate (bench/RESULTS.md); ``read-only``: no
    rate is known for this target; ``empty``: nothing to write."""
    sample_records: int
    """Records the timed sample read (0 when there was no sample)."""
    sample_s: float
    """The sample's own wall time, from opening the source to the finished throwaway target."""
    read_side_s: float
    """The dry run over the whole source: read, select, check, digest, and the plan's own tally
    of the sizes; nothing written. About what the run's reading costs (not a strict floor: the
    tally adds a little, and the run overlaps reading with writing)."""
    write_rate: float | None = None
    """For ``read+rate``: the store's measured write rate used, records per second."""
    note: str = ""


class PlanDisk(Result, frozen=True, kw_only=True):
    """Disk the target needs for what the run writes."""

    target_bytes: int
    basis: Literal["sample", "payload"]
    """``sample``: the throwaway target's size on disk after the sample, scaled to the whole
    run; ``payload``: the records' bytes (``sizes.total_bytes``), a lower bound for a server
    store, which adds its index and row overhead."""
    free_bytes: int | None = None
    """Free space where a file target goes (None for a server store)."""
    fits: bool | None = None
    """Whether ``target_bytes`` plus the run's files fit in ``free_bytes`` (None: unknown)."""
    run_files_bytes: int = 0
    """The receipt, checkpoint and id index (8 bytes a record) the run keeps beside the target,
    and the rejects file (each refused record whole)."""


class PlanMemory(Result, frozen=True, kw_only=True):
    """Memory: the run's own process, and what an index that holds vectors in memory needs."""

    run_bytes: int
    """Peak resident memory expected for the vexchange process: this process now, plus the
    pages in flight and the duplicate-id set (about 70 bytes a record)."""
    index_bytes: int
    """Vectors in float32 plus an HNSW graph at its common default (M=16: 128 bytes a vector),
    for a target that keeps its index in memory (Qdrant, Milvus, Redis, Chroma); an estimate."""


class PlanChange(Result, frozen=True, kw_only=True):
    """One thing the run will change or refuse, and how many records it touches."""

    kind: str
    """``refused:<reason>`` (the engine's skip reasons, as the receipt counts them),
    ``normalised``, ``rounded``, ``metric``, ``reembedded``, ``adapted``."""
    records: int
    detail: str


class PlanReport(Result, frozen=True, kw_only=True):
    """``vex plan SOURCE TARGET``: what a migrate with the same options would do and cost."""

    ok: bool
    """True when the run would write every selected record (nothing refused)."""
    source: str
    target: str
    read: int
    filtered: int
    selected: int
    will_write: int
    refused: int
    """Records the run would skip with a counted reason (each in ``changes``)."""
    sizes: PlanSizes
    time: PlanTime
    disk: PlanDisk
    memory: PlanMemory
    changes: list[PlanChange]
    vector_spaces: dict[str, dict[str, dict[str, int | str | None]]]
    """``source`` and ``target``: dims and metric per vector name, as the dry run declared them."""
    examples: list[dict[str, str | None]]
    """Up to five refused records: reason, id, namespace, detail (the whole record is not kept)."""


class DoctorFinding(Result, frozen=True, kw_only=True):
    """One problem or oddity in a source."""

    kind: str
    """``unreadable``, ``non_finite``, ``zero_vectors``, ``nan_prone``, ``unnormalised``,
    ``mixed_models``, ``mixed_dims``, ``duplicate_ids``, ``missing_text``, ``metric_mismatch``,
    ``no_metric``, ``duplicate_vectors``, ``near_duplicates``."""
    severity: Literal["error", "warning", "info"]
    """``error``: a run refuses these records or loses them; ``warning``: they move, but
    search may differ; ``info``: worth knowing."""
    records: int
    detail: str
    examples: list[str]
    """Up to five ids (``namespace/id`` when the record has a namespace)."""


class DoctorReport(Result, frozen=True, kw_only=True):
    """``vex doctor SOURCE``: what is wrong with a source, before anything is moved."""

    ok: bool
    """No finding of severity ``error``."""
    location: str
    records: int
    unreadable: int
    with_vector: int
    without_vector: int
    without_text: int
    models: dict[str, int]
    """Default vectors per model, most first; "(none)" when a vector names none."""
    dims: dict[str, int]
    """Vectors per size, "384" or "name:384", most first."""
    metrics: dict[str, str | None]
    """The metric the source declares per vector name ("" is the default vector)."""
    near_duplicate_sample: int
    """Vectors in the bounded sample compared pairwise for near duplicates."""
    findings: list[DoctorFinding]

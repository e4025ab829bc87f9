"""The connector conformance suite: one set of tests every read-write connector must pass
against its running engine. Third-party connectors run it too::

    from vexchange.testing.conformance import ConnectorConformance

    class TestMyStore(ConnectorConformance):
        @pytest.fixture
        def new_location(self, ...):
            # a callable: a unique suffix -> a URL (or Connector) of a fresh, empty location
            return lambda name: f"mystore://127.0.0.1:{port}/{name}"

        @pytest.fixture
        def broken_location(self):
            # a location that must fail cleanly: a stopped server, a wrong API key
            return "mystore://127.0.0.1:1/none"

Class attributes tune the dataset to what the store can hold (``named_vectors``,
``null_vectors``, ``metric``); everything else is the same for every store. Each test moves
records through the public API (``migrate``), as a user would, and compares what comes back
with what went in, bit for bit.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections import Counter
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import orjson
import pytest

from ..api import Location, migrate, open_store
from ..checks import verify
from ..connectors._base import Connector, Page, VectorSpace
from ..errors import MigrationError, TransientError, VexError
from ..record import MemoryRecord, Vector
from .records import every_metadata_type, sample_records
from .tricky import strict_form, tricky_records

__all__ = ["ConnectorConformance", "FailingWriter", "NativeRow", "fail_a_write", "read_all",
           "write_vmig"]

NewLocation = Callable[[str], Location]


class NativeRow(NamedTuple):
    """One record as the store's own client sees it (no vexchange code on the way): its text
    and its default vector as float32 little-endian bytes (None where it has none)."""

    text: str | None
    vector: bytes | None


NativeRows = Callable[[Location], list[NativeRow]]
"""Every row of a location, read with the store's own client."""


def write_vmig(path: Path, records: list[MemoryRecord], *, metric: str | None = None) -> Path:
    """A .vmig.jsonl file (with its sidecar) holding ``records``, as a migration source."""
    from ..connectors.vmig import VmigWriter

    records = list(records)
    spaces = {}
    if metric and records:
        dims = {n: v.dims for r in records for n, v in r.vectors.items()}
        spaces = {n: VectorSpace(dims=d, metric=metric) for n, d in dims.items()}
    writer = VmigWriter(path, resume=None, dry_run=False, spaces=spaces)
    writer.write(records)
    writer.finish({"source": {"connector": "conformance"}})
    return path


def read_all(location: Location, *, batch_size: int = 97) -> dict[tuple[str | None, str], MemoryRecord]:
    """Every record of a store by (namespace, id); fails on duplicates or unreadable entries."""
    out: dict[tuple[str | None, str], MemoryRecord] = {}
    store = open_store(location)
    with store:
        for page in store.read(batch_size=batch_size):
            for item in page.items:
                assert isinstance(item, MemoryRecord), f"unreadable entry: {item}"
                key = (item.namespace, item.id)
                assert key not in out, f"record {key} read twice"
                out[key] = item
    return out


class _Interrupting(Connector):
    """A source that stops the run (like Ctrl-C) after ``pages`` pages have been handed out."""

    name = "interrupting"

    def __init__(self, inner: Connector, pages: int) -> None:
        super().__init__(inner.spec)
        self.inner, self.pages = inner, pages
        self.capabilities = inner.capabilities  # type: ignore[misc]

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def count(self) -> int | None:
        return self.inner.count()

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return self.inner.vector_spaces()

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        for handed, page in enumerate(self.inner.read(batch_size=batch_size, after=after)):
            if handed >= self.pages:
                raise KeyboardInterrupt
            yield page


class _Slow(_Interrupting):
    """A source that pauses after each page, so a test can kill the run midway."""

    def __init__(self, inner: Connector, delay: float) -> None:
        super().__init__(inner, pages=1 << 62)
        self.delay = delay

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        for page in self.inner.read(batch_size=batch_size, after=after):
            yield page
            time.sleep(self.delay)


def run_slowly(source: str, target: str, receipt: str, rejects: str, delay: float) -> None:
    """The run the killed-run test kills: a migrate whose source pauses after each page."""
    migrate(_Slow(open_store(source), delay), target, batch_size=40, receipt=receipt,
            rejects=rejects)


class ConnectorConformance:
    """Subclass and provide the ``new_location`` and ``broken_location`` fixtures."""

    named_vectors: ClassVar[tuple[str, ...]] = ("title",)
    """Extra vector names in the dataset; () for a store that holds one vector per record."""
    null_vectors: ClassVar[bool] = True
    """Whether the dataset includes a record without any vector."""
    metric: ClassVar[str] = "dot"
    """The metric the dataset declares; stores that normalise cosine vectors are tested
    bit-exact with "dot" and separately for the "normalised" report with "cosine"."""
    same_id_in_namespaces: ClassVar[bool] = False
    """True for a store (or mode) that keeps each namespace apart, so one id may appear in
    several namespaces; else such a record must be a counted ``id_conflict``."""
    expect_normalised: ClassVar[bool] = False
    """True for a store known to hand back cosine vectors normalised (Qdrant's engine)."""
    dims: ClassVar[int] = 8
    bulk: ClassVar[int] = 10_000

    # ---------------------------------------------------------------------------------- helpers

    @pytest.fixture
    def new_location(self) -> NewLocation:  # pragma: no cover - provided by each subclass
        raise NotImplementedError

    @pytest.fixture
    def broken_location(self) -> Location:  # pragma: no cover - provided by each subclass
        raise NotImplementedError

    @pytest.fixture
    def native_rows(self) -> NativeRows:  # pragma: no cover - provided by each subclass
        """Reads a location with the store's own client (its SDK, SQL, files), never with
        vexchange, so what the suite checks is what the store really holds."""
        raise NotImplementedError

    tricky_refused: ClassVar[dict[str, str]] = {}
    """Corpus records (by id) this store refuses, with the reason it gives: what its page in
    docs/connectors says it cannot hold. Twins of an id in another namespace are added
    (``id_conflict``) for stores that hold one record per id."""

    def expected_refusals(self, records: list[MemoryRecord]) -> dict[tuple[str | None, str], str]:
        refused: dict[tuple[str | None, str], str] = {}
        holder: dict[str, str | None] = {}
        for record in records:
            if record.id in self.tricky_refused:
                refused[(record.namespace, record.id)] = self.tricky_refused[record.id]
                continue
            if not self.same_id_in_namespaces:
                if record.id in holder and holder[record.id] != record.namespace:
                    refused[(record.namespace, record.id)] = "id_conflict"
                    continue
                holder[record.id] = record.namespace
        return refused

    def records(self, n: int, **options: Any) -> list[MemoryRecord]:
        return list(sample_records(n, dims=self.dims, named=self.named_vectors,
                                   null_vectors=self.null_vectors, sparse=True, **options))

    def load(self, tmp_path: Path, target: Location, records: list[MemoryRecord], *,
             metric: str | None = None, **options: Any) -> Any:
        source = write_vmig(tmp_path / f"in-{len(list(tmp_path.iterdir()))}.vmig.jsonl", records,
                            metric=metric or self.metric)
        return migrate(source, target, receipt=tmp_path / "load.receipt.json",
                       rejects=tmp_path / "load.rejects.jsonl", **options)

    @staticmethod
    def assert_same(expected: list[MemoryRecord],
                    got: dict[tuple[str | None, str], MemoryRecord], *, strict: bool = False) -> None:
        """The same records by (namespace, id), field by field; ``strict``: JSON types must
        match too (3 is not 3.0, -0.0 is not 0.0, which Python's ``==`` calls equal)."""
        want = {(r.namespace, r.id): r for r in expected}
        assert set(got) == set(want), (
            f"missing {sorted(map(str, set(want) - set(got)))[:8]},"
            f" extra {sorted(map(str, set(got) - set(want)))[:8]}")
        same: Callable[[Any, Any], bool] = (
            (lambda a, b: strict_form(a) == strict_form(b)) if strict else (lambda a, b: a == b))
        problems = []
        for key, record in want.items():
            back = got[key]
            diffs = [f for f in record.__struct_fields__
                     if not same(getattr(back, f), getattr(record, f))]
            if diffs:
                problems.append(
                    f"{key} changed in {diffs}: wrote {[getattr(record, f) for f in diffs]!r:.300},"
                    f" read {[getattr(back, f) for f in diffs]!r:.300}")
        assert not problems, "\n".join(problems)

    @classmethod
    def assert_strictly_same(cls, expected: list[MemoryRecord],
                             got: dict[tuple[str | None, str], MemoryRecord]) -> None:
        cls.assert_same(expected, got, strict=True)

    def tricky(self) -> list[MemoryRecord]:
        return tricky_records(dims=self.dims, named=self.named_vectors,
                              null_vectors=self.null_vectors)


    # ------------------------------------------------------------------------------------ tests

    def test_tricky_records_land_exactly_or_are_refused_by_name(
            self, tmp_path: Path, new_location: NewLocation, native_rows: NativeRows) -> None:
        """The corpus of testing/tricky.py: each record lands exactly (read back through
        vexchange and, its text and vector, with the store's own client) or is refused before
        the write with a counted reason and the whole record in the rejects file; an export
        gives the same records; the same import again changes nothing."""
        records = self.tricky()
        target = new_location("tricky")
        expected_refused = self.expected_refusals(records)
        receipt = self.load(tmp_path, target, records)
        rejects_path = tmp_path / "load.rejects.jsonl"
        lines = ([orjson.loads(line) for line in rejects_path.read_bytes().splitlines()]
                 if rejects_path.exists() else [])
        refused = {(line["namespace"], line["id"]): line["reason"] for line in lines}
        assert refused == expected_refused, (
            f"refused {sorted(map(str, refused.items()))}, expected"
            f" {sorted(map(str, expected_refused.items()))}; details:"
            f" {[(line['id'], line['detail']) for line in lines]}")
        assert all(line["record"] is not None and line["detail"] for line in lines), lines
        assert receipt.counts.skipped_total == len(lines), (receipt.counts, len(lines))
        kept = [r for r in records if (r.namespace, r.id) not in refused]
        assert receipt.counts.written == len(kept), receipt.counts
        self.assert_strictly_same(kept, read_all(target))
        self._assert_native(native_rows(target), kept)
        exported = tmp_path / "export.vmig.jsonl"
        migrate(target, exported, receipt=tmp_path / "e.json", rejects=tmp_path / "e.rejects.jsonl")
        self.assert_strictly_same(kept, read_all(exported))
        again = self.load(tmp_path, target, records)
        assert (again.counts.written, again.counts.skipped) == (
            receipt.counts.written, receipt.counts.skipped), again.counts
        self.assert_strictly_same(kept, read_all(target))
        self._assert_native(native_rows(target), kept)

    def test_cosine_vectors_without_a_float32_unit_vector(
            self, tmp_path: Path, new_location: NewLocation) -> None:
        """Finite float32 vectors whose norm overflows (a 3e38 component) or is 0 in float32
        (all components 1e-38, or all zero): a store that keeps cosine vectors normalised would
        hold zeros or NaN, so they are refused by name (``not_normalisable``); any other store
        keeps them exactly."""
        base = self.records(4)
        shapes = {"huge": np.r_[np.float32(3e38), np.ones(self.dims - 1)],
                  "tiny": np.full(self.dims, 1e-38), "zero": np.zeros(self.dims)}
        odd = [base[0].replace(id=f"cos-{name}", id_type="str", vectors={
            **base[0].vectors, "": Vector(values.astype("<f4").tobytes(), "m")})
            for name, values in shapes.items()]
        target = new_location("cosextreme")
        records = [base[3], *odd]
        source = write_vmig(tmp_path / "cos.vmig.jsonl", records, metric="cosine")
        receipt = migrate(source, target, receipt=tmp_path / "c.json",
                          rejects=tmp_path / "c.rejects.jsonl")
        with open_store(target) as store:
            caps = store.capabilities
        if "cosine" in caps.normalises or "cosine" in caps.rounds:
            assert receipt.counts.skipped == {"not_normalisable": 3}, receipt.counts
            assert set(read_all(target)) == {(base[3].namespace, base[3].id)}
        else:  # kept exactly, but for what the store itself refuses by name (Pinecone: zeros)
            refused = {r.id: self.tricky_refused[r.id] for r in odd if r.id in self.tricky_refused}
            assert receipt.counts.skipped == dict(Counter(refused.values())), receipt.counts
            self.assert_strictly_same([r for r in records if r.id not in refused], read_all(target))

    @staticmethod
    def _assert_native(rows: list[NativeRow], kept: list[MemoryRecord]) -> None:
        assert len(rows) == len(kept), f"the store holds {len(rows)} rows, {len(kept)} were written"
        def key(text: str | None, vector: bytes | None) -> tuple[str, bytes]:
            return (text or "", vector or b"")
        want = sorted(key(r.text, r.vector.data if r.vector else None) for r in kept)
        have = sorted(key(row.text, row.vector) for row in rows)
        wrong = [w for w, h in zip(want, have, strict=False) if w != h]
        assert not wrong, f"{len(wrong)} rows differ in the store's own view, e.g. {wrong[0]!r:.300}"


    def test_round_trip_is_exact(self, tmp_path: Path, new_location: NewLocation) -> None:
        records = self.records(40)
        target = new_location("roundtrip")
        receipt = self.load(tmp_path, target, records)
        assert receipt.counts.written == len(records), receipt.counts
        assert receipt.status == "completed"
        self.assert_same(records, read_all(target))
        report = verify(target, receipt=tmp_path / "load.receipt.json")
        assert report["ok"], report

    def test_metric_and_dims_are_carried(self, tmp_path: Path, new_location: NewLocation) -> None:
        target = new_location("spaces")
        self.load(tmp_path, target, self.records(5), metric="euclidean")
        with open_store(target) as store:
            spaces = store.vector_spaces()
        assert spaces.get("") == VectorSpace(dims=self.dims, metric="euclidean"), spaces

    def test_rerun_writes_no_duplicates(self, tmp_path: Path, new_location: NewLocation) -> None:
        records = self.records(30)
        target = new_location("rerun")
        self.load(tmp_path, target, records)
        self.load(tmp_path, target, records)
        changed = [r.replace(text=f"changed {r.id}") if i % 2 else r for i, r in enumerate(records)]
        self.load(tmp_path, target, changed)
        self.assert_same(changed, read_all(target))

    def test_resume_after_interrupt(self, tmp_path: Path, new_location: NewLocation) -> None:
        records = self.records(300)
        source = write_vmig(tmp_path / "src.vmig.jsonl", records, metric=self.metric)
        target = new_location("resume")
        options: dict[str, Any] = {"batch_size": 40, "receipt": tmp_path / "r.json",
                                   "rejects": tmp_path / "r.rejects.jsonl"}
        with pytest.raises(KeyboardInterrupt):
            migrate(_Interrupting(open_store(source), pages=3), target, **options)
        receipt = migrate(source, target, resume=True, **options)
        assert receipt.counts.written == len(records), receipt.counts
        self.assert_same(records, read_all(target))

    def test_resume_after_the_process_is_killed(
            self, tmp_path: Path, new_location: NewLocation) -> None:
        """SIGKILL, not an exception: nothing of the run's own cleanup happens."""
        records = self.records(400)
        source = write_vmig(tmp_path / "src.vmig.jsonl", records, metric=self.metric)
        target = new_location("killed")
        if not isinstance(target, str):
            pytest.skip("the killed run needs the target as a URL")
        receipt, rejects = tmp_path / "k.json", tmp_path / "k.rejects.jsonl"
        checkpoint = receipt.with_name(receipt.name + ".checkpoint")
        code = (f"from vexchange.testing.conformance import run_slowly; run_slowly("
                f"{str(source)!r}, {target!r}, {str(receipt)!r}, {str(rejects)!r}, 0.2)")
        proc = subprocess.Popen([sys.executable, "-c", code])
        try:
            deadline = time.monotonic() + 120
            while not checkpoint.exists():
                assert proc.poll() is None, "the run ended before it could be killed"
                assert time.monotonic() < deadline, "no checkpoint appeared"
                time.sleep(0.02)
            time.sleep(0.3)  # a page or two beyond the checkpoint: they are repeated, not doubled
        finally:
            proc.kill()
            proc.wait()
        result = migrate(source, target, resume=True, batch_size=40, receipt=receipt,
                         rejects=rejects)
        assert result.counts.written == len(records), result.counts
        self.assert_same(records, read_all(target))

    def test_many_records_in_small_batches(self, tmp_path: Path, new_location: NewLocation) -> None:
        records = list(sample_records(self.bulk, dims=self.dims, null_vectors=False, seed=3))
        target = new_location("bulk")
        receipt = self.load(tmp_path, target, records, batch_size=777)
        assert receipt.counts.written == self.bulk
        got = read_all(target, batch_size=1000)
        assert len(got) == self.bulk
        self.assert_same(records, got)

    def test_same_id_in_two_namespaces(self, tmp_path: Path, new_location: NewLocation) -> None:
        first = self.records(3)
        twins = [r.replace(namespace="other", text=f"twin of {r.id}") for r in first]
        target = new_location("twins")
        receipt = self.load(tmp_path, target, first + twins)
        if self.same_id_in_namespaces:
            assert receipt.counts.written == 6, receipt.counts
            self.assert_same(first + twins, read_all(target))
        else:
            assert receipt.counts.written == 3 and receipt.counts.skipped == {"id_conflict": 3}
            self.assert_same(first, read_all(target))

    def test_same_id_in_two_namespaces_across_batches(self, tmp_path: Path,
                                                      new_location: NewLocation) -> None:
        """The twin arrives in a later batch, so the store must be asked (or know) who holds
        its id."""
        first = self.records(3)
        twins = [r.replace(namespace="other", text=f"twin of {r.id}") for r in first]
        target = new_location("twinslater")
        receipt = self.load(tmp_path, target, first + twins, batch_size=2)
        expected = first + twins if self.same_id_in_namespaces else first
        assert receipt.counts.written == len(expected), receipt.counts
        self.assert_same(expected, read_all(target))

    def test_a_batch_retried_after_it_landed_is_written_once(
            self, tmp_path: Path, new_location: NewLocation, monkeypatch: pytest.MonkeyPatch) -> None:
        """The second batch reaches the store, then the call fails as a timeout would; the
        engine retries the batch, which must update what landed, not add it again."""
        records = self.records(9)
        target = new_location("landed")
        fail_a_write(monkeypatch, fail_on=2, after_write=True,
                     error=TransientError("timed out after the write was applied", retry_after=0))
        receipt = self.load(tmp_path, target, records, batch_size=3)
        assert receipt.retries == 1 and receipt.counts.written == 9, receipt
        self.assert_same(records, read_all(target))

    def test_one_record(self, tmp_path: Path, new_location: NewLocation) -> None:
        records = self.records(1)
        target = new_location("one")
        self.load(tmp_path, target, records)
        self.assert_same(records, read_all(target))

    def test_unicode_long_text_and_every_metadata_type(
            self, tmp_path: Path, new_location: NewLocation) -> None:
        base = self.records(8)
        records = [base[1], base[7],
                   base[0].replace(id="id with spaces/and:colons?", id_type="str", text="😀" * 30_000,
                                   metadata=every_metadata_type())]
        target = new_location("unicode")
        self.load(tmp_path, target, records)
        self.assert_same(records, read_all(target))

    def test_empty_source_and_empty_store(self, tmp_path: Path, new_location: NewLocation) -> None:
        target = new_location("empty")
        receipt = self.load(tmp_path, target, [])
        assert receipt.counts.written == 0
        # a store with nothing written may not exist yet; a clear error is fine
        with contextlib.suppress(VexError):
            assert read_all(target) == {}

    def test_verify_against_source(self, tmp_path: Path, new_location: NewLocation) -> None:
        records = self.records(20)
        source = write_vmig(tmp_path / "src.vmig.jsonl", records, metric=self.metric)
        target = new_location("verify")
        migrate(source, target, receipt=tmp_path / "v.json", rejects=tmp_path / "v.rejects.jsonl")
        report = verify(target, against=source)
        assert report["ok"], report

    def test_normalised_vectors_are_reported_as_such(
            self, tmp_path: Path, new_location: NewLocation) -> None:
        records = self.records(12)
        source = write_vmig(tmp_path / "src.vmig.jsonl", records, metric="cosine")
        target = new_location("cosine")
        migrate(source, target, receipt=tmp_path / "c.json", rejects=tmp_path / "c.rejects.jsonl")
        report = next(check for check in verify(target, against=source)["checks"]
                      if check["check"] == "against")  # a file target also has its checksum
        assert report["ok"], report
        with open_store(target) as store:
            caps = store.capabilities
            normalising = "cosine" in caps.normalises or "cosine" in caps.rounds
        with_vectors = sum(1 for r in records if r.vectors)
        if normalising:
            # qdrant-client's local mode normalises in memory but not on disk: either is fine,
            # as long as every vector is exactly the input or exactly its direction
            assert report["normalised"] + report["rounded"] + report["matched"] == len(records), report
            if self.expect_normalised:
                assert report["normalised"] == with_vectors, report
            back = read_all(target)
            for record, unit in zip(records, unit_records(records), strict=False):
                for name, vec in record.vectors.items():
                    got = back[(record.namespace, record.id)].vectors[name].array()
                    assert np.allclose(got, vec.array(), rtol=1e-6) or np.allclose(
                        got, unit.vectors[name].array(), atol=1e-6)
        else:
            assert report["matched"] == len(records), report

    def test_broken_location_gives_a_clear_error(self, tmp_path: Path,
                                                  broken_location: Location) -> None:
        source = write_vmig(tmp_path / "src.vmig.jsonl", self.records(3))
        with pytest.raises((VexError, MigrationError)) as caught:
            migrate(source, broken_location, retries=1, receipt=tmp_path / "b.json",
                    rejects=tmp_path / "b.rejects.jsonl")
        assert str(caught.value)
        with pytest.raises(VexError):
            read_all(broken_location)


def unit_records(records: list[MemoryRecord]) -> list[MemoryRecord]:
    """The records with every vector L2-normalised in float32 (what a cosine store keeps)."""
    from ..record import Vector

    def norm(v: Vector) -> Vector:
        arr = v.array().astype(np.float32)
        return Vector((arr / np.linalg.norm(arr)).astype("<f4").tobytes(), v.model)

    return [r.replace(vectors={n: norm(v) for n, v in r.vectors.items()}) for r in records]


class FailingWriter:
    """A writer whose ``fail_on``-th write raises ``error``, once: before the write reaches the
    store, or, with ``after_write``, after it landed (what a timeout after the server applied
    the write looks like)."""

    def __init__(self, inner: Any, *, fail_on: int, error: BaseException, after_write: bool) -> None:
        self.inner, self.fail_on, self.error, self.after_write = inner, fail_on, error, after_write
        self.calls = 0

    def write(self, batch: list[MemoryRecord]) -> Any:
        self.calls += 1
        failing = self.calls == self.fail_on
        if failing and not self.after_write:
            raise self.error
        refused = self.inner.write(batch)
        if failing:
            raise self.error
        return refused

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def fail_a_write(monkeypatch: pytest.MonkeyPatch, *, fail_on: int, error: BaseException,
                 after_write: bool = False) -> None:
    """Make the engine's next run write through a :class:`FailingWriter`."""
    from ..engine import run as engine_run

    opened = engine_run._open_writer
    monkeypatch.setattr(engine_run, "_open_writer", lambda *a, **k: FailingWriter(
        opened(*a, **k), fail_on=fail_on, error=error, after_write=after_write))

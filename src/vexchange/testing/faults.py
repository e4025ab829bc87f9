"""Fault tests for connectors whose store runs as an emulator with a fault switch
(``vexchange.testing.emulators``): rate limits, server errors, answers slower than the
timeout, a persistent outage with resume, records the store refuses one by one, and a wrong
API key (``--target-secret api_key=...``) that must be a clear error and never written down.

    class TestMyStoreFaults(FaultConformance):
        write_op, read_op = "upsert", "fetch"     # the emulator's operation names

        @pytest.fixture
        def emulator(self): ...                   # has .faults (a FaultSwitch); may be a
                                                  # module fixture instead

        @pytest.fixture
        def new_location(self, emulator):         # (name, **url params) -> URL of a new store
            ...

        def store_key(self, record): ...          # the id the store sees for a record
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ..api import migrate
from ..errors import MigrationError, VexError
from ..record import MemoryRecord
from .conformance import ConnectorConformance, read_all, write_vmig
from .emulators._http import Fault
from .records import sample_records

__all__ = ["FaultConformance"]


class FaultConformance:
    write_op: ClassVar[str]
    read_op: ClassVar[str]
    persistent_status: ClassVar[int] = 503
    """The status of the outage that outlasts every retry (one the SDK does not wait long on)."""
    named_vectors: ClassVar[tuple[str, ...]] = ()
    null_vectors: ClassVar[bool] = False

    @pytest.fixture
    def new_location(self) -> Callable[..., str]:  # pragma: no cover - provided by each subclass
        raise NotImplementedError

    def store_key(self, record: MemoryRecord) -> str:  # pragma: no cover - provided by each subclass
        raise NotImplementedError

    def records(self, n: int, **options: Any) -> list[MemoryRecord]:
        """Sample records whose texts fit every emulated store's metadata limits."""
        return [r.replace(text=r.text[:2000]) if r.text else r
                for r in sample_records(n, dims=8, named=self.named_vectors,
                                        null_vectors=self.null_vectors, sparse=True, **options)]

    @staticmethod
    def load(tmp_path: Path, target: str, data: list[MemoryRecord], **options: Any) -> Any:
        source = write_vmig(tmp_path / f"in-{len(list(tmp_path.iterdir()))}.vmig.jsonl", data,
                            metric="dot")
        return migrate(source, target, receipt=tmp_path / "r.json",
                       rejects=tmp_path / "r.rejects.jsonl", **options)

    def test_rate_limits_and_server_errors_are_retried_and_every_record_lands_once(
            self, tmp_path: Path, emulator: Any, new_location: Callable[..., str]) -> None:
        data = self.records(300)
        target = new_location("faults")
        for status, skip, times in ((429, 1, 2), (500, 2, 1), (503, 3, 1)):
            emulator.faults.inject(Fault(op=self.write_op, status=status, times=times, skip=skip,
                                         retry_after=0.05 if status == 429 else None))
        receipt = self.load(tmp_path, target, data, batch_size=60)
        assert receipt.status == "completed" and receipt.counts.written == 300
        assert emulator.faults.count(self.write_op, 429) == 2
        assert emulator.faults.count(self.write_op, 500) == 1
        emulator.faults.inject(Fault(op=self.read_op, status=429, retry_after=0.01, times=2, skip=1))
        emulator.faults.inject(Fault(op=self.read_op, status=500, times=1, skip=4))
        out = tmp_path / "back.vmig.jsonl"
        exported = migrate(target, out, batch_size=50, receipt=tmp_path / "e.json",
                           rejects=tmp_path / "e.rej")
        assert exported.counts.written == 300
        ConnectorConformance.assert_same(data, read_all(out))  # every record, once

    def test_a_persistent_failure_stops_with_a_receipt_and_resume_completes_without_duplicates(
            self, tmp_path: Path, emulator: Any, new_location: Callable[..., str]) -> None:
        data = [r.replace(namespace="agent") for r in self.records(400)]  # a request per batch
        target = new_location("persist")
        source = write_vmig(tmp_path / "src.vmig.jsonl", data, metric="dot")
        receipt_path = tmp_path / "p.json"
        emulator.faults.inject(Fault(op=self.write_op, status=self.persistent_status, retry_after=0,
                                     times=-1, skip=3))
        with pytest.raises(MigrationError) as caught:
            migrate(source, target, batch_size=50, retries=2, receipt=receipt_path,
                    rejects=tmp_path / "p.rejects.jsonl")
        assert "--resume" in (caught.value.hint or "")
        stopped = json.loads(receipt_path.read_text())
        assert stopped["status"] == "failed" and stopped["error"]
        assert stopped["counts"]["written"] == 150  # the three acknowledged batches
        assert receipt_path.with_name(receipt_path.name + ".checkpoint").exists()
        emulator.faults.clear()  # the outage ends
        done = migrate(source, target, batch_size=50, resume=True, receipt=receipt_path,
                       rejects=tmp_path / "p.rejects.jsonl")
        assert done.status == "completed" and done.counts.written == 400
        ConnectorConformance.assert_same(data, read_all(target))

    def test_answers_slower_than_the_timeout_are_retried(
            self, tmp_path: Path, emulator: Any, new_location: Callable[..., str]) -> None:
        data = self.records(90)
        target = new_location("slow", timeout="0.5")
        emulator.faults.inject(Fault(op=self.write_op, status=None, delay=1.2, times=1, skip=1))
        receipt = self.load(tmp_path, target, data, batch_size=30)
        assert receipt.counts.written == 90
        ConnectorConformance.assert_same(data, read_all(target))

    def test_records_the_store_refuses_are_rejected_alone(
            self, tmp_path: Path, emulator: Any, new_location: Callable[..., str]) -> None:
        data = self.records(200)
        bad = [data[17], data[150]]
        target = new_location("partial")
        emulator.faults.inject(Fault(op=self.write_op, status=400, times=-1,
                                     message="the store refuses this record",
                                     ids=frozenset(self.store_key(r) for r in bad)))
        receipt = self.load(tmp_path, target, data, batch_size=100, allow_skips=True)
        assert receipt.counts.written == 198
        assert receipt.counts.skipped == {"refused_by_store": 2}
        rejected = [json.loads(line) for line in
                    (tmp_path / "r.rejects.jsonl").read_text().splitlines()]
        assert {r["id"] for r in rejected} == {r.id for r in bad}
        assert all("refuses this record" in r["detail"] and r["record"]["id"] for r in rejected)
        ConnectorConformance.assert_same([r for r in data if r not in bad], read_all(target))

    def test_a_wrong_api_key_is_a_clear_error_and_never_written_down(
            self, tmp_path: Path, new_location: Callable[..., str]) -> None:
        target = new_location("auth")
        source = write_vmig(tmp_path / "s.vmig.jsonl", self.records(3))
        with pytest.raises(VexError) as caught:
            migrate(source, target, target_secrets={"api_key": "wrong-secret-key"},
                    receipt=tmp_path / "a.json", rejects=tmp_path / "a.rej")
        assert "api key" in str(caught.value).lower()
        for path in tmp_path.rglob("*.json"):
            assert "wrong-secret-key" not in path.read_text()

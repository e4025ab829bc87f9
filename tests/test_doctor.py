"""``vex doctor``: every finding on a source built to hold it, counts that agree with what a
real migrate refuses, the bounded near-duplicate sample, the options, and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from vexchange import api
from vexchange.cli import main
from vexchange.connectors._base import Capabilities, Connector, Page, Reject
from vexchange.doctor import doctor
from vexchange.errors import UsageError
from vexchange.record import MemoryRecord, Vector
from vexchange.spec import StoreSpec
from vexchange.testing.conformance import write_vmig

DIMS = 16


def _unit(rng: np.random.Generator, dims: int = DIMS, model: str = "m1") -> Vector:
    v = rng.standard_normal(dims)
    return Vector((v / np.linalg.norm(v)).astype("<f4").tobytes(), model)


def _troubled() -> list[MemoryRecord]:
    rng = np.random.default_rng(3)
    out = [MemoryRecord(id=str(i), text=f"memory {i}", namespace="a" if i % 2 else "b",
                        vectors={"": _unit(rng)}) for i in range(40)]
    first, second = out[0].vectors[""], out[1].vectors[""]
    near = second.array() + rng.standard_normal(DIMS).astype("<f4") * 1e-3
    out += [
        MemoryRecord(id="3", text="same id, same namespace", namespace="a", vectors={"": _unit(rng)}),
        MemoryRecord(id="4", text="same id, other namespace", namespace="a", vectors={"": _unit(rng)}),
        MemoryRecord(id="zero", text="zeros", vectors={"": Vector(np.zeros(DIMS, "<f4").tobytes(), "m1")}),
        MemoryRecord(id="huge", text="squares overflow",
                     vectors={"": Vector(np.full(DIMS, 1e20, "<f4").tobytes(), "m1")}),
        *[MemoryRecord(id=f"long{i}", text="not unit length",
                       vectors={"": Vector((_unit(rng).array() * 5).astype("<f4").tobytes(), "m1")})
          for i in range(3)],
        MemoryRecord(id="other-model", text="from another model", vectors={"": _unit(rng, model="m2")}),
        MemoryRecord(id="other-model-bare", vectors={"": _unit(rng, model="m2")}),
        MemoryRecord(id="small", text="another size", vectors={"": _unit(rng, 4)}),
        MemoryRecord(id="no-vector-no-text"),
        MemoryRecord(id="copy", text="the vector of record 0", vectors={"": first}),
        MemoryRecord(id="near", text="almost record 1",
                     vectors={"": Vector((near / np.linalg.norm(near)).astype("<f4").tobytes(), "m1")}),
    ]
    return out


@pytest.fixture
def troubled(tmp_path: Path) -> Path:
    return write_vmig(tmp_path / "troubled.vmig.jsonl", _troubled(), metric="cosine")


def test_every_finding(troubled: Path) -> None:
    report = doctor(troubled)
    found = {f.kind: f for f in report.findings}
    assert not report.ok and found["duplicate_ids"].severity == "error"
    assert found["duplicate_ids"].records == 1 and found["duplicate_ids"].examples == ["a/3"]
    assert found["zero_vectors"].records == 1 and found["zero_vectors"].examples == ["zero"]
    assert found["nan_prone"].records == 1 and found["nan_prone"].examples == ["huge"]
    assert found["unnormalised"].records == 3 and found["metric_mismatch"].records == 3
    assert "declares cosine" in found["metric_mismatch"].detail
    assert found["mixed_models"].records == 2 and "m2: 2" in found["mixed_models"].detail
    assert found["mixed_dims"].records == 1
    assert found["missing_text"].records == 2
    assert set(found["missing_text"].examples) == {"other-model-bare", "no-vector-no-text"}
    assert found["duplicate_vectors"].records == 2 and found["duplicate_vectors"].severity == "info"
    assert found["near_duplicates"].records == 2 and found["near_duplicates"].examples == ["a/1 ~ near"]
    assert "no_metric" not in found and "non_finite" not in found and "unreadable" not in found
    assert report.records == len(_troubled()) and report.without_vector == 1 and report.without_text == 2
    assert report.models == {"m1": 50, "m2": 2} and report.metrics == {"": "cosine"}


def test_counts_agree_with_what_migrate_refuses(troubled: Path, tmp_path: Path) -> None:
    found = {f.kind: f.records for f in doctor(troubled).findings}
    receipt = api.migrate(troubled, tmp_path / "copy.faiss", allow_skips=True, receipt=tmp_path / "r.json",
                          rejects=tmp_path / "rejects.jsonl")
    skipped = receipt.counts.skipped
    assert skipped["duplicate_id"] == found["duplicate_ids"]
    assert skipped["not_normalisable"] == found["zero_vectors"] + found["nan_prone"]  # faiss normalises


class _Listed(Connector):
    """A source that hands over what a store may give back: NaN vectors, unreadable entries."""

    name = "listed"
    capabilities = Capabilities(read=True, write=False)

    def __init__(self, items: list[MemoryRecord | Reject]) -> None:
        super().__init__(StoreSpec("listed", "listed"))
        self.items = items

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        start = int(after or 0)
        for at in range(start, len(self.items), batch_size):
            end = min(at + batch_size, len(self.items))
            yield Page(self.items[at:end], str(end) if end < len(self.items) else None)


def test_non_finite_and_unreadable_and_no_metric() -> None:
    nan = np.ones(DIMS, "<f4")
    nan[2] = np.nan
    items: list[MemoryRecord | Reject] = [
        MemoryRecord(id="ok", text="fine", vectors={"": Vector(np.eye(DIMS, dtype="<f4")[0].tobytes())}),
        MemoryRecord(id="nan", text="NaN", vectors={"": Vector(nan.tobytes())}),
        Reject(reason="bad_json", detail="line 3", id="x", namespace="n"),
    ]
    report = doctor(_Listed(items), batch_size=2)
    found = {f.kind: f for f in report.findings}
    assert found["non_finite"].records == 1 and found["non_finite"].examples == ["nan"]
    assert found["unreadable"].records == 1 and "bad_json: 1" in found["unreadable"].detail
    assert found["no_metric"].severity == "info" and not report.ok and report.unreadable == 1


def test_a_clean_source_is_ok(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    records = [MemoryRecord(id=str(i), text=f"t{i}", vectors={"": _unit(rng)}) for i in range(30)]
    report = doctor(write_vmig(tmp_path / "clean.vmig.jsonl", records, metric="cosine"))
    assert report.ok and report.findings == [] and report.near_duplicate_sample == 30


def test_the_sample_is_bounded_and_seeded(troubled: Path) -> None:
    small = doctor(troubled, sample=5)
    assert small.near_duplicate_sample == 5 + 1  # five of the 16-dim vectors, the lone 4-dim one
    assert doctor(troubled, sample=5).to_dict() == small.to_dict()
    with pytest.raises(UsageError, match="sample"):
        doctor(troubled, sample=1)


def test_the_run_options_choose_the_records(troubled: Path) -> None:
    only_a = doctor(troubled, namespaces=["a"])
    assert only_a.records == 22 and {f.kind for f in only_a.findings} >= {"duplicate_ids"}
    assert doctor(troubled, limit=10).records == 10
    with pytest.raises(UsageError):
        doctor(troubled, since="not a time")


def test_cli(troubled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", str(troubled), "--json"]) == 3
    report: dict[str, Any] = orjson.loads(capsys.readouterr().out)
    assert report["ok"] is False and any(f["kind"] == "duplicate_ids" for f in report["findings"])
    assert main(["doctor", str(troubled), "--namespace", "b", "--sample", "10"]) == 0
    assert "near_duplicate_sample: " in capsys.readouterr().out
    assert main(["doctor", str(tmp_path / "missing.vmig.jsonl")]) != 0

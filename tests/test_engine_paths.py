"""Paths a user meets when things go wrong: missing extras, tampering, damage, flaky stores."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

import vexchange
from vexchange.cli import main
from vexchange.connectors import _registry
from vexchange.connectors.vektor import VektorWriter
from vexchange.errors import MigrationError, MissingDependencyError, TransientError
from vexchange.testing.vektor_fixture import Fixture


def vex(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.fixture
def unavailable_connector() -> Iterator[str]:
    _registry.register("fakestore", "vexchange_no_such_sdk_module:FakeConnector")
    yield "fakestore"
    _registry._REGISTERED.pop("fakestore")


def test_missing_extra_names_the_pip_line(unavailable_connector: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(MissingDependencyError) as caught:
        vexchange.open_store("fakestore://localhost/memories")
    # not a builtin: there is no vexchange[fakestore] extra to install, so none is named
    assert "vexchange[" not in (caught.value.hint or "")
    assert "the package that provides the fakestore connector" in (caught.value.hint or "")
    src = tmp_path / "a.vmig.jsonl"
    src.write_text('{"id": "1", "text": "t"}\n')
    code, _, err = vex(capsys, "migrate", str(src), "fakestore://localhost/memories")
    assert code == 2 and "the package that provides the fakestore connector" in err


def test_verify_receipt_names_a_tampered_namespace(slipstream: Fixture, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "t.db"
    vexchange.migrate(f"vektor:{slipstream.path}", f"vektor:{target}", allow_skips=True)
    receipt = str(tmp_path / "t.db.receipt.json")
    assert vex(capsys, "verify", f"vektor:{target}", "--receipt", receipt)[0] == 0
    con = sqlite3.connect(target)
    con.execute("UPDATE memories SET content = 'changed' WHERE id = 10")  # namespace of id 10: default
    con.commit()
    con.close()
    code, stdout, _ = vex(capsys, "verify", f"vektor:{target}", "--receipt", receipt, "--json")
    report = json.loads(stdout)
    assert code == 3 and not report["ok"]
    differences = report["checks"][0]["differences"]
    assert [d["namespace"] for d in differences] == ["default"]
    assert differences[0]["actual_count"] == differences[0]["expected_count"]
    code, stdout, _ = vex(capsys, "verify", f"vektor:{target}", "--against", f"vektor:{slipstream.path}",
                          "--json")
    assert code == 3 and json.loads(stdout)["checks"][0]["changed_ids"] == ["10"]


def test_damaged_checkpoint_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "a.vmig.jsonl"
    src.write_text('{"id": "1", "text": "t"}\n')
    (tmp_path / "b.vmig.jsonl.receipt.json.checkpoint").write_text("{not json")
    code, _, err = vex(capsys, "migrate", str(src), str(tmp_path / "b.vmig.jsonl"), "--resume")
    assert code == 1 and "checkpoint is damaged" in err and "without --resume" in err


class _Flaky:
    """Makes VektorWriter's batch write fail transiently on chosen calls (engine test only)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, failing_calls: set[int]) -> None:
        self.calls = 0
        real = VektorWriter._write_batch

        def flaky(writer: VektorWriter, batch: list) -> list:  # type: ignore[type-arg]
            self.calls += 1
            if self.calls in failing_calls:
                raise TransientError("503 from the store", connector="vektor", retry_after=0.0)
            return real(writer, batch)

        monkeypatch.setattr(VektorWriter, "_write_batch", flaky)
        monkeypatch.setattr("vexchange.retry.time.sleep", lambda s: None)


def test_transient_failures_are_retried_and_every_record_arrives_once(
        slipstream: Fixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flaky = _Flaky(monkeypatch, failing_calls={2, 3, 5})
    target = tmp_path / "t.db"
    receipt = vexchange.migrate(f"vektor:{slipstream.path}", f"vektor:{target}", batch_size=50,
                                allow_skips=True)
    assert receipt.retries == 3 and flaky.calls > 3
    count = sqlite3.connect(target).execute("SELECT COUNT(*) FROM memories").fetchone()[0]
    assert count == receipt.counts.written == slipstream.records - 1


def test_persistent_failure_stops_with_receipt_and_resume_completes(
        slipstream: Fixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import vexchange.engine.run as run_mod

    monkeypatch.setattr(run_mod, "_CHECKPOINT_EVERY_S", 0.0)
    _Flaky(monkeypatch, failing_calls={4, 5, 6})  # batch 4 fails all three attempts
    target = tmp_path / "t.db"
    with pytest.raises(MigrationError) as caught:
        vexchange.migrate(f"vektor:{slipstream.path}", f"vektor:{target}", batch_size=50)
    stopped = caught.value.receipt
    assert stopped.status == "failed" and stopped.counts.written == 150
    assert "--resume" in (caught.value.hint or "")
    assert json.loads((tmp_path / "t.db.receipt.json").read_text())["status"] == "failed"

    monkeypatch.undo()
    done = vexchange.migrate(f"vektor:{slipstream.path}", f"vektor:{target}", batch_size=50,
                             resume=True, allow_skips=True)
    assert done.resumed and done.counts.written == slipstream.records - 1
    con = sqlite3.connect(target)
    assert con.execute("SELECT COUNT(*) FROM memories").fetchone()[0] == slipstream.records - 1
    check = vexchange.verify(f"vektor:{target}", against=f"vektor:{slipstream.path}")["checks"][0]
    # all but the fixture's unreadable row, which verify names instead of passing over
    assert (check["missing"], check["changed"], check["extra"], check["source_unreadable"]) == (0, 0, 0, 1)


def test_verify_receipt_with_records_that_have_no_namespace(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "a.vmig.jsonl"
    src.write_text('{"id": "1", "text": "no namespace", "vector": [0.5, 1.5]}\n'
                   '{"id": "2", "text": "with one", "namespace": "n", "vector": [0.5, 2.5]}\n')
    vexchange.migrate(src, f"vektor:{tmp_path / 't.db'}")
    code, stdout, _ = vex(capsys, "verify", f"vektor:{tmp_path / 't.db'}", "--receipt",
                          str(tmp_path / "t.db.receipt.json"), "--json")
    assert code == 0, stdout


def test_the_page_norm_screen_never_passes_a_vector_without_a_unit_vector() -> None:
    """``_norms_fine`` lets a page skip the per-vector ``not_normalisable`` check only when
    every vector surely passes it: random scales across float32's whole range, by the page
    and one vector at a time."""
    import numpy as np

    from vexchange.engine.run import _norms_fine, not_normalisable
    from vexchange.record import MemoryRecord, Vector

    rng = np.random.default_rng(7)
    records = []
    for i in range(3000):
        scale = 10.0 ** rng.uniform(-44, 38.5)
        values = np.clip(rng.standard_normal(int(rng.integers(1, 9))) * scale, -3e38, 3e38).astype("<f4")
        if not np.isfinite(values).all():
            continue
        records.append(MemoryRecord(id=str(i), vectors={"": Vector(values.tobytes())}))
    screened = 0
    for record in records:
        if _norms_fine([record]):
            screened += 1
            assert not_normalisable(record.vectors[""].array()) is None, record.vectors[""].array()
    assert 0 < screened < len(records)  # the band is exercised on both sides
    fine = [r for r in records if _norms_fine([r])]
    assert _norms_fine(list(fine)) and not _norms_fine(records)

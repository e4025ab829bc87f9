"""A saved checkpoint never counts bytes that are not on the disk, though a ``.vmig.jsonl``
writer no longer flushes after every batch (``Writer.make_durable``, once per saved checkpoint)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vexchange import migrate
from vexchange._atomic import AtomicOutput, hash_prefix
from vexchange.engine import run as engine_run
from vexchange.engine.checkpoint import Checkpoint
from vexchange.testing.conformance import read_all, write_vmig
from vexchange.testing.records import sample_records


def _source(tmp_path: Path) -> str:
    return str(write_vmig(tmp_path / "in.vmig.jsonl", list(sample_records(400, dims=64, seed=3))))


def test_every_saved_checkpoint_is_on_the_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint saved after every page (the interval set to 0): at each save the partial
    file, read by another handle, already holds the size and SHA-256 the checkpoint records."""
    monkeypatch.setattr(engine_run, "_CHECKPOINT_EVERY_S", 0.0)
    partial = tmp_path / "out.vmig.jsonl.partial"
    saved: list[int] = []
    real_save = Checkpoint.save

    def checked_save(self: Checkpoint, state: dict[str, Any]) -> None:
        file_state = state["target_state"]["file"]
        size = file_state["size"]
        assert hash_prefix(partial, size).hexdigest() == file_state["sha256"]
        saved.append(size)
        real_save(self, state)

    monkeypatch.setattr(Checkpoint, "save", checked_save)
    source = _source(tmp_path)
    receipt = migrate(source, str(tmp_path / "out.vmig.jsonl"), batch_size=25, receipt=tmp_path / "r.json")
    assert receipt.counts.written == 400
    assert len(saved) >= 15 and saved == sorted(saved) and saved[-1] > 0
    assert read_all(str(tmp_path / "out.vmig.jsonl")) == read_all(source)


def test_batches_between_checkpoints_are_not_flushed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """16 batches inside one checkpoint interval: the data file is flushed for the commit, not
    once a batch."""
    source = _source(tmp_path)
    monkeypatch.setattr(engine_run, "_CHECKPOINT_EVERY_S", 3600.0)
    flushes = {"n": 0}
    real_flush = AtomicOutput.flush

    def counted(self: AtomicOutput, *, sync: bool = False) -> None:
        flushes["n"] += 1
        real_flush(self, sync=sync)

    monkeypatch.setattr(AtomicOutput, "flush", counted)
    receipt = migrate(source, str(tmp_path / "out.vmig.jsonl"), batch_size=25, receipt=tmp_path / "r.json")
    assert receipt.counts.written == 400
    assert flushes["n"] <= 3, flushes  # the finish's and the commit's


def test_a_failure_whose_flush_fails_too_goes_back_to_the_last_saved_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch fails, and putting the last page's output on the disk fails as well (the disk
    is full): the run falls back to the checkpoint saved before, whose bytes are there, and
    its receipt counts only those. ``--resume`` then writes every record once."""
    from vexchange.connectors.vmig import VmigWriter
    from vexchange.errors import VexError

    monkeypatch.setattr(engine_run, "_CHECKPOINT_EVERY_S", 3600.0)  # saved at the start only
    source = _source(tmp_path)
    target, receipt_path = tmp_path / "out.vmig.jsonl", tmp_path / "r.json"
    calls = {"write": 0}
    real_write = VmigWriter.write_with_texts  # what a .vmig.jsonl to .vmig.jsonl run calls

    def failing_write(self: VmigWriter, batch: list[Any], texts: Any) -> list[Any]:
        calls["write"] += 1
        if calls["write"] >= 7:  # every try of the seventh batch, and after
            raise OSError(28, "No space left on device")
        return real_write(self, batch, texts)

    def failing_flush(self: VmigWriter) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(VmigWriter, "write_with_texts", failing_write)
    monkeypatch.setattr(VmigWriter, "make_durable", failing_flush)
    with pytest.raises((VexError, OSError)):
        migrate(source, str(target), batch_size=25, receipt=receipt_path)
    import orjson

    failed = orjson.loads(receipt_path.read_bytes())
    assert failed["status"] == "failed"
    assert failed["counts"]["written"] == 0  # six batches acknowledged, none of them durable
    monkeypatch.undo()
    resumed = migrate(source, str(target), batch_size=25, receipt=receipt_path, resume=True)
    assert resumed.counts.written == 400 and resumed.counts.read == 400
    assert read_all(str(target)) == read_all(source)


def test_a_flush_that_fails_midway_keeps_the_checkpoints_saved_before_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint after every page, and the fifth flush fails (the disk fills up): four
    pages were saved with their bytes on the disk, so the failed receipt counts those 100
    records, and ``--resume`` goes on from there, writing every record once."""
    from vexchange.connectors.vmig import VmigWriter
    from vexchange.errors import VexError

    monkeypatch.setattr(engine_run, "_CHECKPOINT_EVERY_S", 0.0)
    source = _source(tmp_path)
    target, receipt_path = tmp_path / "out.vmig.jsonl", tmp_path / "r.json"
    flushes = {"n": 0}
    real_flush = VmigWriter.make_durable

    def filling_up(self: VmigWriter) -> None:
        flushes["n"] += 1
        if flushes["n"] >= 5:
            raise OSError(28, "No space left on device")
        real_flush(self)

    monkeypatch.setattr(VmigWriter, "make_durable", filling_up)
    with pytest.raises((VexError, OSError)):
        migrate(source, str(target), batch_size=25, receipt=receipt_path)
    import orjson

    failed = orjson.loads(receipt_path.read_bytes())
    assert failed["status"] == "failed" and failed["counts"]["written"] == 100
    monkeypatch.undo()
    resumed = migrate(source, str(target), batch_size=25, receipt=receipt_path, resume=True)
    assert resumed.counts.written == 400 and resumed.counts.read == 400
    assert read_all(str(target)) == read_all(source)

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

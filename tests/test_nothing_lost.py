"""The engine's side of "nothing lost, nothing changed, nothing stops": failed runs keep a
receipt whose counts match the rejects file, ids seen survive --resume, invalid vectors from a
source are rejects, run files are named after the whole target, planning from capabilities,
unreadable rows in verify and in unselected namespaces, and what Ctrl-C says."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vexchange import migrate, open_store
from vexchange.checks import verify
from vexchange.cli import _interrupted_message, main
from vexchange.connectors import _registry
from vexchange.connectors._base import Capabilities, Connector, Page
from vexchange.engine.receipt import load_receipt
from vexchange.errors import MigrationError, PermanentError, RunInterrupted, UsageError
from vexchange.record import MemoryRecord, Vector
from vexchange.testing.conformance import (ConnectorConformance, _Interrupting, fail_a_write, read_all,
                                           write_vmig)
from vexchange.testing.records import sample_records


def records(n: int, **options: Any) -> list[MemoryRecord]:
    return list(sample_records(n, dims=4, null_vectors=False, **options))


def run_files(tmp_path: Path) -> dict[str, Path]:
    return {"receipt": tmp_path / "r.json", "rejects": tmp_path / "r.rejects.jsonl"}


def rejects_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_run_that_fails_with_a_bug_still_writes_a_failed_receipt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = write_vmig(tmp_path / "in.vmig.jsonl", records(9))
    fail_a_write(monkeypatch, fail_on=2, error=RuntimeError("a connector bug"))
    files = run_files(tmp_path)
    with pytest.raises(RuntimeError):
        migrate(source, tmp_path / "out.vmig.jsonl", batch_size=3, **files)
    receipt = load_receipt(files["receipt"])
    assert receipt.status == "failed" and "RuntimeError: a connector bug" in (receipt.error or "")
    assert receipt.counts.written == 3


def test_the_rejects_of_a_failed_page_are_not_left_beside_a_receipt_that_does_not_count_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Page 2 holds a duplicate id (a reject) and its write fails for good: the receipt counts
    what is durable (page 1) and the rejects file holds exactly what it counts; --resume then
    writes page 2 and its reject once."""
    data = records(6)
    data[4] = data[3]  # a duplicate id in the second page
    source = write_vmig(tmp_path / "in.vmig.jsonl", data)
    files = run_files(tmp_path)
    target = f"cartridge://{tmp_path}/out.db"
    fail_a_write(monkeypatch, fail_on=2, error=PermanentError("refused for good"))
    with pytest.raises(MigrationError):
        migrate(source, target, batch_size=3, **files)
    failed = load_receipt(files["receipt"])
    assert failed.status == "failed"
    assert failed.counts.skipped_total == len(rejects_lines(files["rejects"])) == 0
    monkeypatch.undo()
    done = migrate(source, target, batch_size=3, resume=True, **files)
    assert done.counts.skipped == {"duplicate_id": 1} and done.counts.written == 5
    assert [line["reason"] for line in rejects_lines(files["rejects"])] == ["duplicate_id"]


def test_ids_seen_before_the_checkpoint_still_catch_a_duplicate_after_resume(tmp_path: Path) -> None:
    data = records(12)
    data[10] = data[1].replace(text="a second record with the id of record 1")
    source = write_vmig(tmp_path / "in.vmig.jsonl", data)
    files = run_files(tmp_path)
    target = f"cartridge://{tmp_path}/out.db"
    with pytest.raises(KeyboardInterrupt):
        migrate(_Interrupting(open_store(source), pages=2), target, batch_size=3, **files)
    done = migrate(source, target, batch_size=3, resume=True, **files)
    assert done.counts.skipped == {"duplicate_id": 1}, done.counts
    kept = read_all(target)
    assert kept[(data[1].namespace, data[1].id)] == data[1]  # not overwritten by the twin


class _BrokenVectors(Connector):
    """A source that hands over what a damaged store might: NaN, empty and ragged vectors."""

    name = "broken-vectors"
    capabilities = Capabilities(read=True, write=False)

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        good = records(1)[0]
        nan = np.array([1.0, np.nan, 0.0, 2.0], dtype="<f4").tobytes()
        yield Page([good, good.replace(id="nan", vectors={"": Vector(nan)}),
                    good.replace(id="empty", vectors={"": Vector(b"")}),
                    good.replace(id="ragged", vectors={"": Vector(b"\x00" * 6)})], None)


def test_invalid_vectors_from_a_source_are_rejects_never_records(tmp_path: Path) -> None:
    out = tmp_path / "out.vmig.jsonl"
    receipt = migrate(_BrokenVectors(open_store(tmp_path / "x.vmig.jsonl").spec), out,
                      **run_files(tmp_path))
    assert receipt.counts.written == 1 and receipt.counts.skipped == {"invalid_vector": 3}
    lines = rejects_lines(tmp_path / "r.rejects.jsonl")
    assert sorted(line["id"] for line in lines) == ["empty", "nan", "ragged"]
    assert all(line["record"] for line in lines)
    assert len(read_all(out)) == 1


def test_store_run_files_are_named_after_the_whole_target(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from vexchange.api import _run_base

    a = open_store(f"chroma://{tmp_path}/db?collection=first")
    b = open_store(f"chroma://{tmp_path}/db?collection=second")
    bases = {_run_base(a, None), _run_base(b, None), _run_base(a, ["work"])}
    assert len(bases) == 3
    assert all(base.parent == Path.cwd() and "chroma" in base.name for base in bases)
    monkeypatch.chdir(tmp_path)
    source = write_vmig(tmp_path / "in.vmig.jsonl", records(3))
    receipt = migrate(source, f"cartridge://{tmp_path}/out.db")
    assert receipt.receipt_file == str(tmp_path / "out.db.receipt.json")


class _ReadOnly(Connector):
    name = "readonly"
    capabilities = Capabilities(read=True, write=True)  # says it writes, but has no writer


def test_a_target_that_cannot_be_written_is_a_usage_error(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    _registry._REGISTERED["readonly"] = _registry.Entry(f"{__name__}:_ReadOnly")
    try:
        source = write_vmig(tmp_path / "in.vmig.jsonl", records(2))
        with pytest.raises(UsageError, match="cannot be written"):
            migrate(source, "readonly://somewhere/x", **run_files(tmp_path))
        code = main(["migrate", str(source), "readonly://somewhere/x"])
        _, err = capsys.readouterr()
        assert code == 2 and "cannot be written" in err and "Traceback" not in err
        with pytest.raises(UsageError, match="cannot be read"):
            migrate("readonly://s/x", tmp_path / "o.vmig.jsonl", **run_files(tmp_path))
    finally:
        _registry._REGISTERED.pop("readonly")


def _with_bad_line(tmp_path: Path, namespace: str) -> Path:
    source = write_vmig(tmp_path / "in.vmig.jsonl", records(8))
    bad = {"id": "bad", "namespace": namespace, "vector": [1.0, "x", 0.0, 1.0], "text": "t"}
    with open(source, "a") as out:
        out.write(json.dumps(bad) + "\n")
    source.with_name("in.vmig.meta.json").unlink()  # its checksum no longer holds: a file by hand
    return source


def test_an_unreadable_row_outside_the_selected_namespaces_never_changes_the_exit_code(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _with_bad_line(tmp_path, namespace="elsewhere")
    code = main(["migrate", str(source), str(tmp_path / "out.vmig.jsonl"), "--namespace", "alpha",
                 "--quiet"])
    assert code == 0, capsys.readouterr()
    receipt = load_receipt(tmp_path / "out.vmig.jsonl.receipt.json")
    assert receipt.counts.skipped_total == 0 and receipt.counts.filtered == 7
    source = _with_bad_line(tmp_path, namespace="alpha")
    code = main(["migrate", str(source), str(tmp_path / "out2.vmig.jsonl"), "--namespace", "alpha",
                 "--quiet"])
    assert code == 4


def test_verify_against_counts_an_unreadable_source_row_as_a_failure(tmp_path: Path) -> None:
    source = _with_bad_line(tmp_path, namespace="alpha")
    target = tmp_path / "out.vmig.jsonl"
    migrate(source, target, allow_skips=True, **run_files(tmp_path))
    report = verify(target, against=source)
    check = next(c for c in report["checks"] if c["check"] == "against")
    assert not report["ok"]
    assert not check["ok"] and check["source_unreadable"] == 1
    assert check["unreadable"][0]["id"] == "bad"


def test_ctrl_c_says_what_was_written_and_the_command_that_resumes(tmp_path: Path) -> None:
    source = write_vmig(tmp_path / "in.vmig.jsonl", records(12))
    files = run_files(tmp_path)
    with pytest.raises(RunInterrupted) as caught:
        migrate(_Interrupting(open_store(source), pages=2), f"cartridge://{tmp_path}/o.db",
                batch_size=3, **files)
    argv = ["migrate", str(source), f"cartridge://{tmp_path}/o.db", "--target-secret",
            "api_key=SECRET", "--source-secret=token=HIDDEN"]
    text = _interrupted_message(caught.value, argv)
    assert "after 6 records were written" in text
    assert str(files["receipt"]) + ".checkpoint" in text
    assert "to continue: vex migrate" in text and text.rstrip().count("--resume") == 1
    assert "SECRET" not in text and "HIDDEN" not in text and "api_key=***" in text
    assert "token=***" in text
    assert load_receipt(files["receipt"]).status == "interrupted"


class _CtrlC(Connector):
    """A .vmig.jsonl source whose reader is stopped by Ctrl-C after two pages."""

    name = "ctrlc"
    url_options = frozenset()
    capabilities = Capabilities(read=True, write=False)

    def read(self, *, batch_size: int, after: str | None = None) -> Iterator[Page]:
        inner = open_store(self.spec.path or "")
        yield from _Interrupting(inner, pages=2).read(batch_size=batch_size, after=after)


def test_ctrl_c_in_the_cli_prints_the_resume_command(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    source = write_vmig(tmp_path / "in.vmig.jsonl", records(12))
    _registry._REGISTERED["ctrlc"] = _registry.Entry(f"{__name__}:_CtrlC")
    try:
        code = main(["migrate", f"ctrlc:{source}", f"cartridge://{tmp_path}/o.db", "--batch-size",
                     "3", "--quiet"])
    finally:
        _registry._REGISTERED.pop("ctrlc")
    err = capsys.readouterr().err
    assert code == 130 and "Traceback" not in err
    assert "interrupted after 6 records were written" in err
    assert f"to continue: vex migrate ctrlc:{source}" in err and "--resume" in err


def test_a_run_killed_midway_leaves_a_receipt_that_says_running(tmp_path: Path) -> None:
    """SIGKILL gives the run no chance to write its receipt: the one written before the first
    write says "running", not an earlier run's "completed"."""
    import subprocess
    import sys
    import time

    source = write_vmig(tmp_path / "in.vmig.jsonl", records(400))
    target = f"cartridge://{tmp_path}/o.db"
    receipt = tmp_path / "k.json"
    migrate(source, target, receipt=receipt, rejects=tmp_path / "k.rej")
    assert load_receipt(receipt).status == "completed"
    code = (f"from vexchange.testing.conformance import run_slowly; run_slowly("
            f"{str(source)!r}, {target!r}, {str(receipt)!r}, {str(tmp_path / 'k.rej')!r}, 0.2)")
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 60
        while load_receipt(receipt).status != "running":
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    assert load_receipt(receipt).status == "running"



def test_a_full_disk_while_the_output_is_completed_leaves_a_run_that_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The last page is written, then completing the output fails (ENOSPC in finish): the
    checkpoint is saved all the same, and --resume gives every record once."""
    import errno

    from vexchange.engine import run as engine_run

    opened = engine_run._open_writer

    def failing_finish(*args: Any, **kwargs: Any) -> Any:
        writer = opened(*args, **kwargs)

        def finish(summary: dict[str, Any]) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        writer.finish = finish
        return writer

    data = records(9)
    source = write_vmig(tmp_path / "in.vmig.jsonl", data)
    target = tmp_path / "out.vmig.jsonl"
    files = run_files(tmp_path)
    monkeypatch.setattr(engine_run, "_open_writer", failing_finish)
    with pytest.raises(MigrationError, match="No space left"):
        migrate(source, target, batch_size=4, **files)
    assert not target.exists() and load_receipt(files["receipt"]).status == "failed"
    monkeypatch.undo()
    done = migrate(source, target, batch_size=4, resume=True, **files)
    assert done.counts.written == 9 and done.status == "completed"
    ConnectorConformance.assert_same(data, read_all(target))

"""Every user mistake gives a clear message or a counted skip: never a traceback, never silent loss."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest

import vexchange
from vexchange.cli import main
from vexchange.testing.vektor_fixture import Fixture


def vex(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def good_line(rid: str, vector: list[float] | None = None, **extra: object) -> str:
    return json.dumps({"id": rid, "text": f"t{rid}", "vector": vector or [0.5, 0.25],
                       "namespace": "ns", **extra})


def test_malformed_line_nan_wrong_dims_and_duplicates_are_counted_skips(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.vmig.jsonl"
    src.write_text("\n".join([
        good_line("1"),
        "{this is not json",
        '{"id": "2", "vector": [NaN, 1.0], "text": "x"}',  # not JSON at all
        '{"id": "2b", "vector": [null, 1.0], "text": "x"}',  # JSON.stringify's NaN
        '{"id": "2c", "vector": [1e39, 1.0], "text": "x"}',  # overflows float32
        good_line("3", [1.0, 2.0, 3.0]),          # other dims than the target's
        good_line("1"),                            # duplicate id
        good_line("4", dims=5),                    # dims disagrees with the vector
        good_line("5"),
    ]) + "\n")
    out = tmp_path / "out.db"
    code, stdout, _ = vex(capsys, "import", "--from", str(src), "--to", "vektor", "--db", str(out))
    assert code == 4
    assert "skipped" in stdout and "bad_json" in stdout
    receipt = json.loads((tmp_path / "out.db.receipt.json").read_text())
    assert receipt["counts"]["written"] == 2
    assert receipt["counts"]["skipped"] == {"bad_json": 2, "bad_vector": 2, "dims_mismatch": 2,
                                            "duplicate_id": 1}
    rejects = [json.loads(x) for x in (tmp_path / "out.db.rejects.jsonl").read_text().splitlines()]
    assert len(rejects) == 7
    assert rejects[0]["location"].endswith("in.vmig.jsonl line 2")
    assert all(r["record"] is not None for r in rejects)  # nothing lost: the input is kept


def test_allow_skips_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.vmig.jsonl"
    src.write_text(good_line("1") + "\n{bad\n")
    code, _, _ = vex(capsys, "migrate", str(src), str(tmp_path / "o.vmig.jsonl"), "--allow-skips")
    assert code == 0


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = vex(capsys, "import", "--from", str(tmp_path / "nope.vmig.jsonl"),
                       "--to", "vektor", "--db", str(tmp_path / "x.db"))
    assert code == 2 and "no such file" in err


def test_missing_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = vex(capsys, "export", "--from", "vektor", "--db", str(tmp_path / "no.db"),
                       "--output", str(tmp_path / "o.vmig.jsonl"))
    assert code == 2 and "no such database" in err


def test_not_a_vektor_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE notes (x)").connection.commit()
    code, _, err = vex(capsys, "export", "--from", "vektor", "--db", str(other),
                       "-o", str(tmp_path / "o.vmig.jsonl"))
    assert code == 1 and "not a VEKTOR Slipstream database" in err
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"hello, this is not sqlite" * 100)
    code, _, err = vex(capsys, "export", "--from", "vektor", "--db", str(garbage),
                       "-o", str(tmp_path / "o.vmig.jsonl"))
    assert code == 1 and "not a SQLite database" in err
    assert not (tmp_path / "o.vmig.jsonl").exists()


def _import_while_locked(slipstream: Fixture, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                         monkeypatch: pytest.MonkeyPatch, lock: str) -> tuple[int, str]:
    """Import into a database that another connection holds with ``BEGIN <lock>``."""
    src = tmp_path / "a.vmig.jsonl"
    vexchange.export(f"vektor:{slipstream.path}", src, allow_skips=True)
    target = tmp_path / "t.db"
    vexchange.import_(src, f"vektor:{target}", limit=10)
    monkeypatch.setattr("vexchange.connectors.vektor._BUSY_TIMEOUT_MS", 50)
    monkeypatch.setattr("vexchange.retry.time.sleep", lambda s: None)
    holder = sqlite3.connect(target, isolation_level=None)
    holder.execute(f"BEGIN {lock}")
    try:
        code, _, err = vex(capsys, "import", "--from", str(src), "--to", "vektor", "--db", str(target))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    return code, err


def test_locked_database_is_a_clear_error_and_resumable(
        slipstream: Fixture, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # IMMEDIATE is what a writing Slipstream holds: readers go on, writers wait
    code, err = _import_while_locked(slipstream, tmp_path, capsys, monkeypatch, "IMMEDIATE")
    assert code == 1
    assert "locked" in err and "--resume" in err
    assert "checkpoint: " in err and err.count("t.db.receipt.json.checkpoint") == 1


def test_read_only_output_directory(slipstream: Fixture, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    code, _, err = vex(capsys, "export", "--from", "vektor", "--db", str(slipstream.path),
                       "-o", str(ro / "o.vmig.jsonl"))
    assert code == 2 and "not writable" in err


def test_output_directory_missing(slipstream: Fixture, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = vex(capsys, "export", "--from", "vektor", "--db", str(slipstream.path),
                       "-o", str(tmp_path / "nodir" / "o.vmig.jsonl"))
    assert code == 2 and "does not exist" in err


def test_same_source_and_target_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "a.vmig.jsonl"
    src.write_text(good_line("1") + "\n")
    code, _, err = vex(capsys, "migrate", str(src), str(src))
    assert code == 2 and "same store" in err
    assert src.read_text() == good_line("1") + "\n"


def test_interrupted_run_leaves_no_complete_looking_file_and_resumes(
        slipstream: Fixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import vexchange.engine.run as run_mod

    monkeypatch.setattr(run_mod, "_CHECKPOINT_EVERY_S", 0.0)
    out = tmp_path / "a.vmig.jsonl"
    calls = {"n": 0}
    real = run_mod._account_written

    def crash_after_three_batches(*args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(run_mod, "_account_written", crash_after_three_batches)
    with pytest.raises(KeyboardInterrupt):
        vexchange.export(f"vektor:{slipstream.path}", out, batch_size=50, allow_skips=True)
    assert not out.exists() and (tmp_path / "a.vmig.jsonl.partial").exists()
    assert not (tmp_path / "a.vmig.meta.json").exists()
    receipt = json.loads((tmp_path / "a.vmig.jsonl.receipt.json").read_text())
    assert receipt["status"] == "interrupted" and receipt["counts"]["written"] == 150

    monkeypatch.setattr(run_mod, "_account_written", real)
    done = vexchange.export(f"vektor:{slipstream.path}", out, batch_size=50, allow_skips=True,
                            resume=True)
    assert done.resumed and done.counts.written == slipstream.records - 1
    whole = tmp_path / "whole.vmig.jsonl"
    vexchange.export(f"vektor:{slipstream.path}", whole, allow_skips=True)
    assert out.read_bytes() == whole.read_bytes()
    assert vexchange.verify(out)["ok"]


def test_resume_without_checkpoint_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "a.vmig.jsonl"
    src.write_text(good_line("1") + "\n")
    code, _, err = vex(capsys, "migrate", str(src), str(tmp_path / "b.vmig.jsonl"), "--resume")
    assert code == 2 and "nothing to resume" in err


def test_unknown_connector_and_bad_timestamp(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = vex(capsys, "export", "--from", "vektr", "-o", str(tmp_path / "o.vmig.jsonl"))
    assert code == 2 and "did you mean 'vektor'" in err
    src = tmp_path / "a.vmig.jsonl"
    src.write_text(good_line("1") + "\n")
    code, _, err = vex(capsys, "migrate", str(src), str(tmp_path / "b.vmig.jsonl"), "--since", "yesterday")
    assert code == 2 and "--since" in err


def test_database_locked_before_the_run_starts(slipstream: Fixture, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # EXCLUSIVE: not even readers may open it, so the run cannot start
    code, err = _import_while_locked(slipstream, tmp_path, capsys, monkeypatch, "EXCLUSIVE")
    assert code == 1 and "locked" in err and "nothing was written" in err
    assert "--resume" not in err  # there is nothing to resume

"""Faults while writing file targets end in a clear error and a resumable state, never a
traceback: a full disk (vmig, mg, cartridge, VectorPack), a read-only output folder, permission
denied.

A full disk is a size-limited file: the run goes in a subprocess under ``RLIMIT_FSIZE`` with
SIGXFSZ ignored, so a write past the limit fails with EFBIG, which vexchange treats like
ENOSPC. This works as root, and bounds what the test can write. A read-only folder as root
(root ignores permission bits) is an immutable folder (``chattr +i``) where that works, and
otherwise the OSError is injected.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vexchange import migrate
from vexchange.cli import main
from vexchange.engine.receipt import load_receipt
from vexchange.errors import CodecError, UsageError
from vexchange.testing.conformance import read_all, write_vmig
from vexchange.testing.records import sample_records

LIMITS = {"vmig": 400_000, "mg": 400_000, "cartridge": 700_000, "vectorpack": 700_000, "parquet": 150_000}
"""Bytes any one file of the run may reach: past the first pages of the data, well above the
checkpoint, the receipt and the id file (and a SQLite staging file's empty tables)."""
TARGETS = {
    "vmig": lambda d: str(d / "out.vmig.jsonl"),
    "mg": lambda d: str(d / "out.mg"),
    "cartridge": lambda d: f"cartridge://{d}/out.db",
    "vectorpack": lambda d: f"vectorpack://{d}/out.vpack",
    "parquet": lambda d: f"parquet:{d}/out.parquet",  # staging and data files written with O_DIRECT
}
CHECKPOINTED = ("vmig", "mg", "cartridge", "vectorpack", "parquet")

_LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
from vexchange.cli import main
sys.exit(main(sys.argv[1:]))
"""


def source_file(tmp_path: Path, n: int = 400) -> str:
    records = list(sample_records(n, dims=192, null_vectors=False, seed=9))
    return str(write_vmig(tmp_path / "in.vmig.jsonl", records))


def run_limited(args: list[str], limit: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _LIMITED.format(limit=limit), *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_a_full_disk_is_a_clear_error_and_the_run_resumes(name: str, tmp_path: Path) -> None:
    source = source_file(tmp_path)
    target = TARGETS[name](tmp_path)
    receipt = tmp_path / "r.json"
    args = ["migrate", source, target, "--batch-size", "25", "--receipt", str(receipt),
            "--rejects", str(tmp_path / "r.rej")]
    done = run_limited(args, LIMITS[name])
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert "vex: error:" in done.stderr and "no space left" in done.stderr, done.stderr
    assert load_receipt(receipt).status == "failed"
    final = {"vmig": tmp_path / "out.vmig.jsonl", "mg": tmp_path / "out.mg",
             "cartridge": tmp_path / "out.db", "vectorpack": tmp_path / "out.vpack",
             "parquet": tmp_path / "out.parquet"}[name]
    assert not final.exists(), "nothing may look complete"
    if name in CHECKPOINTED:
        assert (tmp_path / "r.json.checkpoint").exists(), "a full disk must leave a checkpoint"
        assert "--resume" in done.stderr
    assert main([*args, "--resume"]) == 0  # space again: the run continues
    resumed = load_receipt(receipt)
    assert resumed.status == "completed" and resumed.resumed
    assert len(read_all(target)) == len(read_all(source)) == resumed.counts.written


def test_a_full_disk_while_the_sidecar_is_written_is_a_clear_error(tmp_path: Path) -> None:
    """The data is in place, the sidecar cannot be written (here: a directory where its
    temporary file goes): an error, and no sidecar that describes other bytes."""
    source = source_file(tmp_path, n=30)
    target = str(tmp_path / "out.vmig.jsonl")
    (tmp_path / "out.vmig.meta.json.partial").mkdir()
    code = main(["migrate", source, target, "--receipt", str(tmp_path / "r.json"),
                 "--rejects", str(tmp_path / "r.rej")])
    assert code == 1
    assert not (tmp_path / "out.vmig.meta.json").exists()
    shutil.rmtree(tmp_path / "out.vmig.meta.json.partial")


# ------------------------------------------------------------------ read-only and no permission


def _make_read_only(folder: Path) -> bool:
    """Make ``folder`` unwritable even for root; False when this system cannot."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return True
    if shutil.which("chattr") is None:
        return False
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    if done.returncode != 0:
        return False
    try:
        (folder / "probe").touch()
    except OSError:
        return True
    (folder / "probe").unlink()
    _undo_read_only(folder)
    return False


def _undo_read_only(folder: Path) -> None:
    if os.geteuid() != 0:
        folder.chmod(0o755)
    else:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_a_read_only_output_folder_is_a_usage_error(name: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    source = source_file(tmp_path, n=20)
    out = tmp_path / "out"
    out.mkdir()
    if not _make_read_only(out):
        pytest.skip("cannot make a folder read-only here (the injected test covers the path)")
    try:
        code = main(["migrate", source, TARGETS[name](out), "--receipt", str(tmp_path / "r.json"),
                     "--rejects", str(tmp_path / "r.rej")])
    finally:
        _undo_read_only(out)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and "vex: error: cannot write" in err, err
    assert not any(out.iterdir())


@pytest.mark.parametrize("failure", [errno.EROFS, errno.EACCES, errno.ENOSPC])
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_an_output_that_cannot_be_opened_is_a_usage_error(
        name: str, failure: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The error path itself, by an injected OSError (what a read-only mount, a folder of
    someone else's, or a full disk gives when the output is first opened)."""
    import sqlite3

    from vexchange import _atomic
    from vexchange.pack import cartridge as pack_cartridge
    from vexchange.pack import vectorpack

    source = source_file(tmp_path, n=20)
    out = tmp_path / "out"
    out.mkdir()

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError(failure, os.strerror(failure))

    def refuse_db(*args: Any, **kwargs: Any) -> Any:
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(_atomic, "open", refuse, raising=False)
    monkeypatch.setattr(pack_cartridge.sqlite3, "connect", refuse_db)
    real_mkdir = Path.mkdir

    def mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        if self.name == "tables" or self.name.endswith(".staging"):  # a VectorPack's, a Parquet target's
            raise OSError(failure, os.strerror(failure))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(vectorpack.Path, "mkdir", mkdir)
    code = main(["migrate", source, TARGETS[name](out), "--receipt", str(tmp_path / "r.json"),
                 "--rejects", str(tmp_path / "r.rej")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and "vex: error: cannot write" in err, err


def test_a_write_that_fails_midway_names_the_file_and_the_cause(tmp_path: Path) -> None:
    from vexchange._atomic import AtomicOutput

    out = AtomicOutput(tmp_path / "x.bin")

    class Full:
        closed = False

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        flush = write

        def close(self) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

    out._file.close()
    out._file = Full()  # type: ignore[assignment]
    with pytest.raises(CodecError, match=r"x\.bin\.partial: no space left"):
        out.write(b"data")
    out.close_partial()  # after a failure: never raises
    with pytest.raises(UsageError):
        migrate(source_file(tmp_path, n=5), str(tmp_path / "missing" / "o.vmig.jsonl"),
                receipt=tmp_path / "r.json", rejects=tmp_path / "r.rej")

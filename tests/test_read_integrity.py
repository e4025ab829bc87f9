"""Every reader checks what its format lets it check before it releases records (issue 15):
sidecar checksums (while reading, or first), .mg footers, decompression and line limits, the .mg
vectors hash, cartridge content ids, a pack's manifest figures. ``--no-verify`` is the way out."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

import vexchange
from vexchange.cli import main
from vexchange.errors import DecodeError, IntegrityError
from vexchange.record import MemoryRecord, Vector

import numpy as np


def vex(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def _records(n: int = 30, seed: int = 7) -> list[MemoryRecord]:
    rng = np.random.default_rng(seed)
    return [MemoryRecord(id=f"r{i}", text=f"memory {i}", namespace="ns" if i % 3 else None,
                         vectors={"": Vector(rng.standard_normal(4).astype("<f4").tobytes())},
                         metadata={"i": i})
            for i in range(n)]


def _vmig(tmp_path: Path, n: int = 30) -> Path:
    """A .vmig.jsonl export with its sidecar (checksum), from a cartridge of ``n`` records."""
    cart = tmp_path / "src.cartridge"
    _write_cartridge(cart, _records(n))
    out = tmp_path / "data.vmig.jsonl"
    vexchange.export(f"cartridge://{cart}", out)
    return out


def _write_cartridge(path: Path, records: list[MemoryRecord]) -> None:
    from vexchange.pack.cartridge import CartridgeBuilder

    builder = CartridgeBuilder(path, resume=False)
    builder.write(records)
    builder.finish({"": "cosine"})


def _tamper_line(path: Path, line: int = 5) -> None:
    """Change one record's text without breaking its JSON: the sidecar checksum no longer fits."""
    lines = path.read_bytes().splitlines(keepends=True)
    lines[line] = lines[line].replace(b"memory", b"MEMORY", 1)
    path.write_bytes(b"".join(lines))


# ------------------------------------------------------------------------- vmig sidecar checksum


def test_a_tampered_vmig_fails_the_run_at_the_end_and_nothing_is_complete(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _vmig(tmp_path)
    _tamper_line(src)
    out = tmp_path / "copy.vmig.jsonl"
    code, _, err = vex(capsys, "migrate", str(src), str(out), "--batch-size", "7")
    assert code == 3, err
    assert "does not match the checksum in its sidecar" in err and "--no-verify" in err
    assert not out.exists() and not (tmp_path / "copy.vmig.meta.json").exists()
    receipt = json.loads((tmp_path / "copy.vmig.jsonl.receipt.json").read_text())
    assert receipt["status"] == "failed" and "sidecar" in receipt["error"]
    assert receipt["options"]["verify"] is True
    with pytest.raises(IntegrityError):
        vexchange.migrate(src, out, batch_size=7)
    assert not out.exists()


def test_verify_first_refuses_a_tampered_vmig_before_writing_anything(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _vmig(tmp_path)
    _tamper_line(src)
    out = tmp_path / "copy.vmig.jsonl"
    code, _, err = vex(capsys, "migrate", str(src), str(out), "--verify-first")
    assert code == 3 and "refused before writing anything" in err
    assert not out.exists() and not Path(str(out) + ".partial").exists()
    receipt = json.loads((tmp_path / "copy.vmig.jsonl.receipt.json").read_text())
    assert receipt["status"] == "failed" and receipt["counts"]["written"] == 0
    assert receipt["options"]["verify_first"] is True
    target = tmp_path / "t.cartridge"
    with pytest.raises(IntegrityError):
        vexchange.import_(src, f"cartridge://{target}", verify_first=True)
    assert not target.exists() and not Path(str(target) + ".partial").exists()


def test_no_verify_reads_a_tampered_vmig_and_the_receipt_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _vmig(tmp_path)
    _tamper_line(src)
    out = tmp_path / "copy.vmig.jsonl"
    code, _, err = vex(capsys, "migrate", str(src), str(out), "--no-verify", "--quiet")
    assert code == 0, err
    receipt = json.loads((tmp_path / "copy.vmig.jsonl.receipt.json").read_text())
    assert receipt["status"] == "completed" and receipt["options"]["verify"] is False
    assert receipt["counts"]["written"] == 30
    assert vex(capsys, "migrate", str(src), str(out), "--no-verify", "--verify-first")[0] == 2


def test_a_sound_vmig_passes_every_way_and_vex_convention_checksums_too(tmp_path: Path) -> None:
    src = _vmig(tmp_path)
    for options in ({}, {"verify_first": True}):
        receipt = vexchange.migrate(src, tmp_path / "copy.vmig.jsonl", batch_size=7, **options)
        assert receipt.status == "completed" and receipt.counts.written == 30
    # Vex's convention: the checksum of the bytes without the final newline
    import hashlib

    meta_path = tmp_path / "data.vmig.meta.json"
    meta = json.loads(meta_path.read_text())
    meta["checksum"] = "sha256:" + hashlib.sha256(src.read_bytes()[:-1]).hexdigest()
    meta_path.write_text(json.dumps(meta))
    for options in ({}, {"verify_first": True}):
        assert vexchange.migrate(src, tmp_path / "copy2.vmig.jsonl", **options).counts.written == 30


def test_a_limited_run_checks_the_whole_file_before_it_finishes(tmp_path: Path) -> None:
    src = _vmig(tmp_path)
    _tamper_line(src, 25)
    out = tmp_path / "copy.vmig.jsonl"
    with pytest.raises(IntegrityError):
        vexchange.migrate(src, out, limit=5, batch_size=2)
    assert not out.exists()


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_the_check_holds_when_the_source_is_read_ahead(tmp_path: Path, mode: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEX_READ_AHEAD", mode)
    monkeypatch.setattr("vexchange.engine.read_process.usable_cpus", lambda: 2)
    monkeypatch.setattr("vexchange.engine.read_ahead.usable_cpus", lambda: 2)
    src = _vmig(tmp_path)
    _tamper_line(src)
    out = tmp_path / "copy.vmig.jsonl"
    with pytest.raises(IntegrityError):
        vexchange.migrate(src, out, batch_size=4)
    assert not out.exists()
    assert vexchange.migrate(src, out, batch_size=4, verify=False).counts.written == 30


def test_a_resumed_read_hashes_the_bytes_before_its_cursor(tmp_path: Path) -> None:
    from vexchange.connectors.vmig import read_file

    src = _vmig(tmp_path)
    pages = read_file(src, batch_size=10)
    cursor = next(pages).cursor
    assert sum(len(p.items) for p in read_file(src, batch_size=10, after=cursor)) == 20
    _tamper_line(src, 2)  # before the cursor
    with pytest.raises(IntegrityError):
        list(read_file(src, batch_size=10, after=cursor))


# ----------------------------------------------------------------------------------- line limit


def test_an_over_long_line_is_refused_in_bounded_memory(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from vexchange.connectors.vmig import iter_lines

    src = tmp_path / "long.vmig.jsonl"
    with open(src, "wb") as handle:
        handle.write(b'{"id": "a", "text": "short"}\n')
        handle.write(b'{"id": "b", "text": "' + b"x" * 300_000 + b'"}\n')
    monkeypatch.setenv("VEX_MAX_LINE_BYTES", "100000")
    with pytest.raises(DecodeError) as caught:
        list(iter_lines(src))
    assert "line 2" in str(caught.value) and "VEX_MAX_LINE_BYTES" in str(caught.value)
    code, _, err = vex(capsys, "migrate", str(src), str(tmp_path / "out.vmig.jsonl"))
    assert code == 1 and "longer than 100,000 bytes" in err
    assert not (tmp_path / "out.vmig.jsonl").exists()
    monkeypatch.setenv("VEX_MAX_LINE_BYTES", "300024")  # the line exactly, newline aside
    assert len(list(iter_lines(src))) == 2
    monkeypatch.setenv("VEX_MAX_LINE_BYTES", "lots")
    assert vex(capsys, "migrate", str(src), str(tmp_path / "out.vmig.jsonl"))[0] == 2

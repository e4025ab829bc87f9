"""Every reader checks what its format lets it check before it releases records (issue 15):
sidecar checksums (while reading, or first), .mg footers, decompression and line limits, the .mg
vectors hash, cartridge content ids, a pack's manifest figures. ``--no-verify`` is the way out."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import vexchange
from vexchange.cli import main
from vexchange.errors import DecodeError, IntegrityError
from vexchange.record import MemoryRecord, Vector


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
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       children: list[object]) -> None:
    monkeypatch.setenv("VEX_READ_AHEAD", mode)
    monkeypatch.setattr("vexchange.engine.read_process.usable_cpus", lambda: 2)
    monkeypatch.setattr("vexchange.engine.read_ahead.usable_cpus", lambda: 2)
    src = _vmig(tmp_path)
    _tamper_line(src)
    out = tmp_path / "copy.vmig.jsonl"
    before = len(children)
    with pytest.raises(IntegrityError):
        vexchange.migrate(src, out, batch_size=4)
    assert not out.exists()
    assert len(children) - before == (1 if mode == "process" else 0)  # the child read and checked
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


# ------------------------------------------------------------------------------------------ .mg


def _mg(tmp_path: Path, *, with_hash: bool = True, compress: bool = False) -> Path:
    """A .mg export and its vectors file; ``with_hash``: its manifest carries the vectors
    file's hash (rebuilt here with ``describe_vectors``, the one line the mg writer adds)."""
    import hashlib

    from vexchange.oms.container import MgReader, MgWriter

    cart = tmp_path / "src.cartridge"
    if not cart.exists():
        _write_cartridge(cart, _records())
    path = tmp_path / "m.mg"
    vexchange.migrate(f"cartridge://{cart}", path)
    vectors = tmp_path / "m.mg.vectors"
    with MgReader(path) as reader:
        blobs = [reader.blob(i) for i in range(len(reader))]
    with MgWriter(path, compress=compress) as writer:
        for blob in blobs:
            writer.add(blob)
        if with_hash:
            writer.describe_vectors(hashlib.sha256(vectors.read_bytes()).hexdigest(),
                                    vectors.stat().st_size)
    return path


def test_a_tampered_mg_footer_is_refused_before_any_record(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = _mg(tmp_path)
    data = bytearray(path.read_bytes())
    data[40] ^= 1
    path.write_bytes(bytes(data))
    out = tmp_path / "out.vmig.jsonl"
    code, _, err = vex(capsys, "migrate", str(path), str(out))
    assert code == 3 and "footer checksum does not match" in err and "--no-verify" in err
    assert not out.exists() and not Path(str(out) + ".partial").exists()
    code, stdout, _ = vex(capsys, "grains", "verify", str(path), "--json")
    assert code == 3 and json.loads(stdout)["error"] == "ERR_INTEGRITY"


@pytest.mark.parametrize("compress", [False, True])
def test_a_sound_mg_reads_with_its_vectors_checked(tmp_path: Path, compress: bool,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = _mg(tmp_path, compress=compress)
    for options in ({}, {"verify_first": True}):
        receipt = vexchange.migrate(path, tmp_path / "out.vmig.jsonl", batch_size=7, **options)
        assert receipt.status == "completed" and receipt.counts.written == 30
    code, stdout, _ = vex(capsys, "grains", "verify", str(path), "--json")
    assert code == 0 and json.loads(stdout)["vectors"] == "ok"


def test_a_tampered_vectors_file_fails_the_run_and_grains_verify(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _mg(tmp_path)
    vectors = tmp_path / "m.mg.vectors"
    data = bytearray(vectors.read_bytes())
    data[-3] ^= 0x40  # a float of the last vector: the layout still parses
    vectors.write_bytes(bytes(data))
    out = tmp_path / "out.vmig.jsonl"
    code, _, err = vex(capsys, "migrate", str(path), str(out), "--batch-size", "7")
    assert code == 3 and "vectors file is not the one" in err
    assert not out.exists()
    receipt = json.loads((tmp_path / "out.vmig.jsonl.receipt.json").read_text())
    assert receipt["status"] == "failed"
    first = tmp_path / "first.vmig.jsonl"
    assert vex(capsys, "migrate", str(path), str(first), "--verify-first")[0] == 3
    assert not first.exists() and not Path(str(first) + ".partial").exists()
    code, stdout, _ = vex(capsys, "grains", "verify", str(path), "--json")
    assert code == 3 and "vectors file" in json.loads(stdout)["detail"]
    assert vex(capsys, "migrate", str(path), str(out), "--no-verify", "--quiet")[0] == 0
    # resuming mid-file still hashes the whole vectors file
    store = vexchange.open_store(path)
    first = next(iter(store.read(batch_size=7)))
    with pytest.raises(IntegrityError):
        list(store.read(batch_size=7, after=first.cursor))


def test_an_mg_without_a_vectors_hash_is_read_and_grains_verify_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _mg(tmp_path, with_hash=False)
    assert vexchange.migrate(path, tmp_path / "out.vmig.jsonl").counts.written == 30
    code, stdout, _ = vex(capsys, "grains", "verify", str(path), "--json")
    assert code == 0 and "not checked" in json.loads(stdout)["vectors"]


def test_a_zstd_bomb_is_refused_at_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import zstandard

    from vexchange.oms.container import MgReader
    from vexchange.oms.errors import OMSError

    path = _mg(tmp_path, compress=True)
    # a region of 600 KB of zeros after the real grains: a few hundred bytes compressed, a
    # valid footer (a hostile file can have one), so only the limit stops it
    data = path.read_bytes()
    count = int.from_bytes(data[4:8], "big")
    start = 16 + 4 * count
    with MgReader(path) as reader:
        region = bytes(reader._region)
    bomb = zstandard.ZstdCompressor().compress(region + bytes(600_000))
    assert len(bomb) < 20_000
    import hashlib

    body = data[:start] + bomb
    path.write_bytes(body + hashlib.sha256(body).digest())
    monkeypatch.setenv("VEX_MAX_DECOMPRESSED_BYTES", "200000")
    with pytest.raises(OMSError) as caught:
        MgReader(path)
    assert caught.value.code == "ERR_RANGE" and "VEX_MAX_DECOMPRESSED_BYTES" in str(caught.value)
    code, _, err = vex(capsys, "migrate", str(path), str(tmp_path / "out.vmig.jsonl"))
    assert code == 1 and "expands past 200,000 bytes" in err
    code, stdout, _ = vex(capsys, "grains", "verify", str(path), "--json")
    assert code == 3 and json.loads(stdout)["error"] == "ERR_RANGE"
    monkeypatch.setenv("VEX_MAX_DECOMPRESSED_BYTES", "2000000")
    with MgReader(path) as reader:
        assert len(reader) == 30


def test_the_footer_is_checked_before_a_compressed_region_is_expanded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vexchange.oms import container
    from vexchange.oms.errors import OMSError

    path = _mg(tmp_path, compress=True)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    expanded: list[int] = []
    monkeypatch.setattr(container.MgReader, "_inflate",
                        lambda self, stored, limit: expanded.append(1) or (bytearray(), b""))
    with pytest.raises(OMSError) as caught:
        container.MgReader(path)
    assert caught.value.code == "ERR_INTEGRITY" and not expanded


def test_an_offset_index_that_goes_back_is_refused(tmp_path: Path) -> None:
    import hashlib

    from vexchange.oms.container import MgReader
    from vexchange.oms.errors import OMSError

    path = _mg(tmp_path)
    data = bytearray(path.read_bytes())
    data[16 + 4 * 3:16 + 4 * 4] = data[16 + 4 * 1:16 + 4 * 2]  # grain 3 starts where grain 1 does
    body = bytes(data[:-32])
    path.write_bytes(body + hashlib.sha256(body).digest())
    with pytest.raises(OMSError) as caught:
        MgReader(path)
    assert "grain 3" in str(caught.value)


# ---------------------------------------------------------------------------- cartridge, pack


def _corrupt_row(database: Path, record_id: str = "r4") -> None:
    con = sqlite3.connect(database)
    con.execute("UPDATE records SET text = 'changed behind its back' WHERE id = ?", (record_id,))
    con.commit()
    con.close()


def test_a_cartridge_row_whose_content_id_is_wrong_is_rejected_not_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cart = tmp_path / "m.cartridge"
    _write_cartridge(cart, _records())
    _corrupt_row(cart)
    out = tmp_path / "out.vmig.jsonl"
    code, _, err = vex(capsys, "migrate", f"cartridge://{cart}", str(out), "--quiet")
    assert code == 4, err
    receipt = json.loads((tmp_path / "out.vmig.jsonl.receipt.json").read_text())
    assert receipt["counts"]["skipped"] == {"content_id_mismatch": 1} and receipt["counts"]["written"] == 29
    (reject,) = [json.loads(line) for line in
                 (tmp_path / "out.vmig.jsonl.rejects.jsonl").read_text().splitlines()]
    assert reject["id"] == "r4" and reject["record"]["text"] == "changed behind its back"
    assert "r4" not in out.read_text()
    first = tmp_path / "first.vmig.jsonl"
    code, _, err = vex(capsys, "migrate", f"cartridge://{cart}", str(first), "--verify-first")
    assert code == 3 and "do not match their content ids" in err and not first.exists()
    code, _, _ = vex(capsys, "migrate", f"cartridge://{cart}", str(tmp_path / "all.vmig.jsonl"),
                     "--no-verify", "--quiet")
    assert code == 0 and "changed behind its back" in (tmp_path / "all.vmig.jsonl").read_text()


def _pack(tmp_path: Path) -> Path:
    cart = tmp_path / "src.cartridge"
    _write_cartridge(cart, _records())
    pack = tmp_path / "m.vpack"
    vexchange.migrate(f"cartridge://{cart}", f"vectorpack://{pack}")
    return pack


def _rewrite_manifest(pack: Path, change: object) -> None:
    from vexchange.pack.manifest import dump_manifest, load_manifest

    manifest = load_manifest((pack / "manifest.yaml").read_bytes(), "m")
    change(manifest)  # type: ignore[operator]
    (pack / "manifest.yaml").write_bytes(dump_manifest(manifest))


@pytest.mark.parametrize("change, expected", [
    (lambda m: m.update(records=31), "records says 31"),
    (lambda m: m["namespaces"].update({"ns": 1}), "namespaces says"),
    (lambda m: m.pop("pack_version"), "no pack_version"),
    (lambda m: m["embeddings"]["(default)"].update(dims=5), "embeddings says"),
    (lambda m: m["indexes"]["(default)"].update(rows=29), "says 29 rows"),
])
def test_pack_verify_checks_the_manifests_own_figures(tmp_path: Path, change: object, expected: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from vexchange.pack.vectorpack import reindex

    pack = _pack(tmp_path)
    reindex(pack)
    assert vex(capsys, "pack", "verify", str(pack))[0] == 0
    _rewrite_manifest(pack, change)
    code, stdout, _ = vex(capsys, "pack", "verify", str(pack), "--json")
    report = json.loads(stdout)
    assert code == 3 and any(expected in p for p in report["problems"]), report["problems"]


def test_pack_verify_and_a_pack_read_recheck_content_ids(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import hashlib

    pack = _pack(tmp_path)
    database = pack / "tables" / "memory.db"
    _corrupt_row(database, "r7")
    digest = hashlib.sha256(database.read_bytes()).hexdigest()  # the hashes made to fit again
    _rewrite_manifest(pack, lambda m: m["files"]["tables/memory.db"].update(
        sha256=digest, size=database.stat().st_size))
    code, stdout, _ = vex(capsys, "pack", "verify", str(pack), "--json")
    report = json.loads(stdout)
    assert code == 3 and any("'r7'" in p and "content id" in p for p in report["problems"]), report
    receipt = vexchange.migrate(f"vectorpack://{pack}", tmp_path / "out.vmig.jsonl", allow_skips=True)
    assert receipt.counts.skipped == {"content_id_mismatch": 1} and receipt.counts.written == 29
    with pytest.raises(IntegrityError):
        vexchange.migrate(f"vectorpack://{pack}", tmp_path / "first.vmig.jsonl", verify_first=True)

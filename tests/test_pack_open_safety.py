"""Every way of opening a VectorPack for reading (``vex search``, ``vex pack unpack``, the
vectorpack connector, ``vex micropack``) refuses a pack that ``vex pack verify`` would refuse for
a reason that matters to safety, with a clear error and no traceback: a manifest path outside
the pack, a symlink, an unlisted file, a file whose bytes are not the ones the manifest hashed."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from vexchange import VexError, migrate
from vexchange.cli import main
from vexchange.errors import IntegrityError
from vexchange.pack.manifest import dump_manifest, load_manifest
from vexchange.pack.micropack import micropack
from vexchange.pack.search import search
from vexchange.pack.vectorpack import verify_pack
from vexchange.testing.conformance import read_all, write_vmig
from vexchange.testing.records import sample_records

DIMS = 8


@pytest.fixture(scope="module")
def good_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("good")
    records = list(sample_records(30, dims=DIMS, null_vectors=False, seed=5))
    records[2] = records[2].replace(text="a long memory " * 6000)  # a text blob
    source = write_vmig(tmp / "s.vmig.jsonl", records, metric="cosine")
    migrate(source, f"vectorpack://{tmp}/m.vpack", receipt=tmp / "r.json", rejects=tmp / "r.rej")
    assert verify_pack(tmp / "m.vpack")["ok"]
    return tmp / "m.vpack"


def _edit_manifest(pack: Path, change: Callable[[dict], None]) -> None:
    manifest = load_manifest((pack / "manifest.yaml").read_bytes(), "manifest")
    change(manifest)
    (pack / "manifest.yaml").write_bytes(dump_manifest(manifest))


def climbing_path(pack: Path) -> str:
    (pack.parent / "outside.txt").write_text("not in the pack")
    _edit_manifest(pack, lambda m: m["files"].update(
        {"blobs/../../outside.txt": {"sha256": "0" * 64, "size": 15}}))
    return "outside the pack layout"


def absolute_path(pack: Path) -> str:
    _edit_manifest(pack, lambda m: m["files"].update({"/etc/hostname": {"sha256": "0" * 64, "size": 1}}))
    return "outside the pack layout"


def symlinked_blob(pack: Path) -> str:
    blob = next(p for p in (pack / "blobs").rglob("*") if p.is_file())
    copy = pack.parent / "blob-copy"
    shutil.copyfile(blob, copy)  # the same bytes: only the link itself is wrong
    blob.unlink()
    os.symlink(copy, blob)
    return "symlink"


def symlinked_receipt(pack: Path) -> str:
    receipt = pack / "receipts" / "build.json"
    copy = pack.parent / "build-copy.json"
    shutil.copyfile(receipt, copy)
    receipt.unlink()
    os.symlink(copy, receipt)
    return "symlink"


def symlinked_folder(pack: Path) -> str:
    outside = pack.parent / "receipts-elsewhere"
    shutil.copytree(pack / "receipts", outside)
    shutil.rmtree(pack / "receipts")
    os.symlink(outside, pack / "receipts")
    return "symlink"


def unlisted_file(pack: Path) -> str:
    (pack / "receipts" / "extra.txt").write_text("smuggled")
    return "does not list"


def unlisted_index(pack: Path) -> str:
    (pack / "indexes").mkdir(exist_ok=True)
    (pack / "indexes" / "default.f32").write_bytes(b"\0" * 64)
    return "does not list"


def edited_receipt(pack: Path) -> str:
    receipt = pack / "receipts" / "build.json"
    build = json.loads(receipt.read_text())
    build["records"] = 31  # the same size: only the hash tells
    receipt.write_text(json.dumps(build, indent=2, sort_keys=True) + "\n")
    return "SHA-256"


def edited_cartridge(pack: Path) -> str:
    data = bytearray((pack / "tables" / "memory.db").read_bytes())
    data[-1] ^= 1
    (pack / "tables" / "memory.db").write_bytes(bytes(data))
    return "SHA-256"


def missing_receipt(pack: Path) -> str:
    (pack / "receipts" / "build.json").unlink()
    return "missing"


CRAFTS = [climbing_path, absolute_path, symlinked_blob, symlinked_receipt, symlinked_folder,
          unlisted_file, unlisted_index, edited_receipt, edited_cartridge, missing_receipt]


@pytest.fixture(params=CRAFTS, ids=lambda craft: craft.__name__)
def crafted(request: pytest.FixtureRequest, good_pack: Path, tmp_path: Path) -> tuple[Path, str]:
    pack = tmp_path / "crafted.vpack"
    shutil.copytree(good_pack, pack, symlinks=True)
    why = request.param(pack)
    report = verify_pack(pack)
    assert not report["ok"] and any(why in p for p in report["problems"]), report
    return pack, why


def _assert_clear_cli_error(code: int, capsys: pytest.CaptureFixture[str], why: str) -> None:
    out, err = capsys.readouterr()
    assert code not in (0, None), (out, err)
    assert "Traceback" not in out + err
    assert "damaged or unsafe" in err and why in err, err


def test_search_refuses_it(crafted: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    pack, why = crafted
    with pytest.raises(IntegrityError, match=why):
        search(pack, keyword="memory")
    _assert_clear_cli_error(main(["search", str(pack), "--keyword", "memory"]), capsys, why)


def test_unpack_refuses_it(crafted: tuple[Path, str], tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    pack, why = crafted
    target = tmp_path / "out.db"
    code = main(["pack", "unpack", str(pack), f"cartridge://{target}", "--quiet"])
    _assert_clear_cli_error(code, capsys, why)
    assert not target.exists()


def test_the_connector_refuses_it(crafted: tuple[Path, str]) -> None:
    pack, why = crafted
    with pytest.raises(IntegrityError, match=why):
        read_all(f"vectorpack://{pack}")


def test_micropack_refuses_it(crafted: tuple[Path, str], tmp_path: Path) -> None:
    pack, why = crafted
    with pytest.raises(VexError, match=why):
        micropack(f"vectorpack://{pack}", tmp_path / "top.jsonl", vector=[1.0] * DIMS, k=3)
    assert not (tmp_path / "top.jsonl").exists()


def test_a_sound_pack_opens_everywhere(good_pack: Path, tmp_path: Path) -> None:
    assert search(good_pack, keyword="memory")
    assert len(read_all(f"vectorpack://{good_pack}")) == 30
    assert main(["pack", "unpack", str(good_pack), f"cartridge://{tmp_path}/out.db", "--quiet"]) == 0
    assert micropack(f"vectorpack://{good_pack}", tmp_path / "top.jsonl", vector=[1.0] * DIMS,
                     k=3)["records"] == 3

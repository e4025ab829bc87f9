"""VectorPack directories: lossless and deterministic (property tests), tamper-evident, and
hostile packs refused with clear errors."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cartridge import cartridge_rows

from vexchange import VexError, migrate
from vexchange.cli import main
from vexchange.pack.manifest import dump_manifest, load_manifest
from vexchange.pack.vectorpack import verify_pack
from vexchange.record import MemoryRecord, Vector
from vexchange.testing.conformance import ConnectorConformance, NativeRow, read_all, write_vmig
from vexchange.testing.records import sample_records


class TestVectorPack(ConnectorConformance):
    same_id_in_namespaces = True

    @pytest.fixture
    def native_rows(self) -> Any:
        def rows(location: str) -> list[NativeRow]:
            root = Path(location.removeprefix("vectorpack://"))
            return cartridge_rows(root / "tables" / "memory.db", root / "blobs")
        return rows

    @pytest.fixture
    def new_location(self, tmp_path: Path) -> Any:
        return lambda name: f"vectorpack://{tmp_path}/{name}.vpack"

    @pytest.fixture
    def broken_location(self, tmp_path: Path) -> str:
        (tmp_path / "broken.vpack").mkdir()
        (tmp_path / "broken.vpack" / "manifest.yaml").write_text('"format": "something else"\n')
        return f"vectorpack://{tmp_path}/broken.vpack"


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


float32s = st.floats(width=32, allow_nan=False, allow_infinity=False)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
pack_records = st.lists(
    st.builds(
        MemoryRecord,
        id=st.text(min_size=1, max_size=8),
        text=st.one_of(st.none(), st.text(max_size=30), st.just("long " * 20_000)),
        namespace=st.one_of(st.none(), st.sampled_from(["", "work", "é"])),
        vectors=st.fixed_dictionaries({}, optional={
            "": st.lists(float32s, min_size=4, max_size=4).map(lambda v: Vector.from_values(v, "m4")),
            "title": st.lists(float32s, min_size=3, max_size=3).map(lambda v: Vector.from_values(v))}),
        metadata=st.one_of(st.none(), st.dictionaries(st.text(max_size=5), scalars, max_size=4)),
        created_at=st.one_of(st.none(), st.integers(0, 4_000_000_000_000)),
        extra=st.one_of(st.just({}), st.builds(lambda elo: {"scores": {"elo": elo}}, st.integers(0, 3000))),
    ),
    max_size=12, unique_by=lambda r: (r.namespace, r.id))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pack_records, st.randoms(use_true_random=False))
def test_records_to_pack_to_records_is_lossless_and_order_free(
        tmp_path_factory: pytest.TempPathFactory, records: list[MemoryRecord], rnd: random.Random) -> None:
    tmp = tmp_path_factory.mktemp("pack")
    shuffled = records[:]
    rnd.shuffle(shuffled)
    digests = []
    for name, data in (("a", records), ("b", shuffled)):
        source = write_vmig(tmp / f"{name}.vmig.jsonl", data, metric="cosine")
        migrate(source, f"vectorpack://{tmp}/{name}.vpack", batch_size=5,
                receipt=tmp / f"{name}.json", rejects=tmp / f"{name}.rej")
        digests.append(tree_digest(tmp / f"{name}.vpack"))
    assert digests[0] == digests[1]
    back = read_all(f"vectorpack://{tmp}/a.vpack")
    ConnectorConformance.assert_same(records, back)
    migrate(f"vectorpack://{tmp}/a.vpack", f"vectorpack://{tmp}/c.vpack", receipt=tmp / "c.json",
            rejects=tmp / "c.rej")
    assert tree_digest(tmp / "c.vpack") == digests[0]  # re-packing a pack: the same bytes
    assert verify_pack(tmp / "a.vpack")["ok"]


@pytest.fixture
def pack(tmp_path: Path) -> Path:
    records = list(sample_records(60, dims=8, named=("title",), sparse=True))
    records[3] = records[3].replace(text="a very long memory " * 5000)  # goes to blobs/
    source = write_vmig(tmp_path / "s.vmig.jsonl", records, metric="cosine")
    migrate(source, f"vectorpack://{tmp_path}/m.vpack", receipt=tmp_path / "r.json",
            rejects=tmp_path / "r.rej")
    return tmp_path / "m.vpack"


def test_layout_manifest_and_parquet(pack: Path) -> None:
    manifest = load_manifest((pack / "manifest.yaml").read_bytes(), "manifest")
    assert manifest["format"] == "vectorpack" and manifest["records"] == 60
    assert manifest["embeddings"]["(default)"]["dims"] == 8
    assert manifest["embeddings"]["(default)"]["metric"] == "cosine"
    files = set(manifest["files"])
    assert {"tables/memory.db", "receipts/build.json"} <= files
    assert any(f.startswith("blobs/sha256/") for f in files)
    assert dump_manifest(manifest) == (pack / "manifest.yaml").read_bytes()
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(pack / "tables" / "records.parquet")
    assert table.num_rows == 60 and {"vector", "vector__title", "text", "payload"} <= set(table.column_names)
    db = sqlite3.connect(pack / "tables" / "memory.db")
    (text_ref,) = db.execute("SELECT text_ref FROM records WHERE text_ref IS NOT NULL").fetchone()
    assert text_ref.startswith("sha256:")


def test_every_tampered_file_is_caught(pack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pack", "verify", str(pack)]) == 0
    capsys.readouterr()
    for path in sorted(p for p in pack.rglob("*") if p.is_file() and p.name != "manifest.yaml"):
        original = path.read_bytes()
        path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        report = verify_pack(pack)
        assert not report["ok"] and any(path.name in p for p in report["problems"]), path
        path.write_bytes(original)
    assert verify_pack(pack)["ok"]
    (pack / "receipts" / "extra.txt").write_text("smuggled")
    assert main(["pack", "verify", str(pack)]) == 3
    assert "does not list" in capsys.readouterr().out


def test_hostile_packs_are_refused(pack: Path, tmp_path: Path) -> None:
    # a manifest path that climbs out of the pack
    evil = tmp_path / "evil.vpack"
    shutil.copytree(pack, evil)
    manifest = load_manifest((evil / "manifest.yaml").read_bytes(), "m")
    manifest["files"]["blobs/../../outside.txt"] = {"sha256": "0" * 64, "size": 1}
    (evil / "manifest.yaml").write_bytes(dump_manifest(manifest))
    report = verify_pack(evil)
    assert not report["ok"] and any("outside the pack layout" in p for p in report["problems"])

    # a symlink in place of a blob
    linked = tmp_path / "linked.vpack"
    shutil.copytree(pack, linked)
    blob = next(p for p in (linked / "blobs").rglob("*") if p.is_file())
    (tmp_path / "secret.txt").write_text("not yours")
    blob.unlink()
    os.symlink(tmp_path / "secret.txt", blob)
    report = verify_pack(linked)
    assert not report["ok"] and any("symlink" in p for p in report["problems"])
    with pytest.raises(VexError):
        read_all(f"vectorpack://{linked}")

    # a truncated cartridge: refused before any record is read
    cut = tmp_path / "cut.vpack"
    shutil.copytree(pack, cut)
    data = (cut / "tables" / "memory.db").read_bytes()
    (cut / "tables" / "memory.db").write_bytes(data[: len(data) // 2])
    with pytest.raises(VexError) as caught:
        read_all(f"vectorpack://{cut}")
    assert "damaged" in str(caught.value)

    # a manifest that is not ours
    (cut / "manifest.yaml").write_text("format: [1, 2]\n")
    with pytest.raises(VexError) as caught:
        verify_pack(cut)
    assert "manifest.yaml:1" in str(caught.value)


def test_an_interrupted_pack_is_never_left_looking_complete(tmp_path: Path) -> None:
    from vexchange.testing.conformance import _Interrupting
    from vexchange import open_store

    records = list(sample_records(200, dims=4))
    source = write_vmig(tmp_path / "s.vmig.jsonl", records)
    with pytest.raises(KeyboardInterrupt):
        migrate(_Interrupting(open_store(source), pages=2), f"vectorpack://{tmp_path}/m.vpack",
                batch_size=50, receipt=tmp_path / "r.json", rejects=tmp_path / "r.rej")
    assert not (tmp_path / "m.vpack").exists() and (tmp_path / "m.vpack.partial").exists()
    migrate(source, f"vectorpack://{tmp_path}/m.vpack", batch_size=50, resume=True,
            receipt=tmp_path / "r.json", rejects=tmp_path / "r.rej")
    assert verify_pack(tmp_path / "m.vpack")["ok"] and not (tmp_path / "m.vpack.partial").exists()
    ConnectorConformance.assert_same(records, read_all(f"vectorpack://{tmp_path}/m.vpack"))

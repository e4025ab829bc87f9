"""The SQLite cartridge: the conformance suite, determinism, and a reader with no vexchange."""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import struct
from pathlib import Path
from typing import Any

import pytest

from vexchange import migrate
from vexchange.testing.conformance import ConnectorConformance, NativeRow, read_all, write_vmig
from vexchange.testing.records import sample_records


def cartridge_rows(db_path: Path, blobs: Path | None = None) -> list[NativeRow]:
    """Every record's text and default vector, read with sqlite3 alone as
    docs/formats/vectorpack.md describes: the text inline, or (in a VectorPack, ``blobs``) in
    the file its ``sha256:<hex>`` reference names."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT r.text, r.text_ref, v.vector FROM records r LEFT JOIN vectors v"
                          " ON v.rid = r.rid AND v.name = '' ORDER BY r.rid").fetchall()
    finally:
        db.close()
    out = []
    for text, ref, vector in rows:
        if ref is not None:
            assert blobs is not None, f"text blob {ref} outside a pack"
            digest = ref.removeprefix("sha256:")
            text = (blobs / "sha256" / digest[:2] / digest[2:]).read_bytes().decode("utf-8", "surrogatepass")
        out.append(NativeRow(text, vector))
    return out


class TestCartridge(ConnectorConformance):
    same_id_in_namespaces = True

    @pytest.fixture
    def native_rows(self) -> Any:
        return lambda location: cartridge_rows(Path(location.removeprefix("cartridge://")))

    @pytest.fixture
    def new_location(self, tmp_path: Path) -> Any:
        return lambda name: f"cartridge://{tmp_path}/{name}.db"

    @pytest.fixture
    def broken_location(self, tmp_path: Path) -> str:
        (tmp_path / "not-a-cartridge.db").write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
        return f"cartridge://{tmp_path}/not-a-cartridge.db"


def test_any_input_order_gives_the_same_bytes(tmp_path: Path) -> None:
    records = list(sample_records(300, dims=16, named=("title",), sparse=True))
    shuffled = records[:]
    random.Random(4).shuffle(shuffled)
    digests = []
    for name, data in (("a", records), ("b", shuffled)):
        source = write_vmig(tmp_path / f"{name}.vmig.jsonl", data, metric="cosine")
        migrate(source, f"cartridge://{tmp_path}/{name}.db", batch_size=37,
                receipt=tmp_path / f"{name}.json", rejects=tmp_path / f"{name}.rej")
        digests.append(hashlib.sha256((tmp_path / f"{name}.db").read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    again = tmp_path / "again.db"
    migrate(f"cartridge://{tmp_path}/a.db", f"cartridge://{again}", receipt=tmp_path / "c.json",
            rejects=tmp_path / "c.rej")
    assert hashlib.sha256(again.read_bytes()).hexdigest() == digests[0]


def test_a_script_without_vexchange_reads_it(tmp_path: Path) -> None:
    """Only the standard library, following docs/formats/vectorpack.md."""
    records = list(sample_records(20, dims=4))
    source = write_vmig(tmp_path / "s.vmig.jsonl", records, metric="dot")
    migrate(source, f"cartridge://{tmp_path}/m.db", receipt=tmp_path / "r.json", rejects=tmp_path / "r.rej")
    db = sqlite3.connect(tmp_path / "m.db")
    meta = dict(db.execute("SELECT key, value FROM cartridge"))
    assert meta["format"] == "vexchange-cartridge" and meta["schema_version"] == "1"
    (name, dims, metric), = db.execute("SELECT name, dims, metric FROM embeddings")
    assert (name, dims, metric) == ("", 4, "dot")
    rows = db.execute("SELECT r.namespace, r.id, r.text, r.payload, v.vector FROM records r"
                      " LEFT JOIN vectors v ON v.rid = r.rid AND v.name = '' ORDER BY r.rid").fetchall()
    by_key = {(r.namespace, r.id): r for r in records}
    for namespace, rid, text, payload, blob in rows:
        record = by_key[(namespace, rid)]
        assert text == record.text
        assert json.loads(payload).get("metadata") == record.metadata
        if blob is not None:
            assert list(struct.unpack(f"<{dims}f", blob)) == record.vectors[""].tolist()
    hits = db.execute("SELECT rowid FROM records_fts WHERE records_fts MATCH 'memory' LIMIT 3").fetchall()
    assert hits


def test_pack_keys_are_projected_and_checked(tmp_path: Path) -> None:
    base = list(sample_records(3, dims=4))
    good = base[0].replace(extra={"scores": {"elo": 1200, "trust": 0.9},
                                  "lineage": {"derived_from": ["ns/a", "ns/b"]},
                                  "provenance": {"tool": "vex 0.1", "input_sha256": "ab" * 32}})
    bad = base[1].replace(extra={"scores": {"elo": "high"}})
    source = write_vmig(tmp_path / "s.vmig.jsonl", [good, bad, base[2]])
    receipt = migrate(source, f"cartridge://{tmp_path}/m.db", allow_skips=True,
                      receipt=tmp_path / "r.json", rejects=tmp_path / "r.rej")
    assert receipt.counts.skipped == {"invalid_pack_record": 1}
    db = sqlite3.connect(tmp_path / "m.db")
    assert db.execute("SELECT elo, trust FROM scores").fetchall() == [(1200.0, 0.9)]
    assert db.execute("SELECT relation, target FROM lineage").fetchall() == [
        ("derived_from", "ns/a"), ("derived_from", "ns/b")]
    back = read_all(f"cartridge://{tmp_path}/m.db")
    assert back[(good.namespace, good.id)] == good  # the record itself is exact (1200 stays an int)

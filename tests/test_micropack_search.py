"""Micro-packs (selection, quantization bounds, strict schema) and retrieval governance over a
cartridge (vector and keyword search modulated by Elo and recency, feedback with receipts)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vexchange import VexError, migrate
from vexchange.cli import main
from vexchange.pack.micropack import micropack, read_micropack
from vexchange.pack.search import Weights, feedback, search
from vexchange.record import MemoryRecord, Vector
from vexchange.testing.conformance import write_vmig
from vexchange.testing.records import sample_records

DAY = 86_400_000


@pytest.fixture
def cartridge(tmp_path: Path) -> Path:
    records = list(sample_records(300, dims=32, null_vectors=False, seed=8))
    source = write_vmig(tmp_path / "s.vmig.jsonl", records, metric="cosine")
    migrate(source, f"cartridge://{tmp_path}/m.db", receipt=tmp_path / "r.json", rejects=tmp_path / "r.rej")
    return tmp_path / "m.db"


@pytest.mark.parametrize("kind,bound", [("int8", None), ("float16", 2.0 ** -11)])
def test_micropack_round_trip_error_is_bounded(cartridge: Path, tmp_path: Path, kind: str,
                                               bound: float | None) -> None:
    query = np.random.default_rng(1).standard_normal(32).tolist()
    out = tmp_path / f"{kind}.jsonl"
    header = micropack(f"cartridge://{cartridge}", out, vector=query, k=25, quantization=kind)
    assert header["records"] == 25 and header["quantization"] == kind
    _, records = read_micropack(out)
    from vexchange.testing.conformance import read_all

    originals = read_all(f"cartridge://{cartridge}")
    lines = [json.loads(line) for line in out.read_text().splitlines()[1:]]
    for line, record in zip(lines, records, strict=False):
        want = originals[(record.namespace, record.id)].vectors[""].array()
        got = record.vectors[""].array()
        if kind == "int8":
            assert np.max(np.abs(got - want)) <= line["scale"] / 2 + 1e-7
        else:
            assert np.all(np.abs(got - want) <= np.abs(want) * bound + 6e-8)
    scores = [line["score"] for line in lines]
    assert scores == sorted(scores, reverse=True)


def test_micropack_selection_is_stable_and_ties_break_by_namespace_then_id(tmp_path: Path) -> None:
    same = Vector.from_values([1.0, 0.0, 0.0])
    records = [MemoryRecord(id=i, namespace=ns, text=f"{ns}/{i}", vectors={"": same})
               for ns, i in [("b", "2"), ("a", "9"), (None, "5"), ("a", "1"), ("b", "1")]]
    source = write_vmig(tmp_path / "s.vmig.jsonl", records)
    outs = []
    for n in range(2):
        micropack(source, tmp_path / f"o{n}.jsonl", vector=[1.0, 0.0, 0.0], k=4)
        outs.append((tmp_path / f"o{n}.jsonl").read_bytes())
    assert outs[0] == outs[1]
    _, got = read_micropack(tmp_path / "o0.jsonl")
    assert [(r.namespace, r.id) for r in got] == [(None, "5"), ("a", "1"), ("a", "9"), ("b", "1")]


def test_micropack_schema_is_strict(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"micropack":1,"vector":"","dims":2,"metric":"cosine","quantization":"int8",'
                   '"k":1,"records":1,"source":"x","surprise":true}\n')
    with pytest.raises(VexError) as caught:
        read_micropack(bad)
    assert "bad.jsonl:1" in str(caught.value)
    bad.write_text('{"micropack":2,"vector":"","dims":2,"metric":"cosine","quantization":"int8",'
                   '"k":1,"records":0,"source":"x"}\n')
    with pytest.raises(VexError):
        read_micropack(bad)


def test_search_is_modulated_by_elo_and_recency(tmp_path: Path) -> None:
    now = 1_800_000_000_000
    vec = Vector.from_values([1.0, 0.0])
    near = Vector.from_values([0.99, 0.14])
    records = [MemoryRecord(id="old", text="the user likes tea", vectors={"": vec},
                            created_at=now - 400 * DAY),
               MemoryRecord(id="new", text="the user likes coffee", vectors={"": near}, created_at=now - DAY),
               MemoryRecord(id="rated", text="tea is good", vectors={"": near}, created_at=now - 400 * DAY,
                            extra={"scores": {"elo": 1800}})]
    source = write_vmig(tmp_path / "s.vmig.jsonl", records, metric="cosine")
    migrate(source, f"cartridge://{tmp_path}/m.db", receipt=tmp_path / "r.json", rejects=tmp_path / "r.rej")
    plain = search(tmp_path / "m.db", vector=[1.0, 0.0], k=3, weights=Weights(1.0, 0.0, 0.0), now_ms=now)
    assert plain[0]["id"] == "old"
    governed = search(tmp_path / "m.db", vector=[1.0, 0.0], k=3, weights=Weights(1.0, 0.1, 0.1), now_ms=now)
    # new: 0.990 + recency 0.098; rated: 0.990 + Elo 0.091; old: 1.0 and nothing else
    assert [h["id"] for h in governed] == ["new", "rated", "old"]
    words = search(tmp_path / "m.db", keyword="tea", k=5, now_ms=now)
    assert {h["id"] for h in words} == {"old", "rated"}


def test_feedback_moves_elo_and_writes_a_receipt(cartridge: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vexchange.testing.conformance import read_all

    first = next(iter(read_all(f"cartridge://{cartridge}").values()))
    up = feedback(cartridge, first.id, namespace=first.namespace, helpful=True, note="answered the question")
    assert up["elo_before"] == 1200 and up["elo_after"] == 1216
    assert main(["feedback", f"cartridge://{cartridge}", first.id, "--not-helpful", "--json"]
                + (["--namespace", first.namespace] if first.namespace else [])) == 0
    down = json.loads(capsys.readouterr().out)
    assert down["elo_before"] == 1216 and down["elo_after"] < 1216
    receipts = cartridge.with_name(cartridge.name + ".feedback.jsonl").read_text().splitlines()
    assert len(receipts) == 2 and json.loads(receipts[0])["note"] == "answered the question"
    back = read_all(f"cartridge://{cartridge}")[(first.namespace, first.id)]
    assert back.extra["scores"]["elo"] == down["elo_after"] and back.extra["scores"]["uses"] == 2
    with pytest.raises(VexError):
        feedback(cartridge, "no-such-id", helpful=True)


def test_search_cli(cartridge: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", f"cartridge://{cartridge}", "--keyword", "memory", "--k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert main(["search", f"cartridge://{cartridge}", "--query", "x"]) == 2


def test_a_pack_reindexed_answers_like_its_cartridge(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from vexchange.pack.vectorpack import verify_pack

    records = list(sample_records(400, dims=16, named=("title",), null_vectors=True, seed=2))
    source = write_vmig(tmp_path / "s.vmig.jsonl", records, metric="cosine")
    migrate(source, f"vectorpack://{tmp_path}/m.vpack", receipt=tmp_path / "r.json",
            rejects=tmp_path / "r.rej")
    query = np.random.default_rng(3).standard_normal(16).tolist()
    plain = search(tmp_path / "m.vpack", vector=query, k=8, now_ms=0)
    assert main(["pack", "reindex", str(tmp_path / "m.vpack"), "--json"]) == 0
    built = json.loads(capsys.readouterr().out)["indexes"]
    assert built["(default)"]["rebuildable"] is True and "title" in built
    assert verify_pack(tmp_path / "m.vpack")["ok"]  # the index files are listed and hashed
    indexed = search(tmp_path / "m.vpack", vector=query, k=8, now_ms=0)
    assert [h["id"] for h in indexed] == [h["id"] for h in plain]
    assert np.allclose([h["similarity"] for h in indexed], [h["similarity"] for h in plain], atol=1e-5)
    matrix = next((tmp_path / "m.vpack" / "indexes").glob("default.f32"))
    data = bytearray(matrix.read_bytes())
    data[5] ^= 1
    matrix.write_bytes(bytes(data))
    with pytest.raises(VexError) as caught:
        search(tmp_path / "m.vpack", vector=query, k=8)
    assert "reindex" in (caught.value.hint or "")
    # and the remedy the hint names works: a damaged index does not stop its own rebuild
    assert main(["pack", "reindex", str(tmp_path / "m.vpack")]) == 0
    hits = search(tmp_path / "m.vpack", vector=query, k=8, now_ms=0)
    assert [h["id"] for h in hits] == [h["id"] for h in plain]


def test_a_usearch_index_finds_what_exact_search_finds_and_is_rebuilt_to_the_same_bytes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("usearch")
    from vexchange.pack.vectorpack import verify_pack

    records = list(sample_records(600, dims=16, named=("title",), null_vectors=True, seed=4))
    source = write_vmig(tmp_path / "s.vmig.jsonl", records, metric="cosine")
    pack = tmp_path / "m.vpack"
    migrate(source, f"vectorpack://{pack}", receipt=tmp_path / "r.json", rejects=tmp_path / "r.rej")
    query = np.random.default_rng(5).standard_normal(16).tolist()
    exact = search(pack, vector=query, k=5, now_ms=0)
    assert main(["pack", "reindex", str(pack), "--ann", "usearch", "--json"]) == 0
    ann = json.loads(capsys.readouterr().out)["indexes"]["(default)"]["ann"]
    assert ann["kind"] == "usearch-hnsw" and ann["rows"] == sum(1 for r in records if r.vector)
    assert verify_pack(pack)["ok"]
    first = (pack / ann["file"]).read_bytes()
    approximate = search(pack, vector=query, k=5, now_ms=0)
    # 600 vectors: the graph finds the true neighbours, scored exactly like a scan
    assert [h["id"] for h in approximate] == [h["id"] for h in exact]
    assert np.allclose([h["similarity"] for h in approximate], [h["similarity"] for h in exact], atol=1e-5)
    assert search(pack, vector=query, k=5, now_ms=0, exact=True) == exact
    assert main(["pack", "reindex", str(pack), "--ann", "usearch"]) == 0
    assert (pack / ann["file"]).read_bytes() == first  # one thread: a rebuild gives the same bytes
    capsys.readouterr()
    data = bytearray(first)
    data[-3] ^= 1
    (pack / ann["file"]).write_bytes(bytes(data))
    assert main(["search", f"vectorpack://{pack}", "--vector-file", str(_query_file(tmp_path, query))]) == 3
    assert "reindex --ann usearch" in capsys.readouterr().err
    # --exact does not touch the approximate index (the flat one is intact)
    assert main(["search", f"vectorpack://{pack}", "--exact", "--vector-file",
                 str(_query_file(tmp_path, query))]) == 0
    from vexchange.pack.vectorpack import reindex

    many = reindex(pack, ann="usearch", threads=0)["indexes"]["(default)"]["ann"]
    assert many["reproducible"] is False and ann["reproducible"] is True
    assert search(pack, vector=query, k=5, now_ms=0) == approximate
    with pytest.raises(VexError, match="threads"):
        reindex(pack, ann="usearch", threads=-1)


def _query_file(tmp_path: Path, query: list[float]) -> Path:
    path = tmp_path / "q.json"
    path.write_text(json.dumps(query))
    return path


def test_an_approximate_index_without_usearch_names_the_extra(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    source = write_vmig(tmp_path / "s.vmig.jsonl", list(sample_records(5, dims=4)))
    migrate(source, f"vectorpack://{tmp_path}/m.vpack",
            receipt=tmp_path / "r.json", rejects=tmp_path / "r.rej")
    monkeypatch.setitem(sys.modules, "usearch.index", None)
    assert main(["pack", "reindex", str(tmp_path / "m.vpack"), "--ann", "usearch"]) == 2
    assert 'pip install "vexchange[usearch]"' in capsys.readouterr().err

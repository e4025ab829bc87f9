"""``verify --search`` without a server: the figures on files and embedded stores, exact search
against a brute-force reference, the threshold and its reasons, the CLI and the receipt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from click.testing import CliRunner

from vexchange.api import migrate
from vexchange.checks import SearchOptions, verify
from vexchange.cli import cli, main
from vexchange.connectors._base import Capabilities, Connector, Page, QueryHit, VectorSpace
from vexchange.errors import UsageError
from vexchange.record import MemoryRecord, Vector
from vexchange.results import SearchCheck, VerifyReport
from vexchange.search_check import _scores, check_search
from vexchange.testing.conformance import write_vmig

DIMS = 16



def corpus(n: int = 240, *, seed: int = 7, namespaces: tuple[str | None, ...] = (None,),
           model: str | None = None) -> list[MemoryRecord]:
    """Random vectors whose lengths vary tenfold, so cosine, dot and euclidean rank differently
    (a metric changed on purpose shows)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        values = rng.standard_normal(DIMS) * rng.uniform(0.2, 5.0)
        out.append(MemoryRecord(id=f"r{i}", text=f"memory number {i}",
                                namespace=namespaces[i % len(namespaces)],
                                vectors={"": Vector.from_values(values.astype(np.float32), model)}))
    return out


def search_check(report: VerifyReport) -> SearchCheck:
    found = [c for c in report.checks if isinstance(c, SearchCheck)]
    assert len(found) == 1
    return found[0]


def brute_force(records: list[MemoryRecord], query: np.ndarray, metric: str, k: int,
                own: str | None) -> list[str]:
    """The reference: every record scored one by one in Python."""
    scored = []
    for r in records:
        if r.id == own:
            continue
        v = r.vectors[""].array().astype(np.float64)
        q = query.astype(np.float64)
        if metric == "cosine":
            s = float(q @ v / (np.linalg.norm(q) * np.linalg.norm(v)))
        elif metric == "dot":
            s = float(q @ v)
        elif metric == "euclidean":
            s = -float(np.linalg.norm(q - v))
        else:
            s = -float(np.abs(q - v).sum())
        scored.append((-s, r.id))
    return [rid for _, rid in sorted(scored)[:k]]


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean", "manhattan"])
def test_scores_rank_as_brute_force(metric: str) -> None:
    records = corpus(60)
    matrix = np.stack([r.vectors[""].array() for r in records])
    queries = matrix[:5]
    scores = _scores(queries, matrix, metric)
    for i in range(5):
        order = [records[j].id for j in np.argsort(-scores[i], kind="stable") if j != i][:10]
        assert order == brute_force(records, queries[i], metric, 10, records[i].id)


class ExactStore(Connector):
    """A store whose query API is an exact search of a list of records, optionally by a
    different metric or dropping some hits: the check's own logic against known answers."""

    name = "exact-test"
    capabilities = Capabilities(read=True, write=False)

    def __init__(self, records: list[MemoryRecord], metric: str = "cosine", *, declared: str | None = None,
                 lose: int = 0) -> None:
        from vexchange.spec import StoreSpec

        super().__init__(StoreSpec.parse("exact-test://here/x"))
        self.records, self.metric, self.declared, self.lose = records, metric, declared or metric, lose

    def describe(self) -> dict[str, Any]:
        return {"connector": self.name, "location": f"exact-test:{self.metric}:{id(self)}"}

    def vector_spaces(self) -> dict[str, VectorSpace]:
        return {"": VectorSpace(dims=self.records[0].vectors[""].dims, metric=self.declared)}

    def read(self, *, batch_size: int, after: str | None = None) -> Any:
        for start in range(0, len(self.records), batch_size):
            end = start + batch_size
            yield Page(list(self.records[start:end]), None if end >= len(self.records) else str(end))

    def query(self, vector: Any, k: int, *, namespace: str | None = None,
              vector_name: str = "") -> list[QueryHit]:
        pool = [r for r in self.records if namespace is None or r.namespace == namespace]
        matrix = np.stack([r.vectors[""].array() for r in pool])
        scores = _scores(np.asarray(vector)[None, :], matrix, self.metric)[0]
        order = np.argsort(-scores, kind="stable")[:k]
        hits = [QueryHit(pool[j].id, float(scores[j]), pool[j].namespace) for j in order]
        return hits[self.lose:]


def test_identical_exact_stores_agree_fully() -> None:
    records = corpus()
    got = check_search(ExactStore(records), ExactStore(records), SearchOptions(), None)
    assert got.ok and got.overlap == 1.0
    assert got.source is not None and got.source.recall == 1.0 and got.target.recall == 1.0
    assert got.probes == 100 and got.metric == "cosine" and not got.reasons
    assert got.target.records == 240 and got.target.sizes == {str(DIMS): 240}
    assert got.target.latency_ms is not None


@pytest.mark.parametrize("metric", ["dot", "euclidean"])
def test_a_changed_metric_fails_and_names_both(metric: str) -> None:
    records = corpus()
    got = check_search(ExactStore(records, metric), ExactStore(records), SearchOptions(), None)
    assert not got.ok
    assert got.overlap is not None and got.overlap < 0.85
    assert got.target.recall is not None and got.target.recall < 0.85
    assert any(f"the source searches by cosine, the target by {metric}" in r for r in got.reasons)


def test_an_index_that_misses_hits_fails_and_says_the_metric_agrees() -> None:
    records = corpus()
    # the first hit lost is the probe itself (left out anyway), then two true neighbours
    got = check_search(ExactStore(records, lose=3), ExactStore(records), SearchOptions(), None)
    assert not got.ok and got.target.recall == pytest.approx(0.8, abs=0.01)
    assert any("index itself is approximate" in r for r in got.reasons)


def test_threshold_decides() -> None:
    records = corpus()
    got = check_search(ExactStore(records, lose=2), None, SearchOptions(threshold=0.85), None)
    assert got.ok and got.target.recall == pytest.approx(0.9, abs=0.01) and got.overlap is None
    got = check_search(ExactStore(records, lose=2), None, SearchOptions(threshold=0.95), None)
    assert not got.ok


def test_probes_are_seeded_and_namespaces_stay_apart() -> None:
    records = corpus(namespaces=("a", "b", None))
    store = ExactStore(records)
    one = check_search(store, store, SearchOptions(probes=30, seed=3), None)
    two = check_search(store, store, SearchOptions(probes=30, seed=3), None)
    assert one.overlap == 1.0 and one.target.recall == 1.0
    assert one.to_dict()["target"]["records"] == two.to_dict()["target"]["records"] == 240
    only = check_search(store, store, SearchOptions(probes=30), ["a"])
    assert only.target.records == 80 and only.ok


def test_fewer_records_than_probes() -> None:
    got = check_search(ExactStore(corpus(12)), None, SearchOptions(), None)
    assert got.probes == 12 and got.ok


def test_a_store_without_query_api_is_refused_as_target(tmp_path: Path) -> None:
    path = write_vmig(tmp_path / "a.vmig.jsonl", corpus(20), metric="cosine")
    with pytest.raises(UsageError, match="no query API"):
        verify(path, search=True)


def test_a_file_source_is_searched_exactly(tmp_path: Path) -> None:
    pytest.importorskip("chromadb")
    records = corpus()
    source = write_vmig(tmp_path / "src.vmig.jsonl", records, metric="cosine")
    target = f"chroma://{tmp_path}/db?collection=same"
    migrate(source, target)
    got = search_check(verify(target, against=source, search=True))
    assert got.source is not None and got.source.method == "exact" and got.source.latency_ms is None
    assert got.target.method == "query" and got.target.metric == "cosine"
    assert got.ok and got.overlap is not None and got.overlap >= 0.95


def test_cli_exit_code_reasons_and_receipt(tmp_path: Path) -> None:
    pytest.importorskip("chromadb")
    records = corpus()
    source = write_vmig(tmp_path / "src.vmig.jsonl", records, metric="cosine")
    good = f"chroma://{tmp_path}/db?collection=good"
    bad = f"chroma://{tmp_path}/db?collection=bad"
    receipt = tmp_path / "bad.receipt.json"
    migrate(source, good)
    migrate(source, bad, metric="euclidean", receipt=receipt)
    runner = CliRunner()
    ok = runner.invoke(cli, ["verify", good, "--against", str(source), "--search", "--json"])
    assert ok.exit_code == 0, ok.output
    assert orjson.loads(ok.output)["checks"][-1]["check"] == "search"
    failed = runner.invoke(cli, ["verify", bad, "--against", good, "--search", "--receipt", str(receipt)])
    assert failed.exit_code == 3, failed.output
    assert "the source searches by cosine, the target by euclidean" in failed.output
    assert "Traceback" not in failed.output
    saved = orjson.loads(receipt.read_bytes())
    assert saved["verify"]["search"]["check"] == "search" and saved["verify"]["search"]["ok"] is False
    assert saved["run_id"]  # the rest of the receipt is kept
    # the receipt check still reads it
    again = runner.invoke(cli, ["verify", bad, "--receipt", str(receipt)])
    assert again.exit_code == 0, again.output


def test_bad_options_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    runner = CliRunner()
    got = runner.invoke(cli, ["verify", "x.vmig.jsonl", "--search", "--search-k", "0"])
    assert got.exit_code == 2
    assert main(["verify", "x.vmig.jsonl", "--search-probes", "5"]) == 2
    assert "add --search" in capsys.readouterr().err
    with pytest.raises(UsageError):
        SearchOptions(threshold=2.0).checked()


def test_text_probes_embed_with_the_records_model() -> None:
    """Text probes: the sampled records' texts embedded again with the model their vectors
    name (here the offline static model), so each probe should find its own record too."""
    pytest.importorskip("static_model")
    from vexchange.embed import get_embedder

    embedder = get_embedder("static")
    texts = [f"note {i} about {topic}" for i, topic in enumerate(
        ["rivers", "trains", "bread", "music", "stars", "gardens", "chess", "rain"] * 10)]
    vectors = embedder.embed(texts)
    records = [MemoryRecord(id=f"t{i}", text=t, vectors={"": Vector.from_values(v, embedder.model)})
               for i, (t, v) in enumerate(zip(texts, vectors, strict=True))]
    store = ExactStore(records)
    got = check_search(store, store, SearchOptions(probe="text", probes=20), None)
    assert got.probe == "text" and got.ok and got.overlap == 1.0 and got.target.recall == 1.0
    with pytest.raises(UsageError, match="no embedder for it is installed"):
        check_search(store, None, SearchOptions(probe="text", embed_model="no-such-model"), None)


def _rewrite(records: list[MemoryRecord], at: set[int], dims: int = 12, seed: int = 4) -> list[MemoryRecord]:
    """The records with the vectors at positions ``at`` replaced by a fixed linear map of them
    into ``dims`` dimensions: what an adapter does, without one."""
    projection = np.random.default_rng(seed).standard_normal((DIMS, dims)).astype(np.float32)
    return [r.replace(vectors={"": Vector.from_values(r.vectors[""].array() @ projection)}) if i in at else r
            for i, r in enumerate(records)]


def test_rewritten_vectors_judge_the_targets_own_search() -> None:
    records = corpus()
    target = ExactStore(_rewrite(records, set(range(len(records)))))
    got = check_search(target, ExactStore(records), SearchOptions(), None)
    assert got.ok and got.overlap is None and got.source is None and got.target.recall == 1.0
    assert got.target.sizes == {"12": 240} and got.probes == 100
    assert got.notes[0].startswith("the target's vectors are not the source's (100 of 100 probe records")
    # a stale index over the rewritten vectors fails, and says what was judged
    stale = ExactStore(_rewrite(records, set(range(len(records)))), lose=3)
    failed = check_search(stale, ExactStore(records), SearchOptions(), None)
    assert not failed.ok and failed.target.recall == pytest.approx(0.8, abs=0.01)
    assert failed.reasons[0].startswith("the target's recall@10 against exact cosine search is 0.8")
    assert any(r.startswith("the target's vectors are not the source's") for r in failed.reasons)
    assert any("index itself is approximate" in r for r in failed.reasons)


def test_a_few_rewritten_vectors_are_noted_and_overlap_still_judged() -> None:
    records = corpus()
    target = ExactStore(_rewrite(records, set(range(0, 240, 10)), dims=DIMS))
    got = check_search(target, ExactStore(records), SearchOptions(), None)
    assert got.source is not None and got.overlap is not None
    said = got.reasons + got.notes
    assert any(s.endswith("probe records hold other vectors in the target than in the source") for s in said)


def test_normalised_vectors_are_the_same_vectors() -> None:
    """A store that keeps cosine vectors at unit length holds the source's vectors."""
    records = corpus()
    unit = [r.replace(vectors={"": Vector.from_values(
        r.vectors[""].array() / np.linalg.norm(r.vectors[""].array()))}) for r in records]
    got = check_search(ExactStore(unit), ExactStore(records), SearchOptions(), None)
    assert got.ok and got.overlap == 1.0 and got.source is not None
    assert not any("other vectors" in n for n in got.notes)


def test_after_reembed_and_adapter_the_receipt_says_what_was_judged(tmp_path: Path) -> None:
    """Through migrate --reembed (the offline static model) and --adapter (trained from pairs)
    into cartridges, then verify --against --search --receipt."""
    from vexchange.adapters import train_adapter

    source = write_vmig(tmp_path / "src.vmig.jsonl", corpus(), metric="cosine")
    rng = np.random.default_rng(2)
    projection = rng.standard_normal((DIMS, 12))
    with open(tmp_path / "pairs.jsonl", "w") as handle:
        for _ in range(600):
            x = rng.standard_normal(DIMS)
            handle.write(orjson.dumps({"source": x.tolist(), "target": (x @ projection).tolist()}).decode()
                         + "\n")
    train_adapter(tmp_path / "a.npz", pairs=tmp_path / "pairs.jsonl", methods=("ridge",))
    runs: dict[str, dict[str, Any]] = {"adapter": {"adapter": str(tmp_path / "a.npz")}}
    if _has("static_model"):
        runs["reembed"] = {"reembed": "all", "embed_model": "static"}
    for name, options in runs.items():
        target, receipt = f"cartridge://{tmp_path}/{name}.db", tmp_path / f"{name}.receipt.json"
        migrate(source, target, receipt=receipt, **options)
        result = CliRunner().invoke(cli, ["verify", target, "--against", str(source), "--search",
                                          "--receipt", str(receipt), "--json"])
        # the record-by-record check fails, as it should: every vector changed on purpose
        checks = {c["check"]: c for c in orjson.loads(result.output)["checks"]}
        assert result.exit_code == 3 and checks["against"]["changed"] == 240, result.output
        assert checks["search"]["ok"] and all(c["ok"] for n, c in checks.items() if n != "against")
        saved = orjson.loads(receipt.read_bytes())["verify"]["search"]
        assert saved["ok"] and saved["overlap"] is None and saved["source"] is None, saved
        # re-embedded "memory number N" texts hold near-equal vectors: a tie may fall either way
        assert saved["target"]["recall"] >= 0.99
        assert saved["notes"][0].startswith("the target's vectors are not the source's (100 of 100"), saved


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None

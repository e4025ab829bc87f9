"""Adapters: maps from one embedding model's space into another's, learnt from paired
embeddings of the same texts, with their measured quality. docs/embeddings.md.

An adapter is two files: ``NAME.npz`` (the weights ``W`` and ``b`` of ``y = x @ W + b``,
then L2 normalisation; an ``mlp`` adapter adds ``W1 b1 W2 b2``, its residual MLP) and
``NAME.card.json`` (source and target models and sizes, method,
training size, the held-out evaluation, the SHA-256 of the weights). ``train_adapter`` picks
the method by a validation split inside the training part; the card's figures come from the
test part, which training never sees, and ``evaluate_adapter`` reproduces them.

Card format 1 (``vexchange-adapter/1``) is an affine map; format 2 is written only for an
adapter whose file holds more than ``W`` and ``b`` (the MLP), so that a reader that knows
only format 1 refuses it instead of applying half of it. Both are read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_write_bytes
from .._json import loads_exact
from ..errors import DecodeError, UsageError
from .fit import METHODS, Fitted, candidates, fit, mean_cosine, random_projection, recall_at_k

__all__ = [
    "METHODS",
    "MIN_MEAN_COSINE",
    "MIN_RECALL_AT_10",
    "Adapter",
    "evaluate_adapter",
    "list_adapters",
    "load_adapter",
    "train_adapter",
]

CARD_FORMAT = "vexchange-adapter/1"
CARD_FORMAT_MLP = "vexchange-adapter/2"
CARD_FORMATS = (CARD_FORMAT, CARD_FORMAT_MLP)
MLP_ARRAYS = ("W1", "b1", "W2", "b2")
MIN_RECALL_AT_10 = 0.3
MIN_MEAN_COSINE = 0.5
"""Below either figure an adapter is refused when applied, unless forced: search with its
vectors would find less than a third of what re-embedding finds."""


@dataclass
class Adapter:
    path: Path
    card: dict[str, Any]
    fitted: Fitted

    @property
    def source_dims(self) -> int:
        return int(self.card["source"]["dims"])

    @property
    def target_dims(self) -> int:
        return int(self.card["target"]["dims"])

    @property
    def target_model(self) -> str | None:
        model = self.card["target"].get("model")
        return str(model) if model else None

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        if vectors.ndim != 2 or vectors.shape[1] != self.source_dims:
            raise UsageError(f"adapter {self.path.name} takes {self.source_dims}-dim vectors,"
                             f" not {vectors.shape[-1]}")
        return self.fitted.apply(vectors)

    def describe(self) -> dict[str, Any]:
        """For receipts: which adapter, its hash and its measured quality."""
        return {"path": str(self.path), "weights_sha256": self.card["weights_sha256"],
                "method": self.card["method"], "source": self.card["source"],
                "target": self.card["target"], "evaluation": self.card["evaluation"]}


def _pairs_file(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    sources, targets, texts = [], [], []
    try:
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    item = loads_exact(line)
                    sources.append(np.asarray(item["source"], dtype=np.float32))
                    targets.append(np.asarray(item["target"], dtype=np.float32))
                    texts.append(str(item.get("text", "")))
                except (ValueError, KeyError, TypeError) as err:
                    raise DecodeError(f"line {number} is not a pair {{\"source\": [...], \"target\": [...]}}"
                                      f" ({err})", location=f"{path}:{number}") from None
    except FileNotFoundError:
        raise UsageError(f"no pairs file at {path}") from None
    if len({len(s) for s in sources}) > 1 or len({len(t) for t in targets}) > 1:
        raise DecodeError("every pair must have the same source size and the same target size",
                          location=str(path))
    if len(sources) < 50:
        raise UsageError(f"{path} has {len(sources)} pairs; an adapter needs at least 50")
    return np.stack(sources), np.stack(targets), texts


def _corpus(corpus: str | Path | None, size: int, seed: int) -> tuple[list[str], dict[str, Any]]:
    if corpus is None:
        from .corpus import sentences

        return sentences(size, seed), {"generated": True, "size": size, "seed": seed}
    path = Path(corpus)
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except FileNotFoundError:
        raise UsageError(f"no corpus file at {path}") from None
    texts = list(dict.fromkeys(t for t in lines if t))
    if len(texts) < 50:
        raise UsageError(f"{path} has {len(texts)} distinct lines; an adapter needs at least 50")
    return texts, {"file": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                   "size": len(texts)}


def _split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    cut = n - max(1, int(round(n * test_fraction)))  # noqa: RUF046 - numpy 1.x's round() of a numpy float is a float
    return order[:cut], order[cut:]


def _embeddings(source_model: str | None, target_model: str | None, corpus: str | Path | None,
                pairs: str | Path | None, size: int, seed: int,
                ) -> tuple[np.ndarray, np.ndarray, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Paired vectors and what they came from (models, dims, corpus)."""
    if pairs is not None:
        x, y, _ = _pairs_file(Path(pairs))
        data = {"pairs": str(pairs), "sha256": hashlib.sha256(Path(pairs).read_bytes()).hexdigest()}
        return x, y, {"model": source_model, "dims": x.shape[1]}, {"model": target_model,
                                                                    "dims": y.shape[1]}, data
    if not source_model or not target_model:
        raise UsageError("give --from-model and --to-model (and a corpus), or --pairs FILE")
    from ..embed import get_embedder

    texts, data = _corpus(corpus, size, seed)
    found = []
    for name in (source_model, target_model):
        embedder = get_embedder(name)
        try:
            found.append((embedder.embed(texts), {"model": embedder.model, "embedder": name,
                                                  "dims": embedder.dims}))
        finally:
            embedder.close()
    (x, source), (y, target) = found
    return x, y, source, target, data


def train_adapter(output: str | Path, *, from_model: str | None = None, to_model: str | None = None,
                  corpus: str | Path | None = None, pairs: str | Path | None = None,
                  size: int = 3000, test_fraction: float = 0.25, seed: int = 0,
                  methods: tuple[str, ...] = METHODS) -> dict[str, Any]:
    """Learn an adapter and write ``output`` (``.npz``) and its card; returns the card.

    Texts come from ``corpus`` (one per line) or the generated corpus of ``size`` sentences,
    embedded with ``from_model`` and ``to_model``; or the vectors come from ``pairs`` (JSONL
    of ``{"source": [...], "target": [...]}``). A ``test_fraction`` of them is held out for
    the card's evaluation; the method (among ``methods``, docs/embeddings.md) is chosen on a
    validation fifth of the rest.
    """
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not methods:
        raise UsageError(f"no adapter method {', '.join(unknown) or '(none given)'}",
                         hint=f"use {', '.join(METHODS)}")
    weights = Path(output)
    if weights.suffix != ".npz":
        raise UsageError(f"the adapter file must end in .npz, not {weights.name}")
    x, y, source, target, data = _embeddings(from_model, to_model, corpus, pairs, size, seed)
    train, test = _split(len(x), test_fraction, seed)
    fit_part, val_part = _split(len(train), 0.2, seed + 1)
    fit_idx, val_idx = train[fit_part], train[val_part]
    tried: list[dict[str, Any]] = []
    for method, params in candidates(x.shape[1], y.shape[1]):
        if method not in methods:
            continue
        model = fit(method, x[fit_idx], y[fit_idx], params, x_val=x[val_idx], y_val=y[val_idx])
        predicted = model.apply(x[val_idx])
        tried.append({"method": method, "params": model.params if method == "mlp" else params,
                      "validation_recall_at_10": round(recall_at_k(predicted, y[val_idx]), 4),
                      "validation_mean_cosine": round(mean_cosine(predicted, y[val_idx]), 4)})
    best = max(tried, key=lambda t: (t["validation_recall_at_10"], t["validation_mean_cosine"]))
    chosen = fit(str(best["method"]), x[train], y[train], dict(best["params"]))
    evaluation = _evaluate(chosen, x[test], y[test], seed)
    buffer = _npz_bytes(chosen)
    atomic_write_bytes(weights, buffer)
    card = {
        "format": CARD_FORMAT_MLP if chosen.extra else CARD_FORMAT,
        "weights": weights.name,
        "weights_sha256": hashlib.sha256(buffer).hexdigest(),
        "source": source, "target": target,
        "method": chosen.method, "params": chosen.params,
        "training": {"pairs": len(train), "data": data, "seed": seed,
                     "test_fraction": test_fraction},
        "selection": tried,
        "evaluation": evaluation,
    }
    atomic_write_bytes(_card_path(weights), json.dumps(card, indent=2).encode() + b"\n")
    return card


def _evaluate(model: Fitted, x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Any]:
    predicted = model.apply(x)
    baseline = random_projection(x.shape[1], y.shape[1], seed).apply(x)
    return {"test_pairs": len(x),
            "mean_cosine": round(mean_cosine(predicted, y), 4),
            "recall_at_10": round(recall_at_k(predicted, y), 4),
            "random_projection": {"mean_cosine": round(mean_cosine(baseline, y), 4),
                                  "recall_at_10": round(recall_at_k(baseline, y), 4)},
            "reembedding": {"mean_cosine": 1.0, "recall_at_10": 1.0}}


def _npz_bytes(model: Fitted) -> bytes:
    import io

    buffer = io.BytesIO()
    arrays: dict[str, Any] = {"W": model.W.astype(np.float64), "b": model.b.astype(np.float64)}
    arrays.update({k: np.asarray(model.extra[k], dtype=np.float64) for k in MLP_ARRAYS if k in model.extra})
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _card_path(weights: Path) -> Path:
    return weights.with_name(weights.name[: -len(".npz")] + ".card.json")


def load_adapter(path: str | Path, *, force: bool = False) -> Adapter:
    """An adapter and its card; refuses weights that do not match the card's hash, and, unless
    ``force``, an adapter whose measured quality is below the thresholds."""
    weights = Path(path)
    card_path = _card_path(weights) if weights.suffix == ".npz" else weights
    if weights.suffix != ".npz":
        weights = card_path.with_name(card_path.name.replace(".card.json", ".npz"))
    try:
        card = loads_exact(card_path.read_bytes())
        blob = weights.read_bytes()
    except FileNotFoundError as err:
        raise UsageError(f"adapter file missing: {err.filename}",
                         hint="an adapter is NAME.npz with NAME.card.json beside it") from None
    except ValueError as err:
        raise DecodeError(f"adapter card is not JSON ({err})", location=str(card_path)) from None
    if card.get("format") not in CARD_FORMATS:
        raise DecodeError(f"not a vexchange adapter card (format {card.get('format')!r})",
                          location=str(card_path),
                          hint=f"this vexchange reads {', '.join(CARD_FORMATS)}")
    if hashlib.sha256(blob).hexdigest() != card["weights_sha256"]:
        raise DecodeError("the adapter's weights do not match the hash in its card",
                          location=str(weights))
    evaluation = card.get("evaluation", {})
    if not force and (evaluation.get("recall_at_10", 0) < MIN_RECALL_AT_10
                      or evaluation.get("mean_cosine", 0) < MIN_MEAN_COSINE):
        raise UsageError(
            f"adapter {weights.name} measured recall@10 {evaluation.get('recall_at_10')} and mean"
            f" cosine {evaluation.get('mean_cosine')}, below the thresholds ({MIN_RECALL_AT_10},"
            f" {MIN_MEAN_COSINE})", hint="re-embed instead, or pass --force-adapter to use it anyway")
    with np.load(weights) as arrays:
        extra = {k: arrays[k] for k in MLP_ARRAYS if k in arrays.files}
        if card["format"] == CARD_FORMAT_MLP and len(extra) != len(MLP_ARRAYS):
            raise DecodeError("the adapter's card says MLP but its file lacks the MLP weights",
                              location=str(weights))
        fitted = Fitted(card["method"], card.get("params", {}), arrays["W"], arrays["b"], extra)
    return Adapter(weights, card, fitted)


def evaluate_adapter(path: str | Path, *, corpus: str | Path | None = None,
                     pairs: str | Path | None = None) -> dict[str, Any]:
    """Recompute the card's held-out evaluation: the same texts (or pairs) and split, embedded
    again; the figures should match the card's."""
    adapter = load_adapter(path, force=True)
    training = adapter.card["training"]
    data = training["data"]
    seed = int(training["seed"])
    if pairs is None and "pairs" in data:
        pairs = data["pairs"]
    if corpus is None and "file" in data:
        corpus = data["file"]
    x, y, _, _, _ = _embeddings(adapter.card["source"].get("embedder"),
                                adapter.card["target"].get("embedder"), corpus, pairs,
                                int(data.get("size", 3000)), seed)
    _, test = _split(len(x), float(training["test_fraction"]), seed)
    return _evaluate(adapter.fitted, x[test], y[test], seed)


def list_adapters(directory: str | Path = ".") -> Iterator[dict[str, Any]]:
    """The cards of the adapters in a directory."""
    for card_path in sorted(Path(directory).glob("*.card.json")):
        try:
            card = loads_exact(card_path.read_bytes())
        except ValueError:
            continue
        if card.get("format") in CARD_FORMATS:
            yield {"path": str(card_path.with_name(card["weights"])), **card}

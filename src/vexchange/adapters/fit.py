"""Fitting maps from one embedding space to another, and measuring them.

Every method yields an affine map ``y = x @ W + b`` followed by L2 normalisation (both spaces
are cosine spaces), so an adapter file holds ``W`` and ``b`` whatever the method:

* ``procrustes``: the orthogonal rotation that best aligns the two spaces (orthogonal
  Procrustes via one SVD). When the sizes differ, both sides are zero-padded to the larger
  size, the rotation is fitted there, and the output keeps the target's coordinates.
* ``ridge``: affine least squares with an L2 penalty ``alpha`` on ``W`` (closed form).
* ``lowrank``: reduced-rank regression: the ridge map restricted to its ``rank`` strongest
  output directions, which resists overfitting with few training pairs.
* ``procrustes-centred``: both spaces centred on their means first, then the rotation, a
  scale and the target's mean as bias. Embedding spaces are rarely centred (every
  MiniLM or BGE vector shares a large common component), and a rotation about the origin
  cannot move one mean onto the other; this one can, and stays a rigid map otherwise.
* ``mlp``: a small residual MLP on top of a ridge map: ``y = x W + b + relu(x W1 + b1) W2 +
  b2`` (input L2-normalised), trained with Adam on the cosine between the normalised output
  and the target, stopped early on the validation set (the epoch count found there is kept
  in ``params`` and reused when refitting on all training pairs). Seeded, so deterministic.
  Its file holds ``W1 b1 W2 b2`` beside ``W b`` (card format 2).

``recall_at_k``: for each held-out text, the overlap of the k nearest true target vectors to
its adapted vector and to its true target vector (the database is the held-out true target
vectors). 1.0 means search with adapted vectors finds what re-embedding would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["METHODS", "Fitted", "fit", "mean_cosine", "random_projection", "recall_at_k"]

METHODS = ("procrustes", "procrustes-centred", "ridge", "lowrank", "mlp")


@dataclass
class Fitted:
    method: str
    params: dict[str, Any]
    W: np.ndarray
    b: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)

    def apply(self, x: np.ndarray) -> np.ndarray:
        if "W1" in self.extra:
            unit = _unit(x)
            y = unit @ self.W + self.b + _mlp_forward(unit, self.extra)[0]
        else:
            y = x.astype(np.float64) @ self.W + self.b
        norms = np.linalg.norm(y, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        out: np.ndarray = (y / norms).astype(np.float32)
        return out


def _unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out: np.ndarray = x / norms
    return out


def procrustes(x: np.ndarray, y: np.ndarray) -> Fitted:
    x, y = _unit(x), _unit(y)
    size = max(x.shape[1], y.shape[1])
    xp = np.zeros((len(x), size))
    yp = np.zeros((len(y), size))
    xp[:, :x.shape[1]], yp[:, :y.shape[1]] = x, y
    u, _, vt = np.linalg.svd(xp.T @ yp)
    rotation = u @ vt
    return Fitted("procrustes", {"padded_to": size}, rotation[:x.shape[1], :y.shape[1]],
                  np.zeros(y.shape[1]))


def procrustes_centred(x: np.ndarray, y: np.ndarray) -> Fitted:
    x, y = _unit(x), _unit(y)
    mx, my = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - mx, y - my
    size = max(x.shape[1], y.shape[1])
    xp = np.zeros((len(x), size))
    yp = np.zeros((len(y), size))
    xp[:, :x.shape[1]], yp[:, :y.shape[1]] = xc, yc
    u, sigma, vt = np.linalg.svd(xp.T @ yp)
    scale = float(sigma.sum() / max(float((xc * xc).sum()), 1e-12))
    w = scale * (u @ vt)[:x.shape[1], :y.shape[1]]
    return Fitted("procrustes-centred", {"padded_to": size, "scale": round(scale, 6)}, w, my - mx @ w)


def ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> Fitted:
    x, y = _unit(x), _unit(y)
    mx, my = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - mx, y - my
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ yc)
    return Fitted("ridge", {"alpha": alpha}, w, my - mx @ w)


def lowrank(x: np.ndarray, y: np.ndarray, alpha: float, rank: int) -> Fitted:
    full = ridge(x, y, alpha)
    xc = _unit(x) - _unit(x).mean(axis=0)
    _, _, vt = np.linalg.svd(xc @ full.W, full_matrices=False)
    project = vt[:rank].T @ vt[:rank]
    w = full.W @ project
    mx, my = _unit(x).mean(axis=0), _unit(y).mean(axis=0)
    return Fitted("lowrank", {"alpha": alpha, "rank": rank}, w, my - mx @ w)


def _mlp_forward(x: np.ndarray, p: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    hidden = np.maximum(x @ p["W1"] + p["b1"], 0.0)
    out: np.ndarray = hidden @ p["W2"] + p["b2"]
    return out, hidden


def mlp(x: np.ndarray, y: np.ndarray, hidden: int, alpha: float, epochs: int | None = None,
        x_val: np.ndarray | None = None, y_val: np.ndarray | None = None, seed: int = 0,
        max_epochs: int = 60, batch: int = 256, lr: float = 1e-3, patience: int = 4) -> Fitted:
    """The ridge map plus a residual MLP (see the module docstring). With ``epochs`` the
    training runs exactly that long; otherwise it stops when the validation cosine has not
    improved for ``patience`` epochs and keeps the best epoch's weights."""
    x, y = _unit(x), _unit(y)
    base = ridge(x, y, alpha)
    rng = np.random.default_rng(seed)
    p: dict[str, Any] = {"W1": rng.standard_normal((x.shape[1], hidden)) * np.sqrt(2.0 / x.shape[1]),
                         "b1": np.zeros(hidden), "W2": np.zeros((hidden, y.shape[1])),
                         "b2": np.zeros(y.shape[1])}
    moments = {k: (np.zeros_like(v), np.zeros_like(v)) for k, v in p.items()}
    step = 0
    best = (-np.inf, 0, {k: v.copy() for k, v in p.items()})
    total = epochs if epochs is not None else max_epochs
    validate = epochs is None and x_val is not None and y_val is not None
    for epoch in range(1, total + 1):
        for start in range(0, len(x), batch):
            rows = slice(start, start + batch)
            xb, yb = x[rows], y[rows]
            residual, h = _mlp_forward(xb, p)
            z = xb @ base.W + base.b + residual
            norm = np.linalg.norm(z, axis=1, keepdims=True).clip(1e-9)
            u = z / norm
            # loss = 1 - mean(u . y): d/dz = -(y - (u.y) u) / |z| / n
            dz = -(yb - np.sum(u * yb, axis=1, keepdims=True) * u) / norm / len(xb)
            dh = (dz @ p["W2"].T) * (h > 0)
            grads = {"W2": h.T @ dz, "b2": dz.sum(axis=0), "W1": xb.T @ dh, "b1": dh.sum(axis=0)}
            step += 1
            for key, grad in grads.items():
                m, v = moments[key]
                m *= 0.9
                m += 0.1 * grad
                v *= 0.999
                v += 0.001 * grad * grad
                p[key] -= lr * (m / (1 - 0.9 ** step)) / (np.sqrt(v / (1 - 0.999 ** step)) + 1e-8)
        if validate:
            assert x_val is not None and y_val is not None
            candidate = Fitted("mlp", {}, base.W, base.b, p)
            score = mean_cosine(candidate.apply(x_val), y_val)
            if score > best[0]:
                best = (score, epoch, {k: v.copy() for k, v in p.items()})
            elif epoch - best[1] >= patience:
                break
        order = rng.permutation(len(x))
        x, y = x[order], y[order]
    if validate:
        trained, p = best[1], best[2]
    else:
        trained = total
    return Fitted("mlp", {"hidden": hidden, "alpha": alpha, "epochs": trained, "seed": seed},
                  base.W, base.b, p)


def random_projection(source_dims: int, target_dims: int, seed: int = 0) -> Fitted:
    """The baseline an adapter must beat: a Gaussian random map."""
    rng = np.random.default_rng(seed)
    return Fitted("random", {"seed": seed}, rng.standard_normal((source_dims, target_dims)),
                  np.zeros(target_dims))


def mean_cosine(predicted: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(np.sum(_unit(predicted) * _unit(truth), axis=1)))


def recall_at_k(predicted: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    database = _unit(truth)
    k = min(k, len(database))
    found = _top_k(_unit(predicted) @ database.T, k)
    wanted = _top_k(database @ database.T, k)
    overlap = [len(set(a) & set(b)) / k for a, b in zip(found, wanted, strict=False)]
    return float(np.mean(overlap))


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    top: np.ndarray = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return top


def candidates(source_dims: int, target_dims: int) -> list[tuple[str, dict[str, Any]]]:
    """Every (method, params) tried; the held-out validation score picks one."""
    out: list[tuple[str, dict[str, Any]]] = [("procrustes", {}), ("procrustes-centred", {})]
    out += [("ridge", {"alpha": a}) for a in (0.01, 0.1, 1.0, 10.0)]
    ranks = [r for r in (8, 16, 32, 48) if r < min(source_dims, target_dims)]
    out += [("lowrank", {"alpha": a, "rank": r}) for a in (0.1, 1.0) for r in ranks]
    out += [("mlp", {"hidden": max(source_dims, target_dims), "alpha": 0.1})]
    return out


def fit(method: str, x: np.ndarray, y: np.ndarray, params: dict[str, Any], *,
        x_val: np.ndarray | None = None, y_val: np.ndarray | None = None) -> Fitted:
    """``x_val``/``y_val`` serve only the MLP's early stopping, when ``params`` has no epochs."""
    if method == "procrustes":
        return procrustes(x, y)
    if method == "procrustes-centred":
        return procrustes_centred(x, y)
    if method == "mlp":
        epochs = params.get("epochs")
        return mlp(x, y, int(params["hidden"]), float(params["alpha"]),
                   None if epochs is None else int(epochs), x_val, y_val, int(params.get("seed", 0)))
    if method == "ridge":
        return ridge(x, y, float(params["alpha"]))
    if method == "lowrank":
        return lowrank(x, y, float(params["alpha"]), int(params["rank"]))
    raise ValueError(f"unknown adapter method {method!r}; use one of {', '.join(METHODS)}")

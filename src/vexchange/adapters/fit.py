"""Fitting maps from one embedding space to another, and measuring them.

Every method yields an affine map ``y = x @ W + b`` followed by L2 normalisation (both spaces
are cosine spaces), so an adapter file holds ``W`` and ``b`` whatever the method:

* ``procrustes``: the orthogonal rotation that best aligns the two spaces (orthogonal
  Procrustes via one SVD). When the sizes differ, both sides are zero-padded to the larger
  size, the rotation is fitted there, and the output keeps the target's coordinates.
* ``ridge``: affine least squares with an L2 penalty ``alpha`` on ``W`` (closed form).
* ``lowrank``: reduced-rank regression: the ridge map restricted to its ``rank`` strongest
  output directions, which resists overfitting with few training pairs.

``recall_at_k``: for each held-out text, the overlap of the k nearest true target vectors to
its adapted vector and to its true target vector (the database is the held-out true target
vectors). 1.0 means search with adapted vectors finds what re-embedding would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Fitted", "fit", "mean_cosine", "random_projection", "recall_at_k"]


@dataclass
class Fitted:
    method: str
    params: dict[str, Any]
    W: np.ndarray
    b: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)

    def apply(self, x: np.ndarray) -> np.ndarray:
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
    out: list[tuple[str, dict[str, Any]]] = [("procrustes", {})]
    out += [("ridge", {"alpha": a}) for a in (0.01, 0.1, 1.0, 10.0)]
    ranks = [r for r in (8, 16, 32, 48) if r < min(source_dims, target_dims)]
    out += [("lowrank", {"alpha": a, "rank": r}) for a in (0.1, 1.0) for r in ranks]
    return out


def fit(method: str, x: np.ndarray, y: np.ndarray, params: dict[str, Any]) -> Fitted:
    if method == "procrustes":
        return procrustes(x, y)
    if method == "ridge":
        return ridge(x, y, float(params["alpha"]))
    if method == "lowrank":
        return lowrank(x, y, float(params["alpha"]), int(params["rank"]))
    raise ValueError(f"unknown adapter method {method!r}; use procrustes, ridge or lowrank")

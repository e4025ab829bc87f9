"""The embedding map's 2-D projection and its colours.

PCA by default, in numpy: the covariance of the sample is only dims x dims, so 50,000 vectors
of 384 dims project in well under a second, deterministically (each axis's sign is fixed by its
largest loading). UMAP (``umap-learn``, when installed) is offered as the second method; it is
fitted on a 50-dim PCA of the sample, with a fixed seed.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from typing import Any

import numpy as np

from .._json import dumps_exact
from ..record import MemoryRecord

__all__ = ["colour_by", "colour_keys", "methods", "project"]

_CATEGORIES = 12


def methods() -> list[str]:
    return ["pca", "umap"] if importlib.util.find_spec("umap") is not None else ["pca"]


def _pca(matrix: np.ndarray, components: int) -> tuple[np.ndarray, list[float]]:
    centred = matrix - matrix.mean(axis=0)
    cov = centred.T @ centred
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1][:components]
    axes = vectors[:, order]
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(axes.shape[1])])
    axes *= np.where(signs == 0, 1.0, signs)
    total = float(values.sum()) or 1.0
    explained = [float(values[i]) / total for i in order]
    return centred @ axes, explained


def project(matrix: np.ndarray, method: str) -> dict[str, Any]:
    """Points in [0, 1] x [0, 1] (x, y interleaved, 4 decimals), and what the axes explain."""
    wide = matrix.astype(np.float64)
    if len(wide) == 0:
        return {"xy": [], "explained": []}
    if wide.shape[1] == 1:
        wide = np.hstack([wide, np.zeros_like(wide)])
    if method == "umap":
        import umap  # type: ignore[import-not-found]  # the optional extra, offered only when importable

        reduced, _ = _pca(wide, min(50, wide.shape[1]))
        xy = np.asarray(umap.UMAP(n_components=2, random_state=0).fit_transform(reduced), dtype=np.float64)
        explained: list[float] = []
    else:
        xy, explained = _pca(wide, 2)
    low, high = xy.min(axis=0), xy.max(axis=0)
    span = np.where(high - low > 0, high - low, 1.0)
    unit = np.round((xy - low) / span, 4)
    return {"xy": unit.ravel().tolist(), "explained": explained}


def _label(record: MemoryRecord, key: str, vector: str) -> str:
    if key.startswith("meta."):
        meta = record.metadata or {}
        if key[5:] not in meta:
            return "(absent)"
        value = meta[key[5:]]
        return value if isinstance(value, str) else dumps_exact(value)
    if key == "namespace":
        return "(none)" if record.namespace is None else (record.namespace or '""')
    if key == "model":
        vec = record.vectors.get(vector)
        return "(none)" if vec is None or vec.model is None else vec.model
    if key == "source_store":
        return record.source_store or "(none)"
    return "(none)"


def colour_by(records: list[MemoryRecord], key: str, vector: str) -> dict[str, Any]:
    """Each point's category index: the 12 commonest labels of ``key`` (namespace, model,
    source_store or ``meta.<key>``), then "(other)"."""
    labels = [_label(r, key, vector) for r in records]
    common = [label for label, _ in Counter(labels).most_common(_CATEGORIES)]
    index = {label: i for i, label in enumerate(common)}
    other = len(common)
    codes = [index.get(label, other) for label in labels]
    names = common + (["(other)"] if other in codes else [])
    counts = Counter(codes)
    return {"key": key, "categories": [{"label": n, "count": counts[i]} for i, n in enumerate(names)],
            "codes": codes}


def colour_keys(records: list[MemoryRecord]) -> list[str]:
    """What the map can colour by: the record fields, and the 30 commonest metadata keys."""
    keys: Counter[str] = Counter()
    for record in records[:5000]:
        keys.update((record.metadata or {}).keys())
    return ["namespace", "model", "source_store"] + [f"meta.{k}" for k, _ in keys.most_common(30)]

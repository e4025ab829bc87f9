"""The embedder interface: texts in, float32 vectors out, one row per text.

Every embedder is local and offline unless it is a remote provider the user named; none
downloads weights at run time. Vectors are L2-normalised (cosine space) unless the provider
says otherwise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

__all__ = ["Embedder"]


class Embedder(ABC):
    name: str
    """How the embedder is asked for (``minilm``, ``static``, ``openai+http://...``)."""
    model: str
    """The model id written into each vector's ``model`` field."""
    metric: str = "cosine"
    batch_size: int = 64

    @property
    @abstractmethod
    def dims(self) -> int:
        """Vector size."""

    @abstractmethod
    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """One call's worth of texts -> an (n, dims) float32 array."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Any number of texts, in batches of ``batch_size``."""
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        parts = [self.embed_batch(texts[i:i + self.batch_size])
                 for i in range(0, len(texts), self.batch_size)]
        out = np.concatenate(parts).astype(np.float32, copy=False)
        if out.shape[0] != len(texts):
            raise ValueError(f"{self.name} returned {out.shape[0]} vectors for {len(texts)} texts")
        return out

    def describe(self) -> dict[str, object]:
        """For receipts and adapter cards; never holds a secret."""
        return {"embedder": self.name, "model": self.model, "dims": self.dims, "metric": self.metric}

    def close(self) -> None:  # noqa: B027 - optional hook: most embedders hold nothing to release
        """Release sessions and connections."""


def normalised(array: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out: np.ndarray = (array / norms).astype(np.float32)
    return out

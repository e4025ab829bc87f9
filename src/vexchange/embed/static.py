"""``static``: the 64-dim static (Model2Vec-format, int8) model of ``tokenlearn-static-model``:
a token-embedding lookup and mean, run by the package's own compiled encoder. Small and very
fast, with weaker semantics than MiniLM; vectors are L2-normalised.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import static_model

from ._base import Embedder, normalised

__all__ = ["StaticEmbedder"]


class StaticEmbedder(Embedder):
    name = "static"
    model = "tokenlearn-static-model-64"
    batch_size = 1024

    @property
    def dims(self) -> int:
        return 64

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        return normalised(np.asarray(static_model.get_embeddings(list(texts)), dtype=np.float32))

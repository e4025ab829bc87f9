"""``st:/path/to/model``: any sentence-transformers model already on disk (needs the
``sentence-transformers`` package and PyTorch, which vexchange does not install). The hub is
switched off: a path that is not a model directory is an error, never a download.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ._base import Embedder

__all__ = ["SentenceTransformerEmbedder"]


class SentenceTransformerEmbedder(Embedder):
    def __init__(self, path: str) -> None:
        if not Path(path).is_dir():
            raise UsageError(f"no sentence-transformers model directory at {path}",
                             hint="give the path of a model saved on disk; nothing is downloaded")
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        from sentence_transformers import SentenceTransformer

        self.st = SentenceTransformer(path, device="cpu")
        self.name = f"st:{path}"
        self.model = Path(path).name
        self._dims = int(self.st.get_sentence_embedding_dimension() or 0)

    @property
    def dims(self) -> int:
        return self._dims

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.st.encode(list(texts), normalize_embeddings=True,
                                         convert_to_numpy=True), dtype=np.float32)

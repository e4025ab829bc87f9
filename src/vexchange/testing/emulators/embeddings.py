"""An embedding server that speaks the OpenAI ``POST /v1/embeddings`` and Ollama
``POST /api/embed`` request and response shapes, for testing the remote embedders without a
model: each text's vector is derived from its SHA-256 (so equal texts give equal vectors), of
``dims`` values. Faults as in :mod:`._http` (operations ``embeddings`` and ``embed``).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from ._http import Answer, Fault, FaultSwitch, JsonServer, Request

__all__ = ["EmbeddingServer", "Fault", "vector_for"]


def vector_for(text: str, dims: int) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    values: list[float] = np.random.default_rng(seed).standard_normal(dims).astype(np.float32).tolist()
    return values


def _error(status: int, message: str) -> dict[str, Any]:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind}}


class EmbeddingServer:
    def __init__(self, dims: int = 16, api_key: str | None = None, max_batch: int = 2048) -> None:
        self.dims, self.api_key, self.max_batch = dims, api_key, max_batch
        self.faults = FaultSwitch()
        self.batches: list[int] = []
        """The number of texts in each answered request."""
        self.server = JsonServer(self._route, name_of=self._op, faults=self.faults,
                                 error_body=_error, ids_of=lambda op, r: set())
        self.url = self.server.url

    def __enter__(self) -> EmbeddingServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @staticmethod
    def _op(request: Request) -> str:
        return "embed" if request.path.endswith("/api/embed") else "embeddings"

    def _route(self, request: Request) -> tuple[str, Answer]:
        op = self._op(request)
        if (self.api_key and op == "embeddings"
                and request.headers.get("authorization") != f"Bearer {self.api_key}"):
            return op, Answer(401, _error(401, "Incorrect API key provided"))
        body = request.json()
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not body.get("model"):
            return op, Answer(400, _error(400, "'model' and 'input' are required"))
        if len(texts) > self.max_batch:
            return op, Answer(400, _error(400, f"at most {self.max_batch} inputs per request"))
        self.batches.append(len(texts))
        vectors = [vector_for(t, body.get("dimensions") or self.dims) for t in texts]
        if op == "embed":
            return op, Answer(200, {"model": body["model"], "embeddings": vectors})
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        return op, Answer(200, {"object": "list", "data": data[::-1], "model": body["model"],
                                "usage": {"prompt_tokens": 0, "total_tokens": 0}})

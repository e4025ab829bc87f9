"""Remote embedding providers: any OpenAI-compatible ``/v1/embeddings`` endpoint, and Ollama's
``/api/embed``. Named as URLs::

    openai+https://api.openai.com/v1?model=text-embedding-3-small[&dimensions=512]
    openai+http://127.0.0.1:8000/v1?model=bge-small          (vLLM, LM Studio, llama.cpp...)
    ollama+http://127.0.0.1:11434?model=nomic-embed-text

API key (OpenAI-compatible only): VEX_EMBED_API_KEY, else OPENAI_API_KEY; none for a local
server. Texts go in batches (``?batch=``, default 64); each request has a timeout
(``?timeout=``, default 60 s). 429 (honouring Retry-After), 5xx, timeouts and dropped
connections are retried with backoff (``?retries=``: attempts in all, the first included, as
everywhere in vexchange; default 6); any other answer is an error
that names the provider and the server's message. Vectors are L2-normalised (cosine).
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from ..retry import RetryPolicy
from ..errors import PermanentError, TransientError, UsageError
from ._base import Embedder, normalised

__all__ = ["OllamaEmbedder", "OpenAIEmbedder", "remote_embedder"]


def remote_embedder(spec: str) -> Embedder:
    scheme, _, rest = spec.partition("+")
    parts = urllib.parse.urlsplit(rest)
    params = dict(urllib.parse.parse_qsl(parts.query))
    base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    model = params.get("model")
    if not model or parts.scheme not in ("http", "https"):
        raise UsageError(f"cannot use embedder {spec!r}",
                         hint="write openai+https://HOST/v1?model=NAME or ollama+http://HOST:11434?model=NAME")
    try:
        options = {"batch_size": int(params.get("batch", "64")),
                   "timeout": float(params.get("timeout", "60")),
                   "retries": int(params.get("retries", "6"))}
        dimensions = int(params["dimensions"]) if "dimensions" in params else None
    except ValueError:
        raise UsageError(f"embedder {spec!r}: batch, timeout, retries and dimensions must be numbers"
                         ) from None
    if scheme == "openai":
        return OpenAIEmbedder(base, model, dimensions=dimensions, **options)
    if scheme == "ollama":
        return OllamaEmbedder(base, model, **options)
    raise UsageError(f"unknown embedding provider {scheme!r}; use openai+URL or ollama+URL")


class _Remote(Embedder):
    path = ""

    def __init__(self, base: str, model: str, *, batch_size: int, timeout: float, retries: int,
                 headers: dict[str, str] | None = None) -> None:
        self.base, self.model, self.batch_size = base, model, batch_size
        self.retry = RetryPolicy(attempts=max(1, retries))
        self.client = httpx.Client(timeout=timeout, headers=headers or {})
        self._dims: int | None = None

    @property
    def dims(self) -> int:
        if self._dims is None:
            self._dims = int(self.embed_batch(["dimension probe"]).shape[1])
        return self._dims

    def body(self, texts: list[str]) -> dict[str, Any]:  # pragma: no cover - each provider's own
        raise NotImplementedError

    def vectors(self, answer: Any, count: int) -> list[list[float]]:  # pragma: no cover
        raise NotImplementedError

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        batch = list(texts)
        answer = self.retry.call(lambda: self._post(self.body(batch)))
        try:
            rows = self.vectors(answer, len(batch))
            array = np.asarray(rows, dtype=np.float32)
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise PermanentError(f"{self.name} answered in an unexpected shape ({err})",
                                 connector=self.name, operation="embed") from None
        if array.ndim != 2 or array.shape[0] != len(batch):
            raise PermanentError(f"{self.name} returned {array.shape[0] if array.ndim else 0}"
                                 f" vectors for {len(batch)} texts", connector=self.name,
                                 operation="embed")
        self._dims = int(array.shape[1])
        return normalised(array)

    def _post(self, body: dict[str, Any]) -> Any:
        url = self.base + self.path
        try:
            response = self.client.post(url, json=body)
        except httpx.TimeoutException as err:
            raise TransientError(f"{self.name}: no answer from {url} in time ({type(err).__name__})",
                                 connector=self.name, operation="embed") from None
        except httpx.TransportError as err:
            raise TransientError(f"{self.name}: cannot reach {url} ({err})", connector=self.name,
                                 operation="embed") from None
        status = response.status_code
        if status == 429 or status >= 500:
            wait = response.headers.get("retry-after")
            try:
                retry_after = float(wait) if wait is not None else None
            except ValueError:
                retry_after = None
            raise TransientError(f"{self.name}: {url} answered {status}: {_message(response)}",
                                 connector=self.name, operation="embed", retry_after=retry_after)
        if status >= 400:
            raise PermanentError(f"{self.name}: {url} answered {status}: {_message(response)}",
                                 connector=self.name, operation="embed",
                                 hint="check the model name and the API key" if status in (401, 403, 404)
                                 else None)
        return response.json()

    def describe(self) -> dict[str, object]:
        return {"embedder": self.name, "model": self.model, "dims": self._dims, "metric": self.metric,
                "url": self.base}

    def close(self) -> None:
        self.client.close()


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200]
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        return str(error.get("message", error))[:200]
    return str(error)[:200]


class OpenAIEmbedder(_Remote):
    """``POST {base}/embeddings`` with ``{"model", "input": [...], "encoding_format": "float"}``;
    the answer's ``data[i].embedding`` in ``data[i].index`` order."""

    path = "/embeddings"

    def __init__(self, base: str, model: str, *, dimensions: int | None = None, **options: Any) -> None:
        key = os.environ.get("VEX_EMBED_API_KEY") or os.environ.get("OPENAI_API_KEY")
        super().__init__(base, model, headers={"Authorization": f"Bearer {key}"} if key else None,
                         **options)
        self.name = f"openai+{base}"
        self.dimensions = dimensions

    def body(self, texts: list[str]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "input": texts, "encoding_format": "float"}
        if self.dimensions:
            body["dimensions"] = self.dimensions
        return body

    def vectors(self, answer: Any, count: int) -> list[list[float]]:
        rows = sorted(answer["data"], key=lambda item: item["index"])
        return [row["embedding"] for row in rows]


class OllamaEmbedder(_Remote):
    """``POST {base}/api/embed`` with ``{"model", "input": [...]}``; the answer's ``embeddings``."""

    path = "/api/embed"

    def __init__(self, base: str, model: str, **options: Any) -> None:
        super().__init__(base, model, **options)
        self.name = f"ollama+{base}"

    def body(self, texts: list[str]) -> dict[str, Any]:
        return {"model": self.model, "input": texts}

    def vectors(self, answer: Any, count: int) -> list[list[float]]:
        return list(answer["embeddings"])

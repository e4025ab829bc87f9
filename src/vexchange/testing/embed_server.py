"""A tiny OpenAI-compatible embeddings server on 127.0.0.1 for tests of frameworks that embed.

Mem0's own OpenAI embedder (and any OpenAI SDK client) can point at it: deterministic vectors,
no model, no network. Each vector is a float32 unit vector of exact values (three components
of +-0.5 and four of +-0.25, placed by a hash of the text), so a store's cosine normalisation
keeps it bit for bit and "same bits" is a strict check::

    with embeddings_server(lambda t: hash_embedding(t, 16)) as url:  # url ends in /v1
        ...
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

__all__ = ["embeddings_server", "hash_embedding"]


def hash_embedding(text: str, dims: int) -> np.ndarray:
    """The float32 unit vector of ``text``: exact values, the same on every run."""
    digest = hashlib.sha256(text.encode()).digest()
    places = list(dict.fromkeys(b % dims for b in digest))[:7]
    vec = np.zeros(dims, dtype="<f4")
    for n, place in enumerate(places):
        vec[place] = (0.5 if n < 3 else 0.25) * (1 if digest[8 + n] & 1 else -1)
    return vec


def _handler(embed: Callable[[str], np.ndarray]) -> type[BaseHTTPRequestHandler]:
    class Embeddings(BaseHTTPRequestHandler):
        """POST /v1/embeddings as OpenAI answers it (base64 float32 when asked, as the SDK asks)."""

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
            as_b64 = body.get("encoding_format") == "base64"
            data = [{"object": "embedding", "index": n,
                     "embedding": base64.b64encode(embed(t).tobytes()).decode() if as_b64
                     else embed(t).tolist()} for n, t in enumerate(texts)]
            out = json.dumps({"object": "list", "data": data, "model": "hash",
                              "usage": {"prompt_tokens": 0, "total_tokens": 0}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            pass

    return Embeddings


@contextlib.contextmanager
def embeddings_server(embed: Callable[[str], np.ndarray]) -> Iterator[str]:
    """Serve ``embed`` on a free loopback port; yields the base URL (``http://127.0.0.1:P/v1``)
    and stops the server on exit."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(embed))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)

"""An OpenAI-compatible embeddings endpoint on loopback, serving one of vexchange's own offline
embedders (``minilm``, ``bge-small``, ...: src/vexchange/embed/), for a framework under test that
embeds through "an OpenAI endpoint" and must run with no network (the Letta server of
tests/test_letta_server.py: its archival passages get real sentence embeddings, so its own
archival search means something).

Why a program of its own and not a thread: the framework runs in another interpreter (Letta in
a venv of its own) and reaches the endpoint over HTTP, and the embedder's ONNX session should
not share a process with the tests' forked workers. It answers what an OpenAI SDK client asks:

- ``POST /v1/embeddings``: ``input`` a string or a list of strings, ``encoding_format`` float
  or base64 (float32 bytes, as the SDK asks by default); ``dimensions`` is refused unless it is
  the model's own size (the vectors are the model's, never cut);
- ``GET /v1/models``: the one model, under the name it was started with.

    python -m vexchange.testing.openai_embeddings --embedder minilm --port 0 --port-file P

prints nothing; with ``--port 0`` it takes a free port and writes it to ``--port-file`` once it
listens (the caller waits for the file). It stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from ..embed import Embedder, get_embedder

__all__ = ["EmbeddingsService", "main"]


class EmbeddingsService:
    """One embedder behind a lock (an ONNX session is not called from two threads at once)."""

    def __init__(self, embedder: Embedder, model_name: str | None = None) -> None:
        self.embedder = embedder
        self.model_name = model_name or embedder.model
        self.lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        with self.lock:
            return np.ascontiguousarray(self.embedder.embed(list(texts)), dtype="<f4")

    def answer(self, body: Any) -> tuple[int, dict[str, Any]]:
        """The status and JSON body of a ``POST /v1/embeddings``."""
        if not isinstance(body, dict):
            return 400, _error("the request body is not a JSON object")
        given = body.get("input")
        texts = [given] if isinstance(given, str) else given
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return 400, _error("input must be a string or a non-empty list of strings (token ids are"
                               " not taken: this server tokenizes itself)")
        dims = body.get("dimensions")
        if dims is not None and dims != self.embedder.dims:
            return 400, _error(f"this model gives {self.embedder.dims} dimensions, not {dims}")
        vectors = self.embed(texts)
        as_b64 = body.get("encoding_format") == "base64"
        data = [{"object": "embedding", "index": n,
                 "embedding": base64.b64encode(row.tobytes()).decode() if as_b64
                 else [float(v) for v in row]} for n, row in enumerate(vectors)]
        return 200, {"object": "list", "data": data, "model": self.model_name,
                     "usage": {"prompt_tokens": 0, "total_tokens": 0}}

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.model_name, "object": "model", "created": 0,
                                            "owned_by": "vexchange"}]}


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error"}}


def handler(service: EmbeddingsService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, payload: dict[str, Any]) -> None:
            out = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def do_POST(self) -> None:
            if self.path.rstrip("/") not in ("/v1/embeddings", "/embeddings"):
                self._send(404, _error(f"no such endpoint: {self.path}"))
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            except ValueError:
                self._send(400, _error("the request body is not JSON"))
                return
            self._send(*service.answer(body))

        def do_GET(self) -> None:
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, service.models())
            elif self.path.rstrip("/") in ("", "/health"):
                self._send(200, {"ok": True, "model": service.model_name, "dims": service.embedder.dims})
            else:
                self._send(404, _error(f"no such endpoint: {self.path}"))

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vexchange.testing.openai_embeddings",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--embedder", default="minilm", help="a vexchange embedder name (default minilm)")
    parser.add_argument("--model-name", help="the model name to answer with (default: the embedder's)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, help="write the port here once listening")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("this test server listens on loopback only")
    service = EmbeddingsService(get_embedder(args.embedder), args.model_name)
    service.embed(["warm up"])  # load the model before saying we listen
    server = ThreadingHTTPServer((args.host, args.port), handler(service))
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    if args.port_file is not None:
        partial = args.port_file.with_name(args.port_file.name + ".partial")
        partial.write_text(str(server.server_port))
        os.replace(partial, args.port_file)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

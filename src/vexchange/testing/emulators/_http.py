"""What every emulator shares: a threaded HTTP server on a free loopback port, JSON answers,
and switches that inject the faults of a real network (429 with Retry-After, 5xx, answers
slower than the client's timeout, a request refused because of one record in it).

An emulator names each request by an *operation* (``"upsert"``, ``"fetch"``, ...). A fault
matches operations by name (``"*"`` for all), may let some requests through first (``skip``),
hits a number of requests (``times``; -1 for ever) and may be limited to requests that carry
one of a set of record ids (a partial batch failure).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["Answer", "Fault", "FaultSwitch", "JsonServer", "Request", "refuse"]


@dataclass
class Fault:
    """One injected failure. ``status=None`` with a ``delay`` is a slow but correct answer."""

    op: str = "*"
    status: int | None = 503
    times: int = 1
    skip: int = 0
    retry_after: float | None = None
    delay: float = 0.0
    ids: frozenset[str] = frozenset()
    message: str = "injected fault"
    hits: int = 0
    seen: int = 0


class FaultSwitch:
    """The faults an emulator applies, and a log of every request it answered."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.log: list[tuple[str, int]] = []
        """(operation, status) of every request, in order."""

    def inject(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Remove every fault and forget the request log."""
        with self._lock:
            self._faults.clear()
            self.log.clear()

    def match(self, op: str, ids: set[str] | None = None) -> Fault | None:
        """The fault this request meets, counted as hit; None when it goes through."""
        with self._lock:
            for fault in self._faults:
                if fault.op not in ("*", op):
                    continue
                if fault.ids and not (ids and fault.ids & ids):
                    continue
                fault.seen += 1
                if fault.seen <= fault.skip:
                    continue
                if fault.times >= 0 and fault.hits >= fault.times:
                    continue
                fault.hits += 1
                return fault
        return None

    def record(self, op: str, status: int) -> None:
        with self._lock:
            self.log.append((op, status))

    def count(self, op: str, status: int | None = None) -> int:
        with self._lock:
            return sum(1 for o, s in self.log if o == op and (status is None or s == status))


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"{}")

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Route = Callable[[Request], tuple[str, Answer]]
"""Handles a request: the operation's name and the answer."""


class JsonServer:
    """A ThreadingHTTPServer on 127.0.0.1 that hands each request to ``route``."""

    def __init__(self, route: Route, *, name_of: Callable[[Request], str], faults: FaultSwitch,
                 error_body: Callable[[int, str], Any],
                 ids_of: Callable[[str, Request], set[str]]) -> None:
        """``name_of`` names a request's operation (for faults) before ``route`` handles it;
        ``ids_of`` gives the record ids a request carries; ``error_body`` is the JSON the
        emulated API answers an error with."""
        self.route, self.name_of, self.faults = route, name_of, faults
        self.error_body, self.ids_of = error_body, ids_of
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read the fault log instead."""

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(self.command, parts.path, parse_qs(parts.query, keep_blank_values=True),
                                  {k.lower(): v for k, v in self.headers.items()}, body)
                op, answer = owner.answer(request)
                owner.faults.record(op, answer.status)
                payload = b"" if answer.body is None else json.dumps(answer.body).encode()
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for key, value in answer.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test); nothing to answer

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, request: Request) -> tuple[str, Answer]:
        op = self.name_of(request)
        fault = self.faults.match(op, self.ids_of(op, request))
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.status is not None:
                headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
                return op, Answer(fault.status, self.error_body(fault.status, fault.message), headers)
        try:
            return self.route(request)
        except _Refusal as refusal:
            return op, Answer(refusal.status, self.error_body(refusal.status, refusal.message))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (a timeout test does) is not an emulator error."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Refusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def refuse(status: int, message: str) -> _Refusal:
    """Raise the result from a route to answer with the emulator's error body."""
    return _Refusal(status, message)

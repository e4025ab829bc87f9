"""The HTTP side: the standard library's threading server, a fixed set of routes, and the guard.

Why the standard library: the page needs a dozen GET endpoints and three static files, on one
machine; ``http.server`` in a thread does that with no dependency, nothing to install for
``vex ui``, and nothing that starts listening anywhere but where it is told.

The guard, on every request:

* bound to loopback (the default), the ``Host`` header must name the loopback address and port
  the server listens on, so a web page elsewhere cannot reach it through a DNS name rebound to
  127.0.0.1;
* bound to any other address (an explicit ``--host``), a token is required: the header
  ``X-Vex-Token: <token>``, or the session cookie that the one-time URL ``/?token=<token>`` sets
  (the first visit trades the token for a random session value; the URL then no longer works,
  so a copy of it left in a history or a shell log opens nothing);
* nothing is logged: the access log (which would hold the one-time URL) is switched off.

Static files are served from a fixed list of names inside the package; no request names a file.
"""

from __future__ import annotations

import hmac
import importlib.resources
import secrets
import socket
import threading
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from ..errors import UsageError, VexError
from ._inspector import Inspector, parse_key

__all__ = ["Guard", "make_server"]

_STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
           "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
           "/static/app.css": ("app.css", "text/css; charset=utf-8")}
_COOKIE = "vex_ui_session"
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self';"
                                       " script-src 'self'; connect-src 'self'; frame-ancestors 'none'"}


class Guard:
    """Who may ask: the loopback Host check, or the token and its one-time URL."""

    def __init__(self, *, loopback: bool, token: str | None) -> None:
        self.loopback, self.token = loopback, token
        self.session = secrets.token_urlsafe(32) if token else None
        self.hosts: set[str] = set()
        self._traded = False
        self._lock = threading.Lock()

    def listen_on(self, port: int) -> None:
        self.hosts = {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}

    def trade(self, offered: str) -> str | None:
        """The one-time URL: the token, once, for the session cookie's value."""
        assert self.token is not None and self.session is not None
        with self._lock:
            if self._traded or not hmac.compare_digest(offered.encode(), self.token.encode()):
                return None
            self._traded = True
            return self.session

    def allows(self, headers: Any) -> bool:
        if self.token is None:
            return not self.loopback or str(headers.get("Host", "")).lower() in self.hosts
        offered = headers.get("X-Vex-Token")
        if offered is not None and hmac.compare_digest(str(offered).encode(), self.token.encode()):
            return True
        cookie = SimpleCookie()
        try:
            cookie.load(str(headers.get("Cookie", "")))
        except Exception:  # a malformed cookie header is a request without the cookie
            return False
        morsel = cookie.get(_COOKIE)
        assert self.session is not None
        return morsel is not None and hmac.compare_digest(morsel.value.encode(), self.session.encode())


def _int(query: dict[str, list[str]], name: str, default: int | None = None) -> int | None:
    values = query.get(name)
    if not values or values[0] == "":
        return default
    try:
        return int(values[0])
    except ValueError:
        raise UsageError(f"{name} must be a whole number") from None


def _str(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _route(inspector: Inspector, path: str, query: dict[str, list[str]]) -> Any:
    if path == "/api/status":
        return inspector.status()
    if path == "/api/overview":
        return inspector.overview()
    if path == "/api/map":
        return inspector.map(_str(query, "vector"), _str(query, "method") or "pca",
                             _str(query, "colour") or "namespace")
    if path == "/api/point":
        return inspector.point(_int(query, "i", -1) or 0)
    if path == "/api/search":
        return inspector.search(_str(query, "mode") or "keyword", _str(query, "q"), _int(query, "i"),
                                parse_key(_str(query, "key")), _str(query, "vector"),
                                _str(query, "embedder") or None, _int(query, "k", 20) or 20)
    if path == "/api/record":
        return inspector.record(_str(query, "side") or "location", _int(query, "i"),
                                parse_key(_str(query, "key")), _str(query, "id"))
    if path == "/api/runs":
        return inspector.runs_view()
    if path == "/api/rejects":
        return inspector.rejected(_int(query, "run", 0) or 0, _int(query, "offset", 0) or 0,
                                  _str(query, "reason"))
    if path == "/api/diff":
        return inspector.diff_view()
    return None


def make_server(inspector: Inspector, host: str, port: int, guard: Guard) -> ThreadingHTTPServer:
    """A server bound to ``host:port`` (port 0: a free one the system picks)."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "vex-ui"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            """No access log: a request line can hold the one-time URL."""

        def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None,
                  ) -> None:
            self.send_response(status)
            for name, value in {**_HEADERS, **(extra or {})}.items():
                self.send_header(name, value)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, value: Any) -> None:
            self._send(status, orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY),
                       "application/json")

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_POST(self) -> None:
            self._json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "read-only: GET only"})

        do_PUT = do_DELETE = do_PATCH = do_POST

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            offered = _str(query, "token")
            if guard.token is not None and url.path == "/" and offered is not None:
                session = guard.trade(offered)
                if session is None:
                    self._json(HTTPStatus.UNAUTHORIZED, {"error": "this one-time URL was used already"
                                                                  " or its token is wrong"})
                    return
                self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", {
                    "Location": "/", "Set-Cookie": f"{_COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/"})
                return
            if not guard.allows(self.headers):
                self._json(HTTPStatus.FORBIDDEN if guard.token is None else HTTPStatus.UNAUTHORIZED,
                           {"error": "refused: a token is required" if guard.token else
                            "refused: this server answers only to its loopback address"})
                return
            if url.path == "/favicon.ico":
                self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
                return
            if url.path in _STATIC:
                name, kind = _STATIC[url.path]
                body = importlib.resources.files(__package__).joinpath("static", name).read_bytes()
                self._send(HTTPStatus.OK, body, kind)
                return
            try:
                value = _route(inspector, url.path, query)
            except VexError as err:
                self._json(HTTPStatus.BAD_REQUEST, {"error": err.message, "hint": err.hint})
                return
            except Exception as err:  # a bug shows on the page as its type and message; the server goes on
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(err).__name__}: {err}"})
                return
            if value is None:
                self._json(HTTPStatus.NOT_FOUND, {"error": "no such page"})
            else:
                self._json(HTTPStatus.OK, value)

    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class Server(ThreadingHTTPServer):
        address_family = family
        daemon_threads = True
        allow_reuse_address = False

    try:
        server = Server((host, port), Handler)
    except OSError as err:
        raise UsageError(f"cannot listen on {host}:{port} ({err.strerror or err})",
                         hint="choose another --port, or leave it out for a free one") from None
    guard.listen_on(server.server_address[1])
    return server

"""``vex ui``: a local web inspector over any location vexchange reads (docs/ui.md).

    from vexchange.ui import serve
    serve("memory.vmig.jsonl")                           # until Ctrl-C, opening the browser
    ui = serve("memory.vmig.jsonl", against="vektor:///data/memory.db", block=False, no_open=True)
    ui.url; ui.stop()

Five views: the overview (``inspect``'s counts, a ``created_at`` histogram, the sidecar's
state), the embedding map (PCA, or UMAP with ``umap-learn``), search (keyword, nearest to a
record, a typed text; ``vex search``'s ranking for cartridges and packs), one record's every
field, and the runs (receipts, rejects, and with ``against`` the ``verify`` diff).

Loopback only by default, on a free port; any other host needs the token printed at start.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import socket
import sys
import threading
import webbrowser
from collections.abc import Callable
from typing import Any

from ..api import Location
from ..errors import UsageError
from ._inspector import Inspector
from ._server import Guard, make_server

__all__ = ["DEFAULT_SAMPLE", "UIServer", "serve"]

DEFAULT_SAMPLE = 50_000
"""Records the scan keeps for the map and the search: every record of a store this size or
smaller, else a uniform sample of this many (the page says so)."""


_FIRST_LOOK = 0.5
"""Seconds ``serve`` waits for the scan to fail at once (no such file, a store that refuses)."""
_WAKE_S = 0.25
"""Serving, the main thread waits in steps this long: Ctrl-C's signal may be delivered to another
thread (the server's, the scan's), and Python raises KeyboardInterrupt only in the main thread,
once it runs again; a wait without a timeout would never end (seen as a hang under load)."""


class UIServer:
    """A running inspector: where it listens, its token (None on loopback), and ``stop()``."""

    def __init__(self, inspector: Inspector, server: Any, guard: Guard, host: str) -> None:
        self.inspector, self._server, self._guard = inspector, server, guard
        self.host = host
        self.port: int = server.server_address[1]
        self.token: str | None = guard.token
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/"
        self.login_url = self.url if guard.token is None else f"{self.url}?token={guard.token}"
        """The URL to open: with a token, the one-time URL that sets the session cookie."""
        self._thread = threading.Thread(target=server.serve_forever, name="vex-ui-http", daemon=True)

    def _start(self) -> UIServer:
        self.inspector.start()
        self._thread.start()
        return self

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait for the scan to end (ready, failed or stopped); False on timeout."""
        scan = self.inspector.scan
        return True if scan is None else scan.wait(timeout)

    def stop(self) -> None:
        self.inspector.stop()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> UIServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback one (``localhost``, 127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        raise UsageError(f"cannot resolve host {host!r}") from None
    return bool(infos) and all(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback for i in infos)


def _unspecified(host: str) -> bool:
    """``0.0.0.0`` or ``::``: every interface, an address no browser elsewhere can use as such."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def serve(location: Location, *, against: Location | None = None, no_open: bool = False, port: int = 0,
          host: str = "127.0.0.1", sample: int = DEFAULT_SAMPLE, block: bool = True,
          announce: Callable[[str], None] | None = None) -> UIServer:
    """Serve the inspector over ``location`` (and ``against``: ``verify(location, against=...)``).

    ``port`` 0 picks a free one. ``host``: loopback unless given; any other host is served only
    to requests with the token, which is generated here and told once through ``announce``
    (default: the terminal, stderr) and never written anywhere else. ``block`` serves until
    Ctrl-C (then stops and returns); ``block=False`` returns the running server at once.
    """
    if not 0 <= port <= 65535:
        raise UsageError("--port must be between 0 and 65535")
    if sample < 1:
        raise UsageError("the sample must hold at least one record")
    tell = announce if announce is not None else (lambda line: print(line, file=sys.stderr, flush=True))
    loopback = is_loopback(host)
    guard = Guard(loopback=loopback, token=None if loopback else secrets.token_urlsafe(24))
    inspector = Inspector(location, against=against, sample_size=sample)
    ui = UIServer(inspector, make_server(inspector, host, port, guard), guard, host)._start()
    scan = inspector.scan
    if scan is not None and scan.wait(_FIRST_LOOK) and scan.exception is not None:
        ui.stop()  # a location that cannot be read at all is an error here, not a page
        raise scan.exception
    if loopback:
        tell(f"vex ui: serving {inspector.described.get('location')} on {ui.url} (Ctrl-C stops)")
    else:
        tell(f"vex ui: serving on {host}, beyond loopback: only with the token (plain HTTP: on a"
             " network you do not trust, prefer an SSH tunnel to the loopback default).")
        tell(f"  open once: {ui.login_url}" + ("  (with this machine's address for the host)"
                                              if _unspecified(host) else ""))
        tell(f"  or send the header X-Vex-Token: {ui.token}")
    if not no_open and loopback:  # beyond loopback the one-time URL is for the user to open where they are
        _open_browser(ui.login_url)
    if not block:
        return ui
    try:
        forever = threading.Event()
        while not forever.wait(_WAKE_S):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        ui.stop()
    return ui


def _open_browser(url: str) -> None:
    """Open the page when a graphical browser is plausible; on a machine without a display,
    webbrowser would start a text browser in this very terminal, so nothing is opened there."""
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if sys.platform.startswith("linux") and not display:
        return
    with contextlib.suppress(webbrowser.Error):
        webbrowser.open(url)

"""``vex backup push|pull|status|diff`` (``vex sync`` is Vex's name for it): encrypted, versioned
snapshots of a source."""

from __future__ import annotations

from ._app import cli  # noqa: F401  (commands join the group here)

"""``vex ui``: a local web inspector over any location vexchange reads (docs/ui.md)."""

from __future__ import annotations

from ._app import cli  # noqa: F401  (commands join the group here)

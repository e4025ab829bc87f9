"""``vex convert``: records (from any source) as chat fine-tune, context or plain-text files."""

from __future__ import annotations

from ._app import cli  # noqa: F401  (commands join the group here)

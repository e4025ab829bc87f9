"""``vex plan`` and ``vex doctor``: what a move will cost and change, and what is wrong with a
source, before anything is written (docs/plan.md)."""

from __future__ import annotations

from ._app import cli  # noqa: F401  (commands join the group here)

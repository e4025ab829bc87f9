"""``vex sign`` (and ``vex verify --signature`` in check.py): Ed25519 signatures over a .vmig.jsonl
file, compatible with the published Vex's ``.vmig.sig``."""

from __future__ import annotations

from ._app import cli  # noqa: F401  (commands join the group here)

"""Connectors: one per store, found by name through the registry.

``available``, ``get`` and ``register`` load the registry when first used (PEP 562): importing
``vexchange.connectors._base`` (as the engine and the CLI's option table do) then costs no
entry-point scan."""

from typing import Any

from ._base import Capabilities, Connector, Page, Reject, Writer

__all__ = ["Capabilities", "Connector", "Page", "Reject", "Writer", "available", "get", "register"]


def __getattr__(name: str) -> Any:
    if name in ("available", "get", "register"):
        from . import _registry

        return getattr(_registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

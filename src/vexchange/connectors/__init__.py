"""Connectors: one per store, found by name through the registry.

Every name here is imported when first used (PEP 562): ``available``, ``get`` and ``register``
load the registry (importing ``vexchange.connectors._base``, as the engine and the CLI's option
table do, then costs no entry-point scan), and the base classes load ``_base`` (msgspec, the
record model, the spec), so that importing a submodule such as the registry lazily
(``vex connectors --help``) costs nothing until it is used."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._base import Capabilities, Connector, Page, Reject, Writer
    from ._registry import available, get, register

__all__ = ["Capabilities", "Connector", "Page", "Reject", "Writer", "available", "get", "register"]

_HOME = {"Capabilities": "._base", "Connector": "._base", "Page": "._base", "Reject": "._base",
         "Writer": "._base", "available": "._registry", "get": "._registry", "register": "._registry"}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home, __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

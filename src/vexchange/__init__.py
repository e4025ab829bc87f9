"""vexchange: portable agent and vector memory.

Open interchange formats (.vmig.jsonl with its sidecar), connectors to real stores, and a
migration engine that accounts for every record and writes a receipt that proves it.

    import vexchange
    receipt = vexchange.migrate("vektor:///data/memory.db", "memory.vmig.jsonl")
    report = vexchange.verify("memory.vmig.jsonl", against="vektor:///data/memory.db")

The names below are imported when first used (PEP 562), not with the package: ``vex --help``
and every ``vexchange.<module>`` import would otherwise load numpy, the engine and every
format first (0.3 s of start-up). ``from vexchange import migrate`` works as before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__


def _load_registry() -> object:
    """The connector registry, which installs the scheme table ``StoreSpec.parse`` needs: spec.py
    imports this when it first parses a location without a table (it sits below the connectors
    and names none; the package names them for it). Not imported with the package: ``vex --help``
    and every ``vexchange.<module>`` import would pay for spec.py and the errors first."""
    return importlib.import_module("vexchange.connectors._registry")

if TYPE_CHECKING:  # what the lazy names are, for type checkers and readers
    from .api import export, import_, migrate, open_store
    from .checks import inspect, validate, verify
    from .convert import convert
    from .engine.receipt import Receipt
    from .errors import (
        CapabilityError,
        ConnectorError,
        DecodeError,
        IntegrityError,
        MigrationError,
        TransientError,
        UsageError,
        VexError,
    )
    from .record import MemoryRecord, Vector
    from .spec import StoreSpec

_LAZY = {
    "export": ".api", "import_": ".api", "migrate": ".api", "open_store": ".api",
    "inspect": ".checks", "validate": ".checks", "verify": ".checks",
    "convert": ".convert",
    "Receipt": ".engine.receipt",
    "CapabilityError": ".errors", "ConnectorError": ".errors", "DecodeError": ".errors",
    "IntegrityError": ".errors", "MigrationError": ".errors", "TransientError": ".errors",
    "UsageError": ".errors", "VexError": ".errors",
    "MemoryRecord": ".record", "Vector": ".record",
    "StoreSpec": ".spec",
}

__all__ = [
    "CapabilityError",
    "ConnectorError",
    "DecodeError",
    "IntegrityError",
    "MemoryRecord",
    "MigrationError",
    "Receipt",
    "StoreSpec",
    "TransientError",
    "UsageError",
    "Vector",
    "VexError",
    "__version__",
    "convert",
    "export",
    "import_",
    "inspect",
    "migrate",
    "open_store",
    "validate",
    "verify",
]


def __getattr__(name: str) -> Any:
    """Import a public name on first use, then keep it in the package's namespace."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

"""vexchange: portable agent and vector memory.

Open interchange formats (.vmig.jsonl with its sidecar), connectors to real stores, and a
migration engine that accounts for every record and writes a receipt that proves it.

    import vexchange
    receipt = vexchange.migrate("vektor:///data/memory.db", "memory.vmig.jsonl")
    report = vexchange.verify("memory.vmig.jsonl", against="vektor:///data/memory.db")
"""

from ._version import __version__
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

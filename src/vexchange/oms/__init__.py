"""Open Memory Specification (OMS) v1.3 memory grains. docs/formats/oms.md.

vexchange declares its OMS conformance level here (§17: implementations MUST declare it), so
the CLI, receipts and other tools read one value: :data:`CONFORMANCE_LEVEL`, and
:func:`conformance` for the whole declaration.
"""

from typing import Any

from .canonical import decode as decode_msgpack
from .canonical import encode as encode_msgpack
from .errors import OMSError, error_class
from .grain import Grain, content_address, decode_grain, encode_grain, verify_address

__all__ = ["CONFORMANCE_LEVEL", "SPEC_VERSION", "Grain", "OMSError", "conformance", "content_address",
           "decode_grain", "decode_msgpack", "encode_grain", "encode_msgpack", "error_class",
           "verify_address"]

SPEC_VERSION = "1.3"
"""The OMS text vexchange implements (docs/formats/oms.md; 1.0-1.6 type strings are read too)."""

CONFORMANCE_LEVEL = 3
"""§17.3 Level 3, Production Store: Level 2 (the codec, validation, the test vectors, content
references, the Store protocol with the invalidation policy, ``vexchange.oms.store``) and the
Level 3 store ``vexchange.oms.l3.Level3Store`` (encrypted envelopes, per-user keys, blind
index, hexastore, full-text search, audit chain, recovery, policy presets;
docs/formats/oms-level3.md). ``MemoryGrainStore`` and ``SqliteGrainStore`` are Level 2."""


def conformance() -> dict[str, Any]:
    """The §17 declaration, in the shape OMS 1.6 §17.4 proposes (``oms_conformance``), plus
    what vexchange leaves to the caller at this level."""
    return {
        "oms_version": SPEC_VERSION,
        "oms_conformance": CONFORMANCE_LEVEL,
        "oms_modules": [],
        "encodings": ["msgpack"],
        "store": "vexchange.oms.l3.Level3Store (Level 3); vexchange.oms.store.GrainStore"
                 " (MemoryGrainStore, SqliteGrainStore: Level 2)",
        "caller_verified": ["COSE signatures (signer_did, cosigners are taken as verified)"],
        "not_read": ["CBOR payloads (flag bit 5)", "encrypted or compressed payloads (flag bits 1, 2)"],
    }

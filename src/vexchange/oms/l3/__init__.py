"""OMS Level 3: an encrypted, indexed, audited grain store. docs/formats/oms-level3.md.

Needs the ``crypto`` extra (the ``cryptography`` package); nothing outside this package imports
it, so ``vex --help`` and Level 1/2 work without it.
"""

from .errors import (
    AuditChainError,
    EnvelopeSwapError,
    L3Error,
    NonceReuseError,
    PolicyDeniedError,
    TamperedError,
    WrongKeyError,
)

__all__ = ["AuditChainError", "EnvelopeSwapError", "L3Error", "NonceReuseError", "PolicyDeniedError",
           "TamperedError", "WrongKeyError"]

"""OMS Level 3: an encrypted, indexed, audited grain store. docs/formats/oms-level3.md.

Needs the ``crypto`` extra (the ``cryptography`` package): importing this package without it is
a MissingDependencyError (a usage error naming the extra). Nothing outside this package imports
it, so ``vex --help`` and Level 1/2 work without it.
"""

from .errors import (
    require_crypto,
    AuditChainError,
    EnvelopeSwapError,
    L3Error,
    NonceReuseError,
    PolicyDeniedError,
    TamperedError,
    WrongKeyError,
)

require_crypto()  # a usage error naming the extra, before any submodule imports cryptography

__all__ = ["AuditChainError", "EnvelopeSwapError", "L3Error", "NonceReuseError", "PolicyDeniedError",
           "TamperedError", "WrongKeyError", "require_crypto"]

"""Typed errors of the Level 3 store. Each is an OMSError with its own code (the spec names none
for these cases); integrity failures are also IntegrityError (exit 3), a wrong key a UsageError."""

from __future__ import annotations

import importlib.util

from ...errors import IntegrityError, MissingDependencyError, UsageError
from ..errors import OMSError

__all__ = ["AuditChainError", "EnvelopeSwapError", "L3Error", "NonceReuseError", "PolicyDeniedError",
           "TamperedError", "WrongKeyError", "require_crypto"]


def require_crypto() -> None:
    """A usage error naming the extra when the ``cryptography`` package is missing, before any
    module of this package that needs it is imported."""
    if importlib.util.find_spec("cryptography") is None:
        raise MissingDependencyError("OMS Level 3", "cryptography", "crypto", kind="store")


class L3Error(OMSError):
    code = "ERR_L3"


class WrongKeyError(L3Error, UsageError):
    """The master key does not open this store or file (its key check fails)."""

    code = "ERR_WRONG_KEY"


class TamperedError(L3Error, IntegrityError):
    """An envelope or encrypted file failed AES-GCM authentication: edited, truncated, or
    sealed under another key."""

    code = "ERR_INTEGRITY"


class EnvelopeSwapError(L3Error, IntegrityError):
    """An envelope stored under one address holds another grain (rows swapped)."""

    code = "ERR_ENVELOPE_SWAP"


class NonceReuseError(L3Error, IntegrityError):
    """A (key id, nonce) pair seen before: AES-GCM's security ends at the first reuse."""

    code = "ERR_NONCE_REUSE"


class AuditChainError(L3Error, IntegrityError):
    code = "ERR_AUDIT_CHAIN"


class PolicyDeniedError(L3Error):
    """The store's compliance preset refuses the operation (the decision is in the audit trail)."""

    code = "ERR_POLICY_DENIED"

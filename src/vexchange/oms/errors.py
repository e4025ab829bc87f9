"""OMS error codes (v1.3 §19) as typed exceptions: each code is a class, all are OMSError."""

from __future__ import annotations

from ..errors import DecodeError

__all__ = ["OMSError", "error_class"]


class OMSError(DecodeError):
    """An OMS failure; ``code`` is the §19 code (ERR_VERSION, ERR_CORRUPT, ...)."""

    code = "ERR_CORRUPT"

    def __init__(self, message: str, *, location: str | None = None) -> None:
        super().__init__(f"{self.code}: {message}", location=location)


_CODES = (
    "ERR_TOO_SHORT", "ERR_VERSION", "ERR_CORRUPT", "ERR_NOT_MAP", "ERR_NO_TYPE",
    "ERR_UNKNOWN_TYPE", "ERR_SCHEMA", "ERR_INTEGRITY", "ERR_HASH_FORMAT", "ERR_HASH_LENGTH",
    "ERR_RANGE", "ERR_EMPTY", "ERR_FLOAT_INVALID", "ERR_SIGNED_MISMATCH",
    "ERR_SENSITIVITY_MISMATCH", "ERR_INVALIDATION_DENIED", "ERR_EVIDENCE_REQUIRED",
)
_CLASSES: dict[str, type[OMSError]] = {
    code: type("".join(p.title() for p in code.lower().split("_")), (OMSError,), {"code": code})
    for code in _CODES
}
globals().update({cls.__name__: cls for cls in _CLASSES.values()})
__all__ += [cls.__name__ for cls in _CLASSES.values()]


def error_class(code: str) -> type[OMSError]:
    """The exception class of a §19 code (``error_class("ERR_VERSION")``)."""
    return _CLASSES[code]

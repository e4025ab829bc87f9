"""Every error vexchange raises on purpose.

The tree, and the exit code the CLI gives each family (one place: :func:`exit_code_for`)::

    VexError                         .hint: what to do next
    ├── UsageError                   the caller asked for something invalid          exit 2
    │   ├── InvalidSpecError         a malformed store URL or missing option
    │   ├── UnknownConnectorError    no connector of that name
    │   └── MissingDependencyError   an optional extra is not installed
    ├── CapabilityError              the target cannot hold what the plan needs      exit 2
    ├── ConnectorError               a store failed                                  exit 1
    │   ├── TransientError           retrying may help (locked database, timeout, 429/5xx)
    │   └── PermanentError           retrying will not help
    │       └── LayoutMismatchError  the target's schema does not fit (not a VEKTOR database, ...)
    ├── CodecError                   bytes could not be read or written              exit 1
    │   ├── DecodeError              .location names file and line
    │   └── IntegrityError           a checksum or digest does not match             exit 3
    └── MigrationError               a run stopped part-way; .receipt, resumable     exit 1

Retryability is a type, never a string match: the engine retries ``TransientError`` only.
Messages follow one style: what happened, where, what to do next.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CapabilityError",
    "CodecError",
    "ConnectorError",
    "DecodeError",
    "IntegrityError",
    "InvalidSpecError",
    "RunInterrupted",
    "LayoutMismatchError",
    "MigrationError",
    "MissingDependencyError",
    "PermanentError",
    "TransientError",
    "UnknownConnectorError",
    "UsageError",
    "VexError",
    "exit_code_for",
]


class VexError(Exception):
    """Root of every error vexchange raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.__dict__))


def _rebuild(cls: type[VexError], message: str, state: dict[str, Any]) -> VexError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class UsageError(VexError):
    """The caller asked for something invalid: a bad option, path or URL."""


class InvalidSpecError(UsageError, ValueError):
    """A store URL or option set that does not name a usable store."""


class UnknownConnectorError(UsageError, LookupError):
    """No connector is registered under that name."""


class MissingDependencyError(UsageError, ImportError):
    """A connector (or an embedder) needs an optional extra that is not installed."""

    def __init__(self, connector: str, module: str, extra: str, *, kind: str = "connector") -> None:
        super().__init__(
            f"the {connector} {kind} needs the Python module {module!r}, which is not installed",
            hint=f'pip install "vexchange[{extra}]"',
        )
        self.connector = connector
        self.module = module
        self.extra = extra


class CapabilityError(VexError):
    """The target cannot hold what the migration needs; raised before any write."""


class ConnectorError(VexError):
    """A store failed while reading or writing."""

    def __init__(
        self,
        message: str,
        *,
        connector: str | None = None,
        operation: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.connector = connector
        self.operation = operation


class TransientError(ConnectorError):
    """A failure that may go away on retry (locked database, timeout, 429, 5xx)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.retry_after = retry_after


class PermanentError(ConnectorError):
    """A failure that retrying will not fix."""


class LayoutMismatchError(PermanentError):
    """The target exists but its schema does not fit what is being written or read."""


class CodecError(VexError):
    """Bytes could not be read or written in the requested format."""


class DecodeError(CodecError, ValueError):
    """Input could not be decoded; ``location`` names the file and line."""

    def __init__(self, message: str, *, location: str | None = None, hint: str | None = None) -> None:
        full = f"{location}: {message}" if location else message
        super().__init__(full, hint=hint)
        self.location = location
        self.reason = message


class IntegrityError(DecodeError):
    """A checksum or digest does not match what was recorded."""


class MigrationError(VexError):
    """A run stopped part-way. ``receipt`` describes what was written; the run can be resumed."""

    def __init__(self, message: str, *, receipt: Any = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.receipt = receipt


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run; ``receipt`` (written, status "interrupted") says what was written
    and where the checkpoint is. A KeyboardInterrupt, so code that stops on one still does."""

    def __init__(self, receipt: Any) -> None:
        super().__init__("interrupted")
        self.receipt = receipt


def exit_code_for(error: BaseException) -> int:
    """The CLI exit code for an error; documented in docs/errors.md."""
    if isinstance(error, KeyboardInterrupt):
        return 130
    if isinstance(error, IntegrityError):
        return 3
    if isinstance(error, (UsageError, CapabilityError)):
        return 2
    return 1

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

No message echoes a secret: every ``VexError``'s message and hint go through :func:`redact`,
the one redaction helper (SDK error texts and store URLs pass through it on their way in).
"""

from __future__ import annotations

import os
import re
import urllib.parse
from typing import Any

__all__ = [
    "CapabilityError",
    "CodecError",
    "ConnectorError",
    "DecodeError",
    "IntegrityError",
    "InvalidSpecError",
    "LayoutMismatchError",
    "MigrationError",
    "MissingDependencyError",
    "PermanentError",
    "RunInterrupted",
    "TransientError",
    "UnknownConnectorError",
    "UsageError",
    "VexError",
    "exit_code_for",
    "redact",
    "register_secret",
]

MASK = "***"
_MIN_SECRET = 3
"""Shorter values are not masked by value (masking every "ab" in a message would garble it);
the patterns below still hide them where they follow ``password=`` or sit in a URL."""

_WHOLE_WORD_BELOW = 8
"""Secrets shorter than this are masked where they stand alone, longer ones everywhere."""

_SECRETS: set[str] = set()
"""Every secret value this process was given (a URL's password, ``--*-secret``, the
``VEX_*`` variables read): masked wherever it appears, since an SDK may quote it in any form."""

_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^\s'\"/:@]*):"
                           r"(?P<password>[^\s'\"@]*)@")
"""``scheme://user:password@``; the password may hold a raw ``/`` (then the URL does not parse
either, and its error message must still not show it)."""
_NAMED_VALUE = re.compile(
    r"(?P<name>\b[\w.-]*(?:key|token|secret|password|passwd|pwd|auth|credential)[\w.-]*)"
    r"(?P<sep>[\"']?\s*[=:]\s*)(?P<value>\"[^\"]*\"|'[^']*'|[^\s&;,'\")\]}]+)", re.IGNORECASE)
"""``api_key=...``, ``password='...'`` (a DSN), ``"token": "..."`` (JSON), ``X-Api-Key: ...``;
:func:`_secret_name` then decides (``author:`` and a bare ``key:`` are not secrets)."""
_SCHEME_VALUE = re.compile(r"\b(?P<name>Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_PLACEHOLDERS = frozenset({"...", "\u2026", "value", "name", MASK, "<value>", "<secret>", "bearer", "basic"})
"""Values a hint writes to show the form (``--target-secret api_key=...``), and the auth
scheme before a token (masked by ``_SCHEME_VALUE``): left as they are."""
_NOT_SECRET_ENV = frozenset({"PWD", "OLDPWD"})


def _secret_name(name: str) -> bool:
    """Whether a name (an option, a JSON key, a header, a variable) holds a secret."""
    lowered = name.lower().replace("-", "_")
    if any(word in lowered for word in ("token", "secret", "password", "passwd", "credential",
                                        "authorization")):
        return True
    return lowered.endswith(("apikey", "_key", "pwd")) or "auth" in re.split(r"[_.]", lowered)


def register_secret(value: str | None) -> None:
    """Remember a secret so that :func:`redact` masks it in every later message."""
    if value and len(value) >= _MIN_SECRET:
        _SECRETS.add(value)


def _env_secrets() -> list[str]:
    """Secret values in the environment (``VEX_QDRANT_API_KEY``, ``PINECONE_API_KEY``,
    ``PGPASSWORD``...), read at each redaction so a variable set later is covered too."""
    return [value for name, value in os.environ.items()
            if len(value) >= _MIN_SECRET and name.upper() not in _NOT_SECRET_ENV
            and not name.upper().endswith("_SOCK") and _secret_name(name)]


def redact(text: str) -> str:
    """``text`` with every known secret value (as is and percent-encoded), every URL password
    and every value named like a secret (``api_key=``, ``password:``, ``Bearer``) shown as
    ``***``. The one redaction helper: messages, hints and SDK error texts go through it."""
    if not text:
        return text
    values = sorted({*_SECRETS, *_env_secrets()}, key=len, reverse=True)
    for value in values:
        for form in dict.fromkeys((value, urllib.parse.quote(value, safe=""))):
            if form in text:
                text = _mask_value(text, form)
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _SCHEME_VALUE.sub(lambda m: f"{m['name']} {MASK}", text)
    return _NAMED_VALUE.sub(_mask_named, text)


def _mask_value(text: str, value: str) -> str:
    """Every occurrence of a secret masked; a short one only where it stands alone, so that
    a password "tok" does not turn "token" into "***en" (the patterns still catch it there)."""
    if len(value) >= _WHOLE_WORD_BELOW:
        return text.replace(value, MASK)
    return re.sub(r"(?<![A-Za-z0-9])" + re.escape(value) + r"(?![A-Za-z0-9])", MASK, text)


def _mask_named(match: re.Match[str]) -> str:
    value = match["value"]
    bare = value.strip("\"'")
    if not bare or bare.lower() in _PLACEHOLDERS or not _secret_name(match["name"]):
        return match[0]
    quote = value[0] if value[0] in "\"'" and value[-1] == value[0] and len(value) > 1 else ""
    return f"{match['name']}{match['sep']}{quote}{MASK}{quote}"


class VexError(Exception):
    """Root of every error vexchange raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.hint = redact(hint) if hint else hint

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
        self.reason = redact(message)


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

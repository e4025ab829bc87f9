"""StoreSpec: where a store is, parsed from a URL or from a connector name plus options.

Forms accepted (each connector documents what the parts mean for it)::

    vektor:///abs/path/memory.db        vektor://relative/path.db is *not* accepted (ambiguous)
    vektor:memory.db                    a relative path
    memory.vmig.jsonl, out.jsonl        a bare path: the file connector chosen by its suffix
    qdrant://localhost:6333/memories    server connectors: host, port (1 to 65535), path
    pgvector://user:password@host/db    a user and password, where the store has them

Secrets are best kept out of the URL text (shell history, process lists): they come from
``secrets=`` (the CLI's ``--source-secret``/``--target-secret``) or from
``VEX_<CONNECTOR>_<KEY>`` environment variables. A URL's ``user:password@`` is honoured by the
stores that have users (pgvector, redis: ``user`` and the ``password`` secret; milvus: the
``token`` ``user:password``) and refused by every other connector, naming the secret to use
instead; it is never ignored. Precedence: a secret given both in the URL and by ``secrets=``
must be the same (else a UsageError); either one beats the ``VEX_*`` variable. Every repr,
``redacted()`` and error message shows secrets as ``***``.

Which connector a bare path's suffix names, and which schemes take a file path (so that
``vektor://host/x`` is refused rather than read as a host), is not known here: each connector
declares it (``Connector.suffixes``, ``Connector.takes_path``), and the connector registry, which
sits above this module, answers for them through the ``SchemeTable`` it installs with
``use_schemes`` (or that a caller passes as ``schemes=``).
"""

from __future__ import annotations

import dataclasses
import os
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .errors import InvalidSpecError, redact, register_secret

__all__ = ["SchemeTable", "StoreSpec", "use_schemes"]


class SchemeTable(Protocol):
    """What parsing needs to know about the connectors, answered by the connector registry
    from what each connector declares (spec.py sits below the connectors and names none)."""

    def scheme_for_path(self, path: str) -> str | None:
        """The connector a bare path names by its suffix (``memory.mg`` -> ``mg``), or None."""
        ...

    def takes_path(self, scheme: str) -> bool:
        """Whether the scheme's location is a file path (``vektor:///abs/path``), not a host."""
        ...

    def credentials(self, scheme: str) -> tuple[str | None, str | None]:
        """What a URL's ``user:password@`` means for the scheme ("user", "token" or None:
        ``Connector.url_userinfo``) and the secret to name when it is refused (``url_secret``)."""
        ...


_schemes: SchemeTable | None = None


_load_schemes: Callable[[], object] | None = None


def load_schemes_with(loader: Callable[[], object]) -> None:
    """What to call, once, when a location is parsed before any table is installed, instead
    of the package's ``_load_registry`` (which imports the connector registry), so spec.py
    stays below the connectors."""
    global _load_schemes
    _load_schemes = loader


def use_schemes(table: SchemeTable) -> None:
    """Install the table ``StoreSpec.parse`` consults when no ``schemes=`` is given. The
    connector registry installs itself when it is imported (``import vexchange`` does that)."""
    global _schemes
    _schemes = table


def _table(schemes: SchemeTable | None) -> SchemeTable:
    if schemes is not None:
        return schemes
    if _schemes is None:  # the registry is loaded only when a location is first parsed
        if _load_schemes is not None:
            _load_schemes()
        else:
            from . import _load_registry  # the package's: it names the registry for spec.py

            _load_registry()
    if _schemes is None:
        raise RuntimeError("no scheme table: import vexchange.connectors (or pass schemes=) before"
                           " parsing a store location")
    return _schemes


@dataclass(frozen=True)
class StoreSpec:
    scheme: str
    path: str | None = None
    host: str | None = None
    port: int | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    user: str | None = None
    """The user a URL names (``pgvector://alice@host/db``); not a secret, so shown."""

    def __post_init__(self) -> None:
        """Refuse a port no server can listen on (``0`` would silently become the default),
        and remember the secrets so that no error message can echo them."""
        if self.port is not None and not 1 <= self.port <= _MAX_PORT:
            raise InvalidSpecError(f"port {self.port} is out of range (1 to {_MAX_PORT})"
                                   f" in {self.redacted()!r}")
        for value in self.secrets.values():
            register_secret(value)

    @classmethod
    def parse(cls, text: str, *, secrets: Mapping[str, str] | None = None,
              schemes: SchemeTable | None = None) -> StoreSpec:
        """Parse a store URL or a bare file path. ``schemes`` says which suffix names which
        connector and which schemes take a path (the installed registry's when not given)."""
        if not text:
            raise InvalidSpecError("empty store location")
        scheme, sep, rest = text.partition(":")
        if not sep or len(scheme) < 2 or not scheme.replace("-", "").isalnum():
            return cls._from_path(text, secrets, _table(schemes))
        scheme = scheme.lower()
        parts = urllib.parse.urlsplit(text)
        register_secret(_unquoted(parts.password))
        params = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        for key, value in params.items():
            if _looks_secret(key):
                register_secret(value)
        if not rest.startswith("//"):
            relative = urllib.parse.unquote(rest.split("?", 1)[0])
            return cls(scheme, relative or None, None, None, params, dict(secrets or {}))
        path = urllib.parse.unquote(parts.path) or None
        port = _port(parts, text)
        if parts.netloc and port is None and _table(schemes).takes_path(scheme):
            raise InvalidSpecError(
                f"{scheme} takes a file path: {scheme}:///abs/path or {scheme}:relative/path"
                f" (got {redact(text)!r})",
                hint="a file location has no user or password" if "@" in parts.netloc else None)
        user, merged = _userinfo(scheme, parts, params, dict(secrets or {}),
                                 *_table(schemes).credentials(scheme))
        return cls(scheme, path, parts.hostname, port, params, merged, user)

    def with_secrets(self, secrets: Mapping[str, str] | None) -> StoreSpec:
        """This spec with more secrets (an API caller's ``secrets=``), refusing one that
        differs from a secret the spec already holds (its URL's password), never replacing it."""
        merged = dict(self.secrets)
        for key, value in (secrets or {}).items():
            _same_secret(self.scheme, key, merged.get(key), value)
            merged[key] = value
        return dataclasses.replace(self, secrets=merged)

    @classmethod
    def _from_path(cls, text: str, secrets: Mapping[str, str] | None,
                   schemes: SchemeTable) -> StoreSpec:
        scheme = schemes.scheme_for_path(text)
        if scheme is not None:
            return cls(scheme, text, secrets=dict(secrets or {}))
        raise InvalidSpecError(
            f"cannot tell which store {text!r} is",
            hint="give a URL such as vektor:///path/memory.db, or a file ending in .vmig.jsonl, .mg"
            " or .jsonl",
        )

    def secret(self, key: str) -> str | None:
        """A secret from the explicit mapping, else from ``VEX_<SCHEME>_<KEY>`` (a ``-`` in the
        scheme as ``_``: ``VEX_LANGGRAPH_POSTGRES_PASSWORD``; the spelling with ``-``, which few
        shells can set, is read too)."""
        if key in self.secrets:
            return self.secrets[key]
        for name in (secret_variable(self.scheme, key), f"VEX_{self.scheme.upper()}_{key.upper()}"):
            if name in os.environ:
                return os.environ[name]
        return None

    def redacted(self) -> str:
        """The spec as text with no secret in it; safe for logs, sidecars and receipts."""
        if self.host:
            port = f":{self.port}" if self.port else ""
            host = f"[{self.host}]" if ":" in self.host else self.host
            user = f"{urllib.parse.quote(self.user, safe='')}@" if self.user else ""
            base = f"{self.scheme}://{user}{host}{port}{self.path or ''}"
        else:
            absolute = bool(self.path and self.path.startswith("/"))
            base = f"{self.scheme}:{'//' if absolute else ''}{self.path or ''}"
        safe = {k: ("***" if _looks_secret(k) else v) for k, v in self.params.items()}
        return base + (("?" + urllib.parse.urlencode(safe)) if safe else "")

    def __repr__(self) -> str:
        hidden = {k: "***" for k in self.secrets}
        return f"StoreSpec({self.redacted()!r}, secrets={hidden})"


_MAX_PORT = 65535

def _unquoted(part: str | None) -> str | None:
    return urllib.parse.unquote(part) if part else None


def _port(parts: urllib.parse.SplitResult, text: str) -> int | None:
    """The URL's port: out of range (0, 99999) or not a number is a UsageError naming it."""
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is None or 1 <= port <= _MAX_PORT:
        return port
    raw_password = "@" in text.partition("?")[0] and "@" not in parts.netloc
    raise InvalidSpecError(
        f"bad port in {redact(text)!r}: a port is a number from 1 to {_MAX_PORT}",
        hint="a password holding '/', '?' or '#' must be percent-encoded (%2F, %3F, %23),"
             " or given as a secret instead" if raw_password else None)


def _userinfo(scheme: str, parts: urllib.parse.SplitResult, params: dict[str, str],
              secrets: dict[str, str], meaning: str | None,
              secret_name: str | None) -> tuple[str | None, dict[str, str]]:
    """The user a URL names and the secrets with its password added; a URL's ``user:password@``
    is honoured where the store has users, and refused (naming the secret to pass) elsewhere."""
    if "@" not in parts.netloc:
        return None, secrets
    user, password = _unquoted(parts.username), _unquoted(parts.password)
    if meaning == "user":
        if user and params.get("user", user) != user:
            raise InvalidSpecError(
                f"{scheme}: the URL names the user {user!r} and ?user={params['user']!r}",
                hint="name the user once")
        if password is not None:
            _same_secret(scheme, "password", secrets.get("password"), password)
            secrets["password"] = password
        return user, secrets
    if meaning == "token" and user and password is not None:
        token = f"{user}:{password}"
        register_secret(token)
        _same_secret(scheme, "token", secrets.get("token"), token)
        secrets["token"] = token
        return None, secrets
    if password is None:
        register_secret(user)  # a lone "user" in such a URL is most likely a key or token
    token_store = meaning == "token"
    name = secret_name
    raise InvalidSpecError(
        f"{scheme} takes no {'user without a password' if token_store else 'user or password'}"
        f" in its URL ({redact(parts.geturl())!r}); nothing was connected",
        hint=f"give it as --source-secret {name}=... or --target-secret {name}=..., or set"
             f" {secret_variable(scheme, name)}" if name else "give the location without user@")


def secret_variable(scheme: str, key: str) -> str:
    """The environment variable a connector's secret is read from: ``VEX_<SCHEME>_<KEY>``, upper
    case, ``-`` as ``_``."""
    return f"VEX_{scheme.upper()}_{key.upper()}".replace("-", "_")


def _same_secret(scheme: str, key: str, held: str | None, given: str) -> None:
    """A secret given twice (in the URL and as a secret) must be the same: which one to use
    is not guessed, and neither is silently dropped."""
    if held is not None and held != given:
        raise InvalidSpecError(
            f"{scheme}: the {key} is given twice, in the URL and as a secret, and they differ",
            hint=f"give the {key} once: in the URL, or with --source-secret/--target-secret"
                 f" {key}=..., or {secret_variable(scheme, key)}")


def _looks_secret(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in ("key", "token", "secret", "password", "auth"))

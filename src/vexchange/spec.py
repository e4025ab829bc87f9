"""StoreSpec: where a store is, parsed from a URL or from a connector name plus options.

Forms accepted (each connector documents what the parts mean for it)::

    vektor:///abs/path/memory.db        vektor://relative/path.db is *not* accepted (ambiguous)
    vektor:memory.db                    a relative path
    memory.vmig.jsonl, out.jsonl        a bare path: the file connector chosen by its suffix
    qdrant://localhost:6333/memories    server connectors: host, port, path

Secrets never belong in the URL text. They come from ``secrets=`` (the CLI's ``--api-key``) or
from ``VEX_<CONNECTOR>_<KEY>`` environment variables, and every repr shows them as ``***``.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import InvalidSpecError

__all__ = ["StoreSpec"]

_SUFFIX_SCHEMES = ((".vmig.jsonl", "vmig"), (".jsonl", "vmig"), (".mg", "mg"), (".cartridge", "cartridge"),
                   (".vpack", "vectorpack"))


@dataclass(frozen=True)
class StoreSpec:
    scheme: str
    path: str | None = None
    host: str | None = None
    port: int | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, text: str, *, secrets: Mapping[str, str] | None = None) -> StoreSpec:
        """Parse a store URL or a bare file path."""
        if not text:
            raise InvalidSpecError("empty store location")
        scheme, sep, rest = text.partition(":")
        if not sep or len(scheme) < 2 or not scheme.replace("-", "").isalnum():
            return cls._from_path(text, secrets)
        parts = urllib.parse.urlsplit(text)
        params = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        if rest.startswith("//"):
            path = urllib.parse.unquote(parts.path) or None
            if parts.netloc and parts.port is None and scheme in _FILE_SCHEMES:
                raise InvalidSpecError(
                    f"{scheme} takes a file path: {scheme}:///abs/path or {scheme}:relative/path"
                    f" (got {text!r})"
                )
            return cls(scheme.lower(), path, parts.hostname, _port(parts), params, dict(secrets or {}))
        path = urllib.parse.unquote(rest.split("?", 1)[0])
        return cls(scheme.lower(), path or None, None, None, params, dict(secrets or {}))

    @classmethod
    def _from_path(cls, text: str, secrets: Mapping[str, str] | None) -> StoreSpec:
        lowered = text.lower()
        for suffix, scheme in _SUFFIX_SCHEMES:
            if lowered.endswith(suffix):
                return cls(scheme, text, secrets=dict(secrets or {}))
        raise InvalidSpecError(
            f"cannot tell which store {text!r} is",
            hint="give a URL such as vektor:///path/memory.db, or a file ending in .vmig.jsonl, .mg"
            " or .jsonl",
        )

    def secret(self, key: str) -> str | None:
        """A secret from the explicit mapping, else from VEX_<SCHEME>_<KEY>."""
        if key in self.secrets:
            return self.secrets[key]
        return os.environ.get(f"VEX_{self.scheme.upper()}_{key.upper()}")

    def redacted(self) -> str:
        """The spec as text with no secret in it; safe for logs, sidecars and receipts."""
        if self.host:
            port = f":{self.port}" if self.port else ""
            base = f"{self.scheme}://{self.host}{port}{self.path or ''}"
        else:
            base = f"{self.scheme}://{self.path or ''}" if self.path and self.path.startswith("/") else f"{self.scheme}:{self.path or ''}"
        safe = {k: ("***" if _looks_secret(k) else v) for k, v in self.params.items()}
        return base + (("?" + urllib.parse.urlencode(safe)) if safe else "")

    def __repr__(self) -> str:
        hidden = {k: "***" for k in self.secrets}
        return f"StoreSpec({self.redacted()!r}, secrets={hidden})"


_FILE_SCHEMES = frozenset({"vektor", "vmig", "jsonl", "cartridge", "vectorpack", "lancedb", "qdrant-edge",
                           "mg"})


def _port(parts: urllib.parse.SplitResult) -> int | None:
    try:
        return parts.port
    except ValueError:
        raise InvalidSpecError(f"bad port in {parts.geturl()!r}") from None


def _looks_secret(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in ("key", "token", "secret", "password", "auth"))

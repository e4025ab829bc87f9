"""Object storage for the file connectors: one helper that opens the file system an URL names
(``s3://bucket/prefix``, or any fsspec URL such as ``gs://``, ``az://``, ``memory://``).
docs/formats/object-storage.md.

Why a pyarrow file system: every Arrow file connector reads and writes through pyarrow, whose
S3 client is built in (no boto), uploads a stream in parts (multipart, a bounded buffer), and
takes its credentials from the standard AWS chain. Any other scheme goes through fsspec,
wrapped in pyarrow's ``FSSpecHandler``, so the connectors see one interface.

Credentials come only from the environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, ``AWS_ENDPOINT_URL``..., or fsspec's own config) or
from the connector's secrets (``--source-secret key=... secret=... token=...``, or
``VEX_<CONNECTOR>_KEY`` and so on). A URL holding ``user:password@`` is refused; nothing here
puts a credential into a location, a receipt, a log line or an error message.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import MissingDependencyError, UsageError, register_secret

__all__ = ["OPTIONS", "ObjectLocation", "is_url", "lance_storage", "open_url"]

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
_S3 = ("s3", "s3a")
OPTIONS = frozenset({"endpoint_url", "region"})
"""The URL options (``?endpoint_url=http://127.0.0.1:9000&region=eu-west-1``) a file connector
takes for object storage; neither is a secret."""
SECRETS = ("key", "secret", "token")
"""The secrets: the access key id, the secret access key, a session token."""


def is_url(text: str | None) -> bool:
    """Whether a connector's path is an URL (``s3://...``) rather than a local path; a
    Windows drive (``C:\\``) has one letter and no ``//``, so it is not taken for one."""
    return bool(text) and _URL.match(text or "") is not None


@dataclass(frozen=True)
class ObjectLocation:
    """An opened URL: the file system, the path inside it (``bucket/prefix``), and the URL to
    show (no credentials: they never were in it)."""

    fs: Any
    """A ``pyarrow.fs.FileSystem``."""
    path: str
    scheme: str
    flat: bool
    """True where there are no directories, only keys (S3 and the like): a "directory" is a
    prefix, made by writing under it and gone with its last object."""

    def url(self, path: str) -> str:
        return f"{self.scheme}://{path.lstrip('/')}"


def open_url(url: str, *, secret: Callable[[str], str | None],
             params: Mapping[str, str] | None = None) -> ObjectLocation:
    """Open the file system ``url`` names. ``secret`` answers the connector's secrets by name
    (``StoreSpec.secret``); ``params`` are the location's URL options (``endpoint_url``,
    ``region``)."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if "@" in parts.netloc:
        raise UsageError(f"an object-storage location takes no credentials in its URL ({scheme}://...@...)",
                         hint="give them as --source-secret/--target-secret key=... secret=..., or in"
                              " AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if not parts.netloc:
        raise UsageError(f"{scheme}:// names no bucket (got {url!r})", hint=f"{scheme}://bucket/prefix")
    options = dict(params or {})
    if scheme in _S3:
        return _s3(parts, secret, options)
    return _fsspec(url, scheme)


@dataclass(frozen=True)
class _S3Settings:
    """The S3 settings of a location, from its secrets, options and the environment."""

    key: str | None
    secret: str | None
    token: str | None
    endpoint: str | None
    region: str | None


def _s3_settings(secret: Callable[[str], str | None], options: Mapping[str, str]) -> _S3Settings:
    key, secret_key, token = (secret(name) for name in SECRETS)
    if (key is None) != (secret_key is None):
        raise UsageError("object storage: give both the key and the secret, or neither",
                         hint="--target-secret key=... --target-secret secret=... (or the AWS_* variables)")
    for value in (key, secret_key, token):
        if value:
            register_secret(value)
    endpoint = options.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL_S3") \
        or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint and "://" not in endpoint:
        endpoint = f"https://{endpoint}"
    region = options.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return _S3Settings(key, secret_key, token if key else None, endpoint or None, region or None)


def lance_storage(url: str, *, secret: Callable[[str], str | None],
                  params: Mapping[str, str] | None = None) -> tuple[ObjectLocation, dict[str, str]]:
    """A Lance dataset in S3: the opened location (to look at its keys) and pylance's
    ``storage_options`` from the same secrets, options and variables as every other S3
    location (docs/formats/lance.md). The options hold secrets: they go to pylance only."""
    where = open_url(url, secret=secret, params=params)
    if where.scheme not in _S3:
        raise UsageError(f"lance takes s3:// object storage, not {where.scheme}://",
                         hint="lance:s3://bucket/prefix/name.lance (or a local path)")
    settings = _s3_settings(secret, dict(params or {}))
    options: dict[str, str] = {}
    if settings.key and settings.secret:
        options.update(access_key_id=settings.key, secret_access_key=settings.secret)
        if settings.token:
            options["session_token"] = settings.token
    if settings.endpoint:
        options["endpoint"] = settings.endpoint
        if settings.endpoint.startswith("http://"):
            options["allow_http"] = "true"
    if settings.region:
        options["region"] = settings.region
    return where, options


def _s3(parts: urllib.parse.SplitResult, secret: Callable[[str], str | None],
        options: dict[str, str]) -> ObjectLocation:
    import pyarrow.fs as pafs

    if not parts.path.strip("/"):  # the output's .partial and .staging are siblings of its prefix
        raise UsageError(f"s3://{parts.netloc} names a bucket, not a prefix in it",
                         hint=f"s3://{parts.netloc}/PREFIX")
    kwargs: dict[str, Any] = {"allow_bucket_creation": False, "allow_bucket_deletion": False}
    settings = _s3_settings(secret, options)
    if settings.key is not None and settings.secret is not None:
        kwargs.update(access_key=settings.key, secret_key=settings.secret)
        if settings.token:
            kwargs["session_token"] = settings.token
    if settings.endpoint:
        split = urllib.parse.urlsplit(settings.endpoint)
        kwargs["endpoint_override"] = split.netloc
        kwargs["scheme"] = split.scheme or "https"
    if settings.region:
        kwargs["region"] = settings.region
    try:
        fs = pafs.S3FileSystem(**kwargs)
    except (OSError, ValueError, TypeError) as err:
        raise UsageError(f"cannot open s3://{parts.netloc}: {err}") from None
    path = f"{parts.netloc}{parts.path}".rstrip("/")
    return ObjectLocation(fs, path, parts.scheme.lower(), flat=True)


def _fsspec(url: str, scheme: str) -> ObjectLocation:
    try:
        import fsspec.core  # type: ignore[import-untyped]
    except ImportError:
        raise MissingDependencyError(f"{scheme}://", "fsspec", "objectstore", kind="file system") from None
    import pyarrow.fs as pafs

    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as err:
        raise UsageError(f"cannot open {scheme}:// locations: {err}",
                         hint="install the fsspec implementation for that scheme (s3fs, gcsfs, adlfs...)"
                         ) from None
    flat = scheme not in ("memory", "file", "local")
    return ObjectLocation(pafs.PyFileSystem(pafs.FSSpecHandler(fs)), str(path).rstrip("/") or str(path),
                          scheme, flat=flat)

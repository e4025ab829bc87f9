"""The repository's files (docs/backup.md, "Layout")::

    vexbackup.json                     plaintext header: format, version, repository id, cipher,
                                       Argon2id parameters and salt, a key check
    snapshots/000001/manifest.vxb      encrypted manifest: parent, time, counts, digest, chunks
    snapshots/000001/data-000000.vxb   encrypted, compressed .vmig.jsonl lines and tombstones
    snapshots/000001/index-000000.vxb  encrypted, compressed digest index of every live record

Nothing plaintext names a record, an id or a namespace: the header holds only what is needed to
derive the key. Each encrypted file's associated data is ``vexbackup/1/<repository id>/<snapshot>/
<kind>/<position>``, so a chunk swapped with another, moved to another snapshot or replayed from
an older one fails to open; the manifest lists each chunk's SHA-256 and count, so one removed or
added is found too. A snapshot is written under ``snapshots/.NNNNNN.partial`` and renamed when its
manifest is written: a push that stops leaves no snapshot that looks complete.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .._atomic import atomic_write_bytes
from .._time import format_timestamp, utc_now_ms
from ..errors import CodecError, IntegrityError, UsageError
from ._crypto import DEFAULT_KDF, Kdf, Sealer

__all__ = ["CHUNK_BYTES", "ChunkWriter", "Manifest", "Repository", "create_header"]

HEADER = "vexbackup.json"
FORMAT = "vexchange-backup"
VERSION = 1
CHUNK_BYTES = 8 << 20
"""Plaintext bytes per chunk (before compression): what is held in memory at once."""
_SNAPSHOT = re.compile(r"^\d{6}$")
_KEY_CHECK = b"vexchange-backup key check"


def _header_ad(header: dict[str, Any]) -> bytes:
    """The header's fields bound into the key check: a header whose KDF parameters, salt or id
    were altered opens with no passphrase."""
    body = {k: v for k, v in header.items() if k != "key_check"}
    return b"vexbackup/1/header/" + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def create_header(root: Path, material: bytes, kdf: Kdf = DEFAULT_KDF) -> None:
    """Write a new repository's header (the directory must hold none)."""
    kdf.check()
    salt = os.urandom(16)
    header: dict[str, Any] = {"format": FORMAT, "version": VERSION, "repository_id": os.urandom(16).hex(),
                              "cipher": "AES-256-GCM", "compression": "zlib", "kdf": kdf.to_json(salt)}
    sealer = Sealer(material, kdf, salt)
    header["key_check"] = sealer.seal(_KEY_CHECK, _header_ad(header)).hex()
    atomic_write_bytes(root / HEADER, orjson.dumps(header, option=orjson.OPT_INDENT_2) + b"\n")


@dataclass
class Manifest:
    """One snapshot: its chunks and what they hold (the plaintext of ``manifest.vxb``)."""

    snapshot: int
    parent: int | None
    parent_manifest_sha256: str | None
    created_at: str
    records: int
    digest: str
    """The sum of the live records' canonical digests (``_canonical.NamespaceDigest``)."""
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    source: dict[str, Any] = field(default_factory=dict)
    message: str | None = None
    data: list[dict[str, Any]] = field(default_factory=list)
    index: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> bytes:
        return orjson.dumps(self.__dict__, option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> Manifest:
        try:
            return cls(**orjson.loads(raw))
        except (TypeError, ValueError) as err:
            raise IntegrityError(f"{where} is not a snapshot manifest ({err})") from None


class Repository:
    """An opened repository: its header checked against the key, its snapshots listed."""

    def __init__(self, root: Path, material: bytes) -> None:
        self.root = root
        path = root / HEADER
        try:
            header = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            raise UsageError(f"{root} holds no backup repository (no {HEADER})",
                             hint="push to it first, or check the location") from None
        except (OSError, ValueError) as err:
            raise IntegrityError(f"the backup header {path} cannot be read ({err})") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise UsageError(f"{path} is not a vexchange backup header")
        if header.get("version") != VERSION:
            raise UsageError(f"the backup repository is format version {header.get('version')!r};"
                             f" this vexchange reads version {VERSION}", hint="upgrade vexchange")
        kdf, salt = Kdf.from_json(header.get("kdf"))
        self.repository_id = str(header.get("repository_id"))
        self.sealer = Sealer(material, kdf, salt)
        try:
            check = bytes.fromhex(str(header.get("key_check")))
            ok = self.sealer.open(check, _header_ad(header), "the key check") == _KEY_CHECK
        except (ValueError, IntegrityError):
            ok = False
        if not ok:
            raise UsageError("the passphrase or key file is not this backup repository's"
                             " (or its header was altered)",
                             hint="give the passphrase or key file the repository was made with")

    def ad(self, snapshot: int, kind: str, position: int) -> bytes:
        return f"vexbackup/1/{self.repository_id}/{snapshot:06d}/{kind}/{position:06d}".encode()

    def snapshots(self) -> list[int]:
        """Complete snapshots (those renamed into place), oldest first."""
        base = self.root / "snapshots"
        if not base.is_dir():
            return []
        return sorted(int(p.name) for p in base.iterdir() if _SNAPSHOT.match(p.name)
                      and (p / "manifest.vxb").is_file())

    def directory(self, snapshot: int) -> Path:
        return self.root / "snapshots" / f"{snapshot:06d}"

    def manifest(self, snapshot: int) -> tuple[Manifest, str]:
        """A snapshot's manifest and the SHA-256 of its encrypted file (its child names it)."""
        path = self.directory(snapshot) / "manifest.vxb"
        sealed = _read(path)
        manifest = Manifest.from_json(
            self.sealer.open(sealed, self.ad(snapshot, "manifest", 0), str(path)), str(path))
        if manifest.snapshot != snapshot:
            raise IntegrityError(f"{path} describes snapshot {manifest.snapshot}, not {snapshot}")
        return manifest, hashlib.sha256(sealed).hexdigest()

    def check_chain(self, snapshot: int) -> None:
        """Each manifest from ``snapshot`` back to the first names its parent's exact file."""
        manifest, _ = self.manifest(snapshot)
        while manifest.parent is not None:
            parent, sha = self.manifest(manifest.parent)
            if sha != manifest.parent_manifest_sha256:
                raise IntegrityError(f"snapshot {manifest.snapshot}'s parent {parent.snapshot} is not"
                                     " the snapshot it was made from (its manifest was replaced)")
            manifest = parent

    def chunks(self, manifest: Manifest, kind: str) -> Iterator[tuple[int, bytes]]:
        """The plaintext of each chunk of one kind ("data", "index"), in order, each checked
        against the manifest (its hash) and its place (its associated data)."""
        for position, entry in enumerate(getattr(manifest, kind)):
            path = self.directory(manifest.snapshot) / f"{kind}-{position:06d}.vxb"
            sealed = _read(path)
            if hashlib.sha256(sealed).hexdigest() != entry["sha256"]:
                raise IntegrityError(f"{path} is not the chunk its snapshot's manifest lists"
                                     " (changed, swapped or replaced)")
            plain = self.sealer.open(sealed, self.ad(manifest.snapshot, kind, position), str(path))
            try:
                yield position, zlib.decompress(plain)
            except zlib.error as err:
                raise IntegrityError(f"{path} does not decompress ({err})") from None

    def start_snapshot(self) -> tuple[int, Path]:
        """The next snapshot's number and its partial directory (an older partial one, left by a
        push that stopped, is removed first)."""
        number = (self.snapshots() or [0])[-1] + 1
        partial = self.root / "snapshots" / f".{number:06d}.partial"
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        return number, partial

    def finish_snapshot(self, partial: Path, manifest: Manifest) -> None:
        sealed = self.sealer.seal(manifest.to_json(), self.ad(manifest.snapshot, "manifest", 0))
        atomic_write_bytes(partial / "manifest.vxb", sealed)
        try:
            os.replace(partial, self.directory(manifest.snapshot))
        except OSError as err:
            raise CodecError(f"cannot finish snapshot {manifest.snapshot} in {self.root}:"
                             f" {err.strerror}") from None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise IntegrityError(f"{path} is missing from the backup repository") from None
    except OSError as err:
        raise IntegrityError(f"cannot read {path}: {err.strerror}") from None


class ChunkWriter:
    """Lines into compressed, encrypted chunks of about ``CHUNK_BYTES``, listed for the manifest."""

    def __init__(self, repo: Repository, directory: Path, snapshot: int, kind: str,
                 chunk_bytes: int = CHUNK_BYTES) -> None:
        self.repo, self.directory, self.snapshot, self.kind = repo, directory, snapshot, kind
        self.chunk_bytes = chunk_bytes
        self.entries: list[dict[str, Any]] = []
        self._lines: list[bytes] = []
        self._size = 0
        self._counts: dict[str, int] = {}

    def add(self, line: bytes, counted: str = "lines") -> None:
        self._lines.append(line)
        self._size += len(line)
        self._counts[counted] = self._counts.get(counted, 0) + 1
        if self._size >= self.chunk_bytes:
            self.flush()

    def flush(self) -> None:
        if not self._lines:
            return
        position = len(self.entries)
        plain = b"".join(self._lines)
        associated = self.repo.ad(self.snapshot, self.kind, position)
        sealed = self.repo.sealer.seal(zlib.compress(plain, 6), associated)
        path = self.directory / f"{self.kind}-{position:06d}.vxb"
        try:
            path.write_bytes(sealed)
        except OSError as err:
            raise CodecError(f"cannot write {path}: {err.strerror}") from None
        self.entries.append({"sha256": hashlib.sha256(sealed).hexdigest(), "bytes": len(plain),
                             **self._counts})
        self._lines, self._size, self._counts = [], 0, {}


def now() -> str:
    return format_timestamp(utc_now_ms())

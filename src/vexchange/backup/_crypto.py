"""The backup key and the sealing of every encrypted file (docs/backup.md, "Encryption").

The key comes from what the user holds (a passphrase or a key file) and the repository's salt,
through Argon2id: nothing machine-bound (no machine id, host name or user name) takes part, so
a backup opens on any machine that has the passphrase. Vex's sync mixed in /etc/machine-id,
which is why its backups could not be restored elsewhere.

Every encrypted file is ``MAGIC || nonce (12 bytes) || AES-256-GCM(ciphertext || tag)``, with
associated data naming the repository, the snapshot, the kind of file and its position, so a
file moved, swapped or replayed elsewhere fails to open.

``cryptography`` is imported here only (the ``crypto`` extra), so ``vex --help`` needs none of it.
"""

from __future__ import annotations

import base64
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import IntegrityError, MissingDependencyError, UsageError, register_secret

__all__ = ["DEFAULT_KDF", "PASSPHRASE_ENV", "Kdf", "Sealer", "key_material"]

PASSPHRASE_ENV = "VEX_BACKUP_PASSPHRASE"
"""The environment variable a passphrase is read from when no file is given."""

MAGIC = b"VXB1"
_NONCE = 12
_KEY_FILE_MIN = 16
_KEY_FILE_MAX = 1 << 20
_MEMORY_FLOOR_KIB = 8 * 1024
_MEMORY_CEILING_KIB = 4 * 1024 * 1024
"""Refused above this when a header asks for it: a hostile header could otherwise make opening
a repository take all the memory of the machine."""


@dataclass(frozen=True)
class Kdf:
    """Argon2id's parameters, as the plaintext header records them (RFC 9106's second
    recommended setting by default: 64 MiB, 3 passes, 4 lanes)."""

    memory_kib: int = 64 * 1024
    iterations: int = 3
    lanes: int = 4

    def check(self) -> None:
        if not _MEMORY_FLOOR_KIB <= self.memory_kib <= _MEMORY_CEILING_KIB:
            raise UsageError(f"Argon2id memory of {self.memory_kib} KiB is outside"
                             f" {_MEMORY_FLOOR_KIB} to {_MEMORY_CEILING_KIB} KiB")
        if not 1 <= self.iterations <= 64 or not 1 <= self.lanes <= 64:
            raise UsageError("Argon2id iterations and lanes must each be from 1 to 64")

    def to_json(self, salt: bytes) -> dict[str, Any]:
        return {"name": "argon2id", "version": "1.3", "memory_kib": self.memory_kib,
                "iterations": self.iterations, "lanes": self.lanes, "length": 32,
                "salt": base64.b64encode(salt).decode()}

    @classmethod
    def from_json(cls, data: Any) -> tuple[Kdf, bytes]:
        try:
            if data["name"] != "argon2id" or data["length"] != 32:
                raise UsageError(f"unknown key derivation {data['name']!r} in the backup header")
            kdf = cls(int(data["memory_kib"]), int(data["iterations"]), int(data["lanes"]))
            salt = base64.b64decode(data["salt"], validate=True)
        except (KeyError, TypeError, ValueError) as err:
            raise IntegrityError(f"the backup header's kdf entry is malformed ({err})") from None
        kdf.check()
        if len(salt) < 16:
            raise IntegrityError("the backup header's salt is shorter than 16 bytes")
        return kdf, salt


DEFAULT_KDF = Kdf()


def key_material(*, passphrase: str | None = None, passphrase_file: str | Path | None = None,
                 key_file: str | Path | None = None) -> bytes:
    """The secret bytes the key is derived from: exactly one of a passphrase (given to the
    Python function, else read from ``VEX_BACKUP_PASSPHRASE``), a passphrase file (its text,
    one trailing newline removed) or a key file (its bytes as they are). Each value is
    registered as a secret, so no error message can show it."""
    given = [name for name, value in (("passphrase", passphrase), ("passphrase_file", passphrase_file),
                                      ("key_file", key_file)) if value is not None]
    if len(given) > 1:
        raise UsageError(f"give one of {' and '.join(given)}, not both",
                         hint="a backup repository has one key: a passphrase or a key file")
    if key_file is not None:
        data = _read_secret_file(Path(key_file), "key file")
        if len(data) < _KEY_FILE_MIN:
            raise UsageError(f"the key file {key_file} holds {len(data)} bytes; a key file needs at"
                             f" least {_KEY_FILE_MIN}",
                             hint="make one with: head -c 32 /dev/urandom > backup.key")
        _register_bytes(data)
        return data
    if passphrase_file is not None:
        raw = _read_secret_file(Path(passphrase_file), "passphrase file")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"the passphrase file {passphrase_file} is not UTF-8 text",
                             hint="for a binary key use --key-file") from None
        passphrase = text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
        source = f"the passphrase file {passphrase_file}"
    elif passphrase is None:
        passphrase = os.environ.get(PASSPHRASE_ENV)
        source = f"${PASSPHRASE_ENV}"
        if passphrase is None:
            raise UsageError("no passphrase or key for the backup repository",
                             hint=f"set {PASSPHRASE_ENV}, or give --passphrase-file or --key-file")
    else:
        source = "the passphrase"
    if not passphrase:
        raise UsageError(f"{source} is empty")
    register_secret(passphrase)
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def _read_secret_file(path: Path, what: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > _KEY_FILE_MAX:
            raise UsageError(f"the {what} {path} is {size} bytes; at most {_KEY_FILE_MAX} are read")
        return path.read_bytes()
    except IsADirectoryError:
        raise UsageError(f"the {what} {path} is a directory") from None
    except OSError as err:
        raise UsageError(f"cannot read the {what} {path}: {err.strerror or err}") from None


def _register_bytes(data: bytes) -> None:
    """A key file's text, when it is text, masked in messages too (a base64 key, say)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    register_secret(text)
    register_secret(text.strip())


def _aesgcm() -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as err:
        raise MissingDependencyError("backup", err.name or "cryptography", "crypto",
                                     kind="command") from None
    return AESGCM


class Sealer:
    """AES-256-GCM with the key derived from the user's secret and the repository's salt."""

    def __init__(self, material: bytes, kdf: Kdf, salt: bytes) -> None:
        aesgcm = _aesgcm()
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

        key = Argon2id(salt=salt, length=32, iterations=kdf.iterations, lanes=kdf.lanes,
                       memory_cost=kdf.memory_kib).derive(material)
        self._aead = aesgcm(key)

    def seal(self, plaintext: bytes, associated: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return MAGIC + nonce + bytes(self._aead.encrypt(nonce, plaintext, associated))

    def open(self, sealed: bytes, associated: bytes, where: str) -> bytes:
        """The plaintext, or IntegrityError naming the file: its bytes were changed, or it was
        moved from another place (its associated data differs), or the key is not its key."""
        from cryptography.exceptions import InvalidTag

        if len(sealed) < len(MAGIC) + _NONCE + 16 or not sealed.startswith(MAGIC):
            raise IntegrityError(f"{where} is not an encrypted backup file (truncated or replaced)")
        nonce = sealed[len(MAGIC):len(MAGIC) + _NONCE]
        try:
            return bytes(self._aead.decrypt(nonce, sealed[len(MAGIC) + _NONCE:], associated))
        except InvalidTag:
            raise IntegrityError(f"{where} does not authenticate: it was changed, or moved from"
                                 " another snapshot or position",
                                 hint="restore an earlier snapshot with --snapshot, or the"
                                      " repository from another copy") from None

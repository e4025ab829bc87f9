"""Keys of a Level 3 store: a master key, per-store salt, per-user data keys (docs/formats/oms-level3.md §3).

Key-encryption keys come from the master key by HKDF-SHA256 with the store's random 32-byte
salt and an ``info`` string naming their purpose. Every key that touches data is random and kept
only wrapped (AES-256-GCM) under one of them: the store's blind, word and audit keys under the
store KEK, each user's *data key* under that user's KEK. So rotating the master key re-wraps
keys without touching a payload, a token or the audit chain, and erasing a user destroys one
wrapped key, after which no master key can decrypt that user's grains (crypto-erasure).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ...errors import UsageError, register_secret
from .errors import WrongKeyError

__all__ = ["INFO", "KEY_BYTES", "MasterKey", "load_master_key", "new_data_key", "new_key_file", "unwrap",
           "wrap"]

KEY_BYTES = 32
SALT_BYTES = 32
KEY_ID_BYTES = 8
# HKDF info strings (normative, §3.2); a user's id follows USER_KEK after one 0x00 byte
INFO = {
    "check": b"vexchange/oms-l3/v1/key-check",
    "store_kek": b"vexchange/oms-l3/v1/store-kek",
    "user_kek": b"vexchange/oms-l3/v1/user-kek",
    "file": b"vexchange/oms-l3/v1/mg-file",
}
WRAP_AAD = {"store": b"vexchange/oms-l3/v1/wrapped-store-keys",
            "user": b"vexchange/oms-l3/v1/wrapped-user-key"}


def hkdf(ikm: bytes, salt: bytes, info: bytes, length: int = KEY_BYTES) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


class MasterKey:
    """A 32-byte master key and what it derives for one store salt."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise UsageError(f"a master key is {KEY_BYTES} bytes, not {len(key)}")
        self._key = key

    def __repr__(self) -> str:
        return "MasterKey(<secret>)"

    def derive(self, salt: bytes, purpose: str) -> bytes:
        return hkdf(self._key, salt, INFO[purpose])

    def check_value(self, salt: bytes) -> bytes:
        """What a store keeps to tell a wrong master key from a tampered envelope (§3.3)."""
        return hmac.new(self.derive(salt, "check"), b"key-check", hashlib.sha256).digest()

    def verify(self, salt: bytes, expected: bytes, what: str) -> None:
        if not hmac.compare_digest(self.check_value(salt), expected):
            raise WrongKeyError(f"the master key does not open {what}")

    def kek(self, salt: bytes, user_token: bytes | None = None) -> bytes:
        """The store's key-encryption key, or (``user_token``) the one of a user's data key:
        info = USER_KEK || 0x00 || the user's 16-byte blind token (stable across rotation)."""
        if user_token is None:
            return hkdf(self._key, salt, INFO["store_kek"])
        return hkdf(self._key, salt, INFO["user_kek"] + b"\x00" + user_token)


def wrap(kek: bytes, secret: bytes, aad: bytes) -> bytes:
    """nonce(12) || AES-256-GCM(kek, secret, aad) || tag(16)."""
    nonce = os.urandom(12)
    return nonce + AESGCM(kek).encrypt(nonce, secret, aad)


def unwrap(kek: bytes, wrapped: bytes, aad: bytes) -> bytes:
    try:
        return AESGCM(kek).decrypt(wrapped[:12], wrapped[12:], aad)
    except InvalidTag:
        raise WrongKeyError("a wrapped key does not open under this master key") from None


def new_data_key() -> tuple[bytes, bytes]:
    """(key id, data key), both random."""
    return os.urandom(KEY_ID_BYTES), os.urandom(KEY_BYTES)


def _parse_key(text: bytes, where: str) -> bytes:
    stripped = text.strip()
    if len(text) == KEY_BYTES and len(stripped) != 2 * KEY_BYTES:
        return text
    try:
        key = binascii.unhexlify(stripped)
    except (binascii.Error, ValueError):
        raise UsageError(f"{where}: a master key is 32 raw bytes or 64 hex digits") from None
    if len(key) != KEY_BYTES:
        raise UsageError(f"{where}: a master key is 32 raw bytes or 64 hex digits")
    return key


def load_master_key(key_file: str | Path | None = None, *, env: str = "VEX_OMS_KEY") -> MasterKey:
    """The master key from ``key_file`` (32 raw bytes or 64 hex digits), else from the ``env``
    variable (64 hex digits). The hex form is registered as a secret so no message shows it."""
    if key_file is not None:
        path = Path(key_file)
        if not path.is_file():
            raise UsageError(f"no such key file: {path}")
        key = _parse_key(path.read_bytes(), str(path))
    elif os.environ.get(env):
        key = _parse_key(os.environ[env].encode(), env)
    else:
        raise UsageError(f"no master key: give --key-file or set {env}")
    register_secret(key.hex())
    return MasterKey(key)


def new_key_file(path: str | Path) -> MasterKey:
    """Create ``path`` (mode 0600, never overwriting) with a new random key in hex."""
    path = Path(path)
    key = os.urandom(KEY_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} exists: a key file is never overwritten") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.hex().encode() + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    register_secret(key.hex())
    return MasterKey(key)

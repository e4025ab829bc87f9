"""The Level 3 grain envelope (docs/formats/oms-level3.md §2): one grain blob sealed by AES-256-GCM.

::

    off  len  field
    0    4    magic  "VXL3"
    4    1    envelope version 0x01
    5    1    algorithm 0x01 = AES-256-GCM
    6    8    key id of the data key
    14   12   nonce (random)
    26   32   content address of the plaintext grain (raw SHA-256)
    58   9    the grain's 9-byte header, in clear
    67   n    AES-256-GCM ciphertext of the payload (blob[9:])
    67+n 16   GCM tag

The AAD is bytes 0-66, so key id, nonce, address and header are all authenticated: an envelope
moved under another address, or with its header edited, fails to open. The header stays clear
so the policy engine reads the sensitivity bits without a key; the address stays the plaintext
grain's, so after decryption the blob is checked against it (ERR_INTEGRITY otherwise).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import EnvelopeSwapError, TamperedError

__all__ = ["MAGIC", "PREFIX", "Envelope", "open_envelope", "parse", "seal"]

MAGIC = b"VXL3"
VERSION = 0x01
ALG_AES256GCM = 0x01
PREFIX = 67  # bytes before the ciphertext (= AAD length)
TAG = 16


class Envelope(NamedTuple):
    key_id: bytes
    nonce: bytes
    address: str
    header: bytes


def _new_nonce() -> bytes:
    return os.urandom(12)


def seal(blob: bytes, data_key: bytes, key_id: bytes, *, address: str | None = None) -> bytes:
    """The envelope of ``blob`` under ``data_key``."""
    digest = hashlib.sha256(blob).digest() if address is None else bytes.fromhex(address)
    prefix = MAGIC + bytes((VERSION, ALG_AES256GCM)) + key_id + _new_nonce() + digest + blob[:9]
    return prefix + AESGCM(data_key).encrypt(prefix[14:26], blob[9:], prefix)


def parse(envelope: bytes) -> Envelope:
    """The clear fields of an envelope; ERR_INTEGRITY when it is not one this version reads."""
    if len(envelope) < PREFIX + TAG or envelope[:4] != MAGIC:
        raise TamperedError("not a Level 3 envelope (magic or length)")
    if envelope[4] != VERSION or envelope[5] != ALG_AES256GCM:
        raise TamperedError(f"envelope version {envelope[4]} / algorithm {envelope[5]} is not supported")
    return Envelope(envelope[6:14], envelope[14:26], envelope[26:58].hex(), envelope[58:67])


def open_envelope(envelope: bytes, data_key: bytes, *, address: str) -> bytes:
    """The plaintext blob, checked three ways: the envelope names ``address`` (else
    EnvelopeSwapError), GCM authenticates it (else TamperedError), and the blob hashes to
    ``address`` (else TamperedError)."""
    clear = parse(envelope)
    if not hmac.compare_digest(clear.address, address):
        raise EnvelopeSwapError(f"the envelope stored under {address} holds grain {clear.address}")
    try:
        payload = AESGCM(data_key).decrypt(clear.nonce, envelope[PREFIX:], envelope[:PREFIX])
    except InvalidTag:
        raise TamperedError(f"the envelope of {address} fails authentication (edited or wrong key)") from None
    blob = clear.header + payload
    if not hmac.compare_digest(hashlib.sha256(blob).hexdigest(), address):
        raise TamperedError(f"the decrypted grain does not hash to {address}")
    return blob


ATTACHMENT_MAGIC = b"VXA3"


def seal_attachment(data: bytes, data_key: bytes, key_id: bytes, *, address: str, name: str) -> bytes:
    """An attachment of a grain (a vector it references), sealed under the grain's data key:
    magic "VXA3", version, algorithm, key id (8), nonce (12), grain address (32), u16 name
    length, name (UTF-8), then ciphertext and tag; the AAD is everything before the ciphertext."""
    label = name.encode("utf-8", "surrogatepass")
    prefix = (ATTACHMENT_MAGIC + bytes((VERSION, ALG_AES256GCM)) + key_id + _new_nonce()
              + bytes.fromhex(address) + len(label).to_bytes(2, "big") + label)
    return prefix + AESGCM(data_key).encrypt(prefix[14:26], data, prefix)


def open_attachment(sealed: bytes, data_key: bytes, *, address: str) -> tuple[str, bytes]:
    """(name, data) of an attachment of the grain at ``address``."""
    if len(sealed) < 60 + TAG or sealed[:4] != ATTACHMENT_MAGIC:
        raise TamperedError("not a Level 3 attachment")
    if not hmac.compare_digest(sealed[26:58].hex(), address):
        raise EnvelopeSwapError(f"an attachment stored with {address} belongs to {sealed[26:58].hex()}")
    end = 60 + int.from_bytes(sealed[58:60], "big")
    try:
        data = AESGCM(data_key).decrypt(sealed[14:26], sealed[end:], sealed[:end])
    except InvalidTag:
        raise TamperedError(f"an attachment of {address} fails authentication") from None
    return sealed[60:end].decode("utf-8", "surrogatepass"), data

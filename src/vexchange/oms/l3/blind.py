"""Blind-index tokens (docs/formats/oms-level3.md §4): equality search without decrypting.

A token is HMAC-SHA256(blind key, field || 0x00 || value)[:16]: the field name scopes it, so
the same string as a subject and as an object gives two unrelated tokens. Strings are NFC
first; a non-string value (a Belief's map object) is its canonical MessagePack bytes, prefixed
0x01 so it never collides with a string. FTS words use their own key, 8-byte tokens in hex.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterator
from typing import Any

from ..canonical import encode, nfc

__all__ = ["BLIND_FIELDS", "TOKEN_BYTES", "WORD_TOKEN_BYTES", "BlindIndex"]

TOKEN_BYTES = 16
WORD_TOKEN_BYTES = 8
BLIND_FIELDS = ("subject", "relation", "object", "namespace", "user_id", "type", "tag",
                "processing_basis")
_WORD = re.compile(r"\w+")
_NOT_TEXT = frozenset({"type", "namespace", "user_id", "author_did", "derived_from", "processing_basis",
                       "subject_did", "grantee_did", "prior_consent"})


def _value_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return nfc(value).encode("utf-8", "surrogatepass")
    return b"\x01" + encode(value)


class BlindIndex:
    """Tokens under one store's blind key and word key."""

    def __init__(self, blind_key: bytes, word_key: bytes) -> None:
        self._blind = blind_key
        self._words = word_key

    def token(self, field: str, value: Any) -> bytes:
        message = field.encode() + b"\x00" + _value_bytes(value)
        return hmac.digest(self._blind, message, "sha256")[:TOKEN_BYTES]

    def grain_tokens(self, fields: dict[str, Any]) -> Iterator[tuple[str, bytes]]:
        """(field, token) for every blind-indexed value of a grain (tags one by one)."""
        for name in BLIND_FIELDS:
            if name == "tag":
                for tag in fields.get("structural_tags") or []:
                    yield "tag", self.token("tag", tag)
            elif fields.get(name) is not None:
                yield name, self.token(name, fields[name])

    def word_token(self, word: str) -> str:
        digest = hmac.digest(self._words, word.encode("utf-8", "surrogatepass"), "sha256")
        return digest[:WORD_TOKEN_BYTES].hex()

    def words(self, text: str) -> list[str]:
        return [self.word_token(w) for w in _WORD.findall(nfc(text).casefold())]

    def document(self, fields: dict[str, Any]) -> str:
        """The FTS document of a grain: the word tokens of its text, in order."""
        return " ".join(self.words(" ".join(_texts(fields))))


def _texts(value: Any, key: str = "") -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            if k not in _NOT_TEXT:
                yield from _texts(v, k)
    elif isinstance(value, list) and key != "embedding":
        for item in value:
            yield from _texts(item, key)

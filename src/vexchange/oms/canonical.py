"""Canonical MessagePack for OMS grains (v1.3 §4): a strict encoder and a strict decoder.

Encoding: map keys NFC-normalised and sorted by their UTF-8 bytes at every depth, null map
values omitted, integers in their smallest form, floats always float64, strings NFC, arrays
in order, bytes as bin. NaN and infinity are refused (ERR_FLOAT_INVALID).

Decoding refuses what a canonical writer never produces and what a hostile blob might hold:
duplicate keys, strings starting with a BOM, NaN/infinity, extension types, non-string map
keys, trailing bytes, declared lengths beyond the data, nesting deeper than the limit
(ERR_CORRUPT unless the spec names another code). It is written by hand, without a msgpack
library, so that every rule is checked where it applies and nothing is allocated from a
declared length before the bytes are there.
"""

from __future__ import annotations

import math
import struct
import unicodedata
from typing import Any

from .errors import error_class

__all__ = ["MAX_DEPTH", "decode", "decode_prefix", "encode", "nfc"]

MAX_DEPTH = 32
"""Nesting limit of the extended profile (§4.10); deeper payloads are ERR_CORRUPT."""

_BOM = "\ufeff"
_BOM_BYTES = _BOM.encode()


def nfc(text: str) -> str:
    return text if text.isascii() else unicodedata.normalize("NFC", text)


def encode(value: Any) -> bytes:
    """The canonical bytes of a value. A string that is not valid Unicode (a lone surrogate,
    which Python strings may hold but UTF-8 cannot) is ERR_CORRUPT, like invalid UTF-8 on read
    (§4.4), never a bare UnicodeEncodeError."""
    out = bytearray()
    try:
        _encode(value, out, 0)
    except UnicodeEncodeError as err:
        raise error_class("ERR_CORRUPT")(
            f"a string holds {err.object[err.start:err.end]!r}, which is not valid Unicode"
            " (a lone surrogate) and has no UTF-8 form (§4.4)") from None
    return bytes(out)


def _encode(value: Any, out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise error_class("ERR_CORRUPT")(f"nesting deeper than {MAX_DEPTH} levels")
    kind = type(value)
    if kind is dict:  # a grain's payload
        _encode_map(value, out, depth)
    elif kind is str:  # the common cases first, by exact type
        _encode_raw_str(nfc(value).encode(), out)
    elif kind is float and math.isfinite(value):
        out += b"\xcb" + struct.pack(">d", value)
    elif kind is int and 0 <= value < 128:
        out.append(value)
    elif value is None:
        out.append(0xC0)
    elif value is True:
        out.append(0xC3)
    elif value is False:
        out.append(0xC2)
    elif isinstance(value, int):
        _encode_int(value, out)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise error_class("ERR_FLOAT_INVALID")(f"float {value!r} is not finite")
        out += b"\xcb" + struct.pack(">d", value)
    elif isinstance(value, str):
        _encode_str(nfc(value), out)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        n = len(data)
        out += (bytes([0xC4, n]) if n < 256 else b"\xc5" + struct.pack(">H", n) if n < 65536
                else b"\xc6" + struct.pack(">I", n)) + data
    elif isinstance(value, (list, tuple)):
        n = len(value)
        out += bytes([0x90 | n]) if n < 16 else (
            b"\xdc" + struct.pack(">H", n) if n < 65536 else b"\xdd" + struct.pack(">I", n))
        for item in value:
            _encode(item, out, depth + 1)
    elif isinstance(value, dict):
        _encode_map(value, out, depth)
    else:
        raise error_class("ERR_CORRUPT")(f"cannot encode {type(value).__name__} in a grain")


def _encode_map(value: dict[Any, Any], out: bytearray, depth: int) -> None:
    """Keys NFC, sorted by their UTF-8 bytes; null values left out (§4.3); short keys and the
    common values (short ASCII strings, floats, small and 64-bit integers) written inline."""
    pairs: list[tuple[Any, Any]] = []
    for key, item in value.items():
        if item is None:
            continue
        if type(key) is not str or not key.isascii():
            pairs = _checked_pairs(value)
            break
        pairs.append((key, item))  # ASCII: NFC already, no BOM, UTF-8 order = code point order
    else:
        pairs.sort()  # keys are unique, so items are never compared
    n = len(pairs)
    out += bytes([0x80 | n]) if n < 16 else (
        b"\xde" + struct.pack(">H", n) if n < 65536 else b"\xdf" + struct.pack(">I", n))
    for key, item in pairs:
        raw = key if type(key) is bytes else key.encode()
        if len(raw) < 32:  # the usual short key, inline
            out.append(0xA0 | len(raw))
            out += raw
        else:
            _encode_raw_str(raw, out)
        kind = type(item)
        if kind is str and item.isascii():
            size = len(item)
            if size < 32:
                out.append(0xA0 | size)
            elif size < 256:
                out += bytes((0xD9, size))
            else:
                _encode(item, out, depth + 1)
                continue
            out += item.encode()
        elif kind is float and math.isfinite(item):
            out += b"\xcb" + _DOUBLE.pack(item)
        elif kind is int and 0 <= item < 128:
            out.append(item)
        elif kind is int and 0xFFFFFFFF < item < 1 << 64:  # epoch milliseconds
            out += b"\xcf" + _UINT64.pack(item)
        else:
            _encode(item, out, depth + 1)


def _checked_pairs(value: dict[Any, Any]) -> list[tuple[bytes, Any]]:
    """(UTF-8 key, value) pairs of a map with any keys: NFC, no BOM, no duplicates after NFC."""
    items: dict[bytes, Any] = {}
    for key, item in value.items():
        if item is None:
            continue
        if not isinstance(key, str):
            raise error_class("ERR_CORRUPT")(f"map key {key!r} is not a string")
        raw = nfc(key).encode()
        if raw.startswith(_BOM_BYTES):
            raise error_class("ERR_CORRUPT")(f"map key {key!r} starts with a BOM (§4.4)")
        if raw in items:
            raise error_class("ERR_CORRUPT")(f"duplicate key {key!r} after NFC normalisation")
        items[raw] = item
    return sorted(items.items(), key=lambda pair: pair[0])


_UINT64 = struct.Struct(">Q")


def _encode_int(value: int, out: bytearray) -> None:
    if 0 <= value < 128:
        out.append(value)
    elif -32 <= value < 0:
        out.append(value & 0xFF)
    elif value >= 0:
        for limit, tag, fmt in ((0xFF, 0xCC, ">B"), (0xFFFF, 0xCD, ">H"),
                                (0xFFFFFFFF, 0xCE, ">I"), ((1 << 64) - 1, 0xCF, ">Q")):
            if value <= limit:
                out += bytes([tag]) + struct.pack(fmt, value)
                return
        raise error_class("ERR_RANGE")(f"integer {value} does not fit 64 bits")
    else:
        for limit, tag, fmt in ((-(1 << 7), 0xD0, ">b"), (-(1 << 15), 0xD1, ">h"),
                                (-(1 << 31), 0xD2, ">i"), (-(1 << 63), 0xD3, ">q")):
            if value >= limit:
                out += bytes([tag]) + struct.pack(fmt, value)
                return
        raise error_class("ERR_RANGE")(f"integer {value} does not fit 64 bits")


def _encode_str(text: str, out: bytearray) -> None:
    _encode_raw_str(text.encode(), out)


def _encode_raw_str(raw: bytes, out: bytearray) -> None:
    if raw.startswith(_BOM_BYTES):
        raise error_class("ERR_CORRUPT")("a string must not start with a BOM (§4.4)")
    n = len(raw)
    if n < 32:
        out.append(0xA0 | n)
    elif n < 256:
        out += bytes([0xD9, n])
    elif n < 65536:
        out += b"\xda" + struct.pack(">H", n)
    else:
        out += b"\xdb" + struct.pack(">I", n)
    out += raw


# ----------------------------------------------------------------------------------- decode


def decode_prefix(data: bytes, *, max_depth: int = MAX_DEPTH) -> tuple[Any, int]:
    """Decode the one value ``data`` starts with: (value, the offset where it ends)."""
    reader = _Reader(bytes(data), max_depth)
    return reader.value(0), reader.pos


def decode(data: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Decode exactly one value that fills ``data``; OMSError for anything else."""
    reader = _Reader(bytes(data), max_depth)
    tag = reader.data[0] if reader.data else -1
    if 0x80 <= tag <= 0x8F:  # a grain's payload: straight to the map
        reader.pos = 1
        value: Any = reader.map(tag & 0x0F, 0)
    else:
        value = reader.value(0)
    if reader.pos != len(data):
        raise error_class("ERR_CORRUPT")(f"{len(data) - reader.pos} bytes after the payload")
    return value


class _Reader:
    def __init__(self, data: bytes, max_depth: int) -> None:
        self.data = data
        self.pos = 0
        self.max_depth = max_depth

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise error_class("ERR_CORRUPT")(
                f"truncated: {n} bytes declared at offset {self.pos}, {len(self.data) - self.pos} left")
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def unpack(self, fmt: str, size: int) -> Any:
        return struct.unpack(fmt, self.take(size))[0]

    def value(self, depth: int) -> Any:
        if depth > self.max_depth:
            raise error_class("ERR_CORRUPT")(f"nesting deeper than {self.max_depth} levels")
        if self.pos >= len(self.data):
            raise error_class("ERR_CORRUPT")(f"truncated: a value was expected at offset {self.pos}")
        tag = self.data[self.pos]
        self.pos += 1
        if 0xA0 <= tag <= 0xBF:  # fixstr: the most common value in a grain
            return self.string(tag & 0x1F)
        if tag == 0xCB:
            number = _DOUBLE.unpack(self.take(8))[0]
            if not math.isfinite(number):
                raise error_class("ERR_FLOAT_INVALID")(f"float {number!r} at offset {self.pos}")
            return number
        if tag <= 0x7F:
            return tag
        if tag >= 0xE0:
            return tag - 0x100
        if 0x80 <= tag <= 0x8F:
            return self.map(tag & 0x0F, depth)
        if 0x90 <= tag <= 0x9F:
            return self.array(tag & 0x0F, depth)
        if 0xA0 <= tag <= 0xBF:
            return self.string(tag & 0x1F)
        simple = _SIMPLE.get(tag)
        if simple is not None:
            fmt, size = simple
            return self.unpack(fmt, size)
        if tag == 0xC0:
            return None
        if tag == 0xC2:
            return False
        if tag == 0xC3:
            return True
        if tag in (0xCA, 0xCB):
            number = self.unpack(">f" if tag == 0xCA else ">d", 4 if tag == 0xCA else 8)
            if not math.isfinite(number):
                raise error_class("ERR_FLOAT_INVALID")(f"float {number!r} at offset {self.pos}")
            return number
        if tag in (0xD9, 0xDA, 0xDB):
            return self.string(self.length(tag - 0xD9))
        if tag in (0xC4, 0xC5, 0xC6):
            return bytes(self.take(self.length(tag - 0xC4)))
        if tag in (0xDC, 0xDD):
            return self.array(self.length(tag - 0xDC + 1), depth)
        if tag in (0xDE, 0xDF):
            return self.map(self.length(tag - 0xDE + 1), depth)
        raise error_class("ERR_CORRUPT")(f"MessagePack type 0x{tag:02x} (extension or unused)"
                                         f" at offset {self.pos - 1}")

    def length(self, width: int) -> int:
        return int(self.unpack((">B", ">H", ">I")[width], (1, 2, 4)[width]))

    def string(self, n: int) -> str:
        end = self.pos + n
        if end > len(self.data):
            raise error_class("ERR_CORRUPT")(f"truncated: a {n}-byte string at offset {self.pos}")
        try:
            text = self.data[self.pos:end].decode()
        except UnicodeDecodeError:
            raise error_class("ERR_CORRUPT")(f"string at offset {self.pos} is not UTF-8") from None
        self.pos = end
        if text and text[0] == _BOM:
            raise error_class("ERR_CORRUPT")(f"string at offset {self.pos - n} starts with a BOM")
        return text

    def array(self, n: int, depth: int) -> list[Any]:
        if n > len(self.data) - self.pos:  # each element takes at least one byte
            raise error_class("ERR_CORRUPT")(f"array of {n} elements cannot fit the data left")
        return [self.value(depth + 1) for _ in range(n)]

    def map(self, n: int, depth: int) -> dict[str, Any]:
        """A map; short string keys and values (most of a grain) are decoded inline, with the
        same checks as ``string``: UTF-8, in bounds, no leading BOM."""
        data = self.data
        size = len(data)
        pos = self.pos
        if 2 * n > size - pos:
            raise error_class("ERR_CORRUPT")(f"map of {n} entries cannot fit the data left")
        out: dict[str, Any] = {}
        for _ in range(n):
            tag = data[pos] if pos < size else 0
            if 0xA0 <= tag <= 0xBF:
                end = pos + 1 + (tag & 0x1F)
                if end > size:
                    _short_string(data, pos + 1, end, size)  # raises the truncation error
                try:
                    key = data[pos + 1:end].decode()
                except UnicodeDecodeError:
                    key = _short_string(data, pos + 1, end, size)  # raises
                if end > pos + 1 and data[pos + 1] == 0xEF:  # maybe a BOM (EF BB BF)
                    _short_string(data, pos + 1, end, size)
                pos = end
            else:
                self.pos = pos
                key = self.value(depth + 1)
                pos = self.pos
                if not isinstance(key, str):
                    raise error_class("ERR_CORRUPT")(f"map key {key!r} is not a string")
            if key in out:
                raise error_class("ERR_CORRUPT")(f"duplicate map key {key!r}")
            tag = data[pos] if pos < size else 0
            if 0xA0 <= tag <= 0xBF:
                end = pos + 1 + (tag & 0x1F)
                if end > size:
                    _short_string(data, pos + 1, end, size)
                try:
                    text = data[pos + 1:end].decode()
                except UnicodeDecodeError:
                    text = _short_string(data, pos + 1, end, size)
                if end > pos + 1 and data[pos + 1] == 0xEF:  # maybe a BOM
                    _short_string(data, pos + 1, end, size)
                out[key] = text
                pos = end
            elif tag <= 0x7F:  # positive fixint
                out[key] = tag
                pos += 1
            elif tag == 0xCF and pos + 9 <= size:  # uint64: timestamps
                out[key] = int.from_bytes(data[pos + 1:pos + 9], "big")
                pos += 9
            elif tag == 0xCB and pos + 9 <= size:  # float64: confidences, weights
                number = _DOUBLE.unpack_from(data, pos + 1)[0]
                if not math.isfinite(number):
                    raise error_class("ERR_FLOAT_INVALID")(f"float {number!r} at offset {pos + 9}")
                out[key] = number
                pos += 9
            else:
                self.pos = pos
                out[key] = self.value(depth + 1)
                pos = self.pos
        self.pos = pos
        return out


def _short_string(data: bytes, start: int, end: int, size: int) -> str:
    """A short string with every check; the inline fast path in ``map`` calls it to raise."""
    if end > size:
        raise error_class("ERR_CORRUPT")(f"truncated: a {end - start}-byte string at offset {start}")
    try:
        text = data[start:end].decode()
    except UnicodeDecodeError:
        raise error_class("ERR_CORRUPT")(f"string at offset {start} is not UTF-8") from None
    if text[:1] == _BOM:
        raise error_class("ERR_CORRUPT")(f"string at offset {start} starts with a BOM")
    return text


_DOUBLE = struct.Struct(">d")
_SIMPLE = {0xCC: (">B", 1), 0xCD: (">H", 2), 0xCE: (">I", 4), 0xCF: (">Q", 8),
           0xD0: (">b", 1), 0xD1: (">h", 2), 0xD2: (">i", 4), 0xD3: (">q", 8)}

"""JSON that keeps every integer exact.

orjson, used everywhere for speed, refuses to write integers beyond 64 bits and, worse, reads
them back as floats without a word. These helpers take the slow, exact road only when a value
or a text may hold such an integer.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

__all__ = ["dumps_exact", "holds_huge_float", "loads_exact", "may_hold_big_int",
           "with_big_ints_as_fragments"]

_LONG_NUMBER = re.compile(rb"\d{19,}")
_INT64 = range(-(1 << 63), 1 << 64)


def may_hold_big_int(text: bytes) -> bool:
    """True when the text has a run of 19 or more digits (a cheap, conservative test)."""
    return _LONG_NUMBER.search(text) is not None


def holds_huge_float(value: Any) -> bool:
    """True when a parsed value holds a float of 2**63 or more in magnitude: what orjson makes
    of an integer beyond 64 bits (or a float written that large; reparsing those is harmless).
    Much cheaper than scanning the text, since most values are small."""
    kind = type(value)
    if kind is float:
        return bool(abs(value) >= 9.2e18)
    if kind is dict:
        items = value.values()
    elif kind is list:
        items = value
    else:
        return False
    for item in items:  # a loop, not any(generator): this runs for every line read
        kind = type(item)
        if kind is float:
            if abs(item) >= 9.2e18:
                return True
        elif (kind is dict or kind is list) and holds_huge_float(item):
            return True
    return False


def loads_exact(text: str | bytes) -> Any:
    raw = text.encode() if isinstance(text, str) else text
    if may_hold_big_int(raw):
        return json.loads(raw)
    return orjson.loads(raw)


def dumps_exact(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return orjson.dumps(with_big_ints_as_fragments(value)).decode()


def with_big_ints_as_fragments(value: Any) -> Any:
    """A copy in which integers orjson cannot write are raw JSON fragments."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if value in _INT64 else orjson.Fragment(str(value))
    if isinstance(value, list):
        return [with_big_ints_as_fragments(v) for v in value]
    if isinstance(value, dict):
        return {k: with_big_ints_as_fragments(v) for k, v in value.items()}
    return value

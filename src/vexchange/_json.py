"""JSON that keeps every integer exact, and input JSON nested no deeper than ``MAX_DEPTH``.

orjson, used everywhere for speed, refuses to write integers beyond 64 bits and, worse, reads
them back as floats without a word. These helpers take the slow, exact road only when a value
or a text may hold such an integer.

Nesting: orjson reads up to 1024 levels and writes up to 254, ``json`` and msgspec stop with a
RecursionError near 1000, and every walk over a value (digests, the writers) recurses in
Python. So a hostile line of ``[[[[...`` would end in a traceback somewhere. Every decode of
input goes through :func:`loads_exact` or :func:`holds_huge_float`, which refuse a value nested
deeper than ``MAX_DEPTH`` with :class:`NestingError`: a clear DecodeError, and also a
JSONDecodeError, so every reader that counts bad JSON as a reject of that line counts it too.
docs/formats/vectorpack.md ('What is refused') documents the limit.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from .errors import DecodeError

__all__ = ["MAX_DEPTH", "NestingError", "check_depth", "dumps_exact", "holds_huge_float",
           "loads_exact", "may_hold_big_int", "with_big_ints_as_fragments"]

MAX_DEPTH = 128
"""How deep input JSON may nest (objects and arrays, the outermost one is level 1). Far beyond
any real record, and far enough below orjson's write limit (254) that whatever is read can be
written again, inside a rejects line or a receipt."""


class NestingError(DecodeError, orjson.JSONDecodeError):
    """JSON nested deeper than ``MAX_DEPTH``. A DecodeError (a clear ``vex: error:`` line
    where it stops a command) and a JSONDecodeError (so a reader that rejects bad JSON line by
    line counts this line as ``bad_json`` and goes on)."""

    def __init__(self, message: str | None = None, *, location: str | None = None) -> None:
        reason = message or f"JSON nested deeper than {MAX_DEPTH} levels, the most vexchange reads"
        # DecodeError's fields set by hand: its __init__ would reach JSONDecodeError's
        orjson.JSONDecodeError.__init__(self, reason, "", 0)
        self.reason, self.location = reason, location
        self.message = f"{location}: {reason}" if location else reason
        self.hint: str | None = None  # one line: it is also a reject's detail

    def __reduce__(self) -> tuple[Any, ...]:
        return DecodeError.__reduce__(self)  # not JSONDecodeError's (msg, doc, pos)

_LONG_NUMBER = re.compile(rb"\d{19,}")
_INT64 = range(-(1 << 63), 1 << 64)


def may_hold_big_int(text: bytes) -> bool:
    """True when the text has a run of 19 or more digits (a cheap, conservative test)."""
    return _LONG_NUMBER.search(text) is not None


def holds_huge_float(value: Any, _depth: int = 1) -> bool:
    """True when a parsed value holds a float of 2**63 or more in magnitude: what orjson makes
    of an integer beyond 64 bits (or a float written that large; reparsing those is harmless).
    Much cheaper than scanning the text, since most values are small.

    The same walk checks the nesting (it runs for every line read, so the check costs nothing
    more): NestingError beyond ``MAX_DEPTH`` levels, up to where a huge float is found (the
    caller reparses then, and :func:`check_depth` checks the rest first)."""
    kind = type(value)
    if kind is float:
        return bool(abs(value) >= 9.2e18)
    if kind is dict:
        items = value.values()
    elif kind is list:
        items = value
    else:
        return False
    if _depth > MAX_DEPTH:
        raise NestingError()
    for item in items:  # a loop, not any(generator): this runs for every line read
        kind = type(item)
        if kind is float:
            if abs(item) >= 9.2e18:
                return True
        elif (kind is dict or kind is list) and holds_huge_float(item, _depth + 1):
            return True
    return False


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """NestingError when a parsed value nests deeper than ``limit``; a loop, not a recursion,
    so a value of any depth is measured."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is dict:
            children: Any = item.values()
        elif kind is list:
            children = item
        else:
            continue
        if depth > limit:
            raise NestingError(f"JSON nested deeper than {limit} levels, the most vexchange reads")
        stack.extend((child, depth + 1) for child in children
                     if type(child) is dict or type(child) is list)


def loads_exact(text: str | bytes) -> Any:
    """Parse JSON text keeping integers beyond 64 bits exact. orjson.JSONDecodeError on bad
    JSON, NestingError (one) beyond ``MAX_DEPTH`` levels; never a RecursionError."""
    raw = text.encode() if isinstance(text, str) else text
    value = orjson.loads(raw)  # bounded: 1024 levels at most, in C
    if holds_huge_float(value):  # an integer beyond 64 bits, read as a float: read it exactly
        check_depth(value)  # json recurses in C: only text known to be shallow goes there
        return json.loads(raw)
    return value


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

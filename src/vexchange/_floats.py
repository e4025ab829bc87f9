"""Exact float32 <-> JSON number conversion.

Writing: orjson writes a float32 array in the shortest decimal form that reads back to the same
float32 (Ryu). Reading: JSON parsers give float64, and rounding the float64 to float32 is a
*second* rounding. It gives the wrong float32 exactly when the decimal lies close to the midpoint
between two float32 values and the first rounding lands on that midpoint (an exhaustive check of
all 2**32 patterns found such values; see tests/test_floats.py). So:

* the reader finds elements whose float64 value is exactly a float32 midpoint and settles them
  from the decimal text itself, with exact rational arithmetic; and
* the writer, for the few float32 values whose shortest decimal has that property, writes the
  float64 form of the value instead (up to 17 digits), which any float64 parser followed by a
  cast to float32 reads exactly. So Vex and other float64 readers get the same bits too.
"""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import orjson

_F32 = np.dtype("<f4")
_MIN_NORMAL = float(np.finfo(np.float32).tiny)
# The largest float64 that still rounds to float32's largest finite value (FLT_MAX + half an ulp,
# exclusive): 2**128 - 2**103 rounds to infinity under ties-to-even.
_F32_ROUNDS_TO_MAX = float(np.nextafter(2.0**128 - 2.0**103, 0.0))
_LOW29 = np.uint64((1 << 29) - 1)
_HALF29 = np.uint64(1 << 28)
_NUMBER_TYPES = frozenset({float, int})


class VectorValueError(ValueError):
    """A vector that is not a non-empty list of finite numbers."""


class Float32Bytes(bytes):
    """Float32 little-endian bytes already converted and checked (by :func:`decode_rows`);
    :func:`decode_vector` passes them through."""


def decode_rows(wide: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Convert many float64 vectors of one size at once (a 2-D array): their float32 rows,
    and a mask of the rows that must take :func:`decode_vector`'s careful path instead (a value
    out of range or not finite, a float32 midpoint, a subnormal). One numpy call per step for a
    whole page instead of one per vector."""
    magnitude = np.abs(wide)
    slow = ~(magnitude <= _F32_ROUNDS_TO_MAX).all(axis=1)
    slow |= ((wide.view(np.uint64) & _LOW29) == _HALF29).any(axis=1)
    slow |= ((magnitude < _MIN_NORMAL) & (wide != 0)).any(axis=1)
    with np.errstate(over="ignore", invalid="ignore"):
        narrow = wide.astype(_F32)
    return narrow, slow


def decode_vector(values: Any, raw_text: bytes | None = None) -> bytes:
    """Convert a parsed JSON array (a list, or a float64 array from :func:`parse_number_array`)
    to float32 little-endian bytes, exactly.

    ``raw_text`` is the JSON text of the array (or of the whole line holding it); it is needed
    only in the rare midpoint case and re-read then.
    """
    if type(values) is Float32Bytes:
        return bytes(values)
    if isinstance(values, np.ndarray):
        wide = values
    elif not isinstance(values, list):
        raise VectorValueError("vector must be a non-empty list of numbers")
    elif not set(map(type, values)) <= _NUMBER_TYPES:
        bad = next(v for v in values if type(v) not in _NUMBER_TYPES)
        raise VectorValueError(f"vector holds a non-number: {bad!r}")
    else:
        wide = np.array(values, dtype=np.float64)
    if wide.size == 0:
        raise VectorValueError("vector must be a non-empty list of numbers")
    largest = float(np.abs(wide).max())
    if not largest <= _F32_ROUNDS_TO_MAX:  # also catches NaN; checked before the cast, which
        idx = int(np.flatnonzero(~(np.abs(wide) <= _F32_ROUNDS_TO_MAX))[0])  # would warn
        raise VectorValueError(
            f"vector value {float(wide[idx])!r} at index {idx} is not a finite number within"
            " float32 range"
        )
    narrow = wide.astype(_F32)
    suspects = _midpoint_mask(wide)
    if suspects.any():
        narrow = _settle_midpoints(wide, narrow, suspects, values, raw_text)
    return narrow.tobytes()


def parse_number_array(text: bytes) -> np.ndarray | None:
    """Parse the JSON text of a flat array of numbers straight into float64, without making a
    Python float per element (simdjson). None when simdjson is missing or the text is anything
    else, in which case the caller parses it the ordinary way.
    """
    parser = _simdjson_parser()
    if parser is None:
        return None
    try:
        doc = parser.parse(text)
        buffer = doc.as_buffer(of_type="d")
    except (ValueError, TypeError, RuntimeError, AttributeError):
        return None
    finally:
        doc = None  # the parser may be reused only once its document is gone
    return np.frombuffer(buffer, dtype=np.float64)


_LOCAL = threading.local()


def _simdjson_parser() -> Any:
    parser = getattr(_LOCAL, "parser", False)
    if parser is False:
        try:
            import simdjson
        except ImportError:  # pragma: no cover - a platform without its wheel
            parser = None
        else:
            parser = simdjson.Parser()
        _LOCAL.parser = parser
    return parser


def _midpoint_mask(wide: np.ndarray) -> np.ndarray:
    """Elements whose float64 value is exactly halfway between two float32 values."""
    bits = wide.view(np.uint64)
    mask = (bits & _LOW29) == _HALF29
    tiny = (np.abs(wide) < _MIN_NORMAL) & (wide != 0)
    if tiny.any():
        scaled = np.abs(wide[tiny]) * 2.0**150
        mask[tiny] = (scaled == np.floor(scaled)) & (np.fmod(scaled, 2.0) == 1.0)
    return mask  # type: ignore[no-any-return]


def _settle_midpoints(
    wide: np.ndarray, narrow: np.ndarray, suspects: np.ndarray, values: list[Any], raw: bytes | None
) -> np.ndarray:
    decimals = _decimal_texts(values, raw)
    out = narrow.copy()
    for idx in np.flatnonzero(suspects):
        exact = Fraction(Decimal(decimals[idx])) if decimals else None
        out[idx] = _round_to_f32(exact, float(wide[idx]), narrow[idx])
    return out


def _round_to_f32(exact: Fraction | None, mid: float, tie_even: np.float32) -> np.float32:
    if exact is None or exact == Fraction(mid):
        return tie_even
    below = np.nextafter(np.float32(mid), np.float32(-np.inf), dtype=np.float32)
    above = np.nextafter(np.float32(mid), np.float32(np.inf), dtype=np.float32)
    # mid is not a float32; ``np.float32(mid)`` rounded it to one of its two neighbours.
    lo, hi = (below, tie_even) if float(tie_even) > mid else (tie_even, above)  # float64 compare
    return hi if exact > Fraction(mid) else lo


def _decimal_texts(values: list[Any], raw: bytes | None) -> list[str] | None:
    """Re-read the decimal text of each element; None when the text is not available."""
    if raw is None:
        return None
    found: list[list[str]] = []

    def keep(obj: Any) -> Any:
        return obj

    def walk(node: Any) -> None:
        if isinstance(node, list) and len(node) == len(values) and all(
            isinstance(x, str) for x in node
        ):
            found.append(node)
        elif isinstance(node, list):
            for x in node:
                walk(x)
        elif isinstance(node, dict):
            for x in node.values():
                walk(x)

    doc = json.loads(raw, parse_float=keep, parse_int=keep)
    walk(doc)
    for candidate in found:
        if np.array_equal(np.array([float(x) for x in candidate]), np.array(values, dtype=float)):
            return candidate
    return None


def vector_json(data: bytes) -> np.ndarray | orjson.Fragment:
    """What to hand orjson (with OPT_SERIALIZE_NUMPY) for a vector: the float32 array, written in
    shortest form, or, when the vector may hold a double-rounding hazard, its exact float64 text.

    The hazard check is a byte search: fast, and a match at an unaligned offset only costs a
    longer, still exact, output.
    """
    arr = np.frombuffer(data, dtype=_F32)
    # two plain ``in`` tests, not any() over a generator: this runs for every vector written,
    # and the generator's set-up cost more than both searches (2.5 against 0.3 µs a vector)
    if _HAZARD_0 in data or _HAZARD_1 in data:
        return orjson.Fragment(orjson.dumps(arr.astype(np.float64), option=orjson.OPT_SERIALIZE_NUMPY))
    return arr


def hazard_free(chunks: list[bytes]) -> bool:
    """True when none of these byte strings holds the double-rounding hazard's bytes at any
    offset, as :func:`vector_json`'s byte search would find it: one numpy pass over them all
    (joined) instead of two searches of every vector (1.5 µs each for 384 dims). False also
    when a match spans two of them: a page that says False takes the per-vector test."""
    if not chunks:
        return True
    data = np.frombuffer(b"".join(chunks), dtype=np.uint8)
    starts = np.flatnonzero(data[:-3] == _HAZARD_0[0])
    if starts.size == 0:
        return True
    rest = ((data[starts + 1] == _HAZARD_0[1]) & (data[starts + 2] == _HAZARD_0[2])
            & ((data[starts + 3] & 0x7F) == _HAZARD_0[3]))
    return not bool(rest.any())


# Positive float32 bit patterns whose shortest decimal form double-rounds to another float32
# when read as float64 and then cast. An exhaustive scan of all 2**31 positive finite patterns
# (bench/float32_scan.py) found exactly one: 0x15AE43FD, 7.038531e-26 (and its negative).
_DOUBLE_ROUNDING_HAZARDS = np.array([363742205], dtype=np.uint32)
_HAZARD_BYTES = tuple(
    int(bits | sign).to_bytes(4, "little") for bits in _DOUBLE_ROUNDING_HAZARDS for sign in (0, 1 << 31)
)
_HAZARD_0, _HAZARD_1 = _HAZARD_BYTES  # the one hazard, positive and negative

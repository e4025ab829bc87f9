"""Timestamps: every record carries UTC epoch milliseconds; files carry ISO-8601.

Input accepted: ISO-8601 strings (``Z``, ``+hh:mm`` or no offset, which means UTC; a date alone
means midnight UTC), and epoch numbers. Epoch numbers whose magnitude is at least 10**11 are
milliseconds, smaller ones seconds: 10**11 seconds is the year 5138, so no real seconds value is
read as milliseconds, and 10**11 ms is 1973, so Vex's epoch seconds are never mistaken either.
Precision below one millisecond is truncated (documented in docs/formats/vmig.md).
"""

from __future__ import annotations

import datetime as _dt
import time as _time

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_MS_THRESHOLD = 10**11
_FIRST_MS, _LAST_MS = -62_135_596_800_000, 253_402_300_799_999
"""0001-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z: the range :func:`_moment` accepts,
checked by comparison for integers (building a timedelta for each cost 1 µs a timestamp)."""


def parse_timestamp(value: object) -> int | None:
    """Return epoch milliseconds for an ISO string or epoch number; None for None or "".

    Raises ValueError with a readable message for anything else.
    """
    if type(value) is int:  # the usual case first: two comparisons, no timedelta
        ms = value if abs(value) >= _MS_THRESHOLD else value * 1000
        return ms if _FIRST_MS <= ms <= _LAST_MS else _checked(ms)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"timestamp must be an ISO-8601 string or epoch number, got {value!r}")
    if isinstance(value, int):
        return _checked(value if abs(value) >= _MS_THRESHOLD else value * 1000)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"timestamp is not finite: {value!r}")
        return _checked(int(value) if abs(value) >= _MS_THRESHOLD
                        # int(): numpy 1.x's round() of a numpy float is a float
                        else int(round(value * 1000)))  # noqa: RUF046
    if isinstance(value, str):
        return _parse_iso(value)
    raise ValueError(f"timestamp must be an ISO-8601 string or epoch number, got {value!r}")


def _checked(ms: int) -> int:
    _moment(ms)
    return ms


def _parse_iso(text: str) -> int:
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        parsed = _dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"not an ISO-8601 timestamp: {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_dt.timezone.utc)
    delta = parsed - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def format_timestamp(ms: int) -> str:
    """ISO-8601 UTC with exactly three fractional digits, e.g. ``2025-01-01T00:00:00.000Z``."""
    seconds, millis = divmod(ms, 1000)
    if 0 <= seconds < 253_402_300_800:  # years 1970-9999: the fast path
        t = _time.gmtime(seconds)
        return (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:"
                f"{t.tm_sec:02d}.{millis:03d}Z")
    m = _moment(ms)
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"
        f".{m.microsecond // 1000:03d}Z"
    )


def _moment(ms: int) -> _dt.datetime:
    try:
        return _EPOCH + _dt.timedelta(milliseconds=ms)
    except OverflowError:
        raise ValueError(f"timestamp {ms} ms is outside the years 1-9999") from None


def utc_now_ms() -> int:
    """The current time as epoch milliseconds (the only wall-clock read in record handling)."""
    delta = _dt.datetime.now(_dt.timezone.utc) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000

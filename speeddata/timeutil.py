"""Times and durations as users write them, to int64 nanoseconds since the Unix epoch.

Times: int (ns), float (seconds, as time.time() gives), datetime (naive means UTC),
numpy.datetime64, ISO 8601 text (``2026-11-27T10:00:00Z``, nanoseconds allowed), or text
relative to now (``now``, ``now-5m``, ``now+1h``).
Durations: int/float seconds, datetime.timedelta, numpy.timedelta64, short text (``500ms``,
``30s``, ``5m``, ``24h``, ``2d``) or ISO 8601 (``PT30S``, ``P2D``).
Counts (`whole_number`) and plain numbers (`finite_number`) as the APIs take them in text.

Every surface (REST, WebSocket, gRPC, CLI, config) reads text through these parsers: ASCII
digits only (``str.isdigit`` and ``\\d`` also take '²' and '٣'), finite, and in range, so that
bad text is a clear error and never an OverflowError or a 500.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time as _time

import numpy as np

from .errors import RequestError, TimeRangeError

TimeLike = int | float | str | dt.datetime | np.datetime64
_DURATION = re.compile(r"^P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
                       r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
                       r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$", re.ASCII)
_NS_PER_UNIT = {"W": 604_800 * 10**9, "D": 86_400 * 10**9, "h": 3_600 * 10**9,
                "m": 60 * 10**9, "s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
_UNIT_NS = {"w": 604_800e9, "d": 86_400e9, "h": 3_600e9, "m": 60e9, "s": 1e9}
# short durations: 500ms, 30s, 5m, 24h, 2d (and us, ns, w)
_SHORT = re.compile(r"(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|min|h|d|w)", re.ASCII)
# at most 40 digits: int() refuses text past 4300 digits, and no count or time needs 40
_INTEGER = re.compile(r"[+-]?[0-9]{1,40}")
_NUMBER = re.compile(r"[+-]?(?:[0-9]{1,400}\.?[0-9]{0,400}|\.[0-9]{1,400})(?:[eE][+-]?[0-9]{1,5})?")
_SHORT_NS = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "min": 60e9, "h": 3_600e9,
             "d": 86_400e9, "w": 604_800e9}


# SPEEDDATA_CLOCK_SKEW=3600 sets this process's wall clock an hour ahead: the tests of a
# host whose clock is off use it
_SKEW_NS = int(float(os.environ.get("SPEEDDATA_CLOCK_SKEW") or 0) * 1e9)


def now_ns() -> int:
    return _time.time_ns() + _SKEW_NS


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def whole_number(value: int | str, *, what: str, lo: int | None = None,
                 hi: int | None = None) -> int:
    """An int from an int or its ASCII decimal text, within [lo, hi]; `RequestError` naming
    ``what`` otherwise."""
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        n = int(value.strip())
    elif isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        n = int(value)
    else:
        raise RequestError(f"{what} must be a whole number, not {_shown(value)}")
    _check_bounds(n, what, lo, hi)
    return n


def finite_number(value: float | int | str, *, what: str, lo: float | None = None,
                  hi: float | None = None) -> float:
    """A finite float from a number or its ASCII decimal text, within [lo, hi]."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        x = float(value.strip())
    elif isinstance(value, (int, float, np.integer, np.floating)) and \
            not isinstance(value, (bool, np.bool_)):
        try:
            x = float(value)
        except OverflowError:                  # an int past 1e308
            x = float("inf")
    else:
        raise RequestError(f"{what} must be a number, not {_shown(value)}")
    if not np.isfinite(x):
        raise RequestError(f"{what} must be a finite number, not {_shown(value)}")
    _check_bounds(x, what, lo, hi)
    return x


def _check_bounds(x: float, what: str, lo: float | None, hi: float | None) -> None:
    if (lo is not None and x < lo) or (hi is not None and x > hi):
        span = f"{lo} to {hi}" if lo is not None and hi is not None else \
            f"at least {lo}" if lo is not None else f"at most {hi}"
        raise RequestError(f"{what} must be {span}, not {x}")


def _shown(value: object) -> str:
    """A value for a message, cut short: a request may send megabytes."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _seconds_to_ns(seconds: float, what: str, value: object) -> int:
    """Float seconds as int ns; TimeRangeError, never OverflowError, for what int64 ns
    cannot hold."""
    ns = float(seconds) * 1e9
    if not np.isfinite(ns) or not INT64_MIN <= ns <= INT64_MAX:
        raise TimeRangeError(f"{what}: {_shown(value)} is outside the times SpeedData "
                             "stores (int64 ns: 1677-09-21 to 2262-04-11, durations up to "
                             "292 years)")
    return int(round(ns))


def to_ns(value: TimeLike, *, what: str = "time") -> int:
    """A time as int64 ns since the epoch; TimeRangeError naming ``what`` if it is not one,
    or if it lies outside what int64 ns hold (1677-09-21 to 2262-04-11)."""
    ns = _to_ns(value, what)
    if not INT64_MIN <= ns <= INT64_MAX:
        raise TimeRangeError(f"{what}: {_shown(value)} is outside the times SpeedData "
                             "stores (int64 ns: 1677-09-21 to 2262-04-11)")
    return ns


def _to_ns(value: TimeLike, what: str) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise TimeRangeError(f"{what}: {value!r} is not a time")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            raise TimeRangeError(f"{what}: {value!r} is not a time")
        return _seconds_to_ns(value, what, value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            raise TimeRangeError(f"{what}: NaT is not a time")
        unit, _ = np.datetime_data(value.dtype)
        if unit == "generic":
            raise TimeRangeError(f"{what}: {value!r} has no unit")
        # in Python ints: a cast to ns would wrap silently for times past 2262
        return int(value.astype(np.int64)) * _NS_PER_UNIT.get(unit, 1) if unit in _NS_PER_UNIT \
            else int(value.astype("datetime64[ns]").astype(np.int64))
    if isinstance(value, str):
        if not value.strip():
            raise TimeRangeError(f"{what}: an empty text is not a time",
                                 hint="use ISO 8601 (2026-11-27T10:00:00Z), now-5m, or int ns")
        return _parse_time_text(value.strip(), what)
    raise TimeRangeError(f"{what}: {type(value).__name__} {value!r} is not a time",
                         hint="give int ns, datetime, numpy.datetime64 or ISO 8601 text")


def _parse_time_text(text: str, what: str) -> int:
    if not text.isascii() or "\0" in text:
        raise TimeRangeError(f"{what}: {_shown(text)} is not a time (ASCII text only)",
                             hint="use ISO 8601 (2026-11-27T10:00:00Z), now-5m, or int ns")
    if _INTEGER.fullmatch(text):
        return int(text)
    relative = re.fullmatch(r"now(?:\s*([+-])\s*(\S.*))?", text.lower())
    if relative:                     # now, now-5m, now+1h, now-PT30S
        sign, rest = relative.groups()
        shift = duration_ns(rest, what=what) if rest else 0
        return now_ns() + (-shift if sign == "-" else shift)
    try:
        return _to_ns(dt.datetime.fromisoformat(text.replace("Z", "+00:00")), what)
    except ValueError:
        pass
    # fromisoformat stops at microseconds; numpy reads nanoseconds (naive: UTC)
    m = re.fullmatch(r"(.+?)(Z|[+-]\d\d:?\d\d)?", text)
    if m is None:    # only an empty text, which to_ns refuses first
        raise TimeRangeError(f"{what}: cannot read {_shown(text)} as a time")
    body, zone = m.group(1), m.group(2)
    try:
        ns = int(np.datetime64(body, "ns").astype(np.int64))
    except (ValueError, OverflowError):
        raise TimeRangeError(f"{what}: cannot read {_shown(text)} as a time",
                             hint="use ISO 8601 (2026-11-27T10:00:00Z), now-5m, "
                                  "or int ns") from None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        hh, mm = int(zone[1:3]), int(zone[-2:])
        ns -= sign * (hh * 3600 + mm * 60) * 1_000_000_000
    return ns


def duration_ns(value: int | float | str | dt.timedelta | np.timedelta64, *,
                what: str = "duration") -> int:
    """A duration as int ns. Numbers are seconds."""
    if isinstance(value, dt.timedelta):
        return _seconds_to_ns(value.total_seconds(), what, value)
    if isinstance(value, np.timedelta64):
        if np.isnat(value):
            raise TimeRangeError(f"{what}: NaT is not a duration")
        return int(value.astype("timedelta64[ns]").astype(np.int64))
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        if value < 0:
            raise TimeRangeError(f"{what}: {_shown(value)} is not a positive duration")
        if value * 10**9 > INT64_MAX:       # exact, and no float overflow for 10**400
            raise TimeRangeError(f"{what}: {_shown(value)} s is longer than SpeedData's "
                                 "times span (292 years)")
        return int(value) * 10**9
    if isinstance(value, (float, np.floating)):
        seconds = float(value)
        if seconds < 0 or not np.isfinite(seconds):
            raise TimeRangeError(f"{what}: {_shown(value)} is not a positive duration")
        return _seconds_to_ns(seconds, what, value)
    if isinstance(value, str) and value.isascii():
        short = _SHORT.fullmatch(value.strip().lower())
        if short:
            seconds = float(short.group(1)) * _SHORT_NS[short.group(2)] / 1e9
            return _seconds_to_ns(seconds, what, value)
        text = value.strip().upper()
        m = _DURATION.fullmatch(text)
        if m and text not in ("P", "PT") and not text.endswith("T"):
            seconds = sum(float(v) * _UNIT_NS[k] for k, v in m.groupdict().items() if v) / 1e9
            return _seconds_to_ns(seconds, what, value)
        if _NUMBER.fullmatch(text):
            return duration_ns(float(text), what=what)
    raise TimeRangeError(f"{what}: cannot read {_shown(value)} as a duration",
                         hint="give seconds, 500ms, 5m, 24h, 2d or ISO 8601 such as PT30S, P1D")


def end_of(start: int, duration: int, *, what: str = "end") -> int:
    """start + duration, refused past the last time int64 ns hold."""
    end = start + duration
    if end > INT64_MAX + 1:
        raise TimeRangeError(f"{what}: {format_ns(start)} plus {duration / 1e9:.6g} s is "
                             "past the last time SpeedData stores (2262-04-11)")
    return end


def time_range(start: TimeLike | None, end: TimeLike | None) -> tuple[int, int]:
    """Half-open [start, end) in ns; None means open-ended: an open end is 2**63, one past
    the largest time stored, so that a record at 2**63 - 1 is found too."""
    lo = INT64_MIN if start is None else to_ns(start, what="start")
    hi = INT64_MAX + 1 if end is None else to_ns(end, what="end")
    if hi < lo:
        raise TimeRangeError(f"end {format_ns(hi)} is before start {format_ns(lo)}")
    return lo, hi


def format_ns(ns: int) -> str:
    """ISO 8601 UTC text of a ns time, for messages."""
    try:
        return str(np.datetime64(int(ns), "ns")) + "Z"
    except (OverflowError, ValueError):
        return str(ns)

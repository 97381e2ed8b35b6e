"""Times and durations as users write them, to int64 nanoseconds since the Unix epoch.

Times: int (ns), float (seconds, as time.time() gives), datetime (naive means UTC),
numpy.datetime64, ISO 8601 text (``2026-11-27T10:00:00Z``, nanoseconds allowed), or text
relative to now (``now``, ``now-5m``, ``now+1h``).
Durations: int/float seconds, datetime.timedelta, numpy.timedelta64, short text (``500ms``,
``30s``, ``5m``, ``24h``, ``2d``) or ISO 8601 (``PT30S``, ``P2D``).
"""

from __future__ import annotations

import datetime as dt
import re
import time as _time

import numpy as np

from .errors import TimeRangeError

TimeLike = int | float | str | dt.datetime | np.datetime64
_DURATION = re.compile(r"^P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
                       r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
                       r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$")
_NS_PER_UNIT = {"W": 604_800 * 10**9, "D": 86_400 * 10**9, "h": 3_600 * 10**9,
                "m": 60 * 10**9, "s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
_UNIT_NS = {"w": 604_800e9, "d": 86_400e9, "h": 3_600e9, "m": 60e9, "s": 1e9}
# short durations: 500ms, 30s, 5m, 24h, 2d (and us, ns, w)
_SHORT = re.compile(r"(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|min|h|d|w)")
_SHORT_NS = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "min": 60e9, "h": 3_600e9,
             "d": 86_400e9, "w": 604_800e9}


def now_ns() -> int:
    return _time.time_ns()


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def to_ns(value: TimeLike, *, what: str = "time") -> int:
    """A time as int64 ns since the epoch; TimeRangeError naming ``what`` if it is not one,
    or if it lies outside what int64 ns hold (1677-09-21 to 2262-04-11)."""
    ns = _to_ns(value, what)
    if not INT64_MIN <= ns <= INT64_MAX:
        raise TimeRangeError(f"{what}: {value!r} is outside the times SpeedData stores "
                             "(int64 ns: 1677-09-21 to 2262-04-11)")
    return ns


def _to_ns(value: TimeLike, what: str) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise TimeRangeError(f"{what}: {value!r} is not a time")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            raise TimeRangeError(f"{what}: {value!r} is not a time")
        return int(round(float(value) * 1e9))
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
    if re.fullmatch(r"-?\d+", text):
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
        raise TimeRangeError(f"{what}: cannot read {text!r} as a time")
    body, zone = m.group(1), m.group(2)
    try:
        ns = int(np.datetime64(body, "ns").astype(np.int64))
    except (ValueError, OverflowError):
        raise TimeRangeError(f"{what}: cannot read {text!r} as a time",
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
        return int(round(value.total_seconds() * 1e9))
    if isinstance(value, np.timedelta64):
        return int(value.astype("timedelta64[ns]").astype(np.int64))
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        if value < 0 or not np.isfinite(value):
            raise TimeRangeError(f"{what}: {value!r} is not a positive duration")
        return int(round(float(value) * 1e9))
    if isinstance(value, str):
        short = _SHORT.fullmatch(value.strip().lower())
        if short:
            return int(round(float(short.group(1)) * _SHORT_NS[short.group(2)]))
        text = value.strip().upper()
        m = _DURATION.fullmatch(text)
        if m and text not in ("P", "PT") and not text.endswith("T"):
            return int(round(sum(float(v) * _UNIT_NS[k] for k, v in m.groupdict().items() if v)))
        try:
            return duration_ns(float(text), what=what)
        except ValueError:
            pass
    raise TimeRangeError(f"{what}: cannot read {value!r} as a duration",
                         hint="give seconds, 500ms, 5m, 24h, 2d or ISO 8601 such as PT30S, P1D")


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

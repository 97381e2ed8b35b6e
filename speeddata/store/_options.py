"""A store's and a channel's settings: their defaults, and their one check (durations to
ns, sizes to bytes), for what a user gives and what a store saved."""

from __future__ import annotations

from typing import Any

import zstandard

from ..errors import StoreError, TimeRangeError
from ..timeutil import duration_ns
from . import _format as on_disk


DEFAULTS: dict[str, Any] = {
    "max_bytes": None,                 # retention: byte quota (None: unlimited)
    "max_age": None,                   # retention: ns of receive time kept (None: forever)
    # uncompressed bytes that close a block: an overview decodes the blocks straddling its
    # bucket edges whole, and a short range reads whole blocks, so they stay small
    "block_bytes": 16 << 10,
    # s: a stream's records are written at most this long after they came (the open block,
    # and full blocks held to be written together)
    "flush_interval": 0.1,
    "segment_bytes": 64 << 20,         # a segment rolls over at this size...
    "segment_span": 3600 * 10**9,      # ...or when its receive times span this many ns
    "compression_level": -1,           # zstandard level: -1 costs ~3% more disk than 3 and
                                       # compresses 2x, decompresses 1.5-2.5x faster
    "fsync": False,                    # fsync every block (power-loss safety; kill -9 needs none)
}
RETENTION_KEYS = ("max_bytes", "max_age")



def check_options(options: dict[str, Any], where: str = "", *,
                  stored: bool = False) -> dict[str, Any]:
    """Store or channel options, checked and normalised (durations to ns); None values
    stay None (meaning: the default). StoreError names the bad key.

    ``stored``: the options as persisted, whose durations are int ns already (read as
    seconds, a saved hour would come back as 10**9 hours)."""
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise StoreError(f"{where}unknown store option(s): {', '.join(sorted(unknown))}",
                         hint=f"options are: {', '.join(sorted(DEFAULTS))}")
    out: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            out[key] = None
        elif key in ("max_age", "segment_span"):
            try:
                out[key] = value if stored and _is_int(value) else \
                    duration_ns(value, what=f"{where}{key}")
            except TimeRangeError as e:
                raise StoreError(str(e)) from None
            if out[key] <= 0:
                raise StoreError(f"{where}{key} must be a positive duration, not {value!r}")
        elif key in ("max_bytes", "block_bytes", "segment_bytes"):
            if not _is_int(value) or value <= 0:
                raise StoreError(f"{where}{key} must be a positive number of bytes, "
                                 f"not {value!r}")
            out[key] = int(value)
            if key == "block_bytes" and value > on_disk.MAX_BLOCK_BYTES // 4:
                raise StoreError(f"{where}block_bytes must be at most "
                                 f"{on_disk.MAX_BLOCK_BYTES // 4} bytes, not {value!r}")
        elif key == "compression_level":
            lo, hi = -(1 << 17), zstandard.MAX_COMPRESSION_LEVEL
            if not _is_int(value) or not lo <= value <= hi:
                raise StoreError(f"{where}compression_level must be an integer from {lo} "
                                 f"to {hi}, not {value!r}")
            out[key] = int(value)
        elif key == "flush_interval":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not 0 <= value <= 3600:
                raise StoreError(f"{where}flush_interval must be 0 to 3600 seconds, "
                                 f"not {value!r}")
            out[key] = float(value)
        elif key == "fsync":
            if not isinstance(value, bool):
                raise StoreError(f"{where}fsync must be true or false, not {value!r}")
            out[key] = value
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def setting_text(value: Any, key: str) -> str:
    """A setting as the log shows it (durations in s, "default (N)" for None)."""
    if value is None:
        return "default" + (f" ({DEFAULTS[key]})" if DEFAULTS.get(key) is not None else "")
    if key in ("max_age", "segment_span"):
        return f"{value / 1e9:g} s"
    return repr(value)


def settings_text(opts: dict[str, Any]) -> str:
    return ", ".join(f"{k}={setting_text(v, k)}" for k, v in sorted(opts.items()))

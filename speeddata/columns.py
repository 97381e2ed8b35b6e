"""Columns: records of one channel as numpy arrays, the form every read and feed returns."""

from __future__ import annotations

import importlib.util

import numpy as np


class Columns:
    """Records of one channel as columns: ``time`` (int64 ns) and one numpy array per signal.

    Attributes
    ----------
    time : numpy.ndarray of int64
        Each record's time, ns since the Unix epoch.
    data : dict of str to numpy.ndarray
        One array per signal, in schema order. Nullable signals are
        ``numpy.ma.MaskedArray`` (masked where null; the data under the mask is 0, empty or
        None). Strings, bytes and enum symbols are object arrays.
    channel : str
        The channel's name.

    Signals are reached as ``cols["a.b"]``, ``cols.signal`` or by iterating ``cols.signals``.
    `to_arrow`, `to_pandas` and `to_polars` hand them to the scientific stack.
    """

    def __init__(self, time: np.ndarray, data: dict[str, np.ndarray], channel: str = ""):
        self.time = time
        self.data = data
        self.channel = channel

    @property
    def signals(self) -> list[str]:
        return list(self.data)

    def __len__(self) -> int:
        return len(self.time)

    def __getitem__(self, name: str) -> np.ndarray:
        if name == "time":
            return self.time
        return self.data[name]

    def __contains__(self, name: str) -> bool:
        return name == "time" or name in self.data

    def __getattr__(self, name: str) -> np.ndarray:
        data = self.__dict__.get("data", {})
        if name in data:
            return data[name]
        raise AttributeError(f"no signal {name!r} in channel {self.__dict__.get('channel')!r}")

    def __repr__(self) -> str:
        return f"<Columns {self.channel!r}: {len(self)} records, signals {self.signals}>"

    def take(self, index: np.ndarray | slice) -> "Columns":
        """Rows selected by a slice, boolean mask or index array."""
        return Columns(self.time[index], {k: v[index] for k, v in self.data.items()},
                       self.channel)

    def to_arrow(self):
        """The records as a ``pyarrow.Table``: ``time`` as ``timestamp[ns, tz=UTC]``, one
        column per signal; numeric columns share these arrays' memory (no copy), nulls are
        the validity. See `speeddata.arrow`."""
        from .arrow import to_arrow
        return to_arrow(self)

    def to_polars(self):
        """The records as a polars DataFrame, through `to_arrow` (polars is optional)."""
        from .arrow import to_polars
        return to_polars(self)

    def to_pandas(self):
        """A pandas DataFrame indexed by ``time`` (UTC), through `to_arrow`: a nullable
        signal's nulls are NaN (numbers) or None (pandas is optional)."""
        if importlib.util.find_spec("pandas") is None:
            raise ImportError("to_pandas() needs pandas: pip install pandas")
        return self.to_arrow().to_pandas().set_index("time")

"""DataSet: a Set (channels over one time range) loaded for analysis.

``data.example.sine_wave``, ``data.channel["example"].sine_wave`` and, when the signal name
is unique across channels, ``data.sine_wave`` (as the prototype's DataSet allowed).
"""

from __future__ import annotations

from collections.abc import Mapping

from .columns import Columns


class DataSet:
    """Channels of one Set, each a `speeddata.codec.Columns` (``time`` plus signals)."""

    def __init__(self, channels: Mapping[str, Columns], attrs: Mapping | None = None):
        self.channel = dict(channels)
        self.attrs = dict(attrs or {})

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}: {len(v)} records" for k, v in self.channel.items())
        return f"<DataSet {parts}>"

    def __getitem__(self, name: str) -> Columns:
        return self.channel[name]

    def __getattr__(self, name: str):
        channels = self.__dict__.get("channel", {})
        if name in channels:
            return channels[name]
        owners = [c for c, cols in channels.items() if name in cols.data]
        if len(owners) == 1:
            return channels[owners[0]][name]
        if owners:
            raise AttributeError(f"signal {name!r} is in several channels ({', '.join(owners)}); "
                                 f"say which: data.{owners[0]}.{name}")
        raise AttributeError(f"no channel or signal {name!r} in this DataSet")

    @property
    def signals(self) -> dict[str, list[str]]:
        return {c: cols.signals for c, cols in self.channel.items()}

    def to_arrow(self, how: str = "outer"):
        """The Set as one ``pyarrow.Table`` aligned in time: ``time`` and a column
        ``channel.signal`` per signal; ``how`` as in `speeddata.arrow.frame` (``"outer"``:
        a row per time of any channel; ``"asof"``: a row per record of the first channel).
        One channel's own table: ``data.channel[name].to_arrow()``."""
        from .arrow import frame
        return frame(self.channel, how)

    def to_pandas(self, how: str = "outer"):
        """The Set as one pandas DataFrame indexed by time (see `to_arrow`)."""
        table = self.to_arrow(how)
        return table.to_pandas().set_index("time")

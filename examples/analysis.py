"""The analysis workflow against a running SpeedData: pull the last minute of a channel, plot
it, find an event (the first upward crossing of a threshold), tag a few seconds around it,
export the tag as HDF5 and load it back.

    python examples/analysis.py --server 127.0.0.1:50051 --channel example \\
        --signal sine_wave --threshold 0.9 --out results/
"""

from __future__ import annotations

import argparse
import os
import sys

import matplotlib

matplotlib.use("Agg")                     # files, no window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import speeddata  # noqa: E402


def first_crossing(time: np.ndarray, values: np.ndarray, threshold: float) -> int | None:
    """The time (ns) of the first record at which ``values`` goes above ``threshold``."""
    above = np.asarray(values) > threshold
    k = np.flatnonzero(~above[:-1] & above[1:])
    return int(time[k[0] + 1]) if len(k) else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", default="127.0.0.1:50051", help="gRPC address")
    p.add_argument("--channel", default="example")
    p.add_argument("--signal", default="sine_wave")
    p.add_argument("--threshold", type=float, default=0.9)
    p.add_argument("--out", default=".", help="folder for the plot and the HDF5 file")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    with speeddata.Client(args.server) as client:
        cols = client.query(args.channel, "now-1m", signals=[args.signal])
        print(f"last minute of {args.channel}: {len(cols)} records")
        if not len(cols):
            return 1

        seconds = (cols.time - cols.time[0]) / 1e9
        fig, ax = plt.subplots(figsize=(10, 3))
        ax.plot(seconds, cols[args.signal], lw=0.8)
        ax.axhline(args.threshold, color="r", ls="--", lw=0.8)
        ax.set_xlabel("s")
        ax.set_ylabel(args.signal)
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, "last-minute.png"))
        plt.close(fig)

        event = first_crossing(cols.time, cols[args.signal], args.threshold)
        if event is None:
            print(f"{args.signal} never crosses {args.threshold}")
            return 1
        name = f"{args.channel}-crossing-{event}"
        client.tag(name, event - 1_000_000_000, event + 1_000_000_000, [args.channel],
                   note=f"{args.signal} crosses {args.threshold}", replace=True)
        path = client.export_hdf5(os.path.join(args.out, "event.h5"), tag=name)

    data = speeddata.read_hdf5(path)
    got = data[args.channel]
    print(f"tagged {name}; {path} holds {len(got)} records of {args.channel} "
          f"from {speeddata.timeutil.format_ns(int(got.time[0]))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

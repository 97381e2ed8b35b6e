"""The ``speeddata`` command (`speeddata.cli.main`): serve, demo, send, stats, bench
(`speeddata.cli.bench`), the data commands (`speeddata.cli.data`: ls, export, tag, tags,
untag, inspect) and a cluster's nodes and archives (`speeddata.cli.cluster`)."""

from .main import main

__all__ = ["main"]

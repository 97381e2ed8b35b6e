"""An iterator produced on a thread of its own, a few items ahead of its consumer: a read's
decoding (whose heavy parts run without the GIL) overlaps what the consumer does with the
chunk before (an HDF5 write, a Flight send)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def prefetch(items: Iterable[T], depth: int = 1, name: str = "speeddata-prefetch") -> Iterator[T]:
    """``items``, made on a thread at most ``depth`` ahead. An error there is raised here;
    leaving early stops the producer (and waits for it) before returning."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put(item)
            q.put(done)
        except BaseException as e:   # handed to the consumer, raised there
            q.put(e)

    worker = threading.Thread(target=produce, name=name, daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():   # unblock a producer waiting on the full queue
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass
        worker.join()

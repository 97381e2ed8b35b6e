"""The writer lock of a channel: one writing process at a time, by flock."""

from __future__ import annotations

import fcntl
import os
import time

from ..errors import StoreError

LOCK_FILE = "writer.lock"


def take_lock(channel_path: str, name: str, wait: float = 0.0) -> int:
    """The channel's writer lock, as an open file descriptor; waits up to ``wait`` s, since
    another process opening the channel holds it for a moment to repair it."""
    path = os.path.join(channel_path, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise StoreError(f"cannot write channel {name!r} in {os.path.dirname(channel_path)}: "
                         f"{e.strerror}") from e
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(0.01)
                continue
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StoreError(f"channel {name!r} is being written by another process "
                             f"(pid {holder})", hint="one process writes a channel at a time") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def writer_active(channel_path: str) -> bool:
    """True when some process holds the channel's writer lock."""
    try:
        fd = os.open(os.path.join(channel_path, LOCK_FILE), os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)

"""What the supervisor and a worker process agree on: the exit codes of a channel that
cannot start, the status file beside its ring, and who holds a UDP port. Kept apart from
`speeddata.ingest.worker` so that the supervisor (and ``speeddata.ingest``) does not import
the module ``python -m speeddata.ingest.worker`` runs."""

from __future__ import annotations

import os

EXIT_PORT_TAKEN = 3
EXIT_BAD_SETUP = 4


def status_path(ring_path: str) -> str:
    return ring_path + ".status.json"



def port_owner(port: int) -> str:
    """Who holds a UDP port, as 'pid N (name)', from /proc; '' when not knowable."""
    inodes = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                for line in f.readlines()[1:]:
                    parts = line.split()
                    if int(parts[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(parts[9])
        except OSError:
            continue
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    with open(f"/proc/{pid}/comm") as f:
                        return f"pid {pid} ({f.read().strip()})"
        except OSError:
            continue
    return ""

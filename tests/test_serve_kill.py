"""`speeddata serve` killed with SIGKILL in the middle of its work, as real processes: a
registration, a deregistration, an export and heavy ingest. After a restart the registry,
the store and the running workers agree (no half-registered channel, no orphaned worker),
no temporary export file is left, and every record flushed before the kill is stored once."""

import os
import signal
import threading
import time

import numpy as np
import pytest

import speeddata
from speeddata.errors import SpeedDataError
from speeddata.ingest import Registry
from speeddata.send import builtin_schema, send

from helpers import ServeProcess, free_udp_port, wait_for
from test_store import example_columns

pytestmark = pytest.mark.slow


def workers_of(data) -> dict[int, str]:
    """The live worker processes (zombies excluded) of the store ``data``: pid -> channel."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().decode().split("\0")
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if "speeddata.ingest.worker" in args and state != "Z" and \
                args[args.index("--data") + 1] == str(data):
            found[int(pid)] = args[args.index("--channel") + 1]
    return found


def kill9(server: ServeProcess) -> None:
    """SIGKILL the serve process; its workers must then stop by themselves (the ones that
    do not are killed here, as nothing else would: their parent is init now)."""
    server.proc.kill()
    server.proc.wait()
    try:
        wait_for(lambda: not workers_of(server.data), timeout=15,
                 what="the workers of a killed serve to stop")
    finally:
        for pid in workers_of(server.data):
            os.kill(pid, signal.SIGKILL)
        server.stop()


def export_files(pid: int) -> list[str]:
    """The temporary export files of serve process ``pid``."""
    import tempfile
    return [n for n in os.listdir(tempfile.gettempdir())
            if n.startswith(f"speeddata-{pid}-export")]


def consistent(server: ServeProcess) -> set[str]:
    """Check that the registry, the API and the workers agree; the registered channels."""
    client = speeddata.Client(server.address)
    registered = {c.name for c in client.list_channels() if c.status != "stored"}
    assert set(Registry(server.data).names()) == registered
    wait_for(lambda: set(workers_of(server.data).values()) == registered, timeout=15,
             what=f"one worker per registered channel {sorted(registered)}")
    running = workers_of(server.data)
    assert len(running) == len(registered), f"two workers for one channel: {running}"
    stats = client.stats()
    wait_for(lambda: all(client.stats()[n]["status"] == "running" for n in registered),
             what=f"every registered channel running: {stats}")
    return registered


def test_a_registration_or_deregistration_cut_by_kill9_is_whole_or_absent(tmp_path):
    data = tmp_path / "data"
    server = ServeProcess(data)
    try:
        client = speeddata.Client(server.address)
        began = time.monotonic()
        client.register_channel("first", free_udp_port(), builtin_schema("example"))
        took = time.monotonic() - began
        # cut before, in and just after a registration (its worker still starting)
        for i, at in enumerate((0.0, 0.1, 0.2, 0.3, 0.7, 1.0, 1.5, 3.0)):
            port, name = free_udp_port(), f"ch{i}"
            t = threading.Thread(target=_quietly, args=(client.register_channel, name, port,
                                                        builtin_schema("example")))
            t.start()
            time.sleep(at * took)
            kill9(server)
            t.join(timeout=30)
            server = ServeProcess(data)
            client = speeddata.Client(server.address)
            registered = consistent(server)
            assert "first" in registered
            if name in registered:      # whole: it receives and stores
                send(port=port, rate=20_000, count=100)
                wait_for(lambda name=name: client.stats([name])[name]["stored_records"]
                         == 100, what=f"{name} storing")
            else:                       # absent: from the store too; it registers anew
                with speeddata.store.open(data, retention=False) as store:
                    assert name not in store, f"{name} half-registered: stored, not running"
                client.register_channel(name, port, builtin_schema("example"))
        for i, at in enumerate((0.0, 0.5, 1.0, 2.0)):
            name = f"ch{i}"
            t = threading.Thread(target=_quietly, args=(client.deregister_channel, name))
            t.start()
            time.sleep(at * took)
            kill9(server)
            t.join(timeout=30)
            server = ServeProcess(data)
            client = speeddata.Client(server.address)
            registered = consistent(server)
            if name in registered:
                client.deregister_channel(name)
            assert name not in consistent(server)
            with speeddata.store.open(data, retention=False) as store:
                assert len(store[name].read()) in (0, 100), "deregistering lost data"
    finally:
        server.stop()


def _quietly(call, *args) -> None:
    try:
        call(*args)
    except SpeedDataError:
        pass                      # the server went away under the call


def test_an_export_cut_by_kill9_leaves_no_file_behind(tmp_path):
    data = tmp_path / "data"
    with speeddata.store.open(data) as store:
        ch = store.create_channel("example", builtin_schema("example"))
        ch.append_columns(*example_columns(600_000))
    server = ServeProcess(data)
    try:
        client = speeddata.Client(server.address)
        out = tmp_path / "run.h5"
        failed: list[Exception] = []

        def export():
            try:
                client.export_hdf5(out, 0, 2**62)
            except SpeedDataError as e:
                failed.append(e)
        t = threading.Thread(target=export)
        t.start()
        pid = server.proc.pid
        wait_for(lambda: export_files(pid), what="the export's temporary file")
        kill9(server)
        t.join(timeout=30)
        assert failed and not out.exists(), "a cut export must not leave a file"
        assert not list(tmp_path.glob("run.h5*")), "nor a .part file"
        assert export_files(pid), "the killed serve left its temporary file (to clean up)"
        server = ServeProcess(data)
        assert not export_files(pid), "the next serve removes the dead one's export files"
        client = speeddata.Client(server.address)
        client.export_hdf5(out, 0, 2**62)
        got = speeddata.read_hdf5(out)
        assert np.array_equal(got["example"]["counter"], np.arange(600_000))
        assert not export_files(server.proc.pid)
    finally:
        server.stop()


def test_heavy_ingest_cut_by_kill9_keeps_every_flushed_record_once(tmp_path):
    data, port = tmp_path / "data", free_udp_port()
    config = {"channels": [{"name": "example", "port": port,
                            "schema": builtin_schema("example")}]}
    server = ServeProcess(data, config=config)
    stop = threading.Event()
    sender = threading.Thread(target=send, kwargs=dict(port=port, rate=50_000,
                                                       stop=stop.is_set))
    sender.start()
    try:
        stored = 0
        for _ in range(3):
            client = speeddata.Client(server.address)
            wait_for(lambda: client.stats()["example"]["stored_records"] > stored + 20_000,
                     what="records stored")
            with speeddata.store.open(data, retention=False) as store:
                flushed = store["example"].read(signals=["counter"]).counter
            kill9(server)
            server = ServeProcess(data, config=config)
            with speeddata.store.open(data, retention=False) as store:
                now = store["example"].read(signals=["counter"]).counter
            assert np.isin(flushed, now).all(), "a flushed record went missing"
            stored = len(now)
        stop.set()
        sender.join()
        client = speeddata.Client(server.address)
        seen = [-1]

        def settled():               # the last block flushed: the count stays put
            n, seen[0] = seen[0], client.stats()["example"]["stored_records"]
            time.sleep(0.3)
            return n == seen[0]
        wait_for(settled, what="the last records flushed")
        with speeddata.store.open(data, retention=False) as store:
            counters = store["example"].read(signals=["counter"]).counter
        assert len(counters) > 60_000
        assert len(np.unique(counters)) == len(counters), "a record was stored twice"
    finally:
        stop.set()
        sender.join()
        server.stop()

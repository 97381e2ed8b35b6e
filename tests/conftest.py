import os
import subprocess
import tempfile

import pytest
from hypothesis import settings

from helpers import children as _children, ours as _ours

# HYPOTHESIS_PROFILE=thorough for a long property/fuzz run
settings.register_profile("default", max_examples=150)
settings.register_profile("thorough", max_examples=3000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

SHM = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


@pytest.fixture(autouse=True)
def leaves_nothing_behind():
    """Fail a test that leaves a child process, a live ring in /dev/shm or a SpeedData
    temp dir behind (its own fixtures clean up first: this runs last)."""
    before = (_children(os.getpid()), _ours(SHM), _ours(tempfile.gettempdir()))
    yield
    after = (_children(os.getpid()), _ours(SHM), _ours(tempfile.gettempdir()))
    left = [f"{what}: {sorted(map(str, now - then))}" for what, then, now in
            zip(("child processes", f"rings in {SHM}", "temp dirs"), before, after)
            if now - then]
    if left:
        for pid in after[0] - before[0]:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        pytest.fail("left behind: " + "; ".join(left))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Errors swallowed inside Cython (printed as 'Exception ignored') fail the test."""
    report = yield
    if report.when == "call" and report.passed:
        text = "".join(content for _, content in report.sections)
        if "Exception ignored" in text:
            report.outcome = "failed"
            report.longrepr = "the test's output shows an error that was swallowed " \
                              "('Exception ignored')"
    return report


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs, to fill the disk for real (needs root; skipped otherwise)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def child_processes():
    """Processes a test starts; all killed at the end, even when the test fails."""
    procs: list[subprocess.Popen] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
        for stream in (p.stdin, p.stdout, p.stderr):
            if stream:
                stream.close()

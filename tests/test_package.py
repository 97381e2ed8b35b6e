"""The installed package: imports without Cython, ships its schemas, web assets and stubs."""

import subprocess
import sys
from importlib import resources


def test_imports_without_cython_at_run_time():
    code = ("import sys, speeddata, speeddata.store, speeddata.codec, speeddata.ingest, "
            "speeddata.ingest.worker, speeddata.live, speeddata.hdf5, speeddata.cli, "
            "speeddata.send, speeddata.serving, speeddata.cluster, "
            "speeddata.columns, speeddata.decimation\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('Cython', 'pyximport')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_package_data():
    import speeddata
    assert (resources.files("speeddata") / "schemas" / "example.avsc").is_file()
    assert (resources.files("speeddata.web") / "README.md").is_file()
    for stub in ("_codec.pyi", "_block.pyi", "_ring.pyi", "_ingest.pyi", "py.typed"):
        assert (resources.files("speeddata") / stub).is_file()
    # every name the package says it exports is there, and the errors are one family
    for name in speeddata.__all__:
        assert hasattr(speeddata, name), name
    for name in ("ChannelNotFound", "FormatError", "TagExists", "StoreError"):
        assert issubclass(getattr(speeddata, name), speeddata.SpeedDataError)


def test_console_script():
    out = subprocess.run([sys.executable, "-m", "speeddata.cli", "--help"], capture_output=True,
                         text=True)
    assert out.returncode == 0 and "serve" in out.stdout and "demo" in out.stdout

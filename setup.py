"""Cython extensions and the gRPC code generated from proto/; everything else lives in
pyproject.toml.

The gRPC modules (speeddata/v1/*_pb2*.py) are generated here by grpcio-tools at every build,
never edited by hand and never committed.

SPEEDDATA_DEBUG=1 builds with annotation (HTML next to each .pyx) and line tracing for profiling.
"""
import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup


def generate_grpc() -> None:
    from grpc_tools import protoc
    os.makedirs("speeddata/v1", exist_ok=True)
    protos = sorted(glob.glob("proto/speeddata/v1/*.proto"))
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    status = protoc.main(["grpc_tools.protoc", "-Iproto", f"-I{include}", "--python_out=.",
                          "--pyi_out=.", "--grpc_python_out=.", *protos])
    if status != 0:
        raise SystemExit(f"protoc failed on {protos}")
    open("speeddata/v1/__init__.py", "a").close()   # generated with the rest


generate_grpc()
debug = os.environ.get("SPEEDDATA_DEBUG") == "1"
macros = [("CYTHON_TRACE_NOGIL", "1")] if debug else []
ext_modules = [
    Extension(f"speeddata.{name}", [f"speeddata/{name}.pyx"],
              define_macros=macros + [("_GNU_SOURCE", "1")],  # recvmmsg, sendmmsg
              extra_compile_args=["-O0", "-g"] if debug else ["-O3"])
    for name in ("_codec", "_block", "_ring", "_ingest", "_summary")
]
setup(ext_modules=cythonize(
    ext_modules,
    language_level=3,
    annotate=debug,
    compiler_directives={"linetrace": debug, "boundscheck": False, "wraparound": False,
                         "cdivision": True, "initializedcheck": False},
))

"""Cython extensions only; everything else lives in pyproject.toml.

SPEEDDATA_DEBUG=1 builds with annotation (HTML next to each .pyx) and line tracing for profiling.
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

debug = os.environ.get("SPEEDDATA_DEBUG") == "1"
macros = [("CYTHON_TRACE_NOGIL", "1")] if debug else []
ext_modules = [
    Extension(f"speeddata.{name}", [f"speeddata/{name}.pyx"],
              define_macros=macros + [("_GNU_SOURCE", "1")],  # recvmmsg, sendmmsg
              extra_compile_args=["-O0", "-g"] if debug else ["-O3"])
    for name in ("_codec", "_block", "_ring", "_ingest")
]
setup(ext_modules=cythonize(
    ext_modules,
    language_level=3,
    annotate=debug,
    compiler_directives={"linetrace": debug, "boundscheck": False, "wraparound": False,
                         "cdivision": True, "initializedcheck": False},
))

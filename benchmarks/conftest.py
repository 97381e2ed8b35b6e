"""In the normal test run (--benchmark-disable) every benchmark runs once on small data as a
smoke test; `make bench` times the full sizes."""

import pytest

from speeddata import schema as S

from benchdata import EXAMPLE_AVSC


@pytest.fixture(scope="session")
def full_size(request) -> bool:
    opt = request.config.getoption
    return bool(opt("benchmark_enable") or not opt("benchmark_disable"))


@pytest.fixture(scope="session")
def example_schema():
    return S.load(EXAMPLE_AVSC)

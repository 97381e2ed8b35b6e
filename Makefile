# One command to set up and run, one to set up and test: `make run`, `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp
DATA   ?= ./data

.PHONY: run test bench build clean

$(STAMP): pyproject.toml setup.py $(wildcard speeddata/*.pyx speeddata/*.pxd proto/speeddata/v1/*.proto)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

build: $(STAMP)
	$(BIN)/python setup.py build_ext --inplace --quiet

run: build
	$(BIN)/speeddata demo --data $(DATA)

test: build
	$(BIN)/python -m pytest

bench: build
	$(BIN)/python -m pytest benchmarks --benchmark-enable --benchmark-columns=median,min,max,rounds

clean:
	rm -rf build $(VENV) speeddata/*.so speeddata/*.c speeddata/*.html *.egg-info

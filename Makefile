# One command to set up and run, one to set up and test: `make run`, `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp
DATA   ?= ./data

.PHONY: run test bench build clean nats-server

$(STAMP): pyproject.toml setup.py $(wildcard speeddata/*.pyx speeddata/*.pxd proto/speeddata/v1/*.proto)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

build: $(STAMP)
	$(BIN)/python setup.py build_ext --inplace --quiet

run: build
	$(BIN)/speeddata demo --data $(DATA)

test: build nats-server
	$(BIN)/python -m pytest

# the cluster tests start real NATS servers: Debian's nats-server, installed when missing
nats-server:
	@command -v nats-server >/dev/null || { apt-get update -qq && \
		apt-get install -y -qq --no-install-recommends nats-server; } || \
		{ echo "make test needs Debian's nats-server (apt-get install nats-server)"; exit 1; }

bench: build
	$(BIN)/python -m pytest benchmarks --benchmark-enable --benchmark-columns=median,min,max,rounds

clean:
	rm -rf build $(VENV) speeddata/*.so speeddata/*.c speeddata/*.html *.egg-info

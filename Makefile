# Two commands set up a fresh machine: `make run` and `make test`. Everything else is optional.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(shell command -v $(PYTHON))

# The iWF server is installed with `go install github.com/indeedeng/iwf/cmd/server`. Where the machine's
# Go proxy does not serve that module, a file proxy that does (this workplace's ../shared/goproxy) is put
# first in GOPROXY when present; a GOPROXY set by the caller that already has a file:// proxy is kept.
LOCAL_GOPROXY ?= $(abspath ../shared/goproxy)
ifneq ($(wildcard $(LOCAL_GOPROXY)/github.com/indeedeng/iwf/@v/list),)
ifeq ($(findstring file://,$(GOPROXY)),)
DEFAULT_GOPROXY := https://proxy.golang.org,direct
export GOPROXY := file://$(LOCAL_GOPROXY),$(or $(shell go env GOPROXY 2>/dev/null),$(DEFAULT_GOPROXY))
export GONOSUMDB := github.com/indeedeng/iwf
endif
endif

.PHONY: install run stop test lint typecheck unit engine-test bench bench-quick chaos clean

$(VENV)/.synced: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check "uv>=0.5"
	uv sync --frozen
	@touch $@

install: $(VENV)/.synced

run: install
	$(VENV)/bin/python -m bot

stop: install  # stops exactly the app, iWF and Temporal processes named by pid files in STATE_DIR/pids
	$(VENV)/bin/python -m devstack stop

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

test: lint typecheck
	$(VENV)/bin/pytest

unit: install
	$(VENV)/bin/pytest -m "not engine"

engine-test: install
	REQUIRE_ENGINE=1 $(VENV)/bin/pytest -m engine

clean:
	rm -rf $(VENV) .state .local .pytest_cache .mypy_cache .ruff_cache

bench: install
	$(VENV)/bin/python -m bench.latency --n 100
	$(VENV)/bin/python -m bench.floor --n 300
	$(VENV)/bin/python -m bench.scale

chaos: install  # SEED=42 to replay a run
	$(VENV)/bin/python -m bench.chaos --n 200 $(if $(SEED),--seed $(SEED))

bench-quick: install
	$(VENV)/bin/python -m bench.latency --n 20
	$(VENV)/bin/python -m bench.floor --n 50
	$(VENV)/bin/python -m bench.scale --quick

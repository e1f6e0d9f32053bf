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

.PHONY: install run status stop test lint typecheck unit engine-test bench bench-quick bench-memory chaos clean examples \
	prod-deps prod-up prod-status prod-test chaos-prod podman-deps base-image images kube-smoke kube-down bench-profiles

# uv from PATH if there is one; else installed into a private virtualenv (a system Python marked "externally
# managed", as Debian 12's is, refuses a pip install into itself).
UV := $(or $(shell command -v uv 2>/dev/null),.local/uv/bin/uv)

.local/uv/bin/uv:
	$(PYTHON) -m venv .local/uv || { echo "no venv module: apt-get install python3-venv, or install uv" >&2; exit 1; }
	.local/uv/bin/python -m pip install --quiet --disable-pip-version-check "uv>=0.5"

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	@touch $@

install: $(VENV)/.synced

run: install
	$(VENV)/bin/python -m bot

status: install  # what the pid files name, running or not
	$(VENV)/bin/python -m devstack status

stop: install  # stops exactly the processes named by pid files in STATE_DIR/pids (app, iWF, Temporal; production: replicas, haproxy, postgres)
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

examples: install  # docs/*-example.json: the card, the edit modal and App Home as Block Kit JSON
	UPDATE_EXAMPLES=1 $(VENV)/bin/pytest -q tests/test_block_kit.py

clean:  # stops what the pid files name first: deleting them would leave the servers running, owned by nobody
	-@test -x $(VENV)/bin/python && $(VENV)/bin/python -m devstack stop
	rm -rf $(VENV) .state .local .pytest_cache .mypy_cache .ruff_cache

# The commit the engine-cost figures are compared with (issue 13: the code before the optimizations).
COST_BASELINE ?= aa0b4f6

bench: install
	$(VENV)/bin/python -m bench.latency --n 100
	$(VENV)/bin/python -m bench.socket_mode --n 200
	$(VENV)/bin/python -m bench.home --n 100
	$(VENV)/bin/python -m bench.floor --n 300
	$(VENV)/bin/python -m bench.cost --baseline $(COST_BASELINE) --rounds 2
	$(VENV)/bin/python -m bench.workflow_floor
	$(VENV)/bin/python -m bench.slack_load --rates 10,25,50,100
	$(VENV)/bin/python -m bench.scale

bench-memory: install  # the iWF server's RSS with 10,000 waiting emails: defaults, GOMEMLIMIT, a capped cache
	$(VENV)/bin/python -m bench.memory

chaos: install  # SEED=42 to replay a run; CHAOS_ARGS for the other options (python -m bench.chaos --help)
	$(VENV)/bin/python -m bench.chaos --n 200 $(if $(SEED),--seed $(SEED)) $(CHAOS_ARGS)

bench-quick: install
	$(VENV)/bin/python -m bench.latency --n 20
	$(VENV)/bin/python -m bench.socket_mode --n 20
	$(VENV)/bin/python -m bench.home --n 20
	$(VENV)/bin/python -m bench.floor --n 50
	$(VENV)/bin/python -m bench.cost --quick
	$(VENV)/bin/python -m bench.workflow_floor --quick
	$(VENV)/bin/python -m bench.slack_load --quick
	$(VENV)/bin/python -m bench.scale --quick

# --- the production profile (README "Production") -----------------------------------------------------
# PostgreSQL and HAProxy come from Debian (apt-get, as root); the Temporal server is built with go install.
prod-deps:
	@command -v haproxy >/dev/null 2>&1 && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 \
	  || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql haproxy)

prod-up: install prod-deps  # PostgreSQL, Temporal, PROD_IWF_REPLICAS iWF, PROD_APP_REPLICAS apps, HAProxy; `make stop`
	$(VENV)/bin/python -m devstack.production up

prod-status: install
	$(VENV)/bin/python -m devstack.production status

prod-test: install prod-deps  # the engine tests on the production profile
	ENGINE_PROFILE=production REQUIRE_ENGINE=1 $(VENV)/bin/pytest -m engine

chaos-prod: install prod-deps  # SEED and CHAOS_ARGS as for chaos
	$(VENV)/bin/python -m bench.chaos --n 200 --profile production $(if $(SEED),--seed $(SEED)) $(CHAOS_ARGS)

bench-profiles: install prod-deps  # emails/s at saturation, dev server and production profile, one run
	$(VENV)/bin/python -m bench.profiles

# --- images and the Kubernetes manifests, with podman (../shared/containers.md) -------------------------
PODMAN := podman --runtime runc --cgroup-manager=cgroupfs
PODMAN_LIMITS = --ulimit nofile=$$(ulimit -Hn):$$(ulimit -Hn) --ulimit nproc=4096:4096
# Where registries sit behind a TLS-inspecting proxy the host's CA bundle is mounted into builds (only).
HOST_CA ?= /etc/ssl/certs/ca-certificates.crt
BUILD_CA = $(if $(wildcard $(HOST_CA)),--volume $(HOST_CA):/run/host-ca.crt:ro --build-arg SSL_CERT_FILE=/run/host-ca.crt --build-arg PIP_CERT=/run/host-ca.crt)
BUILD = $(PODMAN) build --pull=never --network=host --format docker $(PODMAN_LIMITS) $(BUILD_CA)
GOPROXY_UPSTREAM ?= https://proxy.golang.org,direct
ENGINE_IMAGES := temporal iwf postgres haproxy

podman-deps:
	@command -v podman >/dev/null 2>&1 && command -v runc >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 \
	  || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap)

base-image: podman-deps  # debian:bookworm-slim made from Debian's packages: no registry to pull from here
	@$(PODMAN) image exists docker.io/library/debian:bookworm-slim || { \
	  root=$$(mktemp -d)/rootfs; \
	  mirror=$$(sed -n 's/^URIs: //p' /etc/apt/sources.list.d/debian.sources | head -1); \
	  debootstrap --variant=minbase bookworm "$$root" "$${mirror:-http://deb.debian.org/debian}" \
	  && tar -C "$$root" -c . | $(PODMAN) import - docker.io/library/debian:bookworm-slim \
	  && rm -rf "$$(dirname $$root)"; }

images: base-image  # email-agent, email-agent-setup, email-agent-{temporal,iwf,postgres,haproxy}
	$(BUILD) --target app -t email-agent .
	$(BUILD) --target setup -t email-agent-setup .
	@goproxy=$$(echo "$$GOPROXY" | tr ',' '\n' | sed -n 's|^file://||p' | head -1); \
	[ -d "$$goproxy" ] || goproxy=$(LOCAL_GOPROXY); [ -d "$$goproxy" ] || goproxy=$$(mktemp -d); \
	echo "file Go proxy for the builds: $$goproxy"; \
	for target in $(ENGINE_IMAGES); do \
	  echo "== email-agent-$$target"; \
	  $(BUILD) -f deploy/engine.Dockerfile --target $$target --build-context go="$$(go env GOROOT)" \
	    --build-context goproxy="$$goproxy" --build-arg GOPROXY_UPSTREAM="$(GOPROXY_UPSTREAM)" \
	    -t email-agent-$$target . || exit 1; \
	done
	@$(PODMAN) images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep email-agent

kube-smoke: install images  # deploy/k8s shape with podman kube play, one email end to end through it, then down
	$(VENV)/bin/python -m deploy.podman smoke

kube-down: install
	$(VENV)/bin/python -m deploy.podman down

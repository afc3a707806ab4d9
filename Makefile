# HostPanel. `make run` starts the panel; `make test` and `make test-e2e` run every check CI runs.
# Both install what they need first (`make install`, idempotent, needs root).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hostpanel-installed

.DEFAULT_GOAL := help
.PHONY: help install packages venv cli static test test-engine test-sqlite test-e2e test-e2e-doors test-control-plane lint run stop lighthouse test-lighthouse images

help:
	@echo "make run      install, start Redis and the panel on http://127.0.0.1:8000 (Ctrl-C to stop)"
	@echo "make stop     stop what 'make run' started (the panel, and Redis if it started it)"
	@echo "make test     install, then lint, type-check and run the panel's and the engine's unit tests, the panel on PostgreSQL (CI runs it first)"
	@echo "make test-engine  install, then the engine against the real kernel: crun, conmon, cgroups, mounts, nftables (CI runs it next)"
	@echo "make test-sqlite  install, then the panel's tests on SQLite, make run's default database (CI runs it next)"
	@echo "make test-e2e install, then the whole-stack tier of hosts: real Redis, enrolled agents, panel, Caddy (CI runs it next)"
	@echo "make test-e2e-doors  install, then the whole stack through its doors: browser, docker CLI, terminals, builds, logs (CI runs it next)"
	@echo "make test-control-plane  install, then build docker/'s images and bring the compose file up (CI runs it last)"
	@echo "make install  system packages, .venv, 'hpctl host setup' (idempotent; run as root)"
	@echo "make lint     ruff, mypy and import-linter only"
	@echo "make test-lighthouse  every dashboard page through Lighthouse (95+ in every category)"
	@echo "make images   the control plane's images (docker/build.sh: panel, PostgreSQL, Redis, Caddy)"

# System packages: the list lives in engine/host/packages.py (stdlib only, so it
# runs before the venv exists); apt runs only when something is missing.
packages:
	$(PYTHON) -m engine.host.packages --install

# The venv is (re)built only when requirements.txt or pyproject.toml changed.
venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $@

# `hpctl`: the operator daemon's thin client in C (engine/cli/hpctl.c), which hands every command
# the daemon does not run to the Python hpctl (scripts/hpctl-py, installed as $(BIN)/hpctl-py).
cli: $(BIN)/hpctl

$(BIN)/hpctl: engine/cli/hpctl.c $(STAMP)
	gcc -O2 -Wall -Wextra -Werror -o $@.part $< \
	    -DHPCTL_PYTHON='"$(abspath $(BIN))/python"' -DHPCTL_SCRIPT='"$(abspath $(BIN))/hpctl-py"'
	mv -f $@.part $@

install: packages venv cli static
	$(BIN)/hpctl host setup
	@# the password Redis requires (var/redis_password, mode 0600; made once): scripts/redis.sh
	@$(BIN)/python -m hostpanel.config redis-password "$${HOSTPANEL_VAR_DIR:-$$PWD/var}" >/dev/null

# Browser libraries (htmx, xterm.js) from the npm registry, integrity-checked, into static/vendor/.
static:
	$(PYTHON) scripts/vendor_static.py

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy engine
	$(BIN)/lint-imports --no-cache  # the layers: pyproject.toml [tool.importlinter]

# Six tiers, each under 20 minutes on CI's 2 cores; .ci/run runs them one after the other
# (README, Tests). The two e2e tiers are every test that starts the whole stack (tests/conftest.py:
# is_end_to_end); the engine's real-kernel tests have a tier of their own (test-engine).
test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy engine
	$(BIN)/lint-imports --no-cache  # the layers: pyproject.toml [tool.importlinter]
	$(BIN)/pytest -q tests --ignore=tests/browser/lighthouse --ignore=tests/engine/privileged -m "not e2e" --database=postgres

# The engine against the real kernel (root): containers through crun and conmon, cgroups,
# overlay and loop mounts, veths, nftables. No database.
test-engine: install
	$(BIN)/pytest -q tests/engine/privileged -m "not e2e"

# The panel's tests once more on SQLite, the embedded default of `make run` (both databases in
# one tier would take CI past 17 minutes: README, Tests). tests/pgserver.py: --database.
test-sqlite: install
	$(BIN)/pytest -q tests/hostpanel -m "not e2e" --database=sqlite

# The whole-stack tests in two tiers (each under 20 minutes: every agent is enrolled with the join
# command beside a panel subprocess; README, Tests): the hosts (tests/hostpanel/e2e/) and every
# other whole-stack test, through the panel's doors (browser, Docker API, terminals, builds, logs).
test-e2e: install
	$(BIN)/pytest -q tests/hostpanel/e2e -m "e2e and not control_plane"

test-e2e-doors: install
	$(BIN)/pytest -q tests --ignore=tests/browser/lighthouse --ignore=tests/hostpanel/e2e -m "e2e and not control_plane"

# The control plane's images built from debootstrap and brought up with docker-compose: a cold
# build takes 6-7 minutes, so it has a tier of its own (README, Tests).
test-control-plane: install
	$(BIN)/pytest -q tests -m control_plane

run: install
	@scripts/run.sh

stop:
	@scripts/stop.sh

# Lighthouse (a Node tool, not a Debian package; needs Node 18.20+) into var/tools/, and the
# browser-tier check that every page scores 95+ in every category with it (tests/browser/lighthouse/).
LIGHTHOUSE := var/tools/node_modules/.bin/lighthouse
lighthouse: $(LIGHTHOUSE)

$(LIGHTHOUSE):
	npm install --prefix var/tools --no-audit --no-fund lighthouse@12.8.2

test-lighthouse: install lighthouse
	HOSTPANEL_LIGHTHOUSE=$(LIGHTHOUSE) $(BIN)/pytest -q -rs -s tests/browser/lighthouse/

# The control plane's container images, built offline with hpctl build (README "Running the
# control plane in containers").
images: install
	docker/build.sh

# genreops — developer entry points. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed
# command -> Debian package providing it
APT_PACKAGES := ffmpeg:ffmpeg node:nodejs npm:npm prometheus:prometheus \
  prometheus-node-exporter:prometheus-node-exporter \
  prometheus-alertmanager:prometheus-alertmanager chromium:chromium \
  docker-compose:docker-compose espeak-ng:espeak-ng sox:sox
S3_SERVER := tools/s3/node_modules/.package-lock.json
PYTEST_ARGS ?=

.PHONY: help setup system-deps lock test test-unit reliability lint format demo demo_loop up down status clean

# Docker Compose targets (build_and_up, compose_down, ...)
include makefiles/*.mk

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: system-deps $(STAMP) $(S3_SERVER) ## Create .venv, pinned deps, the embedded S3 server (idempotent)

# Installs missing apt packages when we can (root or passwordless sudo); otherwise says what to do.
system-deps:
	@missing=""; for pair in $(APT_PACKAGES); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi; \
	  if [ "$$SUDO" != none ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "setup: installing apt packages:$$missing"; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	  else echo "setup: WARNING: please install:$$missing (ffmpeg: mp4/m4a; node+npm: the S3 server;" \
	    "prometheus, prometheus-alertmanager: metrics and alerts; chromium: UI checks; docker-compose: Compose validation)"; fi; \
	fi

$(STAMP): requirements/lock.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python >= 3.11 required"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(UV) && $(UV) --version | grep -q $(UV_VERSION) || $(PY) -m pip install -q "uv==$(UV_VERSION)"
	$(UV) pip sync --python $(PY) requirements/lock.txt
	$(UV) pip install --python $(PY) --no-deps -e .
	$(PY) -m genreops.data.warm  # numba's caches, compiled once before anything runs in parallel
	@touch $@

# The embedded S3 server (npm s3rver, pinned by tools/s3/package-lock.json).
$(S3_SERVER): tools/s3/package.json tools/s3/package-lock.json
	npm ci --prefix tools/s3 --no-audit --no-fund --loglevel=error

# lock.txt: runtime + dev tools (make setup). runtime.txt: the same versions without the dev
# extra (the Compose image), constrained by lock.txt so the two never disagree.
lock: ## Re-resolve requirements/lock.txt (dev) and requirements/runtime.txt from pyproject.toml
	@test -x $(UV) || $(MAKE) setup
	$(UV) pip compile --python-version 3.11 -q pyproject.toml --extra dev -o requirements/lock.txt
	$(UV) pip compile --python-version 3.11 -q pyproject.toml -c requirements/lock.txt \
	  -o requirements/runtime.txt

# Both cores: modules are spread over TEST_WORKERS pytest-xdist workers, each module whole on one
# (tests/conftest.py). TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
test: setup ## Run the whole test suite (starts the servers it needs itself)
	$(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

test-unit: setup ## Only the fast unit tests
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

# Full-size reliability suite (issue 6). The report is written even when tests fail; the
# target then exits with pytest's code. The audit never fails (report only, offline-safe).
RELIABILITY_OUT ?= test-output/reliability
RELIABILITY_DOC ?= docs/RELIABILITY.md
reliability: setup ## Bad input, faults, load, security at full size; rewrites docs/RELIABILITY.md
	rm -rf $(RELIABILITY_OUT)
	tools/pip_audit.sh
	GENREOPS_RELIABILITY=full GENREOPS_RELIABILITY_OUT=$(abspath $(RELIABILITY_OUT)) \
	  $(PY) -m pytest -m reliability -p no:randomly $(PYTEST_ARGS); code=$$?; \
	$(PY) tools/reliability_report.py --records $(RELIABILITY_OUT) --output $(RELIABILITY_DOC) \
	  || { [ $$code -ne 0 ] || code=1; }; \
	exit $$code

lint: setup ## ruff, ruff-format, mypy, file hygiene and pip-audit (report only) via pre-commit
	$(VENV)/bin/pre-commit run --all-files

format: setup ## Apply ruff formatting and fixes
	$(VENV)/bin/ruff format src tests flows bench
	$(VENV)/bin/ruff check --fix src tests flows bench

up: setup ## Start the native stack (S3, MLflow, Prefect + deployments, Triton, Prometheus, drift UI)
	$(VENV)/bin/genreops stack up

down: ## Stop everything `make up` / `make demo` started (and nothing else)
	@if [ -x $(VENV)/bin/genreops ]; then $(VENV)/bin/genreops stack down; fi

status: ## Each stack service with its pid, health and URL
	$(VENV)/bin/genreops stack status

demo: setup ## The whole platform once: stack up, corpus, pipeline deployment, predictions, summary
	$(VENV)/bin/genreops stack up
	$(VENV)/bin/genreops demo

# The monitor's settings that make the closed loop take minutes (defaults: 15 min of open gate,
# 50 labeled canary answers). They apply to a stack started by this target.
LOOP_ENV = GENREOPS_RETRAIN_GATE_OPEN_SECONDS=20 GENREOPS_RETRAIN_CHECK_SECONDS=5 \
	GENREOPS_RETRAIN_COOLDOWN_SECONDS=60 GENREOPS_RETRAIN_TRIALS=3 \
	GENREOPS_CANARY_SHARE=0.5 GENREOPS_CANARY_MIN_ANSWERS=20 GENREOPS_ALERT_PENDING_SECONDS=0

demo_loop: setup ## The demo, then the closed loop: drift, alert, labels, retraining, canary, promotion
	$(LOOP_ENV) $(VENV)/bin/genreops stack up
	$(LOOP_ENV) $(VENV)/bin/genreops demo --loop

clean: ## Remove caches and local state (.genreops); keeps .venv
	rm -rf .pytest_cache .mypy_cache .ruff_cache bench/out .genreops
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +

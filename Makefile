# Two entry points: `make serve` (service on the embedded default) and `make test` (the whole suite).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip -q --disable-pip-version-check
STAMP := $(VENV)/.installed

.PHONY: install serve test lint fast bench services clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install torch==2.14.1 torchvision==0.29.1
	$(PIP) install -e ".[dev]" "torch==2.14.1" "torchvision==0.29.1"
	touch $(STAMP)

install: $(STAMP)

serve: install
	$(VENV)/bin/synthaudit serve

# What the test suite needs beyond Python: Postgres + Redis up, headless Chromium (report, docs) and zip (the README workflow test).
services:
	bash scripts/ensure_services.sh
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	command -v zip >/dev/null || (apt-get update -qq && apt-get install -y -qq zip)

# The layers and types hold (docs/architecture.md): lint, format and type checks before any test runs.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: install services lint
	$(PY) -m pytest

# The fast tier: unit tests and the in-process app, no server processes (about a minute).
fast: install
	$(PY) -m pytest -m "not slow"

bench: install
	$(VENV)/bin/synthaudit bench ../shared/bench/*

clean:
	rm -rf $(VENV) .synthaudit

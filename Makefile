# The commands a user types. Each target first makes sure the environment exists;
# the second time, nothing is installed (a stamp file records the last install).
PYTHON_BIN ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup run train test lint test-fast bench gpu-check ui visdom dashboard stop clean-venv

setup: $(STAMP)

# The pinned requirements, then core itself, editable (pyproject.toml, no dependencies of its own):
# `python -m core` and `import core` work from any folder.
$(STAMP): requirements.txt constraints.txt pyproject.toml core/visdom_assets.py
	@test -x $(PY) || $(PYTHON_BIN) -m venv $(VENV)
	PIP_CONSTRAINT=$(CURDIR)/constraints.txt $(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m core.visdom_assets install
	@touch $(STAMP)

run: setup
	$(PY) -m core run

train: setup
	$(PY) -m core train

test: setup lint
	$(PY) -m pytest -m "not gpu" $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .

test-fast: setup lint
	$(PY) -m pytest -m "not slow and not browser and not postgres and not gpu" $(PYTEST_ARGS)

bench: setup
	$(PY) -m benchmarks

# on a CUDA machine: every gpu test, every CUDA path once and the GPU benchmark rows -> test-artifacts/gpu-check.md
gpu-check: setup
	$(PY) -m benchmarks.gpu_check

ui: setup
	$(PY) -m core ui

visdom: setup
	$(PY) -m core visdom

dashboard: setup
	$(PY) -m core dashboard

# Ends the servers this store's commands left running: the Visdom server `make run` starts in the background,
# and a `make ui` or `make dashboard` still running in another terminal.
stop: setup
	$(PY) -m core visdom --stop
	$(PY) -m core ui --stop
	$(PY) -m core dashboard --stop

clean-venv:
	rm -rf $(VENV)

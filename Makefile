# The two commands of the README: `make run` and `make test`. Both create .venv on first use and
# install from the hashed locks in requirements/ (scripts/install; `make lock` regenerates them).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
INSTALL_INPUTS := scripts/install requirements/bootstrap.txt requirements/models.txt pyproject.toml
LINTED := sdm_router tests benchmarks loadtests scripts/check_lock.py scripts/config_reference.py

.PHONY: run test unit check format clean verifier router lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): requirements/run.txt $(INSTALL_INPUTS) | $(BIN)/python
	scripts/install run $(BIN)/python --editable
	touch $@

# test.txt holds everything run.txt does, plus the test and lint tools.
$(TEST_STAMP): requirements/test.txt $(INSTALL_INPUTS) | $(BIN)/python
	scripts/install test $(BIN)/python --editable
	touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/sdm-router serve

# Coverage of sdm_router over the whole suite, with a floor (raise it as coverage grows).
COVERAGE_FLOOR := 93
test: $(TEST_STAMP)
	scripts/ensure-prometheus
	scripts/ensure-nginx
	scripts/ensure-chromium
	$(BIN)/python -m pytest --cov=sdm_router --cov-report=term:skip-covered \
		--cov-fail-under=$(COVERAGE_FLOOR)

# The fast loop: unit tests only, no services installed (under a minute here).
unit: $(TEST_STAMP)
	$(BIN)/python -m pytest tests/unit -q

check: $(TEST_STAMP)
	$(BIN)/python scripts/check_lock.py
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(TEST_STAMP)
	$(BIN)/ruff format $(LINTED)
	$(BIN)/ruff check --fix $(LINTED)

# Re-resolve every lock from pyproject.toml (needs the package registry); see README.
lock: $(TEST_STAMP)
	scripts/lock

verifier: $(RUN_STAMP)
	scripts/build-default-verifier
	scripts/build-default-router

router: $(RUN_STAMP)
	scripts/build-default-router

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The project's front door. `make run` and `make test` work on a fresh machine: they create
# .venv and install the project from pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all run test lint typecheck format bench bench-webhooks bench-shard screenshots clean

all: lint typecheck test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m gateway serve

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy gateway adapters

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python benchmarks/transitions.py

bench-webhooks: $(STAMP)
	$(BIN)/python benchmarks/webhooks.py $(BENCH_ARGS)

bench-shard: $(STAMP)
	$(BIN)/python benchmarks/shard.py

screenshots: $(STAMP)
	GATEWAY_TEST_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -q -p no:cacheprovider \
		tests/test_console_browser.py tests/test_console_policy_browser.py

clean:
	rm -rf $(VENV) .state .mypy_cache .ruff_cache .pytest_cache

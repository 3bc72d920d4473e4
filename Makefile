# The two set-up commands of the README: `make demo` and `make test`. Both work on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint unit soak bench clean dev-up dev-down

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

# The main job on the embedded default: MariaDB + broker + the whole pipeline + a webook workload.
demo: $(STAMP)
	$(BIN)/cdc-repair demo

# Lint, type-check, then every test against the real embedded MariaDB and broker.
test: $(STAMP) lint
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check cdc_repair cdc_repair_dev tests bench
	$(BIN)/mypy

soak: $(STAMP)
	$(BIN)/pytest -m slow -s

dev-up: $(STAMP)
	$(BIN)/cdc-repair dev up

dev-down: $(STAMP)
	$(BIN)/cdc-repair dev down

clean:
	-$(BIN)/cdc-repair dev down
	rm -rf $(VENV) .cdc-repair-dev .pytest_cache .mypy_cache .ruff_cache

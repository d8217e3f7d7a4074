# scaler-workbench: two commands on a fresh machine with Python 3.11 and make.
#   make demo   full onboarding against the built-in sandbox provider -> out/demo/
#   make test   ruff, mypy, pytest (unit, loopback HTTP, notebooks)
#   make docs   execute the notebooks and render them to HTML under docs/_build/notebooks/
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest lab docs bench bench-smoke clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/scaler-workbench demo --out out/demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	MPLBACKEND=Agg $(BIN)/pytest -q -p no:cacheprovider tests notebooks --nbval-lax --durations=15

test: lint typecheck pytest

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

docs: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python -m scaler_workbench.notebook docs

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

bench-smoke: $(STAMP)
	$(BIN)/python -m benchmarks.run --smoke

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache

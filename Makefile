# `make demo` and `make test` each bring the local virtualenv up to date first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINTED := fetcher tests $(wildcard bench) $(wildcard tools)

.PHONY: demo test lint typecheck unit bench clean test-min test-latest

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,http2,demo,dask,socks]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m fetcher.demo

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

typecheck: $(STAMP)
	$(BIN)/mypy fetcher

unit: $(STAMP)
	$(BIN)/pytest --cov --cov-report=term

# The suite against the lowest version of every direct dependency pyproject.toml allows
# (tools/min_requirements.py pins each to its floor), in a venv of its own, built afresh.
# Not part of `make test`: it downloads about 40 packages.
VENV_MIN := .venv-min
test-min:
	rm -rf $(VENV_MIN)
	$(PYTHON) -m venv $(VENV_MIN)
	$(VENV_MIN)/bin/python -m pip install --quiet --upgrade pip
	$(PYTHON) tools/min_requirements.py http2 dev demo dask socks > $(VENV_MIN)/requirements.txt
	$(VENV_MIN)/bin/python -m pip install --quiet -r $(VENV_MIN)/requirements.txt
	$(VENV_MIN)/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(VENV_MIN)/bin/python -m pip check
	$(VENV_MIN)/bin/python -m pip freeze --exclude-editable
	$(VENV_MIN)/bin/pytest -p no:cacheprovider --cov --cov-report=term

# The suite on the newest httpx, httpcore, h11 and h2 from PyPI, past pyproject's upper bounds
# (pip warns that afetch asks for older ones): run it before raising a bound. A fresh venv each
# time, so "newest" means newest today; not part of `make test`.
LATEST := .venv-latest
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST)/bin/python -m pip install --quiet -e '.[dev,http2,demo,dask,socks]'
	$(LATEST)/bin/python -m pip install --quiet --upgrade httpx httpcore h11 h2
	$(LATEST)/bin/python -m pip list 2>/dev/null | grep -iE '^(httpx|httpcore|h11|h2) '
	$(LATEST)/bin/pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) $(VENV_MIN) .venv-latest .coverage .pytest_cache .mypy_cache .ruff_cache

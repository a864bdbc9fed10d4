# Distillery: `make run` starts the service on the embedded default; `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run test test-fast soak lint bench bench-accuracy clean

$(STAMP): requirements/cpu.txt requirements/base.txt requirements/dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/cpu.txt -r requirements/base.txt -r requirements/dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/distillery up

test: install
	$(PY) -m pytest -q -p no:cacheprovider --durations=15

test-fast: install
	$(PY) -m pytest -q -m "not slow" tests/unit

# 200 jobs from 4 tenants on 2 workers against PostgreSQL + Redis (the test suite runs a smaller one)
soak: install
	CI=true DISTILLERY_SOAK_JOBS=200 $(PY) -m pytest -q -s -p no:cacheprovider --timeout 3600 tests/e2e/test_soak.py

lint: install
	$(VENV)/bin/ruff check api worker kdcore tests

bench: install
	$(PY) -m kdcore.bench all

bench-accuracy: install
	$(PY) -m kdcore.bench.accuracy --write-readme

clean:
	rm -rf var .pytest_cache

# Distillery: `make run` starts the service on the embedded default; `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run test test-fast soak lint bench bench-gpu bench-accuracy bench-readme constraints clean

$(STAMP): requirements/constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements/constraints.txt -e '.[dev]'
	touch $(STAMP)

# the console's browser test drives the system Chromium (Playwright cannot download its own here)
install: $(STAMP)
	@test -x /usr/bin/chromium || [ "$$(id -u)" != 0 ] || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) \
		|| echo "chromium could not be installed: tests/e2e/test_console.py will skip"

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
	$(VENV)/bin/ruff check api worker kdcore core client bench tests migrations
	$(VENV)/bin/ruff format --check api worker kdcore core client bench tests migrations
	$(VENV)/bin/mypy

bench: install
	$(PY) -m bench all

# on a CUDA machine: fp32 vs AMP + channels_last (+ torch.compile), job vs hand-written loop, streamed loader vs GPU;
# without one it says so and runs the same code as a CPU smoke check
bench-gpu: install
	$(PY) -m bench cuda

bench-accuracy: install
	$(PY) -m kdcore.bench.accuracy

# copy what `make bench` / `make bench-accuracy` wrote under .bench/ into README.md
bench-readme:
	$(PY) -m bench.readme

# re-pin what CI installs from the current .venv
constraints: install
	(echo '# What CI installs, pinned (pip freeze of a working .venv; `make constraints` rewrites it). torch/torchvision come from the machine'"'"'s local wheels.'; $(PY) -m pip freeze --exclude-editable | grep -v '^distillery') > requirements/constraints.txt

clean:
	rm -rf var .pytest_cache

# Two commands on a fresh Linux machine with Python 3.11+:  make run  and  make test.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.iolab-installed

.PHONY: run test lint bench clean venv test-deps

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: iolab needs Python 3.11+ (found " + sys.version.split()[0] + "); run: make PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/iolab run

# System tools some tests drive (ab, wrk, hey, chromium): installed when missing and we are root.
test-deps:
	@bash scripts/test-deps.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check iolab tests benchmarks examples
	$(VENV)/bin/mypy iolab

test: $(STAMP) test-deps lint
	$(VENV)/bin/pytest -q

# Benchmarks, not tests: ratios measured side by side in one run. BENCH_ARGS=--quick for short runs.
# Drivers: builtin vs wrk, ab, hey against nginx and uvicorn (~6 min; installs nginx-light when root).
# Loggers: iolab.logging against every Python logger on caller cost, syscalls, slow sinks, exit.
bench: $(STAMP)
	$(PY) benchmarks/bench_drivers.py $(BENCH_ARGS)
	$(PY) benchmarks/bench_logging.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

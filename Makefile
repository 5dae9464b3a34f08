# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
EXECUTED ?= build/executed
DEMO_COUNT ?= 2000
DEMO_SIZE  ?= 128

.PHONY: install demo run sweep report test test-fast notebooks-check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

data/demo/manifest.csv: | $(STAMP)
	$(PY) -m fakelib demo --out data/demo --count $(DEMO_COUNT) --size $(DEMO_SIZE) --seed 0

demo: data/demo/manifest.csv

## venv + install + demo dataset + default sweep + report
run: install demo
	$(PY) run_all.py

## venv + install + every test (unit, notebook smoke tests through papermill, then nbval over the executed notebooks)
test: install
	rm -rf $(EXECUTED)
	FAKELIB_EXECUTED_DIR=$(EXECUTED) $(PY) -m pytest tests
	$(PY) -m pytest --nbval-lax -p no:cacheprovider $(EXECUTED)

test-fast: install
	$(PY) -m pytest tests -m "not slow and not notebook"

bench: install
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(PY) $$script; done

clean:
	rm -rf build .pytest_cache data/cache

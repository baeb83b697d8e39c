# The two commands of the README's quick start: `make demo` and `make test`.
# Both work on a fresh clone: they create .venv, install the package with what it
# needs, and (for tests) Debian's chromium for the browser tests.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PORT ?= 6006
EPOCHS ?=
LOGDIR ?= runs

# apt-get needs root; use sudo when we are not root and it exists.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install browser test demo lint bench screenshots clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# PyPI's default torch wheel for Linux brings several GB of CUDA libraries; the tests
# need only the CPU build. Where pip can find the CPU wheel (these machines keep one in
# their wheel folder) take it, else fall back to what PyPI gives.
TORCH_CPU ?= torch==2.13.0

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet '$(TORCH_CPU)' || $(PY) -m pip install --quiet torch
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(STAMP)

# Playwright's own browser download does not work on offline machines; we drive
# Debian's chromium instead (see tests/browser.py).
browser:
	@if [ -x /usr/bin/chromium ]; then echo "chromium: $$(/usr/bin/chromium --version 2>/dev/null)"; \
	else $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium fonts-dejavu-core; fi

# The whole suite on TensorFlow, then the tests marked `all_backends` on JAX and on
# PyTorch (tests/conftest.py); each pass prints how long it took. Each pass runs on
# TEST_WORKERS processes (pytest-xdist), a test file per process at a time, so that a
# file's module fixtures (a trained model, a server) are built once. Three on 2 cores: a
# process waiting on a subprocess, a server or the browser leaves a core free (measured on
# a clean clone: 10.4 to 11.7 min for the three passes, 12.8 to 14.4 with install and lint).
TEST_WORKERS ?= 3
XDIST = -n $(TEST_WORKERS) --dist loadfile
test: install browser
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	KERAS_BACKEND=tensorflow $(PY) -m pytest $(XDIST)
	KERAS_BACKEND=jax $(PY) -m pytest $(XDIST) -m all_backends
	KERAS_BACKEND=torch $(PY) -m pytest $(XDIST) -m all_backends

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

demo: install
	$(PY) examples/demo.py --logdir $(LOGDIR) --port $(PORT) $(if $(EPOCHS),--epochs $(EPOCHS),)

bench: install
	$(PY) benchmarks/layer.py
	$(PY) benchmarks/layer_backends.py
	$(PY) benchmarks/plugin.py
	$(PY) benchmarks/records.py

# The README's pictures of the Attention tab: trains the date example and a small
# transformer, serves their logs, photographs the tab in headless Chromium (docs/images/).
screenshots: install browser
	$(PY) docs/screenshots.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache

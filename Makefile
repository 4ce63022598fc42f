# Two commands for a newcomer: `make serve` and `make test`. Both do all their own set-up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: serve test test-sqlite test-postgres lint bench sysdeps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

## Set up, migrate, seed the demo clinic (first run only) and start the web server with a Celery worker.
serve: $(STAMP)
	$(PY) -m server db upgrade
	$(PY) -m server catalogue seed
	$(PY) -m server consent seed
	$(PY) -m server demo seed --if-empty
	$(PY) -m server serve

sysdeps:
	bash scripts/install-system-deps.sh

## Set up and pass every test: lint, then the suite on SQLite, then again on PostgreSQL 15.
test: $(STAMP) sysdeps lint test-sqlite test-postgres

test-sqlite: $(STAMP)
	$(PY) -m pytest -q

test-postgres: $(STAMP)
	bash scripts/with-postgres.sh $(PY) -m pytest -q -m "not e2e"

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy

bench: $(STAMP) sysdeps
	$(PY) -m bench
	bash scripts/with-postgres.sh $(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

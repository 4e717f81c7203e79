# The two commands a newcomer needs: `make run` and `make test`. See README.md.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
HOST ?= 127.0.0.1
PORT ?= 8000
export HOST PORT

.PHONY: help install run test lint format bench lock messages clean

help:
	@echo "make run    set up everything and run the app (web, worker, beat) on SQLite with demo data"
	@echo "make test   run the whole test suite (PostgreSQL when DATABASE_URL points to it)"
	@echo "make lint   ruff check, ruff format --check, import contracts, bandit, migrations check"
	@echo "make bench  run the benchmarks in bench/ and print their figures"

$(BIN)/activate:
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11 or newer is needed") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/activate requirements/dev.txt pyproject.toml
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	touch $@

install: $(VENV)/.installed

# A development .env with DEBUG on and a fresh random secret, written once, never committed.
.env:
	@$(PYTHON) -c 'import secrets; print("DEBUG=1"); print("SECRET_KEY=" + secrets.token_urlsafe(50))' > $@
	@echo "wrote .env (DEBUG=1, random SECRET_KEY)"

run: install .env
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	@$(PY) manage.py show_urls_and_logins --base-url "http://$(HOST):$(PORT)"
	$(BIN)/honcho --procfile Procfile.dev start

test: install
	DEBUG=1 $(BIN)/pytest $(PYTEST_ARGS)

# bandit 1.9 logs "nosec encountered (B608), but no failed test" for the other parts of each
# f-string whose finding a `# nosec B608` suppresses: its log goes to
# var/bandit.log, and its other lines are shown when it fails.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	@mkdir -p var
	$(BIN)/bandit -q -c pyproject.toml -r config loyalty members rewards portal analytics demo 2>var/bandit.log \
		|| { grep -v "but no failed test" var/bandit.log; exit 1; }
	DEBUG=1 $(PY) manage.py makemigrations --check --dry-run

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	$(PY) bench/run_all.py

# Regenerate the pinned requirements from pyproject.toml (a maintainer's step, not CI's).
lock: install
	$(BIN)/pip-compile --quiet --strip-extras --no-header -o requirements/prod.txt pyproject.toml
	$(BIN)/pip-compile --quiet --strip-extras --no-header --extra dev -o requirements/dev.txt pyproject.toml

# Extract the strings into locale/*/LC_MESSAGES/django.po and compile the .mo files (both
# committed: running the app needs no gettext tools). Needs gettext (xgettext, msgmerge, msgfmt).
# No djangojs domain: there is no JavaScript to translate.
messages: install
	DEBUG=1 $(PY) manage.py makemessages -l fr -l en --no-obsolete --ignore .venv --ignore var --ignore bench --ignore tests
	DEBUG=1 $(PY) manage.py compilemessages --ignore .venv

clean:
	rm -rf var .pytest_cache .ruff_cache

# Schema-driven fuzzing of the POS API: schemathesis against a live server on a fresh database
# (PostgreSQL beside DATABASE_URL's when it is set), fixed seed; see bin/fuzz-api.
.PHONY: fuzz
fuzz: install
	$(PY) bin/fuzz-api

# The README's two commands: `make run` (the whole system) and `make test` (every check).
# Both install what they need into .venv on first use.

HOST ?= 127.0.0.1
PORT ?= 8000
VENV := .venv
BIN := $(VENV)/bin
# The first Python 3.11+ on PATH; override with `make PYTHON=/path/to/python3.11 ...`.
PYTHON ?= $(shell for p in python3.11 python3.12 python3.13 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	2>/dev/null && { echo $$p; break; }; done)

.PHONY: run test test-fast lint typecheck pytest migrations-check bench clean

run: export DEBUG = 1
run: $(VENV)/.runtime .env
	@grep -q '^[[:space:]]*SECRET_KEY=' .env || { \
		echo "SECRET_KEY=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(50))')" >> .env && \
		echo "== Wrote a random SECRET_KEY for this checkout to .env (the README's commands need it)"; }
	@chmod 600 .env
	@echo "== Applying database migrations"
	$(BIN)/python manage.py migrate --noinput
	@echo "== Loading demo data"
	$(BIN)/python manage.py seed_demo
	@echo "== Admin login"
	@$(BIN)/python manage.py ensure_admin --url http://$(HOST):$(PORT)/admin/
# Ctrl-C reaches this shell too: the trap lets it wait for honcho to stop web, worker
# and beat, then take honcho's 130 (SIGINT) or 143 (SIGTERM) as a clean stop.
	@trap : INT TERM; broker=$$($(BIN)/python manage.py broker_url) && \
	echo "== Starting web (http://$(HOST):$(PORT)/admin/), worker and beat on $$broker; Ctrl-C stops all" && \
	PATH="$(CURDIR)/$(BIN):$$PATH" CELERY_BROKER_URL="$$broker" WEB_ADDRESS=$(HOST):$(PORT) \
		$(BIN)/honcho start -f Procfile; \
	status=$$?; case $$status in 130|143) echo "== Stopped";; *) exit $$status;; esac

test: lint typecheck migrations-check pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The tools load the settings, which need DEBUG (or a real SECRET_KEY) to import.
typecheck migrations-check bench: export DEBUG = 1
typecheck: $(VENV)/.dev .env
	$(BIN)/mypy .

migrations-check: $(VENV)/.dev .env
	$(BIN)/python manage.py makemigrations --check --dry-run

pytest: $(VENV)/.dev
	$(BIN)/pytest

# While iterating: the tests that start no process, server, worker, Redis, browser or
# Schemathesis (pytest.ini's marks); CI's `make test` runs everything.
FAST_TESTS := not (slow or process or redis or browser or schemathesis)
test-fast: $(VENV)/.dev
	$(BIN)/pytest -p no:cacheprovider -m "$(FAST_TESTS)"

# Benchmarks on SQLite, then on PostgreSQL when one answers at BENCH_PG_URL; prints one
# table and writes var/bench-*.json. See docs/PERFORMANCE.md.
# Any database of the server: the benchmark creates and drops its own, ad_budget_bench
# (or BENCH_PG_DATABASE).
BENCH_PG_URL ?= postgres://postgres@127.0.0.1:5432/postgres
bench: $(VENV)/.dev .env
	$(BIN)/python -m benchmarks $(BENCH_ARGS) --json var/bench-sqlite.json
	@if pg_isready -q -d "$(BENCH_PG_URL)" 2>/dev/null; then \
		DATABASE_URL=$(BENCH_PG_URL) $(BIN)/python -m benchmarks $(BENCH_ARGS) --json var/bench-postgresql.json; \
	else echo "No PostgreSQL answers at $(BENCH_PG_URL): start it, or set BENCH_PG_URL; SQLite only."; \
		rm -f var/bench-postgresql.json; fi
	@echo; $(BIN)/python -m benchmarks --report var/bench-sqlite.json var/bench-postgresql.json

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is needed. Install it (for example" \
		"'apt-get install python3.11 python3.11-venv') or name one: make PYTHON=/path/to/python3.11"; exit 1; }
	@echo "== Creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	@echo "== Installing runtime requirements"
	$(BIN)/python -m pip install --quiet --progress-bar off -r requirements.txt
	@touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	@echo "== Installing test and tool requirements"
	$(BIN)/python -m pip install --quiet --progress-bar off -r requirements-dev.txt
	@touch $@ $(VENV)/.runtime

# Local settings, git-ignored, edit freely; DEBUG stays off unless you set it here.
# `make run` adds a random SECRET_KEY for this checkout (development), so the README's
# manage.py commands work afterwards with DEBUG still off: secure by default.
.env:
	cp .env.example .env
	@chmod 600 .env

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache .hypothesis

# The two commands that matter: `make run` (demo on SQLite) and `make test`.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
# python3.13, then python3.12, then python3 if it is 3.12 or newer.
PYTHON := $(shell for p in python3.13 python3.12 python3; do \
	if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; \
	then echo $$p; break; fi; done)
# The real OpenID provider the single sign-on tests start (node; tests/oidc_provider).
OIDC_PROVIDER := tests/oidc_provider/node_modules/.package-lock.json
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run example test lint format check-python clean bench-ingest

install: $(STAMP)

check-python:
	@if [ -z "$(PYTHON)" ]; then echo "error: aispm needs Python 3.12 or newer (tried python3.13, python3.12, python3)" >&2; exit 1; fi

$(STAMP): requirements.lock pyproject.toml | check-python
	@if [ ! -x $(BIN)/python ] || ! $(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then \
		rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); fi
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e clients/python
	@rm -f $(VENV)/.installed-* && touch $@

run: install
	DEBUG=true $(BIN)/python manage.py migrate --no-input
	DEBUG=true $(BIN)/python manage.py seed_demo --if-empty
	@echo "aispm demo: http://$(HOST):$(PORT)/  (log in with one of the logins above)"
	@echo "MCP gateway: http://$(HOST):$(PORT)/mcp/  (Authorization: Bearer <agent key>)"
	@DEBUG=true $(BIN)/python manage.py run_periodic & periodic=$$!; \
		trap 'kill $$periodic 2>/dev/null' EXIT INT TERM; \
		DEBUG=true $(BIN)/uvicorn aispm_site.asgi:application --host $(HOST) --port $(PORT) \
			--no-access-log --timeout-graceful-shutdown 5

# The whole agent loop, offline: aispm, an OpenAI Agents SDK agent on /mcp/ with a
# scripted model, and a reviewer in Chromium. See examples/run_example.py.
example: install
	$(BIN)/python examples/run_example.py

test: install $(OIDC_PROVIDER)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

$(OIDC_PROVIDER): tests/oidc_provider/package.json tests/oidc_provider/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tests/oidc_provider --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "warning: npm not found; the single sign-on tests will be skipped (CI fails them)" >&2; fi

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles .pytest_cache .ruff_cache

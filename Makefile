# Two commands for a fresh machine: `make run` and `make test`. Both install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

# The test suite talks to real servers: PostgreSQL and Redis on their standard local ports
# unless DATABASE_URL / REDIS_URL say otherwise.
CHROMIUM ?= /usr/bin/chromium
TEST_DATABASE_URL ?= $(or $(DATABASE_URL),postgresql://postgres@127.0.0.1:5432/test)
TEST_REDIS_URL ?= $(or $(REDIS_URL),redis://127.0.0.1:6379/15)
TEST_ENV := DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
	COCKPIT_SECRET_KEY=test-only-secret-key COCKPIT_CHROMIUM=$(CHROMIUM)
PYTEST_ARGS ?=

.PHONY: run test install lint fmt test-packages clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
	$(BIN)/pip install --quiet --editable '.[test]' 2>&1 | grep -v '^WARNING: Location' || true
	@$(BIN)/python -c 'import django, channels, celery, playwright' || (echo "Installing Python packages failed; see the pip output above." && exit 1)
	touch $@

install: $(STAMP)

## Bring the cockpit up embedded (SQLite, in-process channel layer and Celery) with a demo fleet.
run: install
	$(BIN)/python manage.py serve_embedded --host $(HOST) --port $(PORT) --demo

## Debian packages the tests use: chromium for the browser tests (Playwright drives it and never
## downloads a browser) and docker-compose, which validates docker-compose.yml without an engine.
## --no-install-recommends keeps docker-compose from pulling in the Docker engine.
test-packages:
	@missing=""; \
	[ -x "$(CHROMIUM)" ] || missing="$$missing chromium"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages for the tests:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@test -x "$(CHROMIUM)" || (echo "chromium is missing at $(CHROMIUM); install Debian's chromium package." && exit 1)
	@command -v docker-compose >/dev/null || (echo "docker-compose is missing; install Debian's docker-compose package." && exit 1)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## The whole suite: lint, migrations check, and pytest against PostgreSQL and Redis.
test: install test-packages lint
	$(TEST_ENV) $(BIN)/python -m cockpit.preflight
	$(TEST_ENV) $(BIN)/python manage.py makemigrations --check --dry-run
	$(TEST_ENV) $(BIN)/pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache .ruff_cache

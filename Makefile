# Two commands do everything on a fresh machine: `make run` and `make test`.
# Another host adds capacity with `make worker` (one Celery worker, no web server), pointed at the
# web host's PostgreSQL, Redis and store (DATABASE_URL, CELERY_BROKER_URL, WORKBENCH_STORAGE, AWS_*;
# README "Running on several hosts"). It never migrates: the web host's `make run` does.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: run worker test lint install install-test system-tools chromium migrate bench gpu-check clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt | $(PY)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-test: requirements-test.txt $(VENV)/.installed
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

migrate: install
	$(PY) manage.py migrate --noinput

run: migrate
	$(PY) manage.py ensure_admin
	$(PY) manage.py serve

# WORKER_NAME (default worker-<host>), WORKER_QUEUES (default train,background,infer), WORKER_GPUS
# (e.g. 0,1; default every GPU it finds), WORKER_CONCURRENCY (default 2).
worker: install
	$(PY) manage.py worker

# Test-only system tools from Debian: chromium for the browser tests, docker-compose to validate
# docker-compose.yml. Installed here when we may (root with apt-get); their tests skip with a reason when not.
SYSTEM_TOOLS := chromium docker-compose

system-tools:
	@for tool in $(SYSTEM_TOOLS); do \
	  command -v $$tool >/dev/null 2>&1 && continue; \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -q $$tool >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $$tool >/dev/null 2>&1)) \
	      || echo "could not install $$tool: the tests that need it will be skipped"; \
	  else echo "$$tool is not installed (needs root and apt-get): the tests that need it will be skipped"; fi; \
	done

chromium: system-tools

lint: install-test
	$(VENV)/bin/ruff check .

test: install-test system-tools lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	$(PY) bench/ingest.py

# On a GPU host, in one go: the CUDA tests (training, AMP, channels-last, compile, pinned prefetch,
# DDP on two GPUs), then bench/gpu.py's figures. Without CUDA the tests skip and the bench says what it skipped.
gpu-check: install-test
	$(PY) -m pytest -m gpu -q -rs
	$(PY) bench/gpu.py

clean:
	rm -rf $(VENV) data

# Two entry points: `make console` runs the operations console, `make test` runs the suite.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PYTEST_ARGS ?=
SELFHEAL_TEST_DATABASE_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
export SELFHEAL_TEST_DATABASE_URL

.PHONY: console test

$(PY):
	python3 -m venv $(VENV)

console: | $(PY)
	$(PIP) install -q -e .
	exec $(VENV)/bin/selfheal console

test: | $(PY)
	$(PIP) install -q -e '.[test]'
	scripts/ensure-services
	mkdir -p artifacts
	$(PY) -m pytest --junitxml=artifacts/junit.xml $(PYTEST_ARGS)

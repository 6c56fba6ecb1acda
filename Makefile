# `make run`: the whole service (web, worker, beat) on this machine; `make test`: the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# honcho gives web $(PORT) and the other process types +100, +200: without
# PUBLIC_BASE_URL the worker sends the base URL the web recorded (README, Contract notes).
PORT ?= 8000

.PHONY: run test release

$(BIN)/activate: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $(BIN)/activate

release: $(BIN)/activate
	$(BIN)/alembic -c shared/migrations/alembic.ini upgrade head

run: release
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/honcho start --port $(PORT) web worker beat

test: $(BIN)/activate
	$(BIN)/pytest

# `make run`: the whole service (web, worker, beat) on this machine; `make test`: the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
# honcho gives each process type its own PORT (web gets $(PORT), the others +100, +200):
# pin the callback URL the workers send to n8n to web's port.
PUBLIC_BASE_URL ?= http://127.0.0.1:$(PORT)
export PUBLIC_BASE_URL

.PHONY: run test release

$(BIN)/activate: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $(BIN)/activate

release: $(BIN)/activate
	mkdir -p var
	$(BIN)/alembic -c shared/migrations/alembic.ini upgrade head

run: release
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/honcho start --port $(PORT) web worker beat

test: $(BIN)/activate
	$(BIN)/pytest

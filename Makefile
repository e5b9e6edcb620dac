# The two commands of the README:
#   make run   set up, initialise an embedded database if there is none, run the Application Server
#   make test  set up (Debian packages included) and run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATA   ?= data
STAMP  := $(VENV)/.installed

.PHONY: run test venv system-packages bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --config-settings editable_mode=compat -e '.[test,provider]'
	touch $(STAMP)

venv: system-packages $(STAMP)

system-packages:
	bash scripts/install-system-packages.sh

run: venv
	$(BIN)/pcnet init --data-dir $(DATA) --if-missing
	$(BIN)/twistd --nodaemon --pidfile= pcnet app --config $(DATA)/pcnet.toml

test: venv
	$(BIN)/python -m pytest

bench: venv
	$(BIN)/python bench/bench_store.py
	$(BIN)/python bench/bench_protocol.py
	$(BIN)/python bench/bench_spool.py
	$(BIN)/python bench/bench_provider.py
	$(BIN)/python bench/bench_hostile.py
	$(BIN)/python bench/bench_outage.py
	$(BIN)/python bench/bench_ha.py
	$(BIN)/python bench/bench_snmp.py

clean:
	rm -rf $(VENV) .pytest_cache

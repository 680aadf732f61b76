# event-backbone: everything runs offline on a fresh machine.
#   make plan STACK=dev   - the offline plan: build/<stack>/ (plan.json and generated configuration)
#   make test             - the whole suite, including proofs against the real tools
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STACK  ?= dev
STAMP  := $(VENV)/.requirements-installed

.PHONY: plan test tools venv bench bench-broker clean

# (Re)create the virtualenv whenever requirements change.
$(STAMP): requirements.txt policies/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -r policies/requirements.txt
	touch $@

venv: $(STAMP)

plan: $(STAMP)
	$(PY) -m dryrun $(STACK) --out build/$(STACK)

# promtool, amtool and a RabbitMQ server from Debian's packages (no service is used: the
# tests start throwaway instances on loopback).
tools:
	@bash tests/tools/install.sh

test: $(STAMP) tools
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/plan.py

# 1000 AMQP connections against a throwaway 3-node cluster, a node killed mid-run (~4 min):
# bench/results/broker_load.json and docs/broker-load.png. matplotlib is bench-only.
bench-broker: $(STAMP) tools
	$(PY) -m pip install -q --disable-pip-version-check -r bench/requirements.txt
	$(PY) bench/broker_load.py

clean:
	rm -rf build .pytest_cache

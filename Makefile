# event-backbone: everything runs offline on a fresh machine.
#   make plan STACK=dev   - the offline plan: build/<stack>/ (plan.json and generated configuration)
#   make test             - the whole suite, including proofs against the real tools
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STACK  ?= dev
STAMP  := $(VENV)/.requirements-installed
# Checkov has a large dependency tree of its own: it gets its own virtualenv, never .venv.
CHECKOV_VENV  := .tools/checkov
CHECKOV_PIN   := tests/tools/checkov-requirements.txt
CHECKOV_STAMP := $(CHECKOV_VENV)/.requirements-installed

.PHONY: plan test tools checkov venv bench clean

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

# Checkov (pinned) for tests/test_checkov.py: scans build/<stack>/arm, build/<stack>/k8s, .github/workflows.
$(CHECKOV_STAMP): $(CHECKOV_PIN)
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q --disable-pip-version-check -r $(CHECKOV_PIN)
	touch $@

checkov: $(CHECKOV_STAMP)

test: $(STAMP) tools checkov
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/plan.py

clean:
	rm -rf build .pytest_cache

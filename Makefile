# event-backbone: everything runs offline on a fresh machine.
#   make plan STACK=dev   - the offline plan: build/<stack>/ (plan.json and generated configuration)
#   make test             - the gates (make lint), then the suite with the proofs against the real tools;
#                           the long proofs (markers cluster, drill) run when CI is set, or with make test-all
#   make lint             - ruff check, ruff format --check, pyright (standard mode) and actionlint
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STACK  ?= dev
STAMP  := $(VENV)/.requirements-installed
# Checkov has a large dependency tree of its own: it gets its own virtualenv, never .venv.
CHECKOV_VENV  := .tools/checkov
CHECKOV_PIN   := tests/tools/checkov-requirements.txt
CHECKOV_STAMP := $(CHECKOV_VENV)/.requirements-installed

.PHONY: plan plan-bootstrap test test-all lint lint-tools tools checkov venv bench bench-broker clean

# (Re)create the virtualenv whenever requirements change. Python 3.11 or newer is required.
$(STAMP): requirements.txt policies/requirements.txt bench/requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "event-backbone needs Python >= 3.11; '$(PYTHON)' is $$($(PYTHON) -V 2>&1). Run: make PYTHON=python3.11 ..." >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -r policies/requirements.txt -r bench/requirements.txt
	touch $@

venv: $(STAMP)

plan: $(STAMP)
	$(PY) -m dryrun $(STACK) --out build/$(STACK)

# The bootstrap's offline plan (bootstrap/: identities, state backend, secrets provider) and its
# policy gate: build/bootstrap/ (docs/first-rollout.md).
plan-bootstrap: $(STAMP)
	$(PY) -m dryrun.bootstrap --out build/bootstrap

# The proofs' toolchain at the versions the stack deploys: a root of Debian's testing suite
# (RabbitMQ 4.3, Prometheus 3.5, Alertmanager 0.33, Redis, cosign, notation), built once per
# machine, and the host's debootstrap and JDK (no service is used: the tests start throwaway
# instances on loopback). PostgreSQL 16 is the pgserver wheel of requirements.txt.
tools:
	@bash tests/tools/install.sh

# Checkov (pinned) for tests/test_checkov.py: scans build/<stack>/arm, build/<stack>/k8s, .github/workflows.
$(CHECKOV_STAMP): $(CHECKOV_PIN)
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q --disable-pip-version-check -r $(CHECKOV_PIN)
	touch $@

checkov: $(CHECKOV_STAMP)

# Node.js for pyright (Debian's nodejs when the machine has none); the linters themselves are
# pinned in requirements.txt.
lint-tools:
	@bash tests/tools/install.sh lint

# The gates, configured in pyproject.toml; each must be clean (exit 0) for `make test` to run.
# The pinned pyright is the one we mean: no "newer version available" look-up at each run.
lint: $(STAMP) lint-tools
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	PYRIGHT_PYTHON_IGNORE_WARNINGS=1 $(VENV)/bin/pyright
	$(VENV)/bin/actionlint .github/workflows/*.yml

# Long proofs (a 3-node RabbitMQ cluster, the alert drill: several minutes) carry the markers
# `cluster` and `drill`; CI (CI=true, as .ci/run sets it) runs everything.
SLOW    := cluster or drill
SELECT  := $(if $(filter true 1 yes,$(CI)),,-m "not ($(SLOW))")

test: $(STAMP) lint tools checkov
	$(PY) -m pytest -q $(SELECT)

test-all: $(STAMP) lint tools checkov
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/plan.py

# 1000 AMQP connections against a throwaway 3-node cluster, a node killed mid-run (~4 min):
# bench/results/broker_load.json and docs/broker-load.png (matplotlib: bench/requirements.txt).
bench-broker: $(STAMP) tools
	$(PY) bench/broker_load.py

clean:
	rm -rf build .pytest_cache

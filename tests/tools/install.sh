#!/usr/bin/env bash
# Installs the real tools the tests prove artefacts against, from Debian's packages:
# promtool and the prometheus server (prometheus), amtool and the alertmanager server
# (prometheus-alertmanager), rabbitmq-server, and PostgreSQL (postgresql: initdb/pg_ctl under
# /usr/lib/postgresql/<major>/bin, psql), and a JDK (default-jdk-headless: keytool and the JVM
# the load test's trust store is proven with, tests/test_load_test_tls.py). The alert drill runs
# the two servers.
# Idempotent and quick when they are already there.
# `install.sh lint` installs only what `make lint` needs beyond the virtualenv: Node.js, which
# runs pyright (the pyright wheel bundles the checker, not a JavaScript runtime).
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
if [ "${1:-}" = lint ]; then
  command -v node >/dev/null && exit 0
  echo "installing nodejs from Debian packages (pyright runs on it)..."
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs >/dev/null
  command -v node >/dev/null || { echo "node still missing after install" >&2; exit 1; }
  exit 0
fi
have() {
  command -v promtool >/dev/null && command -v amtool >/dev/null && [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] &&
    [ -x /usr/bin/prometheus ] && [ -x /usr/bin/prometheus-alertmanager ] &&
    command -v psql >/dev/null && compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null &&
    command -v javac >/dev/null && command -v keytool >/dev/null
}
if have; then exit 0; fi
echo "installing prometheus, prometheus-alertmanager, rabbitmq-server, postgresql, default-jdk-headless from Debian packages..."
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
  prometheus prometheus-alertmanager rabbitmq-server postgresql default-jdk-headless >/dev/null
have || { echo "tools still missing after install" >&2; exit 1; }

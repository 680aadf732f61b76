#!/usr/bin/env bash
# Installs the real tools the tests prove artefacts against, from Debian's packages:
# promtool and the prometheus server (prometheus), amtool and the alertmanager server
# (prometheus-alertmanager), rabbitmq-server, and PostgreSQL (postgresql: initdb/pg_ctl under
# /usr/lib/postgresql/<major>/bin, psql). The alert drill runs the two servers.
# Idempotent and quick when they are already there.
set -euo pipefail
have() {
  command -v promtool >/dev/null && command -v amtool >/dev/null && [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] &&
    [ -x /usr/bin/prometheus ] && [ -x /usr/bin/prometheus-alertmanager ] &&
    command -v psql >/dev/null && compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null
}
if have; then exit 0; fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "installing prometheus, prometheus-alertmanager, rabbitmq-server, postgresql from Debian packages..."
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
  prometheus prometheus-alertmanager rabbitmq-server postgresql >/dev/null
have || { echo "tools still missing after install" >&2; exit 1; }

#!/usr/bin/env bash
# Installs the real tools the tests prove artefacts against, at the versions the stack deploys.
#
# * The testing root (tests/tools/toolchain.py): a minimal root of Debian's testing suite with
#   rabbitmq-server (4.3), prometheus (promtool and the server, 3.5), prometheus-alertmanager
#   (amtool and the server, 0.33), redis-server, cosign and notation, built once per machine with
#   debootstrap at $EB_TESTING_ROOT (default /var/cache/event-backbone/testing-root) and reused by
#   every clone. Its binaries need a newer C library than Debian 12's, so they run inside it
#   (tests/tools/bin/inroot). Packages added to ROOT_PACKAGES later are installed into an
#   existing root; a root whose suite moved on is not rebuilt by itself: tests/test_versions.py
#   fails when what a proof runs and what the stack deploys differ, and says what to bump
#   (rebuild: rm -rf the root, make tools).
# * PostgreSQL 16 is the pinned pgserver wheel (requirements.txt), not a Debian package.
# * On the host: debootstrap, and a JDK (default-jdk-headless: keytool and the JVM the load
#   test's trust store is proven with, tests/test_load_test_tls.py).
# Works on a Debian 12 or 13 host, as root (or through sudo). Idempotent and quick when done.
# `install.sh lint` installs only what `make lint` needs beyond the virtualenv: Node.js, which
# runs pyright (the pyright wheel bundles the checker, not a JavaScript runtime).
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
if [ "${1:-}" = lint ]; then
  command -v node >/dev/null && exit 0
  echo "installing nodejs from Debian packages (pyright runs on it)..."
  apt_install nodejs
  command -v node >/dev/null || { echo "node still missing after install" >&2; exit 1; }
  exit 0
fi

ROOT="${EB_TESTING_ROOT:-/var/cache/event-backbone/testing-root}"
SUITE="${EB_TESTING_SUITE:-forky}"
ROOT_PACKAGES=(rabbitmq-server prometheus prometheus-alertmanager redis-server cosign notation)

# --- the host
host_ok() { command -v debootstrap >/dev/null && command -v javac >/dev/null && command -v keytool >/dev/null && command -v unshare >/dev/null; }
if ! host_ok; then
  echo "installing debootstrap, default-jdk-headless from Debian packages..."
  apt_install debootstrap default-jdk-headless util-linux
  host_ok || { echo "host tools still missing after install" >&2; exit 1; }
fi

# --- the testing root
missing_in_root() {
  local pkg
  for pkg in "${ROOT_PACKAGES[@]}"; do
    chroot "$ROOT" dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q ' installed$' || echo "$pkg"
  done
}
# The Debian archive this host is configured for (deb822 or one-line sources; security excluded).
mirror() {
  local found
  found=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
    grep -v security | sed -E 's/^URIs:[[:space:]]*//; s/^deb (\[[^]]*\] )?//' | awk '{print $1}' | grep -m1 '/debian/\?$' || true)
  [ -n "$found" ] || { echo "no Debian archive in this host's apt sources" >&2; exit 1; }
  echo "${found%/}"
}
if [ -x "$ROOT/usr/bin/promtool" ] && [ -f "$ROOT/var/lib/dpkg/status" ]; then
  mapfile -t need < <(missing_in_root)
  if [ "${#need[@]}" -gt 0 ]; then
    echo "adding ${need[*]} to the testing root $ROOT..."
    # The suite's Release file may be past its Valid-Until on a frozen mirror: the packages are
    # still signed; only the freshness check is waived. /proc only for this one process.
    $SUDO unshare --mount --propagation private -- sh -c "mount -t proc proc '$ROOT/proc' && chroot '$ROOT' sh -c \
      'apt-get -qq -o Acquire::Check-Valid-Until=false update && DEBIAN_FRONTEND=noninteractive \
       apt-get -qq -o Acquire::Check-Valid-Until=false install -y --no-install-recommends ${need[*]} >/dev/null'"
  fi
else
  url=$(mirror)
  script=/usr/share/debootstrap/scripts/sid # Debian 12's debootstrap has no script named after testing
  echo "building the testing root ($SUITE: ${ROOT_PACKAGES[*]}) at $ROOT from $url (about a minute)..."
  $SUDO rm -rf "$ROOT.new"
  $SUDO mkdir -p "$(dirname "$ROOT")"
  if ! $SUDO debootstrap --variant=minbase --include="$(IFS=,; echo "${ROOT_PACKAGES[*]}")" \
    "$SUITE" "$ROOT.new" "$url" "$script" >"$(dirname "$ROOT")/debootstrap.log" 2>&1; then
    tail -20 "$(dirname "$ROOT")/debootstrap.log" >&2
    echo "debootstrap failed (log: $(dirname "$ROOT")/debootstrap.log)" >&2
    exit 1
  fi
  $SUDO rm -rf "$ROOT"
  $SUDO mv "$ROOT.new" "$ROOT"
fi
# Erlang resolves the node's host name (localhost) through the root's own /etc/hosts.
$SUDO cp /etc/hosts "$ROOT/etc/hosts"
mapfile -t still < <(missing_in_root)
[ "${#still[@]}" -eq 0 ] || { echo "still missing in the testing root: ${still[*]}" >&2; exit 1; }

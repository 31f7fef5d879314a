#!/usr/bin/env bash
# Runs the whole test suite of the workspace: the root crate (unit tests, tests/it, doc tests)
# and heavy/ (the end-to-end tests). The Redis, PostgreSQL and browser tests start a real
# redis-server, PostgreSQL server and headless Chromium themselves; this installs them first
# when they are missing (Debian/Ubuntu, as root or with sudo). Those tests fail, never skip,
# when their server cannot start.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
# Debian keeps initdb / pg_ctl / postgres off PATH, in /usr/lib/postgresql/<version>/bin.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "installing ${need[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
fi

exec cargo test --workspace --all-features "$@"

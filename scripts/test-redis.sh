#!/usr/bin/env bash
# The Redis suite: `multiprocess::remote` (feature `redis`) against real
# `redis-server` processes that each test starts on a free port and stops.
# Installs Debian's redis-server (7.0) with apt-get when it is missing; the
# package starts no service that the tests would depend on.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  echo "== installing redis-server (apt-get)"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  # Debian's package may start a service; the tests never use it.
  $SUDO service redis-server stop >/dev/null 2>&1 || true
fi
redis-server --version

tests=()
for f in multiprocess/tests/remote_*.rs; do
  tests+=(--test "$(basename "$f" .rs)")
done
# The remote example, which tests/remote_pool.rs runs.
cargo build -p multiprocess --features redis --example remote_squares
echo "== cargo test --features redis (${tests[*]})"
cargo test -p multiprocess --features redis --lib "${tests[@]}" "$@"

#!/usr/bin/env bash
# Runs the embedded default: nats-server, SQLite, simulated feed, paper broker, user API.
# Extra arguments go to `pinnacle dev` (e.g. --data-dir /tmp/p --api-bind 127.0.0.1:0).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --quiet --locked -p pinnacle-cli
exec target/debug/pinnacle dev "$@"

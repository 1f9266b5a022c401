#!/usr/bin/env bash
# Runs the embedded default: nats-server, SQLite, simulated feed, paper broker, user API.
# Extra arguments go to `pinnacle dev` (e.g. --data-dir /tmp/p --api-bind 127.0.0.1:0).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ ! -x target/debug/pinnacle ]; then
  echo "dev: first build of pinnacle (a debug build; about 10-15 minutes on 2 cores, 3-5 on 8; later runs rebuild only what changed)" >&2
else
  echo "dev: building pinnacle (only what changed)" >&2
fi
started=$SECONDS
# cargo prints each crate as it compiles (plain text when this is not a terminal).
cargo build --locked -p pinnacle-cli
echo "dev: built in $((SECONDS - started)) s; starting the stack" >&2
exec target/debug/pinnacle dev "$@"

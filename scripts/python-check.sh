#!/usr/bin/env bash
# Runs the static checks in tests/python/static/ (deploy/ and nats/ configs), then starts `pinnacle dev` in a scratch data dir and runs the Python clients in tests/python/
# (written from docs/PROTOCOL.md alone) against it. Stops the stack however it ends.
# Also checks that the committed SmartAPI golden tick frames still match what Angel One's
# Python SDK decodes (tests/python/golden_ticks.py --check; needs no running stack).
set -euo pipefail
cd "$(dirname "$0")/.."
# Static checks first: they need no running stack (deploy/ and nats/ configs).
static_passed=0 static_failed=0
for check in tests/python/static/*.py; do
  if .venv/bin/python "$check"; then static_passed=$((static_passed + 1)); else static_failed=$((static_failed + 1)); echo "FAILED: $check" >&2; fi
done
cargo build --quiet --locked -p pinnacle-cli
data=$(mktemp -d)
log="$data/dev.log"
target/debug/pinnacle dev --data-dir "$data" --api-bind 127.0.0.1:0 >"$log" 2>&1 &
pid=$!
cleanup() { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT
for _ in $(seq 1 120); do
  [ -s "$data/dev.env" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.25
done
[ -s "$data/dev.env" ] || { echo "pinnacle dev did not write dev.env" >&2; cat "$log" >&2; exit 1; }
passed=$static_passed failed=$static_failed
golden=tests/python/golden_ticks.py
if .venv/bin/python "$golden" --check; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $golden" >&2; fi
for check in tests/python/*.py; do
  [ "$check" = "$golden" ] && continue
  if .venv/bin/python "$check" "$data/dev.env"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $check" >&2; fi
done
# SIGTERM must stop everything cleanly.
kill -TERM "$pid"
if ! wait "$pid"; then echo "pinnacle dev did not exit cleanly on SIGTERM" >&2; tail -20 "$log" >&2; failed=$((failed + 1)); fi
trap 'rm -rf "$data"' EXIT
echo "python: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

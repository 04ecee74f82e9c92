#!/usr/bin/env bash
# Install everything the tests need on a fresh machine (Python packages, and Debian's Chromium for the
# real-browser tests), then lint (ruff) and run the whole suite. README's test command and .ci/run both call this script.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
python3 -m pip install -q -r requirements-dev.txt
python3 -m ruff check .
python3 -m pytest -q --durations=15 tests "$@"  # the 15 slowest tests are printed

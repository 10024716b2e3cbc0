#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine, then run the whole suite.
# Chromium comes from Debian (never `playwright install`, which downloads a browser build).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -r requirements-test.txt
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null
  else
    echo "note: no chromium and no root apt-get: browser tests will be skipped" >&2
  fi
fi
export GRADIO_ANALYTICS_ENABLED=False NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
exec python -m pytest "$@"

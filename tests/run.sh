#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine, lint, then run the whole suite.
# Chromium and WordNet come from Debian (never `playwright install`, which downloads a browser build).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -r requirements-test.txt
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ -f /usr/share/wordnet/data.noun ] || missing+=(wordnet-base)  # tools/build_instruct_data.py reads it
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null
  else
    echo "note: cannot install ${missing[*]} (no root apt-get): the tests that need them will be skipped" >&2
  fi
fi
python -m ruff check .
export GRADIO_ANALYTICS_ENABLED=False NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
exec python -m pytest "$@"

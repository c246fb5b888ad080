#!/usr/bin/env bash
# Create .venv with periscope-ingest installed (--test: with the test extra), and the pinned
# hls.js for the web pages. Needs Python >= 3.11 with venv (scripts/make-venv.sh installs
# Debian's python3-venv when run as root, or names the apt-get line); PyAV's wheels bundle FFmpeg,
# so the server itself needs no system media library.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/make-venv.sh
.venv/bin/python -m pip install --quiet --upgrade pip
if [ "${1:-}" = "--test" ]; then
  .venv/bin/python -m pip install --quiet -e '.[test]'
else
  .venv/bin/python -m pip install --quiet -e .
fi
# hls.js for browsers without native HLS (Chrome, Firefox): the pinned release, hash-checked.
scripts/install-hlsjs.sh \
  || echo "hls.js not installed: Chrome and Firefox cannot play on the pages until" \
          "'.venv/bin/periscope-ingest fetch-hlsjs' succeeds" >&2

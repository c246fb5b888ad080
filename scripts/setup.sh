#!/usr/bin/env bash
# Create .venv with periscope-ingest installed. Needs Python >= 3.11 (PyAV's wheels bundle FFmpeg,
# so the server itself needs no system media library).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "periscope-ingest needs Python >= 3.11 (found $("$PYTHON" --version))" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
if [ "${1:-}" = "--test" ]; then
  .venv/bin/python -m pip install --quiet -e '.[test]'
else
  .venv/bin/python -m pip install --quiet -e .
fi
# hls.js for browsers without native HLS, from its npm package (never committed).
scripts/install-hlsjs.sh || echo "hls.js not installed (needs npm): pages use the browser's native HLS" >&2

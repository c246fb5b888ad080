#!/usr/bin/env bash
# Create .venv with periscope-ingest installed (--test: with the test extra), and the pinned
# hls.js for the web pages. Needs Python >= 3.11 with venv (PyAV's wheels bundle FFmpeg, so the
# server itself needs no system media library).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "periscope-ingest needs Python >= 3.11 (found $("$PYTHON" --version))" >&2; exit 1; }
# Debian's python3 has no venv/ensurepip until python3-venv is installed.
if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
  package="python3-venv"
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package"
  else
    echo "Python's venv module is missing. Run: sudo apt-get install $package" >&2
    exit 1
  fi
fi
# A .venv left half-made by a failed first try (no python, no working pip, or another Python's)
# is made again rather than reused.
if [ -e .venv ] && ! { .venv/bin/python -m pip --version >/dev/null 2>&1 \
    && [ "$(.venv/bin/python -c 'import sys; print(sys.version_info[:2])')" \
         = "$("$PYTHON" -c 'import sys; print(sys.version_info[:2])')" ]; }; then
  echo "setup: .venv is incomplete or from another Python; making it again" >&2
  rm -rf .venv
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
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

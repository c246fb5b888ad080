#!/usr/bin/env bash
# Make .venv with $PYTHON (default python3), or make it again when a failed first try left it
# half-made: no working python, no working pip, or made by another Python installation. Reused
# when sound (setup.sh then only installs into it). Needs no network.
#
# Debian's python3 has no ensurepip (so no `python3 -m venv`) until python3-venv is installed, and
# a minimal Debian has no CA certificates for the hls.js download (pip brings its own): installed
# here when run as root, or the one apt-get line to run is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null \
  || { echo "setup: $PYTHON not found; periscope-ingest needs Python >= 3.11" >&2; exit 1; }
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "setup: periscope-ingest needs Python >= 3.11 (found: $("$PYTHON" --version 2>&1))" >&2
       exit 1; }

missing=()
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if command -v apt-get >/dev/null && [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then
  missing+=(ca-certificates)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "setup: Python's venv module (ensurepip) is missing: install your system's" \
         "python3-venv package (or use a Python built with ensurepip)" >&2
    exit 1
  elif [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "setup: missing ${missing[*]}. Run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

# Which installation a Python is: its base prefix and version. A venv answers with the
# installation it was made from.
identity='import sys; print(sys.base_prefix, *sys.version_info[:2])'
if [ -e .venv ] || [ -L .venv ]; then
  if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
    echo "setup: .venv is half-made (no working python or pip); making it again" >&2
    rm -rf .venv
  elif [ "$(.venv/bin/python -c "$identity" 2>/dev/null)" != "$("$PYTHON" -c "$identity")" ]; then
    echo "setup: .venv was made by another Python than $PYTHON; making it again" >&2
    rm -rf .venv
  fi
fi
if [ ! -e .venv ]; then
  # A venv that fails midway (ensurepip) is removed, so that the next try starts clean.
  "$PYTHON" -m venv .venv || { rm -rf .venv; echo "setup: '$PYTHON -m venv .venv' failed" >&2
                               exit 1; }
fi

#!/usr/bin/env bash
# What the browser tests (tests/browser/) drive: Debian's chromium and its matching chromedriver
# (apt), and Python's selenium in .venv. Installed only when missing; apt needs root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${need[@]}" fonts-dejavu-core
fi
PYTHON=${PYTHON:-.venv/bin/python}
# selenium is in the test extra; this only covers a venv made without it.
if [ -x "$PYTHON" ] && ! "$PYTHON" -c 'import selenium' 2>/dev/null; then
  "$PYTHON" -m pip install --quiet 'selenium>=4.15'
fi

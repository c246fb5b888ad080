#!/usr/bin/env bash
# hls.js for the web pages: the pinned release (periscope_ingest/web/hlsjs.py), downloaded from
# the npm registry and checked against its integrity hash, into periscope_ingest/web/static/vendor/
# (git ignores it). No npm needed. --force fetches it again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
if [ -s periscope_ingest/web/static/vendor/hls.min.js ] && [ "${1:-}" != "--force" ] \
   && grep -qx "$(sed -n 's/^HLSJS_VERSION = "\(.*\)"$/\1/p' periscope_ingest/web/hlsjs.py)" \
      periscope_ingest/web/static/vendor/hls.js-VERSION 2>/dev/null; then
  exit 0
fi
exec "$PYTHON" -m periscope_ingest fetch-hlsjs

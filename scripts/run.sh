#!/usr/bin/env bash
# Set up and run the server on embedded defaults: the README's run command.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/periscope-ingest serve "$@"

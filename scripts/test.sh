#!/usr/bin/env bash
# Set up everything the tests need, then run them: the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-tools.sh
scripts/setup.sh --test
.venv/bin/ruff check periscope_ingest tests
.venv/bin/python -m pytest "$@"

#!/usr/bin/env bash
# Set up everything the tests need, then run them: the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-tools.sh
scripts/setup.sh --test
.venv/bin/ruff check periscope_ingest tests
# Two tests at a time (pytest-xdist), a file per worker so its servers are started once: the
# end-to-end tests mostly wait on real-time pushes, and one at a time took 14.5-15.5 minutes
# against 8 on a 2-core machine. Two, not one per core: the tests that time answers under load
# assume a machine that is not oversubscribed.
.venv/bin/python -m pytest -n 2 --dist loadfile "$@"

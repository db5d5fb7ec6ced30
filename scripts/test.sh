#!/usr/bin/env bash
# Set up .venv with the test extras, lint, and run the default test level.
# Pass pytest arguments through, e.g.  bash scripts/test.sh -m slow
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test,imaging
.venv/bin/ruff check src tests benchmarks
.venv/bin/python -m pytest "$@"

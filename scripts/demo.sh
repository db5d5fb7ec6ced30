#!/usr/bin/env bash
# Set up .venv and run the demo on the bundled data (writes plots and JSON to lmmkit-demo/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/lmmkit demo --out lmmkit-demo "$@"

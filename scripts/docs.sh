#!/usr/bin/env bash
# Build the documentation (Sphinx; every gallery example is executed) into docs/_build/html.
# Offline; warnings are errors.  Pass extra sphinx-build arguments through.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "${LMMKIT_EXTRAS:-test,docs}"
export MPLBACKEND=Agg
rm -rf docs/_build docs/api docs/cli docs/plots docs/gallery  # generated pages: rebuilt from the code
.venv/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html "$@"
echo "docs written to docs/_build/html/index.html"

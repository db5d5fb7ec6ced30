#!/usr/bin/env bash
# The AnnData tests in a second venv (.venv-anndata) with lmmkit[anndata] and pytest.
# anndata (0.12, the latest release) declares pandas < 3 while the main .venv runs pandas 3,
# so pip resolves pandas 2.x here: this run is also lmmkit-on-pandas-2. The tests that need the
# real anndata skip in the main venv; LMMKIT_REQUIRE_ANNDATA=1 turns those skips into failures.
# Pass pytest arguments through (default: the AnnData tests), e.g.
#   bash scripts/test_anndata.sh tests/omics        # every omics test under pandas 2.x
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
VENV="${LMMKIT_ANNDATA_VENV:-.venv-anndata}"  # point it at a kept venv to skip the build
start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --no-compile -e ".[anndata]" "pytest>=8" 2>&1 \
  | grep -v "^WARNING: Location" || true
"$VENV/bin/python" - <<'PY'
from importlib.metadata import version
print("anndata venv:", ", ".join(f"{p} {version(p)}" for p in ("anndata", "pandas", "numpy")))
PY
echo "anndata venv ready in $(( $(date +%s) - start )) s"
[ "$#" -gt 0 ] || set -- tests/omics/test_combat_anndata.py tests/omics/test_varpart_anndata.py \
  tests/omics/test_combat_scanpy_anndata.py
LMMKIT_REQUIRE_ANNDATA=1 "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
echo "anndata tests finished in $(( $(date +%s) - start )) s"

#!/usr/bin/env bash
# The AnnData tests in a second venv (.venv-anndata) with lmmkit[anndata] and pytest.
# anndata (0.12, the latest release) declares pandas < 3 while the main .venv runs pandas 3,
# so pip resolves pandas 2.x here: this run is also lmmkit-on-pandas-2. The tests that need the
# real anndata skip in the main venv; LMMKIT_REQUIRE_ANNDATA=1 turns those skips into failures.
# A fresh venv downloads lmmkit's dependencies again (~1 CPU-minute, about 2 minutes on this
# loaded machine); an existing one is reused (pip runs again only when the checkout or
# pyproject.toml changed: ~40 s), so CI keeps it in ~/.cache through LMMKIT_ANNDATA_VENV.
# Pass pytest arguments through (default: the AnnData tests), e.g.
#   bash scripts/test_anndata.sh tests/omics        # every omics test under pandas 2.x
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
VENV="${LMMKIT_ANNDATA_VENV:-.venv-anndata}"  # point it at a kept venv to skip the build
start=$(date +%s)
"$VENV/bin/python" -c "" 2>/dev/null || { rm -rf "$VENV"; "$PY" -m venv "$VENV"; }
# reinstall only when this checkout or its pyproject.toml changed since the last install
stamp="$PWD $(sha256sum pyproject.toml | cut -c1-64)"
if [ "$(cat "$VENV/.lmmkit-stamp" 2>/dev/null)" != "$stamp" ]; then
  log=$(mktemp)
  if ! "$VENV/bin/python" -m pip install -q --no-compile -e ".[anndata]" "pytest>=8" >"$log" 2>&1; then
    grep -v "^WARNING: Location" "$log" >&2
    rm -f "$log"
    echo "test_anndata.sh: pip could not install lmmkit[anndata] into $VENV" >&2
    exit 1
  fi
  rm -f "$log"
  echo "$stamp" >"$VENV/.lmmkit-stamp"
fi
"$VENV/bin/python" - <<'PY'
from importlib.metadata import version
print("anndata venv:", ", ".join(f"{p} {version(p)}" for p in ("anndata", "pandas", "numpy")))
PY
echo "anndata venv ready in $(( $(date +%s) - start )) s"
[ "$#" -gt 0 ] || set -- tests/omics/test_combat_anndata.py tests/omics/test_varpart_anndata.py \
  tests/omics/test_combat_scanpy_anndata.py
LMMKIT_REQUIRE_ANNDATA=1 "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
echo "anndata tests finished in $(( $(date +%s) - start )) s"

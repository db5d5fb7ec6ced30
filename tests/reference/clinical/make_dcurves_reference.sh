#!/usr/bin/env bash
# Net benefit from the reference decision-curve implementation (Python dcurves 1.1.7, Apache-2.0)
# on its bundled df_binary data (copied here as dcurves_df_binary.csv). Run from the repo root:
#
#   bash tests/reference/clinical/make_dcurves_reference.sh
#
# Needs a throwaway environment with dcurves: python3 -m venv /tmp/dcv && /tmp/dcv/bin/pip install dcurves==1.1.7
set -euo pipefail
PY=${DCURVES_PYTHON:-/tmp/dcv/bin/python}
"$PY" - <<'PYEOF'
import json
import pandas as pd
from dcurves import dca
df = pd.read_csv("tests/reference/clinical/dcurves_df_binary.csv")
df["cancer"] = df["cancer"].astype(str).str.upper().eq("TRUE").astype(int)
thr = [round(0.01 * i, 2) for i in range(1, 100)]
out = dca(data=df, outcome="cancer", modelnames=["cancerpredmarker"], thresholds=thr)
res = {}
for model in ("cancerpredmarker", "all", "none"):
    sub = out[out["model"] == model].sort_values("threshold")
    res[model] = {"threshold": sub["threshold"].tolist(), "net_benefit": sub["net_benefit"].tolist()}
res["dcurves_version"] = "1.1.7"
with open("tests/reference/clinical/dcurves_net_benefit.json", "w") as fh:
    json.dump(res, fh)
PYEOF

#!/usr/bin/env bash
# Regenerate:  bash tests/reference/genetics/make_reference.sh   (from the repository root)
#
# Freezes compact GEMMA / plink2 anchors for lmmkit.genetics into
# tests/reference/genetics/hs1940_reference.json.  Needs `gemma` (0.98.5) and `plink2`
# on PATH (Debian: apt-get install gemma plink2); never needed at test time.
#
#  * GEMMA `-gk 1` centered kinship (cXX) for -n 1 (CD8) and -n 6 (MCH)
#  * GEMMA `-lmm 4` null-model REML for -n 1 and -n 6 on their cXX
#  * plink2 `--make-grm-bin --nonfounders` (all HS mice are non-founders in the .fam;
#    plink2 drops the 1,926 variants whose .bim position is -9, keeping 10,300)
# Only a 50x50 corner, the diagonal mean, the sum of all entries and the Frobenius norm
# of each 1940x1940 matrix are kept.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
DATA="${ROOT}/../shared/data/genetics/mouse_hs1940"
OUT="${ROOT}/tests/reference/genetics"
PY="${ROOT}/.venv/bin/python"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

{ gemma 2>&1 || true; } | grep -m1 "GEMMA" > versions.txt || true
plink2 --version >> versions.txt 2>&1 || true

for N in 1 6; do
    gemma -bfile "$DATA" -gk 1 -n "$N" -o "hs_gk_n$N" > "gk_n$N.out" 2>&1
    gemma -bfile "$DATA" -k "output/hs_gk_n$N.cXX.txt" -n "$N" -lmm 4 -o "hs_lmm_n$N" > "lmm_n$N.out" 2>&1
done
plink2 --bfile "$DATA" --nonfounders --make-grm-bin --out hs_plink2 > plink2.out 2>&1

"$PY" - "$WORK" "$OUT/hs1940_reference.json" <<'PYEOF'
import json, re, sys
from pathlib import Path
import numpy as np

work, out = Path(sys.argv[1]), Path(sys.argv[2])

def summary(k):
    return {
        "n": int(k.shape[0]),
        "block50": np.round(k[:50, :50], 12).tolist(),
        "diag_mean": float(np.mean(np.diag(k))),
        "sum": float(k.sum()),
        "frobenius": float(np.linalg.norm(k)),
    }

def gemma_log(path):
    keys = {
        "REMLE log-likelihood in the null model": "logl_reml",
        "MLE log-likelihood in the null model": "logl_ml",
        "pve estimate in the null model": "pve",
        "se(pve) in the null model": "pve_se",
        "vg estimate in the null model": "vg",
        "ve estimate in the null model": "ve",
        "beta estimate in the null model": "beta",
        "se(beta)": "beta_se",
        "number of analyzed individuals": "n_analyzed",
        "number of analyzed SNPs/var": "n_snps_analyzed",
    }
    res = {}
    for line in path.read_text().splitlines():
        m = re.match(r"##\s*(.+?)\s*=\s*(\S+)\s*$", line)
        if m and m.group(1) in keys:
            res[keys[m.group(1)]] = float(m.group(2))
    return res

ref = {"versions": (work / "versions.txt").read_text().strip().splitlines()}
for n in (1, 6):
    k = np.loadtxt(work / "output" / f"hs_gk_n{n}.cXX.txt")
    ref[f"gemma_cXX_n{n}"] = summary(k)
    ref[f"gemma_cXX_n{n}"]["log"] = gemma_log(work / "output" / f"hs_gk_n{n}.log.txt")
    ref[f"gemma_lmm_n{n}"] = gemma_log(work / "output" / f"hs_lmm_n{n}.log.txt")

nid = sum(1 for _ in open(work / "hs_plink2.grm.id"))
tri = np.fromfile(work / "hs_plink2.grm.bin", dtype=np.float32).astype(np.float64)
k = np.zeros((nid, nid))
k[np.tril_indices(nid)] = tri
k = k + k.T - np.diag(np.diag(k))
ref["plink2_grm"] = summary(k)
ref["plink2_grm"]["n_variants"] = float(np.fromfile(work / "hs_plink2.grm.N.bin", dtype=np.float32)[0])
out.write_text(json.dumps(ref, indent=1))
print("wrote", out)
PYEOF

#!/usr/bin/env bash
# Regenerate:  bash tests/reference/gemma_mch/make_reference.sh   (from the repository root)
#
# GEMMA's kinship convention on a phenotype whose missingness differs from the kinship's
# (issue 13 item 2).  HS1940 MCH (.fam column 11, GEMMA -n 6: 1,580 mice) analysed with a
# kinship computed once, not for this phenotype:
#
#  * "gemma": `gemma -bfile hs -gk 1` with GEMMA's default -n 1, i.e. the SNP filters
#    (missing rate > 0.05, MAF < 0.01, one genotype class) computed over the 1,410 mice with
#    CD8 (.fam column 6), centred over all 1,940 genotyped mice; then
#    `gemma -bfile hs -k <that cXX> -n 6 -lmm 4` (GEMMA re-centres the kinship on the 1,580
#    analysed mice before the eigendecomposition).
#  * "all": the same, with the SNP filters over all 1,940 genotyped mice (a copy of the
#    .fam whose column 6 is 1 for every mouse, used only by -gk).
#
# Frozen: the null model of each run (GEMMA's log), the .assoc.txt header (the layout
# lmmkit's output_format="gemma" writes) and, for every 25th tested SNP, GEMMA's
# per-SNP columns (beta, se, l_remle, l_mle, p_wald, p_lrt, p_score; printed by GEMMA to
# 7 significant digits).  Needs `gemma` (0.98.5, Debian: apt-get install gemma) on PATH;
# never needed at test time.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
DATA="${ROOT}/../shared/data/genetics/mouse_hs1940"
OUT="${ROOT}/tests/reference/gemma_mch"
PY="${ROOT}/.venv/bin/python"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

{ gemma 2>&1 || true; } | grep -m1 "GEMMA" > versions.txt || true

# "gemma": the default -gk (filters over .fam column 6's samples)
gemma -bfile "$DATA" -gk 1 -o gk_gemma > gk_gemma.out 2>&1
gemma -bfile "$DATA" -k output/gk_gemma.cXX.txt -n 6 -lmm 4 -o lmm_gemma > lmm_gemma.out 2>&1

# "all": filters over every genotyped mouse (column 6 set to 1 in a copy of the .fam)
ln -s "${DATA}.bed" all.bed
ln -s "${DATA}.bim" all.bim
awk 'BEGIN{OFS="\t"} {$6 = 1; print}' "${DATA}.fam" > all.fam
gemma -bfile all -gk 1 -o gk_all > gk_all.out 2>&1
gemma -bfile "$DATA" -k output/gk_all.cXX.txt -n 6 -lmm 4 -o lmm_all > lmm_all.out 2>&1

"$PY" - "$WORK" "$OUT/gemma_mch_reference.json" <<'PYEOF'
import json, re, sys
from pathlib import Path

import pandas as pd

work, out = Path(sys.argv[1]), Path(sys.argv[2])
keys = {
    "REMLE log-likelihood in the null model": "logl_reml",
    "MLE log-likelihood in the null model": "logl_ml",
    "pve estimate in the null model": "pve",
    "se(pve) in the null model": "pve_se",
    "vg estimate in the null model": "vg",
    "ve estimate in the null model": "ve",
    "number of analyzed individuals": "n_analyzed",
    "number of analyzed SNPs/var": "n_snps_analyzed",
}

def gemma_log(path):
    res = {}
    for line in path.read_text().splitlines():
        m = re.match(r"##\s*(.+?)\s*=\s*(\S+)\s*$", line)
        if m and m.group(1) in keys:
            res[keys[m.group(1)]] = float(m.group(2))
    return res

ref = {
    "versions": (work / "versions.txt").read_text().strip().splitlines(),
    "phenotype": ".fam column 11 (MCH, GEMMA -n 6)",
}
cols = ["rs", "beta", "se", "l_remle", "l_mle", "p_wald", "p_lrt", "p_score"]
for conv in ("gemma", "all"):
    entry = {
        "kinship_log": gemma_log(work / "output" / f"gk_{conv}.log.txt"),
        "null": gemma_log(work / "output" / f"lmm_{conv}.log.txt"),
    }
    assoc = pd.read_csv(work / "output" / f"lmm_{conv}.assoc.txt", sep="\t")
    entry["n_tested"] = int(len(assoc))
    entry["assoc_header"] = list(assoc.columns)
    sub = assoc.iloc[::25]
    entry["snps"] = {c: sub[c].tolist() for c in cols}
    ref[conv] = entry
out.write_text(json.dumps(ref, indent=1) + "\n")
print("wrote", out)
PYEOF

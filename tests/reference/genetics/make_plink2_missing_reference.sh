#!/usr/bin/env bash
# Regenerate:  bash tests/reference/genetics/make_plink2_missing_reference.sh   (repository root)
#
# plink2 --make-grm-bin on data WITH missing calls (issue 24 item 6): 60 samples x 300 SNPs
# simulated by tests/genetics/_genetics_helpers.simulate_genotypes(60, 300, seed=3,
# missing=0.08), SNP 6 made monomorphic (2, keeping its missing calls) and SNP 7 all
# heterozygous, written by write_plink (all samples founders).  Two runs:
#   * default: per pair, the SNPs called in both (GCTA's convention; true per-pair counts
#     in .grm.N.bin)  -> lmmkit compute_grm(..., "standardized", missing="pairwise")
#   * `meanimpute`: missing calls mean-imputed, every pair over all SNPs
#                                                 -> lmmkit's default missing="impute"
# Frozen: each lower triangle (float32 values as written) and the default run's N file;
# also the header of `plink2 --glm` (.glm.linear) on the same genotypes with a phenotype
# (the layout lmmkit's gwas output_format="plink2" writes).
# Needs plink2 on PATH (Debian: apt-get install plink2); never needed at test time.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
OUT="${ROOT}/tests/reference/genetics/plink2_grm_missing.json"
PY="${ROOT}/.venv/bin/python"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

"$PY" - "$ROOT" <<'PYEOF'
import sys
sys.path.insert(0, f"{sys.argv[1]}/tests/genetics")
from _genetics_helpers import simulate_genotypes, write_plink
import numpy as np
g = simulate_genotypes(60, 300, seed=3, missing=0.08)
g[:, 5] = np.where(np.isnan(g[:, 5]), np.nan, 2.0)
g[:, 6] = 1.0
write_plink("sim", g, fam_rows=[f"F{i} I{i} 0 0 1 -9" for i in range(60)],
            bim_rows=[f"1 rs{j} 0 {1000 + j} A G" for j in range(300)])
PYEOF
plink2 --version > version.txt
plink2 --bfile sim --make-grm-bin --out pairwise > /dev/null
plink2 --bfile sim --make-grm-bin meanimpute --out impute > /dev/null
awk '{ $6 = NR % 7 + 0.5; print }' sim.fam > q.fam
cp sim.bed q.bed && cp sim.bim q.bim
plink2 --bfile q --glm allow-no-covars --out glm > /dev/null

"$PY" - "$OUT" <<'PYEOF'
import json, sys
import numpy as np
out = {"source": open("version.txt").read().strip() + ": --make-grm-bin (default) and "
       "--make-grm-bin meanimpute on the simulated set described in the script"}
for name in ("pairwise", "impute"):
    out[name] = np.fromfile(f"{name}.grm.bin", dtype="<f4").astype(float).tolist()
out["pairwise_n"] = np.fromfile("pairwise.grm.N.bin", dtype="<f4").astype(int).tolist()
out["impute_n"] = sorted(set(np.fromfile("impute.grm.N.bin", dtype="<f4").astype(int).tolist()))
out["glm_linear_header"] = open("glm.PHENO1.glm.linear").readline().rstrip("\n").split("\t")
open(sys.argv[1], "w").write(json.dumps(out) + "\n")
print("wrote", sys.argv[1])
PYEOF

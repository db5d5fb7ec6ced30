#!/usr/bin/env bash
# plink2 --pca references for tests/genetics/test_pca.py (PLINK v2.00a3.5 AVX2, Debian bookworm).
# Run from this directory with ../shared beside the repository.
set -euo pipefail
G=../../../../shared/data/genetics
plink2 --bfile "$G/EUR_subset" --pca 10 --out eur_subset
plink2 --bfile "$G/mouse_hs1940" --mouse --nonfounders --pca 10 --out hs1940
gzip -f hs1940.eigenvec
rm -f ./*.log

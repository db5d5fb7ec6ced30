"""How far one chromosome's lambda GC strays by chance when its SNPs are in LD (issue 17).

    .venv/bin/python benchmarks/ld_lambda_sd.py \\
        benchmarks/_data/scale_50000x100000_coalescent/matfree_but10_p1.tsv

Under the null the tested SNPs' z-scores are correlated as their genotypes are (the LD
matrix R over the analysed samples; the LMM's H^-1 weighting only lowers the correlation
along the kinship's top directions, so this is the upper end).  For the SNPs of a GWAS table
(finite p_wald / p_spa), R is built from the cohort's .bed next to the table (``cohort``),
and printed: the exact SD of the mean chi2 (sqrt(2 sum R^2) / m), the effective number of
tests m^2 / sum R^2, and the SD of the median-based lambda GC over ``--draws`` draws of
z ~ N(0, R), with the share of draws at or above the table's own lambda.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats


def main(argv: list[str] | None = None) -> int:
    from lmmkit.genetics.plink import read_plink

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table", type=Path, help="GWAS TSV (lmmkit layout) next to cohort.bed")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    t = pd.read_csv(a.table, sep="\t")
    pcol = "p_spa" if "p_spa" in t else "p_wald"
    t = t[np.isfinite(t[pcol])]
    lam_obs = float(np.median(stats.chi2.isf(t[pcol], 1)) / stats.chi2.ppf(0.5, 1))
    pl = read_plink(a.table.parent / "cohort")
    idx = np.flatnonzero(pl.bim["snp"].isin(set(t["snp"])).to_numpy())
    x = pl.read(snps=idx, dtype="float32")
    x = np.where(np.isnan(x), np.nanmean(x, 0), x)
    x = (x - x.mean(0)) / x.std(0)
    r = (x.T @ x / x.shape[0]).astype(np.float64)
    m = len(r)
    ss = float(np.sum(r * r))
    w, v = np.linalg.eigh(r)
    root = v * np.sqrt(np.clip(w, 0.0, None))
    rng = np.random.default_rng(a.seed)
    lams = []
    for start in range(0, a.draws, 50):
        z = root @ rng.standard_normal((m, min(50, a.draws - start)))
        lams += list(np.median(z * z, 0) / stats.chi2.ppf(0.5, 1))
    lams = np.array(lams)
    print(f"{m} SNPs; lambda GC of the table {lam_obs:.4f}")
    print(f"null SD of the mean chi2 {np.sqrt(2.0 * ss) / m:.4f}; effective tests {m * m / ss:.0f}")
    print(f"null SD of lambda GC {lams.std(ddof=1):.4f} ({a.draws} draws); "
          f"share >= the table's {np.mean(lams >= lam_obs):.4f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

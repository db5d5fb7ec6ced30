"""Small simulated PLINK sets for the GWAS tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.genetics._genetics_helpers import write_plink


def simulate(
    prefix: Path,
    n: int = 160,
    m: int = 240,
    n_chrom: int = 3,
    seed: int = 1,
    special: bool = True,
) -> Path:
    """Related samples (families sharing haplotype frequencies) x SNPs on ``n_chrom``
    chromosomes, a polygenic phenotype in .fam column 6, a covariate-like column 7.

    With ``special``: SNP 3 monomorphic, SNP 5 all missing, sample 2 missing its
    phenotype, ~1% missing calls."""
    rng = np.random.default_rng(seed)
    n_fam = max(2, n // 8)
    fam_of = rng.integers(0, n_fam, n)
    p_pop = rng.uniform(0.05, 0.95, m)
    p_fam = np.clip(p_pop + rng.normal(0, 0.2, (n_fam, m)), 0.01, 0.99)
    geno = rng.binomial(2, p_fam[fam_of]).astype(float)
    if special:
        geno[:, 3] = 2.0
        geno[:, 5] = np.nan
        miss = rng.random(geno.shape) < 0.01
        geno[miss] = np.nan
    g = np.where(np.isnan(geno), 0.0, geno)
    g = (g - g.mean(0)) / (g.std(0) + 1e-9)
    beta = rng.normal(0, 1, m) / np.sqrt(m)
    beta[10] = 0.4  # one strong hit
    y = g @ beta + rng.normal(0, 0.8, n)
    cov = rng.normal(0, 1, n) + 0.3 * y
    fam_rows = []
    for i in range(n):
        yi = "-9" if (special and i == 2) else f"{y[i]:.6f}"
        fam_rows.append(f"F{fam_of[i]} I{i} 0 0 {1 + i % 2} {yi} {cov[i]:.6f}")
    bim_rows = [
        f"{1 + (j * n_chrom) // m} rs{j} 0 {1000 + 37 * j} {'ACGT'[j % 4]} {'GTAC'[j % 4]}"
        for j in range(m)
    ]
    write_plink(prefix, geno, fam_rows=fam_rows, bim_rows=bim_rows)
    return prefix

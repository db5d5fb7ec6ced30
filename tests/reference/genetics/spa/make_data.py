"""Simulated data for the logistic mixed-model (PQL) reference: run once, then make_reference.R.

    python tests/reference/genetics/spa/make_data.py

Writes pql_geno.csv.gz (200 samples x 400 SNPs, A1 counts of related samples: 25 families
sharing allele frequencies) and pql_data.csv (y: 0/1 with 30% cases, x1: a covariate).
Kinship (both sides): K = Z Z' / m with Z the genotypes standardized by their sample mean
and sample standard deviation (ddof 0).
"""

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special

HERE = Path(__file__).resolve().parent


def main() -> None:
    rng = np.random.default_rng(20240611)
    n, m, n_fam = 200, 400, 25
    fam = rng.integers(0, n_fam, n)
    p = np.clip(rng.uniform(0.1, 0.9, m) + rng.normal(0, 0.2, (n_fam, m)), 0.02, 0.98)
    g = rng.binomial(2, p[fam])
    g = g[:, g.std(0) > 0]
    z = (g - g.mean(0)) / g.std(0)
    k = z @ z.T / z.shape[1]
    b = np.linalg.cholesky(k + 1e-8 * np.eye(n)) @ rng.normal(size=n)
    x1 = rng.normal(size=n)
    eta = -1.0 + 0.5 * x1 + 1.0 * b
    y = (rng.random(n) < special.expit(eta)).astype(int)
    pd.DataFrame(g).to_csv(HERE / "pql_geno.csv.gz", index=False, header=False)
    pd.DataFrame({"y": y, "x1": np.round(x1, 6)}).to_csv(HERE / "pql_data.csv", index=False)
    print(f"{n} samples, {g.shape[1]} SNPs, {y.sum()} cases")


if __name__ == "__main__":
    main()

"""Shared helpers for the genetics tests: locating shared data and writing tiny PLINK sets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
HS = SHARED / "data" / "genetics" / "mouse_hs1940"
EUR = SHARED / "data" / "genetics" / "EUR_subset"
REFERENCE = REPO / "tests" / "reference" / "genetics" / "hs1940_reference.json"


def require_hs() -> Path:
    if not HS.with_suffix(".bed").exists():
        pytest.skip(f"shared HS1940 data not found at {HS}.bed (expected <repo>/../shared)")
    return HS


def require_eur() -> Path:
    if not EUR.with_suffix(".bed").exists():
        pytest.skip(f"shared EUR_subset data not found at {EUR}.bed (expected <repo>/../shared)")
    return EUR


def reference() -> dict:
    if not REFERENCE.exists():
        pytest.skip(f"frozen reference {REFERENCE} missing; run make_reference.sh")
    return json.loads(REFERENCE.read_text())


def write_plink(prefix: Path, geno: np.ndarray, *, fam_rows=None, bim_rows=None) -> Path:
    """Write samples x SNPs A1 counts (NaN = missing) as a SNP-major PLINK 1 fileset."""
    n, m = geno.shape
    codes = np.full(geno.shape, 1, dtype=np.uint8)  # 01 = missing
    codes[geno == 2] = 0  # 00 = A1/A1
    codes[geno == 1] = 2  # 10 = het
    codes[geno == 0] = 3  # 11 = A2/A2
    nb = (n + 3) // 4
    out = bytearray(b"\x6c\x1b\x01")
    for j in range(m):
        col = np.zeros(nb * 4, dtype=np.uint8)
        col[:n] = codes[:, j]
        col = col.reshape(nb, 4)
        out += (
            (col[:, 0] | (col[:, 1] << 2) | (col[:, 2] << 4) | (col[:, 3] << 6))
            .astype(np.uint8)
            .tobytes()
        )
    Path(f"{prefix}.bed").write_bytes(bytes(out))
    if fam_rows is None:
        fam_rows = [f"F{i} I{i} 0 0 1 {i * 0.5:.3f}" for i in range(n)]
    Path(f"{prefix}.fam").write_text("\n".join(fam_rows) + "\n")
    if bim_rows is None:
        bim_rows = [f"{1 + j % 2} rs{j} 0 {1000 + j} A G" for j in range(m)]
    Path(f"{prefix}.bim").write_text("\n".join(bim_rows) + "\n")
    return prefix


def simulate_genotypes(n: int, m: int, seed: int = 0, missing: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 0.5, m)
    g = rng.binomial(2, p, size=(n, m)).astype(float)
    if missing:
        g[rng.random((n, m)) < missing] = np.nan
    return g


def write_ldsc_log_inputs(d: Path, n_snp: int = 2000, seed: int = 7) -> None:
    """LD scores and two traits' .sumstats (unambiguous alleles, no missing values) that LDSC
    2.0.1 itself reads: the inputs of tests/reference/genetics/make_ldsc_log_reference.sh."""
    import gzip

    import pandas as pd

    rng = np.random.default_rng(seed)
    snps = [f"rs{j}" for j in range(n_snp)]
    l2 = rng.gamma(2.0, 25.0, n_snp).round(3)
    n = 30000.0
    z1 = rng.normal(size=n_snp) * np.sqrt(1.01 + n * 0.25 * l2 / 40000)
    z2 = 0.6 * z1 + rng.normal(size=n_snp) * np.sqrt(1 + n * 0.15 * l2 / 40000)
    tab = pd.DataFrame({"CHR": 1, "SNP": snps, "BP": np.arange(n_snp) * 100, "L2": l2})
    with gzip.open(d / "ref.l2.ldscore.gz", "wt") as fh:
        tab.to_csv(fh, sep="\t", index=False)
    (d / "ref.l2.M_5_50").write_text("40000\n")
    (d / "ref.l2.M").write_text("50000\n")
    a1 = rng.choice(list("AC"), n_snp)
    a2 = np.where(a1 == "A", "G", "T")
    for k, z in ((1, z1), (2, z2)):
        s = pd.DataFrame({"SNP": snps, "A1": a1, "A2": a2, "Z": z, "N": n})
        s.to_csv(d / f"t{k}.sumstats", sep="\t", index=False, float_format="%.17g")


def write_window_panel(prefix: Path) -> Path:
    """80 samples x 300 SNPs on one chromosome, cM positions 0.01, 0.02, ... (decimals, so
    pairs exactly a window apart round either way): the panel of
    tests/reference/genetics/make_ldsc_window_reference.sh."""
    g = simulate_genotypes(80, 300, seed=12)
    return write_plink(
        prefix,
        g,
        fam_rows=[f"F{i} I{i} 0 0 1 -9" for i in range(80)],
        bim_rows=[f"1 rs{j} {0.01 * j + 0.01:.2f} {1000 * j + 1000} A G" for j in range(300)],
    )

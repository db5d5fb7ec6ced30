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

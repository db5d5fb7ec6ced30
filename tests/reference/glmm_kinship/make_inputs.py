"""Inputs of the kinship-GLMM references (run once from the repo root, then make_reference.R):

    PYTHONPATH=src python tests/reference/glmm_kinship/make_inputs.py

From the HS1940 mice in ../shared/data/genetics (real genotypes and phenotypes):

* ``K_hs300.csv.gz``: the centered GRM (GEMMA -gk 1 convention, all 1,940 mice, lmmkit's
  compute_grm) restricted to 300 mice drawn with a fixed seed among those with CD8 and MCH
  recorded, rounded to 10 decimals. This rounded matrix *is* the K of the references (R and
  the tests both read it).
* ``binary_hs300.csv``: one record per mouse: CD8 dichotomized at its median over the 300
  (``cd8_high``), MCH standardized over the 300 (``mch_z``, 6 decimals).
* ``poisson_hs300.csv``: counts simulated (seed 20240611) for 240 of the 300 mice, 1 to 3
  records each, from log mu = 0.3 + 0.25 x + g + batch, g ~ N(0, 0.4 K), 8 batches with
  SD 0.3; the other 60 mice are in K without records.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lmmkit.genetics.grm import compute_grm
from lmmkit.genetics.plink import read_plink

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2].parent / "shared" / "data" / "genetics" / "mouse_hs1940"


def main() -> None:
    plink = read_plink(SHARED)
    fam = pd.read_csv(f"{SHARED}.fam", sep=r"\s+", header=None, na_values=["NA", "-9"])
    cd8, mch = fam[5].to_numpy(), fam[10].to_numpy()
    ok = np.flatnonzero(np.isfinite(cd8) & np.isfinite(mch))
    rng = np.random.default_rng(20240610)
    pick = np.sort(rng.choice(ok, size=300, replace=False))
    grm = compute_grm(plink, "centered")
    K = np.round(grm.matrix[np.ix_(pick, pick)], 10)
    ids = [str(x) for x in fam[1].to_numpy()[pick]]
    pd.DataFrame(K, index=ids, columns=ids).to_csv(
        HERE / "K_hs300.csv.gz", float_format="%.10f", compression="gzip"
    )

    c = cd8[pick]
    m = mch[pick]
    binary = pd.DataFrame(
        {
            "id": ids,
            "cd8": np.round(c, 8),
            "cd8_high": (c > np.median(c)).astype(int),
            "mch_z": np.round((m - m.mean()) / m.std(ddof=1), 6),
        }
    )
    binary.to_csv(HERE / "binary_hs300.csv", index=False)

    rng = np.random.default_rng(20240611)
    w, Q = np.linalg.eigh(K)
    g = Q @ (np.sqrt(np.clip(w, 0, None)) * rng.standard_normal(len(ids))) * np.sqrt(0.4)
    obs = np.sort(rng.choice(len(ids), size=240, replace=False))
    nrec = rng.integers(1, 4, size=len(obs))
    rows = np.repeat(obs, nrec)
    batch = rng.integers(0, 8, size=len(rows))
    be = rng.normal(0, 0.3, size=8)
    x = np.round(rng.standard_normal(len(rows)), 4)
    mu = np.exp(0.3 + 0.25 * x + g[rows] + be[batch])
    pois = pd.DataFrame(
        {
            "id": [ids[i] for i in rows],
            "batch": [f"B{b}" for b in batch],
            "x": x,
            "count": rng.poisson(mu),
        }
    )
    pois.to_csv(HERE / "poisson_hs300.csv", index=False)


if __name__ == "__main__":
    main()

"""Frozen reference: scanpy's ``sc.pp.combat`` (scanpy 1.11.5, anndata 0.12.19, pandas 2.3.3).

Run in a throwaway venv (scanpy needs pandas < 3; lmmkit's tests never import scanpy)::

    python3 -m venv /tmp/scanpy-ref && /tmp/scanpy-ref/bin/pip install scanpy==1.11.5
    /tmp/scanpy-ref/bin/python tests/reference/anndata/make_scanpy_combat.py [../shared]

Writes ``scanpy_combat.npz`` beside this script: the synthetic inputs (so the test does not
depend on NumPy's generator staying the same) and scanpy's corrected matrices (samples x
genes, float64) for the cases where scanpy's model and sva's coincide:

* ``synthetic_none``: batch key only;
* ``synthetic_age_cov``: batch key + a numeric covariate;
* ``synthetic_age_case``: batch key + numeric covariate + a two-level factor given to scanpy
  as a 0/1 numeric column (scanpy codes a string covariate with every level, which is
  collinear with the batch indicators: singular with one factor, an unidentified grand mean
  with a factor and a numeric column; a 0/1 column is sva's treatment coding);
* ``bladder_none`` / ``bladder_cancer``: the first 400 probes of bladderbatch (57 samples,
  5 batches), batch only / batch + cancer (3 levels as two 0/1 columns, first level dropped),
  when ``../shared/data/omics`` is available.
"""

from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc

HERE = Path(__file__).resolve().parent
N_BLADDER = 400


def run(X: np.ndarray, obs: pd.DataFrame, covariates: list[str] | None) -> np.ndarray:
    adata = ad.AnnData(X.astype(np.float64).copy(), obs=obs.copy())
    sc.pp.combat(adata, key="batch", covariates=covariates)
    return np.asarray(adata.X, dtype=np.float64)


def main() -> None:
    shared = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[2].parent / "shared"
    rng = np.random.default_rng(20261207)
    sizes = [10, 14, 8]
    n, g = sum(sizes), 300
    batch = np.repeat(["b1", "b2", "b3"], sizes)
    case = rng.permutation(np.arange(n) % 2).astype(float)
    age = rng.normal(50.0, 10.0, n)
    loc = rng.normal(0.0, 1.0, (3, g))[np.repeat([0, 1, 2], sizes)]
    scale = rng.gamma(4.0, 0.25, (3, g))[np.repeat([0, 1, 2], sizes)]
    gene_mean = rng.normal(6.0, 1.5, g)
    X = (
        gene_mean
        + 0.03 * age[:, None] * rng.normal(1.0, 0.3, g)
        + 0.7 * case[:, None]
        + loc
        + scale * rng.normal(size=(n, g))
    )
    obs = pd.DataFrame(
        {"batch": batch, "age": age, "case": case}, index=[f"cell{i}" for i in range(n)]
    )
    out: dict[str, np.ndarray] = {
        "synthetic_X": X,
        "synthetic_batch": batch,
        "synthetic_age": age,
        "synthetic_case": case,
        "synthetic_none": run(X, obs, None),
        "synthetic_age_cov": run(X, obs, ["age"]),
        "synthetic_age_case": run(X, obs, ["age", "case"]),
    }
    omics = shared / "data" / "omics"
    if (omics / "bladder_exprs.csv.gz").exists():
        exprs = pd.read_csv(omics / "bladder_exprs.csv.gz", index_col=0).iloc[:N_BLADDER]
        pheno = pd.read_csv(omics / "bladder_pheno.csv", index_col=0).loc[exprs.columns]
        bobs = pd.DataFrame({"batch": pheno["batch"].astype(str)}, index=exprs.columns)
        levels = sorted(pheno["cancer"].unique())
        for lev in levels[1:]:
            bobs[f"cancer_{lev}"] = (pheno["cancer"] == lev).astype(float)
        BX = exprs.T.to_numpy(dtype=np.float64)
        out["bladder_none"] = run(BX, bobs, None)
        out["bladder_cancer"] = run(BX, bobs, [f"cancer_{lev}" for lev in levels[1:]])
    else:
        print(f"no bladder data at {omics}: synthetic cases only")
    out["versions"] = np.array(
        [f"{p} {version(p)}" for p in ("scanpy", "anndata", "pandas", "numpy")]
    )
    np.savez_compressed(HERE / "scanpy_combat.npz", **out)
    print("wrote", HERE / "scanpy_combat.npz", sorted(out))


if __name__ == "__main__":
    main()

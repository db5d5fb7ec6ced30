"""ComBat on an AnnData against scanpy's ``sc.pp.combat`` (frozen by
tests/reference/anndata/make_scanpy_combat.py; scanpy 1.11.5, never imported here).

Where the models coincide (parametric priors, batch key plus numeric covariates or 0/1
factor columns) scanpy and sva differ in one convention only: scanpy's prior variance of the
batch locations, ``t2 = gamma_hat.var(axis=1)``, divides by G (NumPy's default ddof=0); sva's
``rowVars`` (and lmmkit) divide by G - 1.  With scanpy's convention substituted the numbers
agree to rounding (measured 2.1e-14, tolerance 1e-10); as shipped they differ by the
shrinkage's 1/G sensitivity (measured max 2.0e-3 absolute, 5.4e-4 of the largest
adjustment; tolerance 5e-3 and 1e-3).  Not compared, because scanpy has no such model:
non-parametric priors, mean-only, a reference batch; string covariates (scanpy codes every
level, collinear with the batch indicators); genes constant within a batch (scanpy divides by
their zero variance, sva and lmmkit leave them unchanged).
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pandas as pd
import pytest

from lmmkit.omics.combat import ConfoundingWarning, combat
from lmmkit.omics.combat import estimate as combat_estimate
from lmmkit.omics.combat.empirical_bayes import shrink
from tests.conftest import REFERENCE, shared_path
from tests.omics.test_combat_anndata import _AnnDataDouble, require_anndata

REF = np.load(REFERENCE / "anndata" / "scanpy_combat.npz")
CASES = {
    "synthetic_none": [],
    "synthetic_age_cov": ["age"],
    "synthetic_age_case": ["age", "case"],
}


class _ScanpyT2(np.ndarray):
    """``gamma_hat`` whose ``var`` uses scanpy's denominator (G) whatever ddof is asked."""

    def var(self, axis=None, dtype=None, out=None, ddof=0, **kwargs):
        return np.asarray(self).var(axis=axis, ddof=0)


@pytest.fixture
def scanpy_t2(monkeypatch):
    def patched(S, members, gamma_hat, *args, **kwargs):
        return shrink(S, members, np.asarray(gamma_hat).view(_ScanpyT2), *args, **kwargs)

    monkeypatch.setattr(combat_estimate, "shrink", patched)


def _synthetic(real: bool):
    X = REF["synthetic_X"]
    obs = pd.DataFrame(
        {
            "batch": REF["synthetic_batch"],
            "age": REF["synthetic_age"],
            "case": REF["synthetic_case"],
        },
        index=[f"cell{i}" for i in range(len(X))],
    )
    var = pd.DataFrame(index=[f"g{j}" for j in range(X.shape[1])])
    if real:
        return require_anndata().AnnData(X=X.copy(), obs=obs, var=var)
    return _AnnDataDouble(X.copy(), obs, var)


@pytest.mark.parametrize("real", [False, True], ids=["interface", "anndata"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_equals_scanpy_with_its_t2_convention(case: str, real: bool, scanpy_t2) -> None:
    adata = _synthetic(real)
    combat(adata, "batch", covariates=CASES[case] or None)
    np.testing.assert_allclose(adata.layers["combat"], REF[case], rtol=0, atol=1e-10)


@pytest.mark.parametrize("case", sorted(CASES))
def test_close_to_stock_scanpy(case: str) -> None:
    adata = _synthetic(False)
    combat(adata, "batch", covariates=CASES[case] or None)
    diff = np.abs(adata.layers["combat"] - REF[case])
    adjustment = np.abs(REF[case] - adata.X).max()
    assert diff.max() <= 5e-3 and diff.max() / adjustment <= 1e-3
    assert diff.max() > 1e-8  # the t2 convention does show (else the doc above is wrong)


@pytest.mark.parametrize("with_cancer", [False, True], ids=["batch", "batch+cancer"])
def test_bladder_equals_scanpy_with_its_t2_convention(with_cancer: bool, scanpy_t2) -> None:
    exprs = pd.read_csv(shared_path("data", "omics", "bladder_exprs.csv.gz"), index_col=0)
    pheno = pd.read_csv(shared_path("data", "omics", "bladder_pheno.csv"), index_col=0)
    exprs = exprs.iloc[:400]
    obs = pheno.loc[exprs.columns, ["batch", "cancer"]].astype({"batch": str})
    adata = _AnnDataDouble(exprs.T.to_numpy(), obs, pd.DataFrame(index=exprs.index))
    with pytest.warns(ConfoundingWarning) if with_cancer else nullcontext():
        combat(adata, "batch", covariates=["cancer"] if with_cancer else None)
    key = "bladder_cancer" if with_cancer else "bladder_none"
    np.testing.assert_allclose(adata.layers["combat"], REF[key], rtol=0, atol=1e-10)

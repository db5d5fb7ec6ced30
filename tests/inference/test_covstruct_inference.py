"""Inference on fits with a random-effects covariance structure.

homcs(0 + Variety | Block) on nlme's Oats is the model (1 | Block) + (1 | Block:Variety)
(correlation >= 0 here), written in other parameters. Satterthwaite's df and Nakagawa's R^2
do not depend on the parametrization, so they must agree between the two fits; the nested
fit's own numbers are checked against lmerTest / performance elsewhere in this suite.
Tolerances: df 1e-5 relative (numerical Hessians in two parametrizations), R^2 1e-6.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmmkit
from lmmkit.inference import bootstrap, r2, satterthwaite

OATS = Path(__file__).resolve().parents[1] / "reference" / "recov" / "oats.csv"


@pytest.fixture(scope="module")
def pair():
    oats = pd.read_csv(OATS)
    a = lmmkit.LinearMixedModel("yield ~ nitro + homcs(0 + Variety | Block)", oats)
    b = lmmkit.LinearMixedModel("yield ~ nitro + (1 | Block) + (1 | Block:Variety)", oats)
    return (a, a.fit()), (b, b.fit())


def test_satterthwaite_is_parametrization_invariant(pair) -> None:
    (a, ra), (b, rb) = pair
    ta = satterthwaite.coef_table(a, ra)
    tb = satterthwaite.coef_table(b, rb)
    np.testing.assert_allclose(ta["df"], tb["df"], rtol=1e-5)
    np.testing.assert_allclose(ta["Std. Error"], tb["Std. Error"], rtol=1e-6)
    L = np.array([[0.0, 1.0]])
    assert satterthwaite.contest(a, L, result=ra)["DenDF"] == pytest.approx(
        satterthwaite.contest(b, L, result=rb)["DenDF"], rel=1e-5
    )


def test_r2_and_icc_use_the_structured_covariance(pair) -> None:
    (a, ra), (b, rb) = pair
    for fn in (r2.r2_nakagawa, r2.icc):
        got, want = fn(a, ra), fn(b, rb)
        for k in want:
            assert got[k] == pytest.approx(want[k], rel=1e-6)


def test_bootstrap_simulates_from_the_structure(pair) -> None:
    """Replicates are simulated from Sigma = tau^2 C(rho): the random-effect SD statistics of
    the replicates centre near the fit's (loose: 40 replicates, 6 blocks)."""
    (a, ra), _ = pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        boot = bootstrap.parametric_bootstrap(a, ra, nsim=40, seed=2)
    assert boot.n_failed == 0
    sd = boot.replicates["sd_Residual_sigma"]
    assert sd.mean() == pytest.approx(ra.sigma, rel=0.1)
    col = [c for c in boot.replicates.columns if c.startswith("sd_Block_")][0]
    assert boot.replicates[col].median() == pytest.approx(ra.varcorr["sdcor"].iloc[0], rel=0.3)

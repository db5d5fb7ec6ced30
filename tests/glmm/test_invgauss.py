"""Inverse-Gaussian GLMM against glmer (frozen by make_invgauss_reference.R)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import lmmkit
from lmmkit.errors import DataError
from tests.conftest import REFERENCE

DIR = REFERENCE / "glmm_extra"


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return pd.read_csv(DIR / "invgauss.csv")


def test_inverse_gaussian_log_link_equals_glmer(data) -> None:
    ref = json.loads((DIR / "invgauss.json").read_text())["log"]
    res = lmmkit.glmm("y ~ x + (1 | g)", data, family="inverse.gaussian(log)")
    assert res.loglik == pytest.approx(ref["loglik"], rel=1e-5)
    np.testing.assert_allclose(res.fixef, ref["fixef"], rtol=1e-3)
    np.testing.assert_allclose(res.fixef_se, ref["fixef_se"], rtol=1e-3)
    assert res.sigma == pytest.approx(ref["sigma"], rel=1e-3)
    assert res.aic == pytest.approx(ref["AIC"], rel=1e-6)
    # simulation-based residuals are uniform-ish and finite for a continuous response
    q = res.quantile_residuals(nsim=100, seed=1)
    assert np.all((q >= 0) & (q <= 1)) and 0.35 < q.mean() < 0.65


def test_inverse_gaussian_needs_positive_response(data) -> None:
    bad = data.assign(y=data.y.where(data.index != 7, -1.0))
    with pytest.raises(
        DataError, match=r"inverse-Gaussian response 'y' must be positive; got -1.0 at row 7"
    ):
        lmmkit.glmm("y ~ x + (1 | g)", bad, family="inverse_gaussian")

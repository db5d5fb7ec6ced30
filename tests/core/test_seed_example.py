"""The seed example as users type it: lmmkit.lmm("mpg ~ hp + (1 | am)", mtcars)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import lmmkit
from lmmkit.datasets import load_dataset
from tests.conftest import shared_path


def test_mtcars_equals_lme4() -> None:
    ref = json.loads(shared_path("reference", "lme4", "mtcars_reml.json").read_text())
    res = lmmkit.lmm("mpg ~ hp + (1 | am)", load_dataset("mtcars"))
    assert res.objective == pytest.approx(ref["objective"], rel=1e-9)
    np.testing.assert_allclose(res.fixef, ref["fixef"], rtol=1e-6)
    np.testing.assert_allclose(res.varcorr["sdcor"], ref["vc_sdcor"], rtol=1e-5)


def test_mtcars_equals_statsmodels_mixedlm() -> None:
    """statsmodels' mixedlm("mpg ~ hp", groups=am) is the same model (REML)."""
    smf = pytest.importorskip("statsmodels.formula.api")
    mtcars = load_dataset("mtcars")
    sm = smf.mixedlm("mpg ~ hp", mtcars, groups=mtcars["am"]).fit(reml=True, method="lbfgs")
    res = lmmkit.lmm("mpg ~ hp + (1 | am)", mtcars)
    np.testing.assert_allclose(res.fixef.to_numpy(), sm.fe_params.to_numpy(), rtol=1e-4)
    assert res.sigma**2 == pytest.approx(sm.scale, rel=1e-4)
    assert res.loglik == pytest.approx(sm.llf, rel=1e-6)

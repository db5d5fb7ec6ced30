"""Conditional modes, conditional variances, fitted values and predictions against lme4."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import lmmkit
from tests.conftest import REFERENCE

REF = REFERENCE / "lme4" / "sleepstudy_reml_ranef.json"


@pytest.fixture(scope="module")
def ref() -> dict:
    if not REF.exists():
        pytest.skip(f"{REF} missing")
    return json.loads(REF.read_text())


@pytest.fixture(scope="module")
def res(lme4_data):
    return lmmkit.lmm("Reaction ~ Days + (Days | Subject)", lme4_data("sleepstudy"))


def test_conditional_modes(ref, res) -> None:
    r = ref["ranef"]["Subject"]
    ours = res.ranef["Subject"].loc[[str(x) for x in r["levels"]]].to_numpy()
    np.testing.assert_allclose(ours, np.asarray(r["values"]), rtol=1e-4, atol=1e-4)


def test_conditional_variances(ref, res) -> None:
    cv = np.asarray(ref["condvar"]["Subject"])  # per level, column-major 2x2 (symmetric)
    ours = res.ranef_condvar["Subject"]
    levels = [str(x) for x in ref["ranef"]["Subject"]["levels"]]
    order = [list(res.ranef["Subject"].index).index(lv) for lv in levels]
    np.testing.assert_allclose(
        ours[order].reshape(len(levels), -1), cv.reshape(len(levels), -1), rtol=1e-4
    )


def test_fitted_and_residuals(ref, res) -> None:
    np.testing.assert_allclose(res.fitted, ref["fitted"], rtol=1e-6)
    np.testing.assert_allclose(res.residuals, ref["residuals"], rtol=1e-4, atol=1e-4)


def test_predict_with_new_levels(ref, res) -> None:
    new = pd.DataFrame(ref["predict_newdata"])
    new["Subject"] = new["Subject"].astype(str)
    np.testing.assert_allclose(
        res.predict(new, allow_new_levels=True), ref["predict_new"], rtol=1e-6
    )
    np.testing.assert_allclose(
        res.predict(new, include_random=False), ref["predict_re_form_na"], rtol=1e-8
    )

"""glmer on lme4's own data sets: VerbAgg (binomial, subjects crossed with items, 7,584 rows)
and grouseticks (Poisson, broods nested in locations); frozen by
tests/reference/glmm_extra/make_lme4data_reference.R."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import lmmkit
from tests.conftest import REFERENCE

DIR = REFERENCE / "glmm_extra"
REF = json.loads((DIR / "lme4data_glmer.json").read_text())


def _check(res, ref) -> None:
    assert list(res.fixef.index) == ref["fixef_names"]
    assert res.loglik == pytest.approx(ref["loglik"], rel=1e-5)
    np.testing.assert_allclose(res.fixef, ref["fixef"], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(res.fixef_se, ref["fixef_se"], rtol=1e-3)


def test_verbagg_subjects_crossed_with_items() -> None:
    df = pd.read_csv(DIR / "verbagg.csv.gz", dtype={"id": str, "item": str})
    res = lmmkit.glmm(
        "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", df, family="binomial"
    )
    _check(res, REF["verbagg"])


def test_grouseticks_nested_intercepts() -> None:
    df = pd.read_csv(DIR / "grouseticks.csv.gz", dtype={"YEAR": str, "BROOD": str, "LOCATION": str})
    res = lmmkit.glmm("TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)", df, family="poisson")
    _check(res, REF["grouseticks"])

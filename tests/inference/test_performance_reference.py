"""Nakagawa R2 and ICC against the R package performance itself (not only its formulas)."""

from __future__ import annotations

import json

import pytest

import lmmkit
from lmmkit.inference.r2 import icc, r2_nakagawa
from tests.conftest import REFERENCE

REF = json.loads((REFERENCE / "performance" / "r2_icc.json").read_text())
CASES = [k for k in REF if k != "performance.version"]


@pytest.mark.parametrize("case", CASES)
def test_r2_and_icc_equal_performance(case: str, lme4_data) -> None:
    ref = REF[case]
    data = (
        lme4_data(ref["data"])
        if ref["data"] != "mtcars"
        else lmmkit.datasets.load_dataset("mtcars")
    )
    if ref["data"] == "mtcars":
        data = data.assign(am=data["am"].astype(str))
    model = lmmkit.LinearMixedModel(ref["formula"], data)
    result = model.fit()
    r2, ic = r2_nakagawa(model, result), icc(model, result)
    assert r2["R2_marginal"] == pytest.approx(ref["R2_marginal"], rel=1e-4)
    assert r2["R2_conditional"] == pytest.approx(ref["R2_conditional"], rel=1e-4)
    assert ic["ICC_adjusted"] == pytest.approx(ref["ICC_adjusted"], rel=1e-4)
    assert ic["ICC_unadjusted"] == pytest.approx(ref["ICC_unadjusted"], rel=1e-4)

"""GLMM likelihood-ratio tests against glmer's anova, and the fit command's --family."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import lmmkit
from lmmkit.errors import ModelError
from tests.conftest import REFERENCE, shared_path

FORMULA = "cbind(incidence, size - incidence) ~ {} + (1 | herd)"


@pytest.fixture(scope="module")
def cbpp() -> pd.DataFrame:
    df = pd.read_csv(shared_path("data", "lme4", "cbpp.csv"))
    return df.assign(herd=df.herd.astype(str), period=df.period.astype(str))


def test_lrt_equals_glmer_anova(cbpp) -> None:
    ref = json.loads((REFERENCE / "glmm_extra" / "cbpp_anova.json").read_text())
    m0 = lmmkit.glmm(FORMULA.format("1"), cbpp, family="binomial")
    m1 = lmmkit.glmm(FORMULA.format("period"), cbpp, family="binomial")
    table = lmmkit.anova(m1, m0)  # any order: sorted by npar
    assert list(table["npar"]) == ref["npar"]
    np.testing.assert_allclose(table["logLik"], ref["logLik"], rtol=1e-6)
    assert table["Chisq"].iloc[1] == pytest.approx(ref["Chisq"], rel=1e-4)
    assert table["Df"].iloc[1] == ref["Df"]
    assert table["Pr(>Chisq)"].iloc[1] == pytest.approx(ref["p"], rel=1e-3)


def test_lrt_refuses_non_nested(cbpp) -> None:
    a = lmmkit.glmm(FORMULA.format("period"), cbpp, family="binomial")
    b = lmmkit.glmm(FORMULA.format("period"), cbpp.iloc[:40], family="binomial")
    with pytest.raises(ModelError, match="different numbers of observations"):
        lmmkit.anova(a, b)


def test_fit_command_with_family(cbpp, tmp_path, capsys) -> None:
    from lmmkit.cli.main import main

    path = tmp_path / "cbpp.csv"
    cbpp.to_csv(path, index=False)
    code = main(
        [
            "fit",
            FORMULA.format("period"),
            "--data",
            str(path),
            "--family",
            "binomial",
            "--factor",
            "period",
            "--factor",
            "herd",
            "--json",
            str(tmp_path / "g.json"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "binomial" in out.lower()
    fit = json.loads((tmp_path / "g.json").read_text())
    ref = json.loads(shared_path("reference", "lme4", "cbpp_laplace.json").read_text())
    assert fit["loglik"] == pytest.approx(ref["loglik"], rel=1e-6)

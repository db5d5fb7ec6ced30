"""Agreement with glmer (lme4 1.1-31) on frozen references.

Tolerances (issue 4): log-likelihood within 1e-5 relative, fixed effects within 1e-3
relative; also standard errors (glmer's default Hessian-based vcov) and theta within 1e-3.
References: ../shared/reference/lme4/cbpp_*.json (cbpp, Laplace and nAGQ = 9) and
tests/reference/glmm/*.json (made by tests/reference/glmm/make_reference.R with its data).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmmkit.glmm.model import glmm
from lmmkit.glmm.nb import glmm_nb
from tests.conftest import REFERENCE, shared_path

GLMM_REF = REFERENCE / "glmm"
FACTORS = ("site", "plot", "year", "subject", "item", "cond")


def _rel(a, b) -> np.ndarray:
    a, b = np.atleast_1d(np.asarray(a, float)), np.atleast_1d(np.asarray(b, float))
    return np.abs(a - b) / np.maximum(np.abs(b), 1e-8)


def _check(res, ref: dict, theta_tol: float = 1e-3) -> None:
    assert res.nobs == ref["nobs"]
    assert _rel(res.loglik, ref["loglik"]).max() < 1e-5
    assert list(res.fixef.index) == list(ref["fixef_names"])
    assert _rel(res.fixef.values, ref["fixef"]).max() < 1e-3
    assert _rel(res.fixef_se.values, ref["fixef_se"]).max() < 1e-3
    assert _rel(res.theta, ref["theta"]).max() < theta_tol
    assert _rel(res.deviance, ref["deviance"]).max() < 1e-4
    assert _rel(res.aic, ref["AIC"]).max() < 1e-5


@pytest.fixture(scope="module")
def cbpp() -> pd.DataFrame:
    d = pd.read_csv(shared_path("data", "lme4", "cbpp.csv"))
    d["herd"] = d["herd"].astype(str)
    d["period"] = d["period"].astype(str)
    return d


@pytest.mark.parametrize("name,nagq", [("cbpp_laplace", 1), ("cbpp_agq9", 9)])
def test_cbpp(cbpp: pd.DataFrame, name: str, nagq: int) -> None:
    ref = json.loads(shared_path("reference", "lme4", f"{name}.json").read_text())
    res = glmm(ref["formula"], cbpp, family="binomial", nagq=nagq)
    assert res.nagq == nagq
    assert res.vcov_method == "hessian"
    _check(res, ref)


def _frozen() -> list[Path]:
    return sorted(GLMM_REF.glob("*.json"))


@pytest.mark.parametrize("path", _frozen(), ids=lambda p: p.stem)
def test_frozen_reference(path: Path) -> None:
    ref = json.loads(path.read_text())
    data = pd.read_csv(GLMM_REF / ref["data"])
    for c in FACTORS:
        if c in data:
            data[c] = data[c].astype(str)
    theta_tol = 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # poisson_nested has an all-zero plot (warned)
        if ref["family"] == "negbin":
            res = glmm_nb(ref["formula"], data)
            assert _rel(res.nb_theta, ref["nb_theta"]).max() < 1e-3
            assert res.npar == len(res.theta) + len(res.fixef) + 1
            # glmer.nb stops 2.7e-4 short of the maximum log-likelihood (ours is higher);
            # the random-effect SD it reports is 8e-4 (relative) away from the optimum.
            theta_tol = 2e-3
        else:
            res = glmm(ref["formula"], data, family=ref["family"])
    _check(res, ref, theta_tol)
    if "sigma" in ref:
        assert _rel(res.sigma, ref["sigma"]).max() < 1e-3
    # conditional modes and variances (ranef(condVar = TRUE)) of the first levels
    for item in ref["ranef_first"]:
        frame = res.ranef[item["group"]]
        got = frame.loc[[type(frame.index[0])(v) for v in item["levels"]]].iloc[:, 0]
        assert np.abs(got.to_numpy() - item["modes"]).max() < 2e-3 * max(
            1.0, np.abs(item["modes"]).max()
        )
        term = next(t for t in res.terms if ":".join(t.group) == item["group"])
        pos = [[str(v) for v in term.levels].index(str(lv)) for lv in item["levels"]]
        cv = term.condvar[pos, 0, 0] * res.sigma**2
        assert _rel(cv, item["condvar"]).max() < 2e-3
    assert list(res.varcorr["group"]) == list(np.atleast_1d(ref["vc_grp"]))
    assert _rel(res.varcorr["sdcor"], ref["vc_sdcor"]).max() < theta_tol
    chisq = res.overdispersion()["chisq"]
    assert _rel(chisq, ref["pearson_chisq"]).max() < 1e-3

"""coxph against R survival 3.5-3 (tests/reference/survival/make_reference.R).

Tolerances: coefficients, SEs (naive and robust), log-likelihoods and tests 1e-6 relative
(the issue's); concordance counts and C 1e-10; residuals, baseline hazard and cox.zph 1e-8.
Measured differences are ~1e-13 (the same Newton path as survival's coxfit6/agfit4).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from lmmkit.survival import coxph

CGD = "Surv(tstart, tstop, status) ~ treat + sex + age + C(inherit, Treatment('autosomal'))"
FITS = {
    "lung_efron": ("Surv(time, status) ~ age + sex + ph.ecog", "lung", {}),
    "lung_breslow": ("Surv(time, status) ~ age + sex + ph.ecog", "lung", {"ties": "breslow"}),
    "lung_strata": ("Surv(time, status) ~ age + ph.ecog + strata(sex)", "lung", {}),
    "lung_weights": ("Surv(time, status) ~ age + sex + ph.ecog", "lung", {"weights": "w"}),
    "lung_cluster": ("Surv(time, status) ~ age + sex + ph.ecog", "lung", {"cluster": "inst"}),
    "lung_offset": ("Surv(time, status) ~ sex + ph.ecog + offset(age / 100)", "lung", {}),
    "veteran": (
        "Surv(time, status) ~ trt + C(celltype) + karno + diagtime + age + prior",
        "veteran",
        {},
    ),
    "colon_death": ("Surv(time, status) ~ C(rx) + sex + age + obstruct + nodes", "colon", {}),
    "colon_death_breslow": (
        "Surv(time, status) ~ C(rx) + sex + age + obstruct + nodes",
        "colon",
        {"ties": "breslow"},
    ),
    "cgd_counting": (CGD + " + steroids", "cgd", {"cluster": "id"}),
    "cgd_counting_strata": (
        "Surv(tstart, tstop, status) ~ treat + age + strata(hos.cat)",
        "cgd",
        {},
    ),
}


def _fit(name, surv_data):
    formula, data, kw = FITS[name]
    df = surv_data(data)
    if data == "colon":
        df = df[df["etype"] == 2]
    return coxph(formula, df, **kw)


def _r_name(name: str) -> str:
    """formulaic's C(x, Treatment('a'))b -> R's xb."""
    return re.sub(r"C\((\w+)(, Treatment\([^)]*\))?\)", r"\1", name)


def _rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


def _abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, float) - np.asarray(b, float))))


@pytest.mark.parametrize("name", sorted(FITS))
def test_coef_se_loglik_tests(name, surv_data, surv_ref):
    r = surv_ref["fits"][name]
    fit = _fit(name, surv_data)
    assert [_r_name(c) for c in fit.coef.index] == r["names"]
    assert _rel(fit.coef, r["coef"]) < 1e-6
    var = np.array(r["var"])
    naive = np.array(r["naive_var"]) if r["naive_var"] is not None else var
    assert _rel(fit.se, np.sqrt(np.diag(var))) < 1e-6
    assert _rel(fit.naive_se, np.sqrt(np.diag(naive))) < 1e-6
    assert fit.robust == (r["naive_var"] is not None)
    assert _rel([fit.loglik_null, fit.loglik], r["loglik"]) < 1e-6
    assert _rel(fit.score_test.statistic, r["score"]) < 1e-6
    assert _rel(fit.wald_test.statistic, r["wald"]) < 1e-6
    if r["rscore"] is not None:
        assert _rel(fit.robust_score_test.statistic, r["rscore"]) < 1e-6
    assert fit.iterations == r["iter"]
    assert (fit.n, fit.nevent) == (r["n"], r["nevent"])
    assert _abs(fit.means, r["means"]) < 1e-10
    assert _abs(fit.linear_predictors, r["lp"]) < 1e-8


@pytest.mark.parametrize("name", sorted(FITS))
def test_concordance_of_fit(name, surv_data, surv_ref):
    c = surv_ref["fits"][name]["concordance"]
    fit = _fit(name, surv_data)
    assert _abs(fit.concordance.counts.to_numpy(), c[:5]) < 1e-8
    assert abs(fit.concordance.concordance - c[5]) < 1e-10
    assert abs(fit.concordance.std_err - c[6]) < 1e-10


@pytest.mark.parametrize("name", sorted(FITS))
def test_basehaz_and_residuals(name, surv_data, surv_ref):
    r = surv_ref["fits"][name]
    fit = _fit(name, surv_data)
    bh = fit.basehaz()
    assert _abs(bh["time"], r["basehaz"]["time"]) == 0
    assert _abs(bh["cumhaz"], r["basehaz"]["hazard"]) < 1e-8
    assert _abs(fit.residuals("martingale"), r["resid_martingale"]) < 1e-8
    assert _abs(fit.residuals("score"), r["resid_score"]) < 1e-8
    assert _abs(fit.residuals("schoenfeld"), r["resid_schoenfeld"]) < 1e-8
    assert _abs(fit.residuals("dfbeta"), r["resid_dfbeta"]) < 1e-8


@pytest.mark.parametrize("name", sorted(FITS))
@pytest.mark.parametrize("transform", ["km", "rank", "identity"])
def test_cox_zph(name, transform, surv_data, surv_ref):
    z = surv_ref["fits"][name]["zph"][transform]
    fit = _fit(name, surv_data)
    tab = fit.cox_zph(transform=transform).table
    assert [_r_name(c) for c in tab.index] == z["rows"]
    assert _rel(tab["chisq"], z["chisq"]) < 1e-8
    assert _rel(tab["p"], z["p"]) < 1e-6


def test_predict_survival_newdata(surv_data, surv_ref):
    r = surv_ref["predict"]
    import pandas as pd

    fit = _fit("lung_efron", surv_data)
    nd = pd.DataFrame(r["newdata"])
    assert _abs(fit.predict(nd, type="lp"), r["lp_sample"]) < 1e-10
    assert _abs(fit.predict(nd, type="risk"), r["risk_sample"]) < 1e-10
    surv = fit.predict(nd, type="survival", times=r["times"])
    assert _abs(surv, r["survival"]) < 1e-10


def test_predict_survival_strata(surv_data, surv_ref):
    r = surv_ref["predict_strata"]
    import pandas as pd

    fit = _fit("lung_strata", surv_data)
    nd = pd.DataFrame(r["newdata"])
    surv = fit.predict(nd, type="survival", times=r["times"])
    assert _abs(surv, np.array(r["survival"]).T) < 1e-10


def test_summary_layout(surv_data):
    fit = _fit("lung_cluster", surv_data)
    text = fit.summary()
    for piece in (
        "n= 226, number of events= 163",
        "robust se",
        "exp(-coef)",
        "lower .95",
        "Concordance=",
        "Likelihood ratio test=",
        "Score (logrank) test",
        "Robust",
        "(2 observation(s) deleted",
    ):
        assert piece in text
    hr = fit.hazard_ratios
    assert np.allclose(hr["exp(coef)"], np.exp(fit.coef))
    assert (hr["lower .95"] < hr["exp(coef)"]).all() and (hr["exp(coef)"] < hr["upper .95"]).all()


def test_to_json_roundtrip(tmp_path, surv_data):
    import json

    fit = _fit("lung_efron", surv_data)
    out = tmp_path / "fit.json"
    fit.to_json(str(out))
    d = json.loads(out.read_text())
    assert d["n"] == 227 and abs(d["coef"]["sex"] - fit.coef["sex"]) < 1e-15

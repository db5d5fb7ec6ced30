"""Agreement of lmmkit.inference with lmerTest 3.1-3, pbkrtest 0.5-2 and lme4 1.1-31.

References: tests/reference/inference/inference_reference.json, made by
tests/reference/inference/make_reference.R (regenerate command at its top).

Tolerances: Satterthwaite and Kenward-Roger df within 2e-4 relative (measured <= 9e-5; the
gap is the two optimizers' theta, not the method), p-values within 1e-4 absolute (measured
<= 2e-9), F within 1e-4 relative, standard errors 1e-4 relative, LRT statistics 1e-6
relative, profile CIs 1e-3 relative (measured <= 5e-5), R2/ICC 1e-4 relative.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmmkit.datasets import load_dataset
from lmmkit.errors import ModelError
from lmmkit.inference import contrasts, lrt, profile, r2, satterthwaite
from lmmkit.inference import kenward_roger as kr
from lmmkit.inference._common import richardson_hessian, richardson_jacobian
from lmmkit.models.lmm import LinearMixedModel

REF = json.loads(
    (
        Path(__file__).resolve().parents[1] / "reference" / "inference" / "inference_reference.json"
    ).read_text()
)
DF_RTOL = 2e-4
P_ATOL = 1e-4


def _unbalanced() -> pd.DataFrame:
    ss = load_dataset("sleepstudy")
    keep = [i for i in range(len(ss)) if (i + 1) % 7 != 0]  # R: rows 7, 14, ... removed
    d = ss.iloc[keep].reset_index(drop=True)
    d["dgrp"] = np.where(d.Days <= 2, "a", np.where(d.Days <= 5, "b", "c"))
    first9 = sorted(d.Subject.astype(str).unique())[:9]
    d["half"] = np.where(d.Subject.astype(str).isin(first9), "A", "B")
    return d


CASES = {
    "ss": ("Reaction ~ Days + (Days | Subject)", lambda: load_dataset("sleepstudy")),
    "ss_unbal": ("Reaction ~ Days + (Days | Subject)", _unbalanced),
    "ss_fac": ("Reaction ~ Days + dgrp + (1 | Subject)", _unbalanced),
    "ss_int": ("Reaction ~ Days * dgrp + (1 | Subject)", _unbalanced),
    "ss_ff": ("Reaction ~ dgrp * half + (1 | Subject)", _unbalanced),
    "pen": ("diameter ~ 1 + (1 | plate) + (1 | sample)", lambda: load_dataset("Penicillin")),
}


@pytest.fixture(scope="module")
def models():
    out = {}
    for name, (formula, data) in CASES.items():
        m = LinearMixedModel(formula, data())
        out[name] = (m, m.fit(reml=True))
    return out


@pytest.fixture(scope="module")
def sat_infos(models):
    return {k: satterthwaite.satterthwaite_info(m, r) for k, (m, r) in models.items()}


@pytest.fixture(scope="module")
def kr_infos(models):
    return {k: kr.kr_info(m, r) for k, (m, r) in models.items()}


def _check_coef_table(tab: pd.DataFrame, ref: dict) -> None:
    assert list(tab.index) == list(np.atleast_1d(ref["names"]))
    np.testing.assert_allclose(tab["Estimate"], np.atleast_1d(ref["estimate"]), rtol=1e-5)
    np.testing.assert_allclose(tab["Std. Error"], np.atleast_1d(ref["se"]), rtol=1e-4)
    np.testing.assert_allclose(tab["df"], np.atleast_1d(ref["df"]), rtol=DF_RTOL)
    np.testing.assert_allclose(tab["t value"], np.atleast_1d(ref["t"]), rtol=1e-4)
    np.testing.assert_allclose(tab["Pr(>|t|)"], np.atleast_1d(ref["p"]), rtol=0, atol=P_ATOL)


def _check_anova(tab: pd.DataFrame, ref: dict) -> None:
    terms = list(np.atleast_1d(ref["terms"]))
    assert list(tab.index) == terms
    if not terms:
        return
    np.testing.assert_array_equal(tab["NumDF"], np.atleast_1d(ref["numdf"]))
    np.testing.assert_allclose(tab["DenDF"], np.atleast_1d(ref["dendf"]), rtol=DF_RTOL)
    np.testing.assert_allclose(tab["F value"], np.atleast_1d(ref["F"]), rtol=1e-4)
    np.testing.assert_allclose(tab["Pr(>F)"], np.atleast_1d(ref["p"]), rtol=0, atol=P_ATOL)


# ----------------------------------------------------------------- numerical derivatives
def test_richardson_derivatives_exact_on_smooth_functions():
    def f(x):
        return np.exp(x[0]) * np.sin(x[1]) + x[0] ** 2 * x[1] ** 3

    x = np.array([0.3, 1.2])
    H = richardson_hessian(f, x)
    e, s, c = np.exp(x[0]), np.sin(x[1]), np.cos(x[1])
    want = np.array(
        [
            [e * s + 2 * x[1] ** 3, e * c + 6 * x[0] * x[1] ** 2],
            [e * c + 6 * x[0] * x[1] ** 2, -e * s + 6 * x[0] ** 2 * x[1]],
        ]
    )
    np.testing.assert_allclose(H, want, rtol=1e-8)
    J = richardson_jacobian(lambda v: np.array([v[0] * v[1], np.log(v[1])]), x)
    np.testing.assert_allclose(J, [[x[1], x[0]], [0.0, 1 / x[1]]], rtol=1e-10)


# ----------------------------------------------------------------- Satterthwaite
@pytest.mark.parametrize("case", list(CASES))
def test_satterthwaite_coef_table(case, sat_infos):
    _check_coef_table(satterthwaite.coef_table(sat_infos[case]), REF[case]["satterthwaite"])


def test_sleepstudy_df_is_17(sat_infos):
    df = satterthwaite.coef_table(sat_infos["ss"])["df"].to_numpy()
    np.testing.assert_allclose(df, 17.0, rtol=1e-4)


@pytest.mark.parametrize("case", list(CASES))
def test_satterthwaite_vcov_varpar(case, sat_infos):
    A = sat_infos[case].vcov_varpar
    ref = np.array(REF[case]["vcov_varpar"])
    np.testing.assert_allclose(A, ref, rtol=0, atol=1e-3 * np.abs(ref).max())


@pytest.mark.parametrize("case", list(CASES))
def test_satterthwaite_anova_type3(case, models):
    m, r = models[case]
    _check_anova(satterthwaite.anova(m, r), REF[case]["anova_satterthwaite"])


@pytest.mark.parametrize("case", list(CASES))
def test_type3_contrast_matrices(case, models):
    m, _ = models[case]
    got = contrasts.type3_contrasts(m)
    ref = REF[case]["type3_L"]
    ref = ref if isinstance(ref, dict) else {}
    assert list(got) == list(ref)
    for term, L in got.items():
        np.testing.assert_allclose(L, np.atleast_2d(ref[term]), atol=1e-7)


def test_type3_needs_main_effects_for_interactions():
    d = _unbalanced()
    m = LinearMixedModel("Reaction ~ Days:dgrp + (1 | Subject)", d)
    with pytest.raises(NotImplementedError, match="main effect"):
        contrasts.type3_contrasts(m)


def test_satterthwaite_two_df_contrast(sat_infos):
    ref = REF["contrast2"]
    out = satterthwaite.contest(sat_infos["ss_fac"], ref["L"])
    assert out["NumDF"] == 2
    np.testing.assert_allclose(out["DenDF"], ref["sat_dendf"], rtol=DF_RTOL)
    np.testing.assert_allclose(out["F value"], ref["sat_F"], rtol=1e-4)
    assert abs(out["Pr(>F)"] - ref["sat_p"]) < P_ATOL


def test_satterthwaite_for_an_ml_fit():
    m = LinearMixedModel("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
    tab = satterthwaite.coef_table(m, m.fit(reml=False))
    _check_coef_table(tab, REF["ss_ml"]["satterthwaite"])


def test_coef_table_dispatches_to_kenward_roger(models):
    m, r = models["ss_unbal"]
    _check_coef_table(
        satterthwaite.coef_table(m, r, ddf="Kenward-Roger"), REF["ss_unbal"]["kenward_roger"]
    )
    with pytest.raises(ModelError, match="ddf"):
        satterthwaite.coef_table(m, r, ddf="Wald")


def test_coef_table_fits_the_model_when_given_only_the_model(models):
    m, _ = models["ss_fac"]
    _check_coef_table(satterthwaite.coef_table(m), REF["ss_fac"]["satterthwaite"])


# ----------------------------------------------------------------- Kenward-Roger
@pytest.mark.parametrize("case", list(CASES))
def test_kenward_roger_coef_table(case, kr_infos):
    _check_coef_table(kr.coef_table(kr_infos[case]), REF[case]["kenward_roger"])


@pytest.mark.parametrize("case", list(CASES))
def test_kenward_roger_adjusted_vcov(case, kr_infos):
    ref = np.atleast_2d(np.array(REF[case]["vcov_adj"]))
    np.testing.assert_allclose(kr_infos[case].phi_adj, ref, rtol=1e-4, atol=0)


@pytest.mark.parametrize("case", list(CASES))
def test_kenward_roger_anova(case, models):
    m, r = models[case]
    _check_anova(satterthwaite.anova(m, r, ddf="Kenward-Roger"), REF[case]["anova_kenward_roger"])


def test_kenward_roger_two_df_f_test(kr_infos):
    ref = REF["contrast2"]
    out = kr.kr_test(kr_infos["ss_fac"], ref["L"])
    assert out["NumDF"] == 2
    np.testing.assert_allclose(out["DenDF"], ref["kr_ddf"], rtol=DF_RTOL)
    np.testing.assert_allclose(out["F value"], ref["kr_F"], rtol=1e-4)
    np.testing.assert_allclose(out["F.scaling"], ref["kr_Fscaling"], rtol=1e-6)
    assert abs(out["Pr(>F)"] - ref["kr_p"]) < P_ATOL


def test_kenward_roger_size_limit(models, monkeypatch):
    """Past the dense size the n x n path is refused; auto goes through the factor
    (tests/inference/test_kr_caic_sparse.py holds its numbers)."""
    m, r = models["ss"]
    monkeypatch.setattr(kr, "MAX_KR_NOBS", 100)
    with pytest.raises(ModelError, match="uses n x n matrices"):
        kr.kr_info(m, r, method="dense")
    assert kr.kr_info(m, r).method == "factor"


# ----------------------------------------------------------------- likelihood-ratio tests
@pytest.fixture(scope="module")
def lrt_models():
    ss = load_dataset("sleepstudy")
    forms = {
        "m0": "Reaction ~ Days + (1 | Subject)",
        "m1": "Reaction ~ Days + (Days | Subject)",
        "m1u": "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)",
        "mf0": "Reaction ~ 1 + (Days | Subject)",
    }
    return {k: LinearMixedModel(f, ss) for k, f in forms.items()}


@pytest.mark.parametrize(
    "case, small, big",
    [("lrt_random", "m0", "m1"), ("lrt_boundary", "m0", "m1u"), ("lrt_fixed", "mf0", "m1")],
)
def test_lrt_matches_lme4_anova(case, small, big, lrt_models):
    ref = REF[case]
    # given in the "wrong" order on purpose: the table is ordered by npar as in lme4
    tab = lrt.anova(lrt_models[big], lrt_models[small])
    np.testing.assert_array_equal(tab["npar"], ref["npar"])
    for col, key in [
        ("AIC", "AIC"),
        ("BIC", "BIC"),
        ("logLik", "logLik"),
        ("deviance", "deviance"),
    ]:
        np.testing.assert_allclose(tab[col], ref[key], rtol=1e-7)
    np.testing.assert_allclose(tab["Chisq"].iloc[1], ref["Chisq"], rtol=1e-5)
    assert tab["Df"].iloc[1] == ref["Df"]
    np.testing.assert_allclose(tab["Pr(>Chisq)"].iloc[1], ref["p"], rtol=1e-4)
    if "p_mixture" in ref:
        np.testing.assert_allclose(tab["Pr(>Chisq) mixture"].iloc[1], ref["p_mixture"], rtol=1e-4)
    if case == "lrt_fixed":
        assert np.isnan(tab["Pr(>Chisq) mixture"].iloc[1])


def test_lrt_mixture_for_added_slope_variance(lrt_models):
    tab = lrt.anova(lrt_models["m0"], lrt_models["m1"])
    x = tab["Chisq"].iloc[1]
    from scipy import stats

    want = 0.5 * stats.chi2.sf(x, 2) + 0.5 * stats.chi2.sf(x, 1)
    np.testing.assert_allclose(tab["Pr(>Chisq) mixture"].iloc[1], want, rtol=1e-12)


def test_lrt_rejects_non_nested_models(lrt_models):
    with pytest.raises(ModelError, match="not nested"):
        lrt.anova(lrt_models["m1u"], lrt_models["mf0"])  # npar 5 and 5, different formulas


def test_lrt_rejects_different_data(lrt_models):
    ss = load_dataset("sleepstudy").iloc[:-10]
    other = LinearMixedModel("Reaction ~ Days + (Days | Subject)", ss)
    with pytest.raises(ModelError, match="different numbers of observations"):
        lrt.anova(lrt_models["m0"], other)


def test_lrt_rejects_different_response():
    ss = load_dataset("sleepstudy")
    ss["y2"] = ss["Reaction"] * 2
    a = LinearMixedModel("Reaction ~ Days + (1 | Subject)", ss)
    b = LinearMixedModel("y2 ~ Days + (Days | Subject)", ss)
    with pytest.raises(ModelError, match="different responses"):
        lrt.anova(a, b)


def test_lrt_rejects_non_nested_fixed_effects():
    ss = load_dataset("sleepstudy")
    ss["x"] = np.sin(np.arange(len(ss)))
    a = LinearMixedModel("Reaction ~ x + (1 | Subject)", ss)
    b = LinearMixedModel("Reaction ~ Days + (Days | Subject)", ss)
    with pytest.raises(ModelError, match="not contained"):
        lrt.anova(a, b)


def test_lrt_reml_without_refit_needs_same_fixed_effects(lrt_models):
    with pytest.raises(ModelError, match="REML criteria"):
        lrt.anova(lrt_models["mf0"], lrt_models["m1"], refit=False)
    tab = lrt.anova(lrt_models["m0"], lrt_models["m1"], refit=False)
    assert tab["Chisq"].iloc[1] > 0


def test_lrt_takes_results_and_refuses_results_without_their_model(lrt_models):
    import pickle

    res = lrt_models["m0"].fit()
    a = lrt.anova(res, lrt_models["m1"])
    b = lrt.anova(lrt_models["m0"], lrt_models["m1"])
    np.testing.assert_allclose(a["Chisq"].iloc[1], b["Chisq"].iloc[1], rtol=1e-8)
    with pytest.raises(ModelError, match="does not carry it"):
        lrt.anova(pickle.loads(pickle.dumps(res)), lrt_models["m1"])
    with pytest.raises(ModelError, match="got str"):
        lrt.anova("m0", lrt_models["m1"])


# ----------------------------------------------------------------- R2 and ICC
@pytest.mark.parametrize(
    "case, formula, data",
    [
        ("r2_ss", "Reaction ~ Days + (Days | Subject)", "sleepstudy"),
        ("r2_ss_int", "Reaction ~ Days + (1 | Subject)", "sleepstudy"),
        ("r2_pen", "diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin"),
    ],
)
def test_nakagawa_r2_and_icc(case, formula, data):
    ref = REF[case]
    m = LinearMixedModel(formula, load_dataset(data))
    vc = r2.variance_components(m)
    np.testing.assert_allclose(vc.var_random, ref["var_random"], rtol=1e-4)
    np.testing.assert_allclose(vc.var_residual, ref["var_residual"], rtol=1e-4)
    np.testing.assert_allclose(vc.var_fixed, ref["var_fixed"], rtol=1e-6, atol=1e-10)
    got = {**r2.r2_nakagawa(m), **r2.icc(m)}
    np.testing.assert_allclose(got["R2_marginal"], ref["r2_marginal"], rtol=1e-4, atol=1e-12)
    np.testing.assert_allclose(got["R2_conditional"], ref["r2_conditional"], rtol=1e-4)
    np.testing.assert_allclose(got["ICC_adjusted"], ref["icc_adjusted"], rtol=1e-4)
    np.testing.assert_allclose(got["ICC_unadjusted"], ref["icc_unadjusted"], rtol=1e-4)


# ----------------------------------------------------------------- confidence intervals
@pytest.mark.parametrize(
    "case, formula, data",
    [
        ("confint_ss", "Reaction ~ Days + (Days | Subject)", "sleepstudy"),
        ("confint_pen", "diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin"),
    ],
)
def test_profile_and_wald_confint(case, formula, data):
    ref = REF[case]
    m = LinearMixedModel(formula, load_dataset(data))
    ci = profile.confint(m)
    assert list(ci.index) == ref["names"]
    np.testing.assert_allclose(ci.iloc[:, 0], ref["profile_lower"], rtol=1e-3)
    np.testing.assert_allclose(ci.iloc[:, 1], ref["profile_upper"], rtol=1e-3)
    wald = profile.confint(m, method="Wald")
    fixed = [i for i, v in enumerate(ref["wald_lower"]) if v != "NA"]
    assert wald.iloc[: fixed[0]].isna().all().all()
    np.testing.assert_allclose(wald.iloc[fixed, 0], [ref["wald_lower"][i] for i in fixed], 1e-5)
    np.testing.assert_allclose(wald.iloc[fixed, 1], [ref["wald_upper"][i] for i in fixed], 1e-5)


def test_sdcor_theta_round_trip():
    sizes = [2, 1, 2]
    theta = np.array([0.9, 0.2, 0.3, 1.1, 0.8, -0.4, 0.5])
    sv = profile.sdcor_from_theta(theta, 2.5, sizes)
    np.testing.assert_allclose(profile.theta_from_sdcor(sv, 2.5, sizes), theta, rtol=1e-12)


def test_confint_bad_input(models):
    m, r = models["ss"]
    with pytest.raises(ModelError, match="Unknown parameter"):
        profile.confint(m, r, parm=["nope"])
    with pytest.raises(ModelError, match="method"):
        profile.confint(m, r, method="boot")
    with pytest.raises(ModelError, match="LinearMixedModel"):
        profile.confint("not a model")


def test_anova_dispatches_on_number_of_models(models, lrt_models):
    from lmmkit.inference.anova import anova

    m, r = models["ss_fac"]
    _check_anova(anova((m, r)), REF["ss_fac"]["anova_satterthwaite"])
    tab = anova(lrt_models["m0"], lrt_models["m1"])
    np.testing.assert_allclose(tab["Chisq"].iloc[1], REF["lrt_random"]["Chisq"], rtol=1e-5)
    with pytest.raises(ModelError, match="at least one"):
        anova()

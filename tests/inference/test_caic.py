"""Conditional AIC against R's cAIC4 (tests/reference/caic/, made by make_reference.R), and
properties of the bias correction that hold whatever cAIC4 says.

Tolerances: end to end (our fit, our cAIC) 1e-6 relative on caic, df and the conditional
log-likelihood -- what is left is the difference between lme4's and lmmkit's optimum (theta
agrees to ~1e-7, 1e-5 for Pastes and Penicillin); at R's own theta the algebra agrees to
1e-10 relative.
"""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize_scalar

import lmmkit
from lmmkit.errors import ModelError
from lmmkit.inference.caic import ConditionalAIC, _gaussian_parts, caic
from tests.conftest import REFERENCE

REF = json.loads((REFERENCE / "caic" / "caic.json").read_text())
CASES = [k for k in REF if k != "versions"]


def _data(lme4_data, name: str) -> pd.DataFrame:
    df = lme4_data(name).copy()
    if name == "sleepstudy":  # the extra columns of make_reference.R
        df["DaysF"] = df["Days"].astype(str)
        df["odd"] = df["Days"] % 2
        df["w"] = 1 + (df["Days"] % 3) / 2
    return df


def _model(lme4_data, ref: dict) -> lmmkit.LinearMixedModel:
    df = _data(lme4_data, ref["data"])
    weights = df[ref["weights"]] if "weights" in ref else None
    return lmmkit.LinearMixedModel(ref["formula"], df, weights=weights)


def _fit(model: lmmkit.LinearMixedModel, reml: bool):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular-fit warnings of the zero-variance cases
        return model.fit(reml=reml)


@pytest.mark.parametrize("case", CASES)
def test_caic_equals_cAIC4(case: str, lme4_data) -> None:
    ref = REF[case]
    model = _model(lme4_data, ref)
    res = _fit(model, ref["reml"])
    out = caic(model, res)
    assert out.caic == pytest.approx(ref["caic"], rel=1e-6)
    assert out.df == pytest.approx(ref["df"], rel=1e-6)
    assert out.conditional_loglik == pytest.approx(ref["conditional_loglik"], rel=1e-6)
    assert out.marginal_aic == pytest.approx(ref["aic"], rel=1e-9)
    assert out.aic == out.marginal_aic
    assert out.reml == ref["reml"]
    if ref["new"]:  # cAIC4 removed zero variance components and refitted
        assert out.removed
        assert ref["reduced_formula"].endswith(out.reduced_random)
        np.testing.assert_allclose(out.reduced_theta, ref["reduced_theta"], rtol=1e-5)
        assert any("removed" in n for n in out.notes)
    elif not any(ref["theta"]):  # no random effect left: cAIC4's lm branch, df = rank of X
        assert out.removed and out.reduced_random == ""
        assert out.df == model.p
        assert any("all random-effect variances are zero" in n for n in out.notes)
    else:
        assert out.removed == () and out.reduced_random is None


@pytest.mark.parametrize("case", [k for k in CASES if not REF[k]["new"] and any(REF[k]["theta"])])
def test_algebra_at_R_theta(case: str, lme4_data) -> None:
    """At lme4's own theta the optimizer is out of the comparison: cAIC4's algebra exactly."""
    ref = REF[case]
    model = _model(lme4_data, ref)
    theta = np.asarray(ref["theta"], float)
    parts = _gaussian_parts(model, model.design.y, theta, np.ones(len(theta), bool), ref["reml"])
    assert parts.df == pytest.approx(ref["df"], rel=1e-10)
    assert parts.cll == pytest.approx(ref["conditional_loglik"], rel=1e-10)
    assert parts.sigma == pytest.approx(ref["sigma"], rel=1e-10)


# ------------------------------------------------------------------------------- properties
@pytest.mark.parametrize(
    "case", ["sleep_slope_reml", "sleep_slope_ml", "sleep_uncorr_reml", "sleep_weighted_reml"]
)
def test_df_between_fixed_and_all_coefficients(case: str, lme4_data) -> None:
    ref = REF[case]
    model = _model(lme4_data, ref)
    out = caic(model, _fit(model, ref["reml"]))
    p = model.p
    q = sum(t.nlevels * t.p for t in model.design.terms)
    ntheta = len(ref["theta"])
    assert p < out.hat_trace < p + q
    assert p + 1 < out.df < p + q + ntheta + 1


def test_invariant_to_row_order() -> None:
    data = lmmkit.datasets.load_dataset("sleepstudy")
    formula = "Reaction ~ Days + (Days | Subject)"
    a = lmmkit.LinearMixedModel(formula, data)
    perm = np.random.default_rng(1).permutation(len(data))
    b = lmmkit.LinearMixedModel(formula, data.iloc[perm].reset_index(drop=True))
    ra = a.fit()
    theta = np.asarray(ra.theta)
    free = np.ones(len(theta), bool)
    pa = _gaussian_parts(a, a.design.y, theta, free, True)
    pb = _gaussian_parts(b, b.design.y, theta, free, True)
    assert pb.df == pytest.approx(pa.df, rel=1e-12)
    assert pb.cll == pytest.approx(pa.cll, rel=1e-12)
    np.testing.assert_allclose(pb.fitted, pa.fitted[perm], rtol=1e-12)
    # and through the public path, each model with its own fit
    assert caic(b).caic == pytest.approx(caic(a, ra).caic, rel=1e-8)


def test_fitted_values_are_the_fit_s(lme4_data) -> None:
    ref = REF["sleep_weighted_reml"]
    model = _model(lme4_data, ref)
    res = _fit(model, True)
    parts = _gaussian_parts(model, model.design.y, np.asarray(res.theta), None, True)
    np.testing.assert_allclose(parts.fitted, res.fitted, rtol=1e-10)
    assert parts.sigma == pytest.approx(res.sigma, rel=1e-10)


@pytest.mark.parametrize("reml", [True, False])
def test_exact_score_df_is_the_trace_of_dfitted_dy(reml: bool, lme4_data) -> None:
    """Greven & Kneib's df is 1 + trace of d(fitted)/dy with theta re-estimated. With the
    exact derivative of the score in C, central differences (h = 1 on Yield, sd ~ 50;
    theta re-estimated by a 1-d search to 1e-12) reproduce it to ~5e-6. cAIC4's own C,
    with (e'W e)/(2 t), is larger by 0.045 (REML) / 0.065 (ML): not an approximation error."""
    model = lmmkit.LinearMixedModel("Yield ~ 1 + (1 | Batch)", lme4_data("Dyestuff"))
    y = model.design.y.copy()
    one = np.ones(1, bool)

    def fitted(yv: np.ndarray) -> tuple[np.ndarray, float]:
        model.set_response(yv)
        th = minimize_scalar(
            lambda t: model.objective(np.array([t]), reml),
            bounds=(0.0, 10.0),
            method="bounded",
            options={"xatol": 1e-12},
        ).x
        return _gaussian_parts(model, yv, np.array([th]), None, reml).fitted, th

    _, th0 = fitted(y)
    exact = _gaussian_parts(model, y, np.array([th0]), one, reml, exact_score=True).df
    cAIC4 = _gaussian_parts(model, y, np.array([th0]), one, reml).df
    h, trace = 1.0, 0.0
    for i in range(model.n):
        up, down = y.copy(), y.copy()
        up[i] += h
        down[i] -= h
        trace += (fitted(up)[0][i] - fitted(down)[0][i]) / (2 * h)
    model.set_response(y)
    assert trace + 1 == pytest.approx(exact, abs=1e-4)
    assert cAIC4 - exact > 0.04


def test_zero_component_removed_equals_reduced_model() -> None:
    """Removing a zero variance component gives the cAIC of the model without it."""
    data = lmmkit.datasets.load_dataset("sleepstudy").assign(DaysF=lambda d: d["Days"].astype(str))
    full = lmmkit.LinearMixedModel("Reaction ~ Days + (1 | Subject) + (1 | DaysF)", data)
    reduced = lmmkit.LinearMixedModel("Reaction ~ Days + (1 | Subject)", data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = caic(full)
    b = caic(reduced)
    assert a.removed == ("DaysF: (Intercept)",)
    assert a.reduced_random == "(1 | Subject)"
    assert a.df == pytest.approx(b.df, rel=1e-7)
    assert a.conditional_loglik == pytest.approx(b.conditional_loglik, rel=1e-7)
    assert a.marginal_aic != pytest.approx(b.marginal_aic, rel=1e-9)  # the full model's own
    # cAIC4's literal rule (theta == 0) keeps lmmkit's 6e-8 and says so
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        literal = caic(full, zero_tol=0.0)
    assert literal.removed == ()
    assert any("below 1e-4 but not at zero" in n for n in literal.notes)


# ---------------------------------------------------------------------------- API, errors
def test_result_object_and_export() -> None:
    assert lmmkit.caic is caic
    assert lmmkit.ConditionalAIC is ConditionalAIC
    model = lmmkit.LinearMixedModel(
        "Reaction ~ Days + (1 | Subject)", lmmkit.datasets.load_dataset("sleepstudy")
    )
    out = caic(model)  # REML fit made when no result is given
    assert out.reml
    assert out.caic == pytest.approx(-2 * out.conditional_loglik + 2 * out.df, rel=1e-14)
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.df = 0.0  # type: ignore[misc]
    assert set(out.to_dict()) >= {"caic", "df", "conditional_loglik", "marginal_aic"}
    assert "cAIC" in str(out)


@pytest.fixture(scope="module")
def sleep_model() -> lmmkit.LinearMixedModel:
    data = lmmkit.datasets.load_dataset("sleepstudy")
    return lmmkit.LinearMixedModel("Reaction ~ Days + (Days | Subject)", data)


def test_glmm_is_refused() -> None:
    data = lmmkit.datasets.load_dataset("sleepstudy")
    data = data.assign(count=(data["Reaction"] / 10).round().astype(int))
    model = lmmkit.GeneralizedLinearMixedModel(
        "count ~ Days + (1 | Subject)", data, family="poisson"
    )
    with pytest.raises(ModelError, match="Gaussian linear mixed models"):
        caic(model)


def test_result_alone_works_and_an_unpickled_one_is_refused(sleep_model) -> None:
    import pickle

    res = sleep_model.fit()
    assert caic(res).caic == pytest.approx(caic(sleep_model, res).caic, rel=1e-10)
    with pytest.raises(ModelError, match="does not carry it"):
        caic(pickle.loads(pickle.dumps(res)))


def test_other_objects_are_refused() -> None:
    with pytest.raises(ModelError, match="expected a LinearMixedModel"):
        caic("Reaction ~ Days + (1 | Subject)")


def test_too_many_random_effects(sleep_model) -> None:
    with pytest.raises(ModelError, match="q = 36 random effects.*max_random_effects=10"):
        caic(sleep_model, max_random_effects=10, method="dense")


def test_bad_zero_tol(sleep_model) -> None:
    with pytest.raises(ModelError, match="zero_tol"):
        caic(sleep_model, zero_tol=-1.0)


def test_kernels_are_refused() -> None:
    data = lmmkit.datasets.load_dataset("sleepstudy")
    labels = sorted(data["Subject"].astype(str).unique())
    K = pd.DataFrame(np.eye(len(labels)), index=labels, columns=labels)
    data = data.assign(Subject=data["Subject"].astype(str))
    model = lmmkit.LinearMixedModel("Reaction ~ Days + (1 | Subject)", data, kernels={"Subject": K})
    with pytest.raises(ModelError, match="kernels"):
        caic(model)


def test_stale_response_is_refused(sleep_model) -> None:
    res = sleep_model.fit()
    y = sleep_model.design.y
    sleep_model.set_response(y[::-1].copy())
    try:
        with pytest.raises(ModelError, match="current response"):
            caic(sleep_model, res)
    finally:
        sleep_model.set_response(y)

"""Model diagnostics: residuals, influence, singular-fit explanations, named checks, figures.

References: tests/reference/diagnostics/diagnostics_reference.json, made by
tests/reference/diagnostics/make_reference.R (regenerate command at its top) with lme4 1.1-31.

Tolerances: leave-one-cluster-out dfbeta and Cook's distance within 1e-4 relative (measured:
dfbeta <= 2e-9, Cook's distance <= 6e-5 -- the gap is the two optimizers' theta feeding the
full-fit vcov); observation
residuals, hat values, rstudent and Cook's distance within 1e-4 relative to the largest value
(weighted fit 2e-4; measured 7e-5).
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from lmmkit import lmm  # noqa: E402
from lmmkit.datasets import load_dataset  # noqa: E402
from lmmkit.errors import DataError  # noqa: E402
from lmmkit.inference import diagnostics as dg  # noqa: E402
from lmmkit.models.lmm import LinearMixedModel  # noqa: E402
from lmmkit.report import diagnostic_plots as dp  # noqa: E402

REF = json.loads(
    (
        Path(__file__).resolve().parents[1]
        / "reference"
        / "diagnostics"
        / "diagnostics_reference.json"
    ).read_text()
)
SS = "Reaction ~ Days + (Days | Subject)"
RTOL = 1e-4


def _quiet_fit(formula, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lmm(formula, data, **kw)


def _png_size(fig) -> int:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return len(buf.getvalue())


def _sim(seed: int, slope: float) -> pd.DataFrame:
    """12 groups x 6 times; the random slope is a multiple of the random intercept, so with
    these seeds the fitted intercept-slope correlation is exactly +1 (slope > 0) or -1."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(12), 6)
    x = np.tile(np.arange(6.0), 12)
    b0 = rng.normal(0, 1, 12)
    y = 1 + 0.5 * x + b0[g] + slope * b0[g] * x + rng.normal(0, 1, len(g))
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i:02d}" for i in g]})


@pytest.fixture(scope="module")
def ss():
    return load_dataset("sleepstudy")


@pytest.fixture(scope="module")
def ss_fit(ss):
    return lmm(SS, ss)


# --------------------------------------------------------------------------- residuals
def test_residual_identities(ss, ss_fit):
    tab = dg.residual_table(ss_fit, ss)
    y = ss["Reaction"].to_numpy()
    X = np.column_stack([np.ones(len(ss)), ss["Days"].to_numpy()])
    np.testing.assert_allclose(tab["resid"] + tab["fitted"], y, rtol=0, atol=1e-9)
    np.testing.assert_allclose(tab["response"], y)
    np.testing.assert_allclose(tab["resid"], ss_fit.residuals, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        tab["marginal_resid"], y - X @ ss_fit.fixef.to_numpy(), rtol=0, atol=1e-9
    )
    np.testing.assert_allclose(tab["pearson"], tab["resid"] / ss_fit.sigma, rtol=1e-12)
    np.testing.assert_allclose(tab["standardized"], tab["pearson"] / np.sqrt(1 - tab["hat"]))
    # the trace of the hat matrix is between p and p + q
    assert 2 < tab["hat"].sum() < 2 + 36
    # marginal Pearson: Var(y_i) = sigma^2 + z_i' Sigma z_i
    vc = ss_fit.varcorr
    v0, v1, c01 = vc["vcov"].iloc[0], vc["vcov"].iloc[1], vc["vcov"].iloc[2]
    d = ss["Days"].to_numpy()
    var = ss_fit.sigma**2 + v0 + 2 * d * c01 + d**2 * v1
    np.testing.assert_allclose(tab["marginal_pearson"], tab["marginal_resid"] / np.sqrt(var))
    # the model can stand in for the data
    tab2 = dg.residual_table(ss_fit, model=LinearMixedModel(SS, ss))
    pd.testing.assert_frame_equal(tab, tab2)


@pytest.mark.parametrize("case", ["ss", "ss_w"])
def test_residuals_match_lme4(ss, case):
    kw = {}
    data = ss
    if case == "ss_w":
        data = ss.assign(w=1 + (ss["Days"] % 3) / 2)
        kw = {"weights": "w"}
    fit = lmm(SS, data, **kw)
    tab = dg.residual_table(fit, data, **kw)
    ref = REF[case]["obs"] if case == "ss" else REF[case]
    tol = RTOL if case == "ss" else 2 * RTOL
    pairs = {
        "fitted": "fitted",
        "pearson": "pearson",
        "hat": "hat",
        "rstudent": "standardized",
        "cooks": "cooks",
        "marginal": "marginal_resid",
    }
    for rkey, col in pairs.items():
        a = np.asarray(ref[rkey])
        err = np.max(np.abs(tab[col].to_numpy() - a)) / np.max(np.abs(a))
        assert err < tol, (case, rkey, err)
    if case == "ss_w":  # Pearson residuals carry sqrt(weights)
        np.testing.assert_allclose(
            tab["pearson"], np.sqrt(data["w"]) * tab["resid"] / fit.sigma, rtol=1e-12
        )


def test_residual_table_rejects_wrong_data(ss, ss_fit):
    with pytest.raises(DataError, match="does not match"):
        dg.residual_table(ss_fit, ss.assign(Reaction=ss["Reaction"] + 1.0))
    with pytest.raises(DataError, match="observations"):
        dg.residual_table(ss_fit, ss.iloc[:-10])
    import pickle

    with pytest.raises(DataError, match="need the design"):  # an unpickled result: no model
        dg.residual_table(pickle.loads(pickle.dumps(ss_fit)))


def test_qq_tables(ss_fit):
    qq = dg.qq_table(ss_fit.residuals)
    assert qq["sample"].is_monotonic_increasing
    assert len(qq) == 180
    # R: qqnorm uses ppoints(n) = (i - 1/2) / n for n > 10
    from scipy.stats import norm

    np.testing.assert_allclose(qq["theoretical"].iloc[0], norm.ppf(0.5 / 180))
    re = dg.ranef_qq_table(ss_fit)
    assert set(re["column"]) == {"(Intercept)", "Days"}
    assert (re.groupby("column").size() == 18).all()
    with pytest.raises(DataError):
        dg.ranef_qq_table(ss_fit, term="nope")


# --------------------------------------------------------------------------- influence
@pytest.mark.parametrize(
    ("case", "formula", "data", "group", "reml"),
    [
        ("ss", SS, "sleepstudy", "Subject", True),
        ("ss_ml", SS, "sleepstudy", "Subject", False),
        ("pen", "diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin", "sample", True),
    ],
)
def test_cluster_influence_matches_lme4_loop(case, formula, data, group, reml):
    ref = REF[case]
    df = load_dataset(data)
    tab = dg.cluster_influence(formula, df, group, reml=reml)
    assert [str(x) for x in tab.index] == ref["levels"]
    dcols = [f"dfbeta:{n}" for n in ref["fixef_names"]]
    dfb = np.asarray(ref["dfbeta"], dtype=float).reshape(len(ref["levels"]), -1)
    got = tab[dcols].to_numpy()
    scale = np.maximum(np.abs(dfb), 1e-3 * np.abs(dfb).max(axis=0))
    assert np.max(np.abs(got - dfb) / scale) < RTOL
    cooks = np.asarray(ref["cooks"])
    assert np.max(np.abs(tab["cooks"].to_numpy() - cooks) / cooks) < RTOL
    assert tab["converged"].all()
    assert tab.attrs["cutoff"] == pytest.approx(4 / len(ref["levels"]))
    assert (tab["nobs_removed"] > 0).all()


def test_cluster_influence_cooks_formula_and_vector_weights(ss):
    w = 1 + (ss["Days"].to_numpy() % 3) / 2
    full = lmm(SS, ss, weights=w)
    tab = dg.cluster_influence(SS, ss, "Subject", weights=w, full_fit=full)
    lev = tab.index[3]
    keep = ss["Subject"].astype(str) != str(lev)
    sub = lmm(SS, ss[keep], weights=w[keep.to_numpy()])
    d = full.fixef - sub.fixef
    np.testing.assert_allclose(tab.loc[lev, ["dfbeta:(Intercept)", "dfbeta:Days"]], d)
    cooks = d.to_numpy() @ np.linalg.solve(full.vcov.to_numpy(), d.to_numpy()) / 2
    assert tab.loc[lev, "cooks"] == pytest.approx(cooks, rel=1e-10)
    with pytest.raises(DataError, match="not a column"):
        dg.cluster_influence(SS, ss, "Nope")


# --------------------------------------------------------------------------- singular fits
def test_explain_singular_zero_variance(lme4_data):
    dy = lme4_data("Dyestuff2")
    fit = _quiet_fit("Yield ~ 1 + (1|Batch)", dy)
    assert fit.is_singular and REF["dyestuff2"]["is_singular"]
    msgs = dg.explain_singular(fit)
    assert len(msgs) == 1
    text = msgs[0]
    assert "variance of the random intercept by Batch" in text
    assert "(nearly) zero" in text
    assert "Drop (1 | Batch)" in text


@pytest.mark.parametrize(("seed", "slope", "sign"), [(3, 0.1, "+"), (0, -0.1, "-")])
def test_explain_singular_correlation_one(seed, slope, sign):
    fit = _quiet_fit("y ~ x + (x | g)", _sim(seed, slope))
    assert fit.is_singular
    corr = fit.varcorr.loc[fit.varcorr["var2"].notna(), "sdcor"].iloc[0]
    assert abs(corr) > 0.999
    msgs = dg.explain_singular(fit)
    assert len(msgs) == 1
    text = msgs[0]
    assert "random intercept and the random slope for x by g" in text
    assert f"perfectly correlated (r = {sign}1.00)" in text
    assert "(1 + x || g)" in text and "(1 | g)" in text


def test_explain_singular_zero_slope_uncorrelated():
    fit = _quiet_fit("y ~ x + (1 + x || g)", _sim(0, 0.0))
    assert fit.is_singular
    msgs = dg.explain_singular(fit)
    assert len(msgs) == 1
    assert "variance of the random slope for x by g" in msgs[0]
    assert "Drop (0 + x | g)" in msgs[0]


def test_explain_singular_regular_fit(ss_fit):
    assert dg.explain_singular(ss_fit) == []


# --------------------------------------------------------------------------- checks
def test_check_model(ss, ss_fit, lme4_data):
    tab = dg.check_model(ss_fit)
    assert list(tab.columns) == ["check", "status", "value", "detail"]
    assert list(tab["check"]) == [
        "singular",
        "convergence",
        "dropped_rows",
        "dropped_columns",
        "residual_normality",
        "heteroscedasticity",
    ]
    st = dict(zip(tab["check"], tab["status"]))
    assert st["singular"] == "ok" and st["convergence"] == "ok"
    assert st["dropped_rows"] == "ok" and st["dropped_columns"] == "ok"
    from scipy.stats import shapiro

    p = tab.set_index("check").loc["residual_normality", "value"]
    assert p == pytest.approx(shapiro(ss_fit.residuals / ss_fit.sigma).pvalue)
    # sleepstudy residuals are heavy-tailed (two outlying days of subject 332)
    assert st["residual_normality"] == "note"

    # dropped rows, a dropped (aliased) column, and a singular fit
    dy = lme4_data("Dyestuff2").copy()
    dy["Yield2"] = dy["Yield"]
    dy["z"] = np.arange(len(dy)) % 2
    dy["z2"] = 2 * dy["z"]
    dy.loc[[0, 5], "Yield2"] = np.nan
    fit = _quiet_fit("Yield2 ~ z + z2 + (1|Batch)", dy)
    tab = dg.check_model(fit).set_index("check")
    assert tab.loc["dropped_rows", "status"] == "note" and tab.loc["dropped_rows", "value"] == 2
    assert tab.loc["dropped_columns", "status"] == "note"
    assert "z2" in tab.loc["dropped_columns", "detail"]
    assert fit.is_singular
    assert tab.loc["singular", "status"] == "warning"
    assert "Batch" in tab.loc["singular", "detail"]


def test_check_model_heteroscedasticity():
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(20), 10)
    x = np.tile(np.linspace(0, 10, 10), 20)
    mu = 5 + 2 * x + rng.normal(0, 1, 20)[g]
    y = mu + rng.normal(0, 1, len(g)) * (0.2 + 0.3 * x)
    df = pd.DataFrame({"y": y, "x": x, "g": g.astype(str)})
    fit = lmm("y ~ x + (1|g)", df)
    row = dg.check_model(fit, df).set_index("check").loc["heteroscedasticity"]
    assert row["status"] == "note" and row["value"] > 0.3
    assert "grows" in row["detail"]


# --------------------------------------------------------------------------- figures
def test_figures_render(ss, ss_fit):
    tab = dg.residual_table(ss_fit, ss)
    assert _png_size(dp.residuals_fitted_plot(ss_fit, tab)) > 10_000
    assert _png_size(dp.residuals_fitted_plot(ss_fit, kind="resid")) > 10_000
    assert _png_size(dp.residuals_fitted_plot(ss_fit, tab, kind="marginal_pearson")) > 10_000
    assert _png_size(dp.qq_residuals_plot(ss_fit, tab, kind="standardized")) > 10_000
    fig = dp.qq_ranef_plot(ss_fit)
    assert len([a for a in fig.axes if a.get_visible()]) == 2
    assert _png_size(fig) > 10_000
    infl = dg.cluster_influence(SS, ss, "Subject", full_fit=ss_fit)
    fig = dp.cluster_influence_plot(infl)
    assert len(fig.axes) == 3
    assert _png_size(fig) > 10_000
    with pytest.raises(ValueError, match="residual table"):
        dp.residuals_fitted_plot(ss_fit, kind="standardized")

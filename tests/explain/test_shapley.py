"""Shapley values of linear predictors.

References: (1) the generic brute-force enumeration (:func:`brute_force_shapley`) of the same
games written independently (conditional expectations solved on the covariance, per
coalition); (2) shap's LinearExplainer frozen by tests/reference/signatures/shap/make_reference.py
(shap 0.51: interventional exactly, 1e-12; correlation_dependent within 5 Monte-Carlo
standard errors of shap's own estimate, which averages random permutations).
"""

from __future__ import annotations

import gzip
import json
from functools import cache

import numpy as np
import pandas as pd
import pytest

import lmmkit
from lmmkit.errors import DataError
from lmmkit.explain import plot_shapley, shapley_values
from lmmkit.explain.shapley import brute_force_shapley
from tests.conftest import REFERENCE


@cache
def shap_reference() -> dict:
    with gzip.open(REFERENCE / "signatures" / "shap" / "shap_reference.json.gz", "rt") as fh:
        return json.load(fh)


def correlated(n: int, p: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((p, p))
    cov = A @ A.T + 0.3 * np.eye(p)
    X = rng.multivariate_normal(rng.standard_normal(p), cov, size=n)
    return pd.DataFrame(X, columns=[f"f{j}" for j in range(p)])


def gaussian_game(X: np.ndarray, background: np.ndarray, coef: np.ndarray, observational: bool):
    """v(S) for every explained row, computed from scratch for each coalition."""
    mu = background.mean(axis=0)
    cov = np.cov(background, rowvar=False)

    def value(S):
        S = list(S)
        if not S:
            return np.zeros(len(X))
        if not observational:
            return (X[:, S] - mu[S]) @ coef[S]
        # E[coef'x | x_S] - coef'mu = coef' Sigma[:, S] Sigma[S, S]^-1 (x_S - mu_S)
        w = np.linalg.lstsq(cov[np.ix_(S, S)], cov[S] @ coef, rcond=None)[0]
        return (X[:, S] - mu[S]) @ w

    return value


@pytest.mark.parametrize("mode", ["interventional", "observational"])
@pytest.mark.parametrize("p, seed", [(3, 1), (5, 2), (7, 3)])
def test_exact_equals_brute_force(mode, p, seed):
    bg = correlated(300, p, seed)
    X = bg.iloc[:15]
    coef = pd.Series(np.random.default_rng(seed).standard_normal(p), index=bg.columns)
    res = shapley_values((coef, 0.7), X, background=bg, mode=mode)
    ref = brute_force_shapley(
        gaussian_game(X.to_numpy(), bg.to_numpy(), coef.to_numpy(), mode == "observational"), p
    )
    np.testing.assert_allclose(res.values.to_numpy(), ref, atol=1e-10)
    # efficiency: phi sums to the prediction minus the base value
    np.testing.assert_allclose(res.prediction, 0.7 + X.to_numpy() @ coef.to_numpy(), atol=1e-10)
    assert res.base_value == pytest.approx(0.7 + bg.mean().to_numpy() @ coef.to_numpy())


def test_sampling_agrees_with_exact_within_its_standard_error():
    bg = correlated(300, 6, 7)
    coef = pd.Series([1.0, -0.5, 0.0, 0.3, 0.8, -1.2], index=bg.columns)
    exact = shapley_values((coef, 0.0), bg.iloc[:5], background=bg, mode="observational")
    samp = shapley_values((coef, 0.0), bg.iloc[:5], background=bg, mode="observational",
                          method="sampling", n_permutations=3000, seed=11)  # fmt: skip
    assert samp.transform_se.max() > 0
    z = np.abs(samp.transform - exact.transform) / np.maximum(samp.transform_se, 1e-12)
    assert z.max() < 5
    # every permutation's contributions sum to the same total: efficiency holds exactly
    np.testing.assert_allclose(samp.prediction, exact.prediction, atol=1e-10)


@pytest.mark.parametrize("case", ["linear", "logistic", "duplicate"])
@pytest.mark.parametrize("mode", ["interventional", "correlation_dependent"])
def test_agrees_with_shap_linear_explainer(case, mode):
    ref = shap_reference()["cases"][case]
    bg = pd.DataFrame(ref["background"])
    X = pd.DataFrame(ref["X"])
    coef = pd.Series(ref["coef"])
    res = shapley_values((coef, ref["intercept"]), X, background=bg, mode=mode)
    want = np.asarray(ref[mode]["values"])
    got = res.values.to_numpy()
    assert res.base_value == pytest.approx(ref[mode]["expected"], abs=1e-12)
    if mode == "interventional":
        np.testing.assert_allclose(got, want, atol=1e-12)
    else:
        se = np.asarray(ref[mode]["se"])
        assert np.all(np.abs(got - want) <= 5 * se + 1e-9), np.max(np.abs(got - want) / se)
    if case == "duplicate" and mode == "correlation_dependent":
        assert res.checks["duplicates"] == [[0, 3]]
        assert res.checks["zero_variance"] == [4]
        np.testing.assert_allclose(got[:, 0], got[:, 3])
        assert np.all(got[:, 4] == 0)


def test_sklearn_logistic_is_explained_on_the_logit_scale():
    from sklearn.linear_model import LogisticRegression

    bg = correlated(200, 4, 5)
    y = (bg["f0"] + bg["f1"] > bg[["f0", "f1"]].sum(axis=1).median()).astype(int)
    lr = LogisticRegression(max_iter=1000).fit(bg, y)
    res = shapley_values(lr, bg.iloc[:10], background=bg, mode="observational")
    assert res.scale == "log-odds"
    np.testing.assert_allclose(res.prediction, lr.decision_function(bg.iloc[:10]), atol=1e-10)


def test_observational_spreads_credit_to_correlated_features():
    rng = np.random.default_rng(3)
    z = rng.standard_normal(500)
    bg = pd.DataFrame({"a": z + 0.2 * rng.standard_normal(500),
                       "b": z + 0.2 * rng.standard_normal(500),
                       "c": rng.standard_normal(500)})  # fmt: skip
    coef = pd.Series({"a": 1.0, "b": 0.0, "c": 1.0})
    inter = shapley_values((coef, 0.0), bg, mode="interventional")
    obs = shapley_values((coef, 0.0), bg, mode="observational")
    assert np.all(inter.values["b"] == 0)  # b is not in the model: no credit
    share_b = obs.values["b"].abs().mean() / obs.values["a"].abs().mean()
    assert 0.7 < share_b < 1.0  # nearly half of a's credit moves to its twin
    # the independent feature keeps its credit
    np.testing.assert_allclose(obs.values["c"], inter.values["c"], atol=0.05)


def test_lmm_fixed_effects_one_player_per_term():
    from lmmkit.datasets import load_dataset

    d = load_dataset("sleepstudy")
    d["grp"] = np.where(d["Days"] % 3 == 0, "x", np.where(d["Days"] % 3 == 1, "y", "z"))
    d["noise"] = np.random.default_rng(0).standard_normal(len(d)) + 0.1 * d["Days"]
    res_lmm = lmmkit.lmm("Reaction ~ Days + grp + noise + (1 | Subject)", d)
    res = shapley_values(res_lmm, d, mode="observational")
    assert list(res.values.columns) == ["Days", "grp", "noise"]
    assert res.players["grp"] == ["grpy", "grpz"]
    beta = res_lmm.fixef
    xb = beta["(Intercept)"] + beta["Days"] * d["Days"] + beta["noise"] * d["noise"] + (
        beta["grpy"] * (d["grp"] == "y") + beta["grpz"] * (d["grp"] == "z"))
    np.testing.assert_allclose(res.prediction, xb, atol=1e-8)
    np.testing.assert_allclose(res.prediction, res_lmm.predict(d, include_random=False),
                               atol=1e-8)  # fmt: skip


def test_tidy_table_and_importance():
    bg = correlated(100, 3, 9)
    res = shapley_values((pd.Series([1.0, 2.0, 0.0], index=bg.columns), 1.0), bg.iloc[:4],
                         background=bg)  # fmt: skip
    tab = res.to_frame()
    assert list(tab.columns) == ["row", "feature", "value", "phi"]
    assert len(tab) == 12
    imp = res.importance()
    assert imp.index[-1] == "f2" and imp.loc["f2", "mean_abs_phi"] == 0


def test_bad_input_messages():
    bg = correlated(50, 14, 1)
    coef = pd.Series(np.ones(14), index=bg.columns)
    with pytest.raises(DataError, match="limit is 12"):
        brute_force_shapley(lambda S: np.zeros(1), 14)
    with pytest.raises(DataError, match="max_exact=10.*method='sampling'"):
        shapley_values((coef, 0.0), bg, mode="observational", method="exact", max_exact=10)
    with pytest.raises(DataError, match="mode='causal'"):
        shapley_values((coef, 0.0), bg, mode="causal")
    with pytest.raises(DataError, match="lack the model's feature column"):
        shapley_values((coef, 0.0), bg.drop(columns="f3"))
    bad = bg.copy()
    bad.iloc[2, 1] = np.nan
    with pytest.raises(DataError, match="'f1'"):
        shapley_values((coef, 0.0), bad)


@pytest.mark.parametrize("kind", ["beeswarm", "bar"])
def test_plots_have_labels(kind, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    bg = correlated(120, 18, 4)
    coef = pd.Series(np.linspace(-1, 1, 18), index=bg.columns)
    res = shapley_values((coef, 0.0), bg, mode="interventional")
    ax = plot_shapley(res, kind=kind, max_display=10)
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel() == "feature"
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[-1] == "8 other features" or labels[0] == "8 other features"
    ax.figure.savefig(tmp_path / f"{kind}.png")

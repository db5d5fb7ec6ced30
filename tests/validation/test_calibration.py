"""Brier score, calibration intercept/slope, binned table and plot."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy.special import expit, logit  # noqa: E402

from lmmkit.errors import DataError  # noqa: E402
from lmmkit.validation.calibration import (  # noqa: E402
    brier_score,
    calibration,
    calibration_intercept,
    calibration_slope,
    calibration_table,
    plot_calibration,
)

# two groups whose predicted risks equal their observed rates: 1/4 and 3/4
Y_PERFECT = np.array([1, 0, 0, 0, 1, 1, 1, 0])
P_PERFECT = np.array([0.25] * 4 + [0.75] * 4)


def test_brier_by_hand():
    assert brier_score([1, 0, 1, 0], [0.8, 0.3, 0.6, 0.1]) == pytest.approx(0.075, abs=1e-15)


def test_perfectly_calibrated_groups_give_intercept_0_slope_1():
    assert calibration_intercept(Y_PERFECT, P_PERFECT) == pytest.approx(0.0, abs=1e-10)
    assert calibration_slope(Y_PERFECT, P_PERFECT) == pytest.approx(1.0, abs=1e-10)


def test_overconfident_predictions_give_slope_one_half():
    p = expit(2.0 * logit(P_PERFECT))  # logits doubled -> slope exactly 1/2
    assert calibration_slope(Y_PERFECT, p) == pytest.approx(0.5, abs=1e-10)


def test_constant_prediction_at_prevalence_has_zero_intercept():
    y = np.array([1, 0, 0, 1, 0])
    assert calibration_intercept(y, np.full(5, 0.4)) == pytest.approx(0.0, abs=1e-12)
    # predicting 0.2 when 40% have the event: intercept = logit(.4) - logit(.2)
    assert calibration_intercept(y, np.full(5, 0.2)) == pytest.approx(
        logit(0.4) - logit(0.2), abs=1e-10
    )


def test_agrees_with_statsmodels_glm():
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    p = expit(1.4 * x - 0.2)
    y = (rng.random(400) < expit(x)).astype(int)
    res = calibration(y, p)
    glm_off = sm.GLM(y, np.ones((400, 1)), family=sm.families.Binomial(), offset=logit(p)).fit(
        tol=1e-12
    )
    glm = sm.GLM(y, sm.add_constant(logit(p)), family=sm.families.Binomial()).fit(tol=1e-12)
    assert res.intercept == pytest.approx(glm_off.params[0], abs=1e-8)
    assert res.intercept_se == pytest.approx(glm_off.bse[0], abs=1e-8)
    assert res.slope == pytest.approx(glm.params[1], abs=1e-8)
    assert res.slope_se == pytest.approx(glm.bse[1], abs=1e-8)
    assert res.slope_intercept == pytest.approx(glm.params[0], abs=1e-8)


def test_table_expected_vs_observed():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.01, 0.99, size=200)
    y = (rng.random(200) < p).astype(int)
    tab = calibration_table(y, p, n_bins=5)
    assert len(tab) == 5
    assert tab["n"].sum() == 200 and (tab["n"] == 40).all()
    assert tab["observed"].sum() == y.sum()
    assert tab["expected"].sum() == pytest.approx(p.sum())
    assert (tab["mean_predicted"].diff().dropna() > 0).all()
    assert (
        (tab["observed_low"] <= tab["observed_rate"])
        & (tab["observed_rate"] <= tab["observed_high"])
    ).all()


def test_plot_returns_figure():
    fig = plot_calibration(Y_PERFECT, P_PERFECT, n_bins=2)
    assert isinstance(fig, matplotlib.figure.Figure)
    plt.close(fig)


def test_calibration_bad_input():
    with pytest.raises(DataError, match=r"p\[1\] = 1.5"):
        brier_score([0, 1], [0.2, 1.5])
    with pytest.raises(DataError, match="1 NaN value"):
        calibration_slope([0, 1, 1], [0.2, np.nan, 0.3])
    with pytest.raises(DataError, match="only controls"):
        calibration_intercept([0, 0], [0.2, 0.3])
    with pytest.raises(DataError, match="y has 3, p has 2"):
        brier_score([0, 1, 1], [0.2, 0.3])
    with pytest.raises(DataError, match=r"contains \[3\]"):
        calibration([0, 3, 1], [0.2, 0.3, 0.4])

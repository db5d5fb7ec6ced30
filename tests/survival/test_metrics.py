"""Survival discrimination and calibration metrics.

Anchors: riskRegression::Score / pec::ipcw (R, tests/reference/survival/
make_reference_metrics.R; timeROC's estimator, timeROC itself is not in Debian) to 1e-10;
a brute-force double loop from the definitions; scikit-survival where the definitions
coincide (continuous, untied times: 1e-10). With tied event/censoring times
scikit-survival weighs cases by 1/G(T) instead of 1/G(T-) (R's convention), a gap of
about 1e-4 on lung that the last test records.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from lmmkit.survival import harrell_c, uno_c
from lmmkit.survival.metrics import (
    brier_survival,
    censoring_survival,
    integrated_brier,
    survival_calibration,
    survival_decision_curve,
    time_dependent_auc,
)
from tests.conftest import REFERENCE

MREF = REFERENCE / "survival" / "metrics_reference.json"


@pytest.fixture(scope="module")
def mref():
    return json.loads(MREF.read_text())


@pytest.fixture(scope="module")
def lung(surv_data):
    d = surv_data("lung").dropna(subset=["ph.ecog"])
    d["status"] = d["status"] - 1
    return d


def test_censoring_weights_match_pec(lung, mref):
    G = censoring_survival(lung["time"], lung["status"])
    assert np.max(np.abs(G(np.array(mref["times"])) - mref["G_times"])) < 1e-12
    t = lung["time"].to_numpy()
    assert np.max(np.abs(np.sort(G(t, left=True)) - np.sort(mref["G_subject_lag"]))) < 1e-12


def test_time_auc_matches_riskregression(lung, mref):
    auc = time_dependent_auc(lung["time"], lung["status"], mref["lp"], mref["times"]).auc
    assert np.max(np.abs(auc - mref["auc"])) < 1e-10


def test_brier_matches_riskregression(lung, mref):
    surv = 1 - np.array(mref["risk"])
    bs = brier_survival(lung["time"], lung["status"], surv, mref["times"])
    assert np.max(np.abs(bs - mref["brier"])) < 1e-10


def _sim(n=300, seed=4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t = rng.exponential(np.exp(-0.8 * x))
    c = rng.exponential(1.5, n)
    return np.minimum(t, c), (t <= c).astype(int), x


def test_time_auc_brute_force():
    time, event, x = _sim(120)
    G = censoring_survival(time, event)
    for s in (0.3, 0.8):
        num = den = 0.0
        for i in range(time.size):
            if not (time[i] <= s and event[i]):
                continue
            wi = 1 / G(np.array([time[i]]), left=True)[0]
            for j in range(time.size):
                if time[j] > s:
                    den += wi
                    num += wi * (1.0 if x[i] > x[j] else 0.5 if x[i] == x[j] else 0.0)
        got = time_dependent_auc(time, event, x, [s]).auc[0]
        assert abs(got - num / den) < 1e-12


def test_against_scikit_survival_untied():
    sksurv = pytest.importorskip("sksurv.metrics")
    from sksurv.util import Surv

    time, event, x = _sim()
    y = Surv.from_arrays(event.astype(bool), time)
    times = np.quantile(time[event == 1], [0.2, 0.4, 0.6])
    a_sk, _ = sksurv.cumulative_dynamic_auc(y, y, x, times)
    a = time_dependent_auc(time, event, x, times).auc
    assert np.max(np.abs(a - a_sk)) < 1e-10
    S = np.exp(-np.exp(0.8 * x)[:, None] * times[None, :])
    _, b_sk = sksurv.brier_score(y, y, S, times)
    assert np.max(np.abs(brier_survival(time, event, S, times) - b_sk)) < 1e-10
    ibs_sk = sksurv.integrated_brier_score(y, y, S, times)
    assert abs(integrated_brier(time, event, S, times) - ibs_sk) < 1e-10
    c_sk = sksurv.concordance_index_ipcw(y, y, x, tau=times[-1])[0]
    assert abs(uno_c(time, event, x, tau=times[-1]).concordance - c_sk) < 1e-10
    h_sk = sksurv.concordance_index_censored(event.astype(bool), time, x)[0]
    assert abs(harrell_c(time, event, x).concordance - h_sk) < 1e-10


def test_scikit_survival_gap_with_ties(lung, mref):
    """With tied event/censoring times (lung, in days) scikit-survival weighs cases by
    1/G(T) rather than R's 1/G(T-): the AUCs differ in the 4th decimal."""
    sksurv = pytest.importorskip("sksurv.metrics")
    from sksurv.util import Surv

    y = Surv.from_arrays(lung["status"].to_numpy().astype(bool), lung["time"].to_numpy())
    a_sk, _ = sksurv.cumulative_dynamic_auc(y, y, np.array(mref["lp"]), mref["times"])
    gap = np.max(np.abs(a_sk - np.array(mref["auc"])))
    assert 1e-6 < gap < 1e-3


def test_auc_bootstrap_ci(lung, mref):
    r = time_dependent_auc(lung["time"], lung["status"], mref["lp"], [300], n_boot=50, seed=1)
    assert r.ci_low[0] < r.auc[0] < r.ci_high[0]


def test_calibration_of_a_true_model():
    """Risks from the data-generating model: slope ~ 1, O/E ~ 1, groups on the diagonal."""
    rng = np.random.default_rng(7)
    n = 4000
    x = rng.normal(size=n)
    t = rng.exponential(1 / np.exp(x))
    c = rng.exponential(3.0, n)
    time, event = np.minimum(t, c), (t <= c).astype(int)
    horizon = 0.5
    risk = 1 - np.exp(-np.exp(x) * horizon)
    cal = survival_calibration(time, event, risk, horizon)
    assert abs(cal.slope - 1) < 3 * cal.slope_se
    assert abs(cal.observed_expected - 1) < 0.05
    tab = cal.table
    assert np.max(np.abs(tab["observed"] - tab["predicted"])) < 0.06
    # a miscalibrated (overconfident) model has slope < 1
    over = 1 - np.exp(-np.exp(2 * x) * horizon)
    assert survival_calibration(time, event, over, horizon).slope < 0.7


def test_decision_curve_definition(lung, mref):
    from lmmkit.survival import kaplan_meier

    risk = np.array(mref["risk"])[:, 2]  # horizon 300
    t, e = lung["time"].to_numpy(), lung["status"].to_numpy()
    dc = survival_decision_curve(t, e, risk, 300.0, thresholds=[0.2, 0.4, 0.6])
    for k, pt in enumerate([0.2, 0.4, 0.6]):
        pos = risk >= pt
        s = kaplan_meier(t[pos], e[pos]).at([300.0])[0]
        want = pos.mean() * (1 - s) - pos.mean() * s * pt / (1 - pt)
        assert abs(dc.model[k] - want) < 1e-12
    s_all = kaplan_meier(t, e).at([300.0])[0]
    assert abs(dc.prevalence - (1 - s_all)) < 1e-12
    assert np.allclose(
        dc.treat_all, (1 - s_all) - s_all * np.array([0.2, 0.4, 0.6]) / np.array([0.8, 0.6, 0.4])
    )
    # below every predicted risk the model treats all
    low = survival_decision_curve(t, e, risk, 300.0, thresholds=[risk.min() * 0.99])
    assert abs(low.model[0] - low.treat_all[0]) < 1e-12


def test_metrics_bad_input():
    from lmmkit.errors import DataError

    with pytest.raises(DataError, match="0/1 or 1/2"):
        time_dependent_auc([1, 2], [3, 0], [0.1, 0.2], [1.5])
    with pytest.raises(DataError, match=r"in \[0, 1\]"):
        brier_survival([1, 2], [1, 0], [[1.2], [0.5]], [1.5])
    with pytest.raises(DataError, match="two increasing"):
        integrated_brier([1, 2], [1, 0], [[0.5], [0.5]], [1.5])
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        survival_calibration(np.arange(1, 41), np.ones(40), np.full(40, 1.5), 5.0)

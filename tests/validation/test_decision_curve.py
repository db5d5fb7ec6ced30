"""Decision-curve analysis: net benefit by hand, treat-all/none, bootstrap band."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from lmmkit.errors import DataError  # noqa: E402
from lmmkit.validation.decision_curve import (  # noqa: E402
    decision_curve,
    net_benefit,
    plot_decision_curve,
)

Y = np.array([1, 0, 1, 1, 0, 0, 0, 1, 0, 0])
P = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])


def test_net_benefit_by_hand():
    # pt = 0.25: treated p >= .25 are the first 7 -> TP 3, FP 4: 3/10 - 4/10 * (1/3)
    # pt = 0.5: first 5 -> TP 3, FP 2: 3/10 - 2/10 * 1
    # pt = 0.85: first 1 -> TP 1, FP 0
    nb = net_benefit(Y, P, [0.25, 0.5, 0.85])
    np.testing.assert_allclose(nb, [0.3 - 0.4 / 3, 0.1, 0.1], rtol=0, atol=1e-15)


def test_treat_all_none_and_interventions_avoided():
    dc = decision_curve(Y, P, thresholds=[0.0, 0.25, 0.5])
    prev = 0.4
    assert dc.treat_all[0] == prev  # everyone treated at pt = 0
    assert dc.model[0] == prev
    np.testing.assert_allclose(dc.treat_all, [prev, prev - 0.6 / 3, prev - 0.6], atol=1e-15)
    np.testing.assert_array_equal(dc.treat_none, 0.0)
    # avoided per 100 = (NB_model - NB_all) * (1 - pt) / pt * 100
    assert np.isnan(dc.interventions_avoided[0])
    np.testing.assert_allclose(
        dc.interventions_avoided[1:], [(1 / 6 - 0.2) * 3 * 100, (0.1 + 0.2) * 100], atol=1e-12
    )
    df = dc.to_frame()
    assert list(df["threshold"]) == [0.0, 0.25, 0.5]


def test_treat_all_at_zero_equals_prevalence_random_data():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 137)
    p = rng.random(137)
    dc = decision_curve(y, p, thresholds=[0.0])
    assert dc.treat_all[0] == pytest.approx(y.mean(), abs=1e-15)


def test_default_thresholds_and_bootstrap_band_seeded():
    rng = np.random.default_rng(5)
    p = rng.random(300)
    y = (rng.random(300) < p).astype(int)
    a = decision_curve(y, p, n_boot=300, seed=42)
    b = decision_curve(y, p, n_boot=300, seed=42)
    c = decision_curve(y, p, n_boot=300, seed=43)
    assert len(a.thresholds) == 99 and a.thresholds[0] == 0.01 and a.thresholds[-1] == 0.99
    np.testing.assert_array_equal(a.model_low, b.model_low)
    np.testing.assert_array_equal(a.model_high, b.model_high)
    assert not np.array_equal(a.model_low, c.model_low)
    assert np.all(a.model_low <= a.model_high)
    inside = (a.model_low <= a.model) & (a.model <= a.model_high)
    assert inside.mean() > 0.95
    np.testing.assert_allclose(a.model, net_benefit(y, p, a.thresholds))
    fig = plot_decision_curve(a)
    assert isinstance(fig, matplotlib.figure.Figure)
    plt.close(fig)


def test_no_bootstrap_gives_nan_band():
    dc = decision_curve(Y, P, thresholds=[0.1, 0.2])
    assert np.isnan(dc.model_low).all() and np.isnan(dc.model_high).all()


def test_decision_curve_bad_input():
    with pytest.raises(DataError, match=r"\[1.0\]"):
        net_benefit(Y, P, [0.5, 1.0])
    with pytest.raises(DataError, match="y has 10, p has 9"):
        decision_curve(Y, P[:-1])
    with pytest.raises(DataError, match="first at index 2"):
        decision_curve(Y, np.where(np.arange(10) == 2, np.nan, P))
    with pytest.raises(DataError, match=r"p\[0\] = 2.0"):
        net_benefit([1, 0], [2.0, 0.1])
    with pytest.raises(DataError, match="'yes'"):
        net_benefit(["yes", "no"], [0.5, 0.1])
    with pytest.raises(DataError, match="n_boot"):
        decision_curve(Y, P, n_boot=-1)


def test_net_benefit_equals_dcurves_on_its_bundled_data() -> None:
    """dcurves 1.1.7 (the reference implementation) on its df_binary data, frozen by
    tests/reference/clinical/make_dcurves_reference.sh."""
    import json
    from pathlib import Path

    import pandas as pd

    from lmmkit.validation.decision_curve import decision_curve

    ref_dir = Path(__file__).resolve().parents[1] / "reference" / "clinical"
    ref = json.loads((ref_dir / "dcurves_net_benefit.json").read_text())
    df = pd.read_csv(ref_dir / "dcurves_df_binary.csv")
    y = df["cancer"].astype(str).str.upper().eq("TRUE").astype(int).to_numpy()
    thresholds = np.asarray(ref["cancerpredmarker"]["threshold"])
    curve = decision_curve(y, df["cancerpredmarker"].to_numpy(), thresholds=thresholds)
    np.testing.assert_allclose(curve.model, ref["cancerpredmarker"]["net_benefit"], atol=1e-12)
    np.testing.assert_allclose(curve.treat_all, ref["all"]["net_benefit"], atol=1e-12)
    np.testing.assert_allclose(curve.treat_none, ref["none"]["net_benefit"], atol=1e-12)

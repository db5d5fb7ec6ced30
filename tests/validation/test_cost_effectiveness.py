"""Cost-effectiveness of using a biomarker.

Held by: hand-checkable dominance cases; a published test-and-treat table (Table 1 of
PMC7083239, JNCI Cancer Spectrum 2020; 4(2):pkaa004: no testing / test all and irradiate
the elevated-risk / irradiate all); the defining property of the frontier (exactly the
strategies that maximize net monetary benefit for some willingness to pay, switching at
the ICERs); expected costs and effects by hand; and the identity between decision-curve
net benefit and net monetary benefit on the aSAH data (lmmkit.net_benefit). The textbook
tables of Drummond et al. and Briggs, Claxton & Sculpher were not available to check here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lmmkit.errors import DataError
from lmmkit.validation.cost_effectiveness import (
    CEAInputs,
    beta_from_moments,
    cost_effectiveness,
    efficiency_frontier,
    gamma_from_moments,
    lognormal_from_moments,
    net_benefit_exchange,
    net_monetary_benefit,
    plot_ce_plane,
    plot_ceac,
    plot_frontier,
    probabilistic_sensitivity,
)
from lmmkit.validation.decision_curve import decision_curve, net_benefit

INPUTS = dict(
    cost_tp=5000.0,
    cost_fn=9000.0,
    cost_fp=5000.0,
    cost_tn=0.0,
    qaly_tp=8.0,
    qaly_fn=6.5,
    qaly_fp=9.9,
    qaly_tn=10.0,
)


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    score = 1.0 / (1.0 + np.exp(-(1.6 * y - 0.8 + rng.normal(0, 1.2, n))))
    return y, score


# --- the frontier ------------------------------------------------------------------------


def test_strict_dominance_and_identical_by_hand():
    f = efficiency_frontier(
        [100, 50, 80, 50, 200], [1.0, 2.0, 1.5, 2.0, 2.5], ["A", "B", "C", "B2", "D"]
    )
    assert f["status"].to_dict() == {
        "A": "dominated",
        "B": "frontier",
        "C": "dominated",
        "B2": "identical",
        "D": "frontier",
    }
    assert f.loc["A", "reference"] == "B" and f.loc["B2", "reference"] == "B"
    assert f.loc["D", "icer"] == pytest.approx((200 - 50) / (2.5 - 2.0))
    assert np.isnan(f.loc["B", "icer"])


def test_extended_dominance_by_hand():
    # B lies above the segment A-C: ICER(B vs A) = 200 > ICER(C vs B) = 50
    f = efficiency_frontier([0, 200, 300, 400], [0, 1, 3, 2.5], ["A", "B", "C", "D"])
    assert f["status"].tolist() == ["frontier", "extendedly dominated", "frontier", "dominated"]
    assert f.loc["B", "reference"] == "A + C"
    assert f.loc["C", "icer"] == pytest.approx(100.0)
    assert f.loc["C", "reference"] == "A"


def test_equal_costs_and_equal_effects():
    f = efficiency_frontier([10, 10, 30], [1, 2, 2])
    assert f["status"].tolist() == ["dominated", "frontier", "dominated"]
    single = efficiency_frontier([5.0], [1.0], ["only"])
    assert single.loc["only", "status"] == "frontier" and np.isnan(single.loc["only", "icer"])


def test_published_test_and_treat_table():
    # PMC7083239 Table 1: strategy 2 "absolutely dominated", ICER of 3 vs 1 printed 529 365.8
    # (from unrounded inputs; the printed costs and effects give 529 347, within 4e-5)
    f = efficiency_frontier(
        [1695.865, 12224.17, 12118.17],
        [8.570992, 8.583273, 8.590681],
        ["strategy 1", "strategy 2", "strategy 3"],
    )
    assert f.loc["strategy 2", "status"] == "dominated"
    assert f.loc["strategy 2", "reference"] == "strategy 3"
    assert f.loc["strategy 3", "inc_cost"] == pytest.approx(10422.31, abs=0.01)
    assert f.loc["strategy 3", "inc_effect"] == pytest.approx(0.019688, abs=1.5e-6)
    assert f.loc["strategy 3", "icer"] == pytest.approx(529365.8, rel=1e-4)


@pytest.mark.parametrize("seed", range(6))
def test_frontier_is_where_nmb_is_maximal(seed):
    rng = np.random.default_rng(seed)
    n = 12
    effect = rng.uniform(0, 10, n)
    cost = 300 * effect + rng.normal(0, 400, n) + 0.05 * effect**4
    names = [f"s{i}" for i in range(n)]
    f = efficiency_frontier(cost, effect, names)
    front = f[f["status"] == "frontier"].sort_values("cost")
    icers = front["icer"].to_numpy()[1:]
    assert np.all(np.diff(icers) >= 0)
    # switch points are the ICERs: between them exactly one frontier strategy is optimal
    edges = (
        np.concatenate([[0.0], icers[icers > 0], [icers.max() * 2 + 1]]) if len(icers) else [0, 1]
    )
    mids = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:]) if b > a]
    best = {net_monetary_benefit(cost, effect, [m], names)["best"].iloc[0] for m in mids}
    best |= set(net_monetary_benefit(cost, effect, [0.0], names)["best"])
    assert best == set(front.index)
    # no other strategy is ever optimal on a fine grid
    grid = np.linspace(0, edges[-1] * 1.5, 4000)
    winners = set(net_monetary_benefit(cost, effect, grid, names)["best"])
    assert winners <= set(front.index)


# --- strategies: expected cost and effect ------------------------------------------------


def test_expected_cost_and_effect_by_hand():
    table = pd.DataFrame({"threshold": [0.3], "sensitivity": [0.8], "specificity": [0.9]})
    inputs = CEAInputs(**INPUTS, cost_test=100.0, prevalence=0.25)
    res = cost_effectiveness(inputs, table=table)
    s = res.strategies
    p, se, sp = 0.25, 0.8, 0.9
    cost = 100 + p * (se * 5000 + (1 - se) * 9000) + (1 - p) * ((1 - sp) * 5000 + sp * 0)
    effect = p * (se * 8.0 + (1 - se) * 6.5) + (1 - p) * ((1 - sp) * 9.9 + sp * 10.0)
    assert s.loc["test >= 0.3", "cost"] == pytest.approx(cost, rel=1e-14)
    assert s.loc["test >= 0.3", "effect"] == pytest.approx(effect, rel=1e-14)
    assert s.loc["treat none", "cost"] == pytest.approx(0.25 * 9000)
    assert s.loc["treat all", "cost"] == pytest.approx(5000.0)
    assert s.loc["treat all", "effect"] == pytest.approx(0.25 * 8.0 + 0.75 * 9.9)


def test_rates_follow_lmmkits_roc():
    from lmmkit.validation.discrimination import roc_auc

    y, score = _data()
    roc = roc_auc(y, score, ci=None)
    res = cost_effectiveness(CEAInputs(**INPUTS), y, score)
    tests = res.strategies.iloc[2:]
    finite = np.isfinite(roc.thresholds)
    np.testing.assert_allclose(tests["sensitivity"], roc.tpr[finite])
    np.testing.assert_allclose(tests["specificity"], 1 - roc.fpr[finite])
    assert res.inputs["prevalence"] == pytest.approx(y.mean())


# --- the decision-curve identity -----------------------------------------------------------


def _identity_holds(y, p, inputs_kw):
    inputs = CEAInputs(**inputs_kw)  # cost_test 0, prevalence from the data
    for wtp in (5_000.0, 20_000.0, 50_000.0):
        ex = net_benefit_exchange(inputs, wtp=wtp)
        pt = ex["threshold"]
        res = cost_effectiveness(inputs, y, p, thresholds=[pt], direction="<", wtp=[wtp])
        nmb = res.nmb.iloc[0]
        test_name = res.strategies.index[2]
        nb = net_benefit(y, p, [pt])[0]
        assert nmb[test_name] - nmb["treat none"] == pytest.approx(ex["benefit"] * nb, rel=1e-10)
        dc = decision_curve(y, p, thresholds=[pt])
        assert nmb["treat all"] - nmb["treat none"] == pytest.approx(
            ex["benefit"] * dc.treat_all[0], rel=1e-10
        )


def test_net_benefit_equals_nmb_over_benefit_synthetic():
    y, p = _data()
    _identity_holds(y, p, INPUTS)


def test_net_benefit_equals_nmb_over_benefit_asah(asah):
    from sklearn.linear_model import LogisticRegression

    x = asah[["s100b", "ndka"]].to_numpy()
    p = LogisticRegression().fit(x, asah["y"]).predict_proba(x)[:, 1]
    _identity_holds(asah["y"].to_numpy(), p, INPUTS)


def test_exchange_rate_by_hand():
    ex = net_benefit_exchange(CEAInputs(**INPUTS), wtp=20_000)
    assert ex["benefit"] == pytest.approx((20_000 * 8 - 5000) - (20_000 * 6.5 - 9000))
    assert ex["harm"] == pytest.approx((20_000 * 10 - 0) - (20_000 * 9.9 - 5000))
    assert ex["threshold"] == pytest.approx(7000 / 41000)


# --- probabilistic sensitivity analysis ----------------------------------------------------


def test_psa_without_uncertainty_reproduces_the_base_case():
    y, score = _data()
    inputs = CEAInputs(**INPUTS, cost_test=50.0)
    psa = probabilistic_sensitivity(
        inputs, y, score, thresholds=[0.3, 0.5, 0.7], n_draws=20, bootstrap=False
    )
    base = psa.base.strategies
    np.testing.assert_allclose(psa.cost.to_numpy(), np.tile(base["cost"], (20, 1)))
    # the CEAC is 0/1 and its winner is the base case's NMB winner
    assert set(np.unique(psa.ceac.to_numpy())) <= {0.0, 1.0}
    assert (psa.best == psa.base.nmb["best"]).all()


def test_psa_draws_are_centred_and_reproducible():
    y, score = _data()
    inputs = CEAInputs(
        cost_tp=gamma_from_moments(5000, 800),
        cost_fn=lognormal_from_moments(9000, 1500),
        cost_fp=5000.0,
        cost_tn=0.0,
        qaly_tp=8.0,
        qaly_fn=6.5,
        qaly_fp=9.9,
        qaly_tn=10.0,
        cost_test=gamma_from_moments(100, 20),
        prevalence=beta_from_moments(0.3, 0.04),
    )
    a = probabilistic_sensitivity(inputs, y, score, thresholds=[0.4, 0.6], n_draws=4000, seed=1)
    b = probabilistic_sensitivity(inputs, y, score, thresholds=[0.4, 0.6], n_draws=4000, seed=1)
    pd.testing.assert_frame_equal(a.cost, b.cost)
    # cost is linear in the inputs given sensitivity/specificity: its mean is the base case
    # (the bootstrap of the validation data is centred on the observed rates)
    err = (a.cost.mean() - a.base.strategies["cost"]).abs() / (a.cost.std() / np.sqrt(4000))
    assert (err < 4.5).all()
    np.testing.assert_allclose(a.ceac.sum(axis=1), 1.0)
    # at wtp 0 the cheapest strategy of each draw wins
    cheapest = a.cost.idxmin(axis=1).value_counts(normalize=True)
    np.testing.assert_allclose(a.ceac.loc[0.0, cheapest.index], cheapest.to_numpy())


def test_plots(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    y, score = _data()
    inputs = CEAInputs(**{**INPUTS, "cost_tp": gamma_from_moments(5000, 800)}, cost_test=50.0)
    psa = probabilistic_sensitivity(inputs, y, score, n_draws=100, seed=2)
    for fig, title in (
        (plot_frontier(psa.base), "Efficiency frontier"),
        (plot_ce_plane(psa, wtp=20_000), "Cost-effectiveness plane"),
        (plot_ceac(psa), "Cost-effectiveness acceptability curves"),
    ):
        ax = fig.axes[0]
        assert ax.get_title().startswith(title) and ax.get_xlabel() and ax.get_ylabel()
        fig.savefig(tmp_path / "plot.png")


# --- bad input ---------------------------------------------------------------------------


def test_probabilities_outside_0_1_are_refused():
    with pytest.raises(
        DataError, match=r"prevalence=1.2 is a probability and must lie in \[0, 1\]"
    ):
        CEAInputs(**INPUTS, prevalence=1.2)
    with pytest.raises(DataError, match="prevalence's distribution has support"):
        CEAInputs(**INPUTS, prevalence=stats.norm(0.3, 0.1))
    table = pd.DataFrame({"threshold": [1.0], "sensitivity": [1.3], "specificity": [0.5]})
    with pytest.raises(DataError, match=r"sensitivity must be a probability in \[0, 1\]; got 1.3"):
        cost_effectiveness(CEAInputs(**INPUTS, prevalence=0.2), table=table)


def test_costs_negative_test_cost_refused_outcome_savings_allowed():
    with pytest.raises(DataError, match="cost_test=-5.0 is negative"):
        CEAInputs(**INPUTS, cost_test=-5.0)
    with pytest.raises(DataError, match="cost_test's distribution has support"):
        CEAInputs(**INPUTS, cost_test=stats.norm(100, 10))
    saving = CEAInputs(**{**INPUTS, "cost_tn": -200.0}, prevalence=0.3)
    assert saving.base_case()["cost_tn"] == -200.0
    with pytest.raises(DataError, match="qaly_tp=nan must be finite"):
        CEAInputs(**{**INPUTS, "qaly_tp": float("nan")})


def test_sensitivity_and_specificity_both_zero():
    table = pd.DataFrame(
        {"threshold": [0.2, 0.5], "sensitivity": [0.9, 0.0], "specificity": [0.6, 0.0]}
    )
    with pytest.raises(DataError, match=r"both 0 at threshold 0.5 \(row 1\)"):
        cost_effectiveness(CEAInputs(**INPUTS, prevalence=0.2), table=table)


def test_other_bad_inputs():
    with pytest.raises(DataError, match="prevalence is None"):
        cost_effectiveness(
            CEAInputs(**INPUTS),
            table=pd.DataFrame({"threshold": [1], "sensitivity": [0.5], "specificity": [0.5]}),
        )
    y, score = _data()
    with pytest.raises(DataError, match="wtp must be finite numbers >= 0"):
        cost_effectiveness(CEAInputs(**INPUTS), y, score, wtp=[-1.0])
    with pytest.raises(DataError, match="a threshold probability needs both positive"):
        net_benefit_exchange(CEAInputs(**{**INPUTS, "qaly_fp": 10.5}), wtp=20_000)
    with pytest.raises(DataError, match="sd\\^2 < mean"):
        beta_from_moments(0.5, 0.6)


# --- command line ------------------------------------------------------------------------


def test_cli_cea(tmp_path, capsys):
    import json

    from lmmkit.cli.main import main

    y, score = _data(120)
    pd.DataFrame({"y": y, "marker": score}).to_csv(tmp_path / "d.csv", index=False)
    spec = {**INPUTS, "cost_tp": {"dist": "gamma", "mean": 5000, "sd": 800}, "cost_test": 50}
    (tmp_path / "in.json").write_text(json.dumps(spec))
    argv = ["cea", "--data", str(tmp_path / "d.csv"), "--outcome", "y", "--score", "marker",
            "--inputs", str(tmp_path / "in.json")]  # fmt: skip
    out = tmp_path / "cea.json"
    prefix = str(tmp_path / "p")
    assert main([*argv, "--psa", "50", "--json", str(out), "--plot-prefix", prefix]) == 0
    got = json.loads(out.read_text())
    base = cost_effectiveness(
        CEAInputs(**{**INPUTS, "cost_tp": 5000.0}, cost_test=50.0), y, score
    ).strategies
    costs = {r["strategy"]: r["cost"] for r in got["strategies"]}
    assert costs["treat all"] == pytest.approx(base.loc["treat all", "cost"])
    assert got["psa"]["n_draws"] == 50
    for kind in ("frontier", "plane", "ceac"):
        assert (tmp_path / f"p_{kind}.png").exists()
    bad = {**INPUTS, "prevalence": 1.5}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    argv[-1] = str(tmp_path / "bad.json")
    assert main(argv) == 2
    assert "prevalence=1.5 is a probability" in capsys.readouterr().err

"""ROC AUC, DeLong CI and test, bootstrap CI and operating points (vs pROC)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmmkit.errors import DataError
from lmmkit.validation.discrimination import (
    RocResult,
    delong_test,
    operating_point,
    roc_auc,
)

TOL = 1e-6  # the shared pROC table has 7 significant digits
FULL = 1e-12  # frozen full-precision pROC values: measured differences <= 5.3e-15


def test_ndka_matches_proc_reference(asah, clinical_ref):
    ref = clinical_ref["aSAH_ndka"]
    r = roc_auc(asah["y"], asah["ndka"], direction="<")
    assert r.direction == "<"
    assert r.auc == pytest.approx(ref["auc"], abs=TOL)
    assert r.ci_low == pytest.approx(ref["ci95_delong"][0], abs=TOL)
    assert r.ci_high == pytest.approx(ref["ci95_delong"][1], abs=TOL)
    # pROC's automatic direction agrees here
    assert roc_auc(asah["y"], asah["ndka"]).direction == "<"


@pytest.mark.parametrize(
    "key, column, direction",
    [
        ("s100b", "s100b", "<"),
        ("wfns_numeric", "wfns_num", "<"),
        ("ndka", "ndka", "<"),
        ("ndka_reversed", "ndka", ">"),
        ("age_auto", "age", "auto"),
        ("s100b_auto", "s100b", "auto"),
        ("ndka_negated_auto", "ndka_neg", "auto"),
    ],
)
def test_auc_and_delong_ci_match_frozen_proc(asah, extra_ref, key, column, direction):
    ref = extra_ref["aSAH_roc"][key]
    r = roc_auc(asah["y"], asah[column], direction=direction)
    assert r.direction == ref["direction"]
    assert r.auc == pytest.approx(ref["auc"], abs=FULL)
    assert r.variance == pytest.approx(ref["var_delong"], abs=1e-9)
    assert r.ci_low == pytest.approx(ref["ci95_delong"][0], abs=FULL)
    assert r.ci_high == pytest.approx(ref["ci95_delong"][1], abs=FULL)


@pytest.mark.parametrize(
    "key, c1, c2",
    [
        ("aSAH_roc_test_s100b_vs_ndka", "s100b", "ndka"),
        ("aSAH_roc_test_wfns_vs_s100b", "wfns_num", "s100b"),
    ],
)
def test_paired_delong_matches_proc_roc_test(asah, extra_ref, key, c1, c2):
    ref = extra_ref[key]
    t = delong_test(asah["y"], asah[c1], asah[c2], direction="<")
    assert t.auc1 == pytest.approx(ref["auc1"], abs=FULL)
    assert t.auc2 == pytest.approx(ref["auc2"], abs=FULL)
    assert t.z == pytest.approx(ref["z"], abs=FULL)
    assert t.p == pytest.approx(ref["p"], abs=FULL)


def test_delong_test_of_a_score_with_itself_is_zero(asah):
    t = delong_test(asah["y"], asah["s100b"], asah["s100b"])
    assert t.z == 0.0 and t.p == 1.0


def test_bootstrap_ci_close_to_delong_and_seeded(asah):
    y, s = asah["y"], asah["s100b"]
    d = roc_auc(y, s, ci="delong")
    b1 = roc_auc(y, s, ci="bootstrap", n_boot=2000, seed=11)
    b2 = roc_auc(y, s, ci="bootstrap", n_boot=2000, seed=11)
    b3 = roc_auc(y, s, ci="bootstrap", n_boot=2000, seed=12)
    assert (b1.ci_low, b1.ci_high) == (b2.ci_low, b2.ci_high)
    assert (b1.ci_low, b1.ci_high) != (b3.ci_low, b3.ci_high)
    assert b1.auc == d.auc
    assert b1.ci_low == pytest.approx(d.ci_low, abs=0.02)
    assert b1.ci_high == pytest.approx(d.ci_high, abs=0.02)


def test_no_ci_and_curve_shapes(asah):
    r = roc_auc(asah["y"], asah["s100b"], ci=None)
    assert isinstance(r, RocResult)
    assert np.isnan(r.ci_low) and np.isnan(r.ci_high)
    assert r.fpr.shape == r.tpr.shape == r.thresholds.shape
    assert np.isinf(r.thresholds[0])
    # trapezoidal area under the full curve equals the Mann-Whitney AUC
    assert np.trapezoid(r.tpr, r.fpr) == pytest.approx(r.auc, abs=1e-12)


def test_direction_greater_gives_complement_and_threshold_rule():
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([6.0, 5.0, 4.0, 3.0, 2.0, 1.5])
    r = roc_auc(y, s)
    assert r.direction == ">"
    assert r.auc == 1.0
    assert roc_auc(y, s, direction="<").auc == 0.0
    op = operating_point(r)
    assert (op.sensitivity, op.specificity) == (1.0, 1.0)
    assert op.threshold == 3.0  # positive when score <= 3


def test_delong_ci_clipped_to_unit_interval():
    y = np.array([0, 0, 0, 1, 1, 1])
    r = roc_auc(y, [0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert r.auc == 1.0 and r.ci_high == 1.0 and r.ci_low == 1.0


def test_hand_computed_auc_with_ties():
    # cases {2, 3}, controls {1, 2}: pairs (2>1)=1, (2=2)=.5, (3>1)=1, (3>2)=1 -> 3.5/4
    r = roc_auc([1, 1, 0, 0], [2, 3, 1, 2], direction="<")
    assert r.auc == pytest.approx(0.875, abs=1e-15)


def test_operating_points(asah):
    r = roc_auc(asah["y"], asah["s100b"], ci=None)
    yd = operating_point(r)
    j = r.tpr + (1 - r.fpr) - 1
    assert yd.youden == pytest.approx(j.max())
    pred = asah["s100b"].to_numpy() >= yd.threshold
    y = asah["y"].to_numpy() == 1
    assert yd.sensitivity == pytest.approx(pred[y].mean())
    assert yd.specificity == pytest.approx((~pred[~y]).mean())

    op = operating_point(r, method="sensitivity", target=0.9)
    assert op.sensitivity >= 0.9
    better = (r.tpr >= 0.9) & (1 - r.fpr > op.specificity + 1e-12)
    assert not better.any()
    op = operating_point(asah["y"], asah["s100b"], method="specificity", target=0.9)
    assert op.specificity >= 0.9
    better = (1 - r.fpr >= 0.9) & (r.tpr > op.sensitivity + 1e-12)
    assert not better.any()


def test_operating_point_bad_target(asah):
    r = roc_auc(asah["y"], asah["s100b"], ci=None)
    with pytest.raises(DataError, match="target"):
        operating_point(r, method="sensitivity")
    with pytest.raises(DataError, match="target"):
        operating_point(r, method="specificity", target=1.5)


# ---------------------------------------------------------------- properties

labels_scores = st.integers(min_value=4, max_value=40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(lambda v: 0 < sum(v) < len(v)),
        st.lists(st.integers(-30, 30), min_size=n, max_size=n),
    )
)


@settings(max_examples=60, deadline=None)
@given(labels_scores, st.sampled_from(["affine", "cube", "exp", "arctan"]))
def test_auc_invariant_to_monotone_transform(data, transform):
    y, s = np.array(data[0]), np.array(data[1], dtype=float)
    f = {
        "affine": lambda x: 2.5 * x - 7.0,
        "cube": lambda x: x**3,
        "exp": lambda x: np.exp(x / 10.0),
        "arctan": np.arctan,
    }[transform]
    r0 = roc_auc(y, s, direction="<")
    r1 = roc_auc(y, f(s), direction="<")
    assert r1.auc == pytest.approx(r0.auc, abs=1e-12)
    assert r1.ci_low == pytest.approx(r0.ci_low, abs=1e-12)
    assert r1.ci_high == pytest.approx(r0.ci_high, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(labels_scores, st.randoms(use_true_random=False))
def test_auc_invariant_to_row_order(data, rnd):
    y, s = np.array(data[0]), np.array(data[1], dtype=float)
    perm = np.array(rnd.sample(range(len(y)), len(y)))
    r0 = roc_auc(y, s)
    r1 = roc_auc(y[perm], s[perm])
    assert r1.direction == r0.direction
    assert r1.auc == pytest.approx(r0.auc, abs=1e-12)
    assert r1.ci_low == pytest.approx(r0.ci_low, abs=1e-12)
    assert r1.ci_high == pytest.approx(r0.ci_high, abs=1e-12)


# ---------------------------------------------------------------- bad input


def test_labels_not_binary_names_values():
    with pytest.raises(DataError, match=r"contains \[2\] at 1 position"):
        roc_auc([0, 1, 2, 1], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(DataError, match="'Good', 'Poor'"):
        roc_auc(["Good", "Poor", "Good"], [0.1, 0.2, 0.3])


def test_score_with_nan_reports_count_and_first_index():
    with pytest.raises(DataError, match=r"2 NaN value\(s\), first at index 1"):
        roc_auc([0, 1, 0, 1], [0.1, np.nan, 0.3, np.nan])


def test_one_class_only():
    with pytest.raises(DataError, match="only cases"):
        roc_auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(DataError, match="only controls"):
        delong_test([0, 0, 0], [0.1, 0.2, 0.3], [1, 2, 3])


def test_mismatched_lengths():
    with pytest.raises(DataError, match="y has 4, score has 3"):
        roc_auc([0, 1, 0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(DataError, match="score2 has 3"):
        delong_test([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], [1, 2, 3])


def test_bad_options():
    with pytest.raises(DataError, match="direction"):
        roc_auc([0, 1], [0.1, 0.2], direction="up")
    with pytest.raises(DataError, match="ci="):
        roc_auc([0, 1], [0.1, 0.2], ci="wald")
    with pytest.raises(DataError, match="level"):
        roc_auc([0, 1], [0.1, 0.2], level=95)

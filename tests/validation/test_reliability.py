"""Shrout-Fleiss ICCs (vs psych::ICC), within-subject CV and repeatability coefficient."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmmkit.errors import DataError, LmmkitWarning
from lmmkit.validation.reliability import (
    icc,
    icc_wide,
    repeatability_coefficient,
    within_subject_cv,
)

FORMS = ["ICC1", "ICC2", "ICC3", "ICC1k", "ICC2k", "ICC3k"]


def test_shrout_fleiss_matches_shared_psych_reference(shrout_fleiss, clinical_ref):
    """The shared reference comes from psych::ICC's default lmer=TRUE path, which rebuilds
    the mean squares from lme4's REML variance components. On balanced data those equal the
    ANOVA estimates only up to lme4's optimiser tolerance, so the reference carries ~1e-6
    noise (amplified to ~3e-6 in the ICC1k lower bound). The ICC values agree within 1e-6;
    the bounds within 5e-6. The exact check against psych's ANOVA path (lmer=FALSE) is
    test_shrout_fleiss_matches_psych_aov below (1e-9)."""
    ref = clinical_ref["shrout_fleiss_icc"]
    res = icc_wide(shrout_fleiss)
    for form in FORMS:
        assert res[form]["icc"] == pytest.approx(ref[form]["icc"], abs=1e-6), form
        assert res[form]["lower"] == pytest.approx(ref[form]["lower"], abs=5e-6), form
        assert res[form]["upper"] == pytest.approx(ref[form]["upper"], abs=5e-6), form


def _check_all_columns(res, ref, tol):
    for form in FORMS:
        row = res[form]
        for col in ("icc", "F", "df1", "df2", "p", "lower", "upper"):
            assert row[col] == pytest.approx(ref[form][col], abs=tol), (form, col)


def test_shrout_fleiss_matches_psych_aov(shrout_fleiss, extra_ref):
    _check_all_columns(icc_wide(shrout_fleiss), extra_ref["icc_shrout_fleiss_aov"], 1e-9)


def test_unbalanced_variance_matches_psych(extra_ref):
    m = np.asarray(extra_ref["unbalanced_matrix"], dtype=float)
    assert m.shape == (10, 3)
    _check_all_columns(icc_wide(m), extra_ref["icc_unbalanced"], 1e-9)


def test_long_table_equals_wide(shrout_fleiss):
    n, k = shrout_fleiss.shape
    long = pd.DataFrame(
        {
            "subject": np.repeat([f"s{i}" for i in range(n)], k),
            "judge": np.tile([f"j{j}" for j in range(k)], n),
            "score": shrout_fleiss.ravel(),
        }
    ).sample(frac=1.0, random_state=3)
    a = icc(long, targets="subject", raters="judge", ratings="score").table
    b = icc_wide(shrout_fleiss).table
    pd.testing.assert_frame_equal(a, b, rtol=1e-12)


def test_missing_ratings_dropped_with_warning_or_raised(shrout_fleiss):
    m = shrout_fleiss.copy()
    m[2, 1] = np.nan
    # the warning no longer claims that psych drops them (it stops, or keeps them with lmer)
    with pytest.warns(LmmkitWarning, match=r"rows \[2\]\) were dropped: the ANOVA") as rec:
        res = icc_wide(m)
    assert "as psych::ICC does" not in str(rec[0].message)
    assert res.dropped_targets == (2,) and res.n_missing == 1
    assert res.n_targets == 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = icc_wide(np.delete(shrout_fleiss, 2, axis=0)).table
    pd.testing.assert_frame_equal(res.table, expected)
    with pytest.raises(DataError, match="missing ratings"):
        icc_wide(m, missing="raise")


@settings(max_examples=40, deadline=None)
@given(
    st.integers(3, 8).flatmap(
        lambda n: st.integers(2, 5).flatmap(
            lambda k: st.lists(
                st.lists(st.integers(0, 20), min_size=k, max_size=k), min_size=n, max_size=n
            )
        )
    ),
    st.randoms(use_true_random=False),
)
def test_icc_invariant_to_rater_and_target_order(rows, rnd):
    m = np.asarray(rows, dtype=float)
    # degenerate tables (zero mean squares, up to rounding) give 0/0: nothing to compare
    if (
        np.ptp(m.mean(axis=1)) < 1e-9
        or (m - m.mean(axis=1, keepdims=True) - m.mean(axis=0) + m.mean()).std() < 1e-9
    ):
        return
    # an ICC whose denominator cancels to rounding (ICC(2,k): MSR + (MSC - MSE) / n = 0) is
    # 0/0 as well: its value, and so its invariance, is rounding noise
    n, k = m.shape
    g = m.mean()
    msr = k * ((m.mean(axis=1) - g) ** 2).sum() / (n - 1)
    msc = n * ((m.mean(axis=0) - g) ** 2).sum() / (k - 1)
    e = m - m.mean(axis=1, keepdims=True) - m.mean(axis=0) + g
    mse = (e**2).sum() / ((n - 1) * (k - 1))
    dens = (msr + (k - 1) * mse + k * (msc - mse) / n, msr + (msc - mse) / n)
    if min(abs(d) for d in dens) < 1e-9 * (msr + msc + mse):
        return
    cols = rnd.sample(range(m.shape[1]), m.shape[1])
    rows_perm = rnd.sample(range(m.shape[0]), m.shape[0])
    with np.errstate(all="ignore"):
        a = icc_wide(m).table
        b = icc_wide(m[:, cols]).table
        c = icc_wide(m[rows_perm]).table
    num = ["icc", "F", "df1", "df2", "p", "lower", "upper"]
    np.testing.assert_allclose(
        b[num].to_numpy(float), a[num].to_numpy(float), rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(
        c[num].to_numpy(float), a[num].to_numpy(float), rtol=1e-9, atol=1e-12
    )


def test_within_subject_cv_and_repeatability_by_hand():
    # subject 1: (9, 11) mean 10, var 2; subject 2: (19, 21) mean 20, var 2
    m = np.array([[9.0, 11.0], [19.0, 21.0]])
    assert within_subject_cv(m) == pytest.approx(np.sqrt((2 / 100 + 2 / 400) / 2), rel=1e-14)
    # s_w = sqrt(2); RC = 1.959964 * sqrt(2) * sqrt(2)
    assert repeatability_coefficient(m) == pytest.approx(1.959963984540054 * 2.0, rel=1e-12)
    assert repeatability_coefficient(m, level=0.9) == pytest.approx(
        1.6448536269514722 * 2.0, rel=1e-12
    )


def test_reliability_bad_input():
    with pytest.raises(DataError, match="2-D"):
        icc_wide([1.0, 2.0, 3.0])
    with pytest.raises(DataError, match="at least 2 complete targets and 2 raters"):
        icc_wide([[1.0, 2.0, 3.0]])
    with pytest.raises(DataError, match="mean 0"):
        within_subject_cv([[1.0, -1.0], [2.0, 3.0]])
    long = pd.DataFrame({"t": [1, 1, 2, 2], "r": ["a", "b", "a", "b"], "x": [1.0, 2, 3, 4]})
    with pytest.raises(DataError, match="Did you mean 'x'"):
        icc(long, targets="t", raters="r", ratings="X")
    dup = pd.concat([long, long.iloc[[0]]])
    with pytest.raises(DataError, match="more than one rating"):
        icc(dup, targets="t", raters="r", ratings="x")


def test_shared_reference_is_psych_lmer_path(clinical_ref, extra_ref):
    """Documents the ~1e-6 gap above: the shared table equals psych's lmer=TRUE output (to
    its 7 printed digits), and psych's own lmer=TRUE and lmer=FALSE answers differ by
    up to 3e-6 on these data."""
    shared = clinical_ref["shrout_fleiss_icc"]
    lmer = extra_ref["icc_shrout_fleiss_lmer"]
    for form in FORMS:
        for col in ("icc", "lower", "upper"):
            assert shared[form][col] == pytest.approx(lmer[form][col], abs=1e-7), (form, col)


# --------------------------------------------------------------------------- two conventions


def _ratings(entry) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in entry["ratings"]])


def _max_table_diff(res, ref) -> float:
    cols = ("icc", "F", "df1", "df2", "p", "lower", "upper")
    return max(abs(float(res[f][c]) - ref[f][c]) for f in FORMS for c in cols)


@pytest.mark.parametrize("name", ["sat_act", "bfi_agreeableness"])
def test_icc_conventions_match_psych(icc_ref, name):
    """#24 item 5: method="anova" is psych ICC(lmer=FALSE) (complete targets), method="reml"
    psych's default ICC(lmer=TRUE) (REML components, a negative one at 0, every target kept).
    psych's lmer runs at lme4's default tolerance: its tables carry that noise (up to 4.6e-5
    on sat.act's complete targets), so the REML components are also checked against lme4 run
    to tight convergence."""
    entry = icc_ref[name]
    x = _ratings(entry)
    complete = x[~np.isnan(x).any(axis=1)]
    assert len(x) - len(complete) == entry["n_incomplete"] > 0
    with pytest.warns(LmmkitWarning, match="were dropped"):
        anova = icc_wide(x)  # the default
    assert anova.method == "anova"
    assert _max_table_diff(anova, entry["psych_aov_complete"]) < 1e-9
    pd.testing.assert_frame_equal(anova.table, icc_wide(complete, method="anova").table)

    reml_c = icc_wide(complete, method="reml")
    assert _max_table_diff(reml_c, entry["psych_default_complete"]) < 1e-4
    tight_c = entry["lme4_tight_complete"]
    # the closed form is REML's exact maximum; lme4, even tight, stops within 3e-6 relative
    # on these flat likelihoods (at a REML criterion no lower than the closed form's)
    for comp in ("target", "residual"):
        assert reml_c.variance_components[comp] == pytest.approx(tight_c[comp], rel=1e-5)
    assert reml_c.variance_components["rater"] == pytest.approx(
        tight_c["rater"], abs=1e-5 * tight_c["residual"]
    )

    with pytest.warns(LmmkitWarning, match=r"left out of the REML fit; every target is kept"):
        reml = icc_wide(x, method="reml")
    assert reml.n_targets == len(x) and reml.n_missing == int(np.isnan(x).sum())
    assert _max_table_diff(reml, entry["psych_default"]) < 1e-5
    tight = entry["lme4_tight"]
    for comp in ("target", "residual"):
        assert reml.variance_components[comp] == pytest.approx(tight[comp], rel=1e-5)
    assert reml.variance_components["rater"] == pytest.approx(
        tight["rater"], abs=1e-5 * tight["residual"]
    )


def test_negative_rater_variance_is_where_the_conventions_differ(icc_ref):
    """sat.act SATV/SATQ: the ANOVA rater variance is negative; REML puts it at 0 and pools
    the rater mean square into the residual, so ICC1 = ICC2 = ICC3 = the ANOVA ICC1, and
    ICC3 is 0.644450 (psych's default prints 0.644453 with lme4's tolerance) against the
    ANOVA's 0.644165."""
    x = _ratings(icc_ref["sat_act"])
    complete = x[~np.isnan(x).any(axis=1)]
    anova, reml = icc_wide(complete), icc_wide(complete, method="reml")
    assert anova.variance_components["rater"] < 0
    assert reml.variance_components["rater"] == 0.0
    for form in ("ICC1", "ICC2", "ICC3"):
        assert reml[form]["icc"] == pytest.approx(anova["ICC1"]["icc"], rel=1e-13)
    assert anova["ICC3"]["icc"] == pytest.approx(0.644165, abs=1e-6)
    assert reml["ICC3"]["icc"] == pytest.approx(0.644450, abs=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_reml_closed_form_is_the_reml_fit(seed):
    """The exact REML components of a complete table (mean squares pooled at the boundary)
    equal lmmkit's REML fit of rating ~ 1 + (1 | target) + (1 | rater), also when the
    target or the rater variance is at 0."""
    import lmmkit

    rng = np.random.default_rng(seed)
    n, k = [(12, 3), (8, 4), (15, 2), (10, 5)][seed]
    target_sd, rater_sd = [(1.0, 0.5), (0.0, 0.8), (1.0, 0.0), (0.0, 0.0)][seed]
    x = (
        rng.normal(0, target_sd, (n, 1))
        + rng.normal(0, rater_sd, (1, k))
        + rng.normal(0, 1, (n, k))
    )
    closed = icc_wide(x, method="reml").variance_components
    long = pd.DataFrame(
        {
            "y": x.ravel(),
            "t": np.repeat(np.arange(n), k).astype(str),
            "r": np.tile(np.arange(k), n).astype(str),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lmmkit.lmm("y ~ 1 + (1 | t) + (1 | r)", long, reml=True)
    vc = fit.varcorr.set_index("group")["vcov"]
    scale = closed["residual"]
    assert closed["target"] == pytest.approx(vc["t"], abs=1e-6 * scale)
    assert closed["rater"] == pytest.approx(vc["r"], abs=1e-6 * scale)
    assert closed["residual"] == pytest.approx(fit.sigma**2, rel=1e-6)


def test_icc_of_a_fitted_model_points_to_icc_model(shrout_fleiss):
    """#24 item 7: icc() is the rater-agreement ICC; a fitted model gets a clear error that
    names lmmkit.icc_model, which is exported and is performance::icc's ICC."""
    import lmmkit
    from lmmkit.datasets import load_dataset
    from lmmkit.inference import r2

    sleep = load_dataset("sleepstudy")
    model = lmmkit.LinearMixedModel("Reaction ~ Days + (1 | Subject)", sleep)
    result = model.fit()
    for obj in (model, result):
        with pytest.raises(DataError, match=r"use lmmkit\.icc_model\(model\)"):
            lmmkit.icc(obj)
    assert lmmkit.icc_model(model) == r2.icc(model)
    with pytest.raises(DataError, match="targets=..., raters=..., ratings="):
        lmmkit.icc(pd.DataFrame({"a": [1.0]}))


def test_missing_replicates_advice_is_accepted():
    """#24 item 7: the error advises missing='drop', and both functions accept it."""
    m = np.array([[9.0, 11.0], [19.0, 21.0], [5.0, np.nan]])
    for fn in (within_subject_cv, repeatability_coefficient):
        with pytest.raises(DataError, match=r"missing replicates.*pass missing='drop'"):
            fn(m)
        with pytest.warns(LmmkitWarning, match=r"1 subject\(s\) with missing replicates"):
            got = fn(m, missing="drop")
        assert got == pytest.approx(fn(m[:2]), rel=1e-15)

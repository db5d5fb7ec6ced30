"""Mathematical properties a correct fit must have (no reference values needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lmmkit

FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep(lme4_data) -> pd.DataFrame:
    return lme4_data("sleepstudy")


@pytest.fixture(scope="module")
def base(sleep):
    return lmmkit.lmm(FORMULA, sleep)


def test_row_order_invariance(sleep, base) -> None:
    shuffled = sleep.sample(frac=1.0, random_state=3).reset_index(drop=True)
    res = lmmkit.lmm(FORMULA, shuffled)
    assert res.objective == pytest.approx(base.objective, rel=1e-9)
    np.testing.assert_allclose(res.fixef, base.fixef, rtol=1e-5)
    np.testing.assert_allclose(res.varcorr["sdcor"], base.varcorr["sdcor"], rtol=1e-4)


def test_level_relabelling_invariance(sleep, base) -> None:
    relabelled = sleep.assign(
        Subject=sleep["Subject"].astype(str).map(lambda s: f"id{999 - int(s)}")
    )
    res = lmmkit.lmm(FORMULA, relabelled)
    assert res.objective == pytest.approx(base.objective, rel=1e-9)
    np.testing.assert_allclose(res.fixef_se, base.fixef_se, rtol=1e-4)
    # the same subject gets the same conditional mode under its new name
    old = base.ranef["Subject"].loc["308"].to_numpy()
    new = res.ranef["Subject"].loc["id691"].to_numpy()
    np.testing.assert_allclose(new, old, rtol=1e-4)


@pytest.mark.parametrize("a,b", [(2.5, 10.0), (-0.1, 3.0)])
def test_affine_response(sleep, base, a: float, b: float) -> None:
    res = lmmkit.lmm(FORMULA, sleep.assign(Reaction=a * sleep["Reaction"] + b))
    expected = base.fixef.to_numpy() * a
    expected[0] += b
    np.testing.assert_allclose(res.fixef, expected, rtol=1e-5)
    assert res.sigma == pytest.approx(abs(a) * base.sigma, rel=1e-5)
    sds = base.varcorr["var2"].isna()
    np.testing.assert_allclose(
        res.varcorr.loc[sds, "sdcor"], abs(a) * base.varcorr.loc[sds, "sdcor"], rtol=1e-4
    )
    corr = ~sds
    np.testing.assert_allclose(
        res.varcorr.loc[corr, "sdcor"], np.sign(a) ** 2 * base.varcorr.loc[corr, "sdcor"], rtol=1e-3
    )
    np.testing.assert_allclose(res.theta, base.theta, rtol=1e-3, atol=1e-5)


def test_refit_equals_fresh_fit(sleep) -> None:
    rng = np.random.default_rng(11)
    y2 = sleep["Reaction"].to_numpy() + rng.normal(scale=30, size=len(sleep))
    model = lmmkit.LinearMixedModel(FORMULA, sleep)
    model.fit()
    refitted = model.refit(y2)
    fresh = lmmkit.lmm(FORMULA, sleep.assign(Reaction=y2))
    # The same optimum: cross-products summed in another order steer BOBYQA along a slightly
    # different path, so parameters agree to the optimizer's tolerance.
    assert refitted.objective == pytest.approx(fresh.objective, rel=1e-12)
    np.testing.assert_allclose(refitted.fixef, fresh.fixef, rtol=1e-6)
    np.testing.assert_allclose(refitted.theta, fresh.theta, rtol=1e-4)


def test_refit_with_crossed_terms_equals_fresh_fit() -> None:
    rng = np.random.default_rng(2)
    n = 300
    df = pd.DataFrame(
        {"a": rng.integers(0, 15, n), "b": rng.integers(0, 9, n), "x": rng.normal(size=n)}
    )
    df["y"] = df.x + rng.normal(size=15)[df.a] + rng.normal(size=9)[df.b] + rng.normal(size=n)
    y2 = df.y.to_numpy()[::-1].copy()
    model = lmmkit.LinearMixedModel("y ~ x + (x | a) + (1 | b)", df)
    model.fit()
    assert model.refit(y2).objective == pytest.approx(
        lmmkit.lmm("y ~ x + (x | a) + (1 | b)", df.assign(y=y2)).objective, rel=1e-12
    )


def test_result_holds_no_data_and_pickles(base) -> None:
    import pickle

    clone = pickle.loads(pickle.dumps(base))
    np.testing.assert_array_equal(clone.fixef, base.fixef)
    assert not any(isinstance(v, pd.DataFrame) and len(v) == 180 for v in vars(base).values())


def test_fitted_plus_residuals_is_response(sleep, base) -> None:
    np.testing.assert_allclose(base.fitted + base.residuals, sleep["Reaction"], rtol=1e-12)


def test_predict_on_training_data_equals_fitted(sleep, base) -> None:
    np.testing.assert_allclose(base.predict(sleep), base.fitted, rtol=1e-10)


def test_constant_precision_weights_rescale_sigma(sleep) -> None:
    """Precision weights c (Var e_i = sigma^2 / c) describe the same marginal model with
    sigma scaled by sqrt(c): beta, the random-effect SDs and the likelihood are unchanged,
    and theta (relative to sigma) is divided by sqrt(c)."""
    base = lmmkit.lmm(FORMULA, sleep)
    w = lmmkit.lmm(FORMULA, sleep, weights=np.full(len(sleep), 4.0))
    np.testing.assert_allclose(w.fixef, base.fixef, rtol=1e-5)
    np.testing.assert_allclose(w.theta, base.theta / 2.0, rtol=1e-4)
    re_rows = base.varcorr["group"] != "Residual"
    np.testing.assert_allclose(
        w.varcorr.loc[re_rows, "sdcor"], base.varcorr.loc[re_rows, "sdcor"], rtol=1e-4
    )
    assert w.sigma == pytest.approx(base.sigma * 2.0, rel=1e-5)
    assert w.objective == pytest.approx(base.objective, rel=1e-9)


def test_deferred_tables_survive_pickle_and_match_eager_values(sleep) -> None:
    """fixef, vcov, varcorr and the residual quantiles are built on first access: after a
    pickle round trip of a fresh (unbuilt) result they equal the values computed directly
    from the result's own arrays, with the same index, columns and dtypes."""
    import copy
    import dataclasses
    import pickle

    from lmmkit.results.lmm_result import Deferred

    model = lmmkit.LinearMixedModel(FORMULA, sleep)
    res = model.fit()
    lazy = ("fixef", "vcov", "varcorr", "scaled_residual_quantiles")
    assert all(type(vars(res)[k]) is Deferred for k in lazy)  # nothing built yet
    clone = pickle.loads(pickle.dumps(res))
    assert all(type(vars(clone)[k]) is Deferred for k in lazy)

    # the built objects: lme4's labels and layout, and values consistent with each other
    names = ["(Intercept)", "Days"]
    fx = clone.fixef
    assert isinstance(fx, pd.Series) and fx.name == "fixef" and list(fx.index) == names
    assert fx.dtype == np.float64
    vc = clone.vcov
    assert isinstance(vc, pd.DataFrame) and list(vc.index) == names and list(vc.columns) == names
    np.testing.assert_allclose(vc.to_numpy(), vc.to_numpy().T, rtol=0, atol=0)
    np.testing.assert_array_equal(clone.fixef_se, np.sqrt(np.diag(vc.to_numpy())))
    table = clone.varcorr
    assert list(table.columns) == ["group", "var1", "var2", "vcov", "sdcor"]
    assert list(table["group"]) == ["Subject"] * 3 + ["Residual"]
    assert list(table["var1"].iloc[:3]) == names + ["(Intercept)"]
    assert table["vcov"].dtype == np.float64 and table["sdcor"].dtype == np.float64
    assert table["sdcor"].iloc[-1] == clone.sigma
    assert table["vcov"].iloc[-1] == pytest.approx(clone.sigma**2, rel=1e-15)
    np.testing.assert_allclose(table["sdcor"].iloc[:2], np.sqrt(table["vcov"].iloc[:2]), rtol=1e-15)
    q = np.quantile(clone.residuals / clone.sigma, [0, 0.25, 0.5, 0.75, 1.0])
    assert clone.scaled_residual_quantiles == tuple(float(v) for v in q)

    # eagerly computed from the model at the result's theta: the same numbers
    from lmmkit.linalg.blocked import factor
    from lmmkit.linalg.solve import fixed_effects

    beta, unscaled = fixed_effects(model.cp, factor(model.cp, np.asarray(res.theta), full=True))
    np.testing.assert_array_equal(fx.to_numpy(), beta)
    np.testing.assert_allclose(vc.to_numpy(), clone.sigma**2 * unscaled, rtol=1e-14)

    # the original builds the same objects; a built result pickles and copies as built
    pd.testing.assert_series_equal(res.fixef, clone.fixef)
    pd.testing.assert_frame_equal(res.vcov, clone.vcov)
    pd.testing.assert_frame_equal(res.varcorr, clone.varcorr)
    assert res.scaled_residual_quantiles == clone.scaled_residual_quantiles
    again = pickle.loads(pickle.dumps(res))
    assert all(not isinstance(vars(again)[k], Deferred) for k in lazy)
    pd.testing.assert_frame_equal(again.varcorr, res.varcorr)
    pd.testing.assert_frame_equal(copy.deepcopy(clone).vcov, res.vcov)
    # still frozen, and the dataclass fields are unchanged
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.fixef = res.fixef  # type: ignore[misc]
    assert [f.name for f in dataclasses.fields(res)][5:7] == ["fixef", "vcov"]


def test_no_fixed_effects_reml_equals_ml(sleep) -> None:
    """With no fixed-effect columns (p = 0) REML and ML are the same criterion."""
    reml = lmmkit.lmm("Reaction ~ 0 + (1 | Subject)", sleep)
    ml = lmmkit.lmm("Reaction ~ 0 + (1 | Subject)", sleep, reml=False)
    assert reml.fixef.empty and reml.vcov.shape == (0, 0)
    assert reml.objective == pytest.approx(ml.objective, rel=1e-10)
    np.testing.assert_allclose(reml.theta, ml.theta, rtol=1e-5)

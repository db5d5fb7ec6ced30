"""glmm(): bad input, separation, prediction, residual diagnostics and result conventions."""

from __future__ import annotations

import json
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lmmkit.errors import DataError, FormulaError, ModelError
from lmmkit.glmm._pls import PLS
from lmmkit.glmm.family import make_family
from lmmkit.glmm.model import GeneralizedLinearMixedModel, SeparationWarning, glmm
from tests.conftest import REFERENCE

GLMM_REF = REFERENCE / "glmm"


@pytest.fixture(scope="module")
def counts() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n, G = 600, 30
    g = rng.integers(0, G, n)
    x = rng.normal(size=n)
    expo = rng.uniform(0.5, 2.0, n)
    re = rng.normal(0, 0.5, G)
    y = rng.poisson(expo * np.exp(0.3 + 0.4 * x + re[g]))
    trials = rng.integers(1, 8, n)
    s = rng.binomial(trials, 1 / (1 + np.exp(-(-0.2 + 0.5 * x + re[g]))))
    return pd.DataFrame(
        {
            "y": y,
            "x": x,
            "g": [f"g{i:02d}" for i in g],
            "expo": expo,
            "logexpo": np.log(expo),
            "trials": trials,
            "s": s,
            "f": trials - s,
            "b": (s > trials / 2).astype(int),
        }
    )


@pytest.fixture(scope="module")
def pois(counts: pd.DataFrame):
    return glmm("y ~ x + (1 | g)", counts, family="poisson", offset="logexpo")


# ----------------------------------------------------------------------------- bad input
def test_poisson_rejects_negative_and_fractional_counts(counts: pd.DataFrame) -> None:
    bad = counts.copy()
    bad.loc[3, "y"] = -1
    with pytest.raises(DataError, match=r"non-negative whole numbers.*-1\.0.*row 3"):
        glmm("y ~ x + (1 | g)", bad, family="poisson")
    bad = counts.copy()
    bad["y"] = bad["y"].astype(float)
    bad.loc[5, "y"] = 2.5
    with pytest.raises(DataError, match=r"2\.5.*row 5"):
        glmm("y ~ x + (1 | g)", bad, family="poisson")


def test_binomial_successes_larger_than_trials(counts: pd.DataFrame) -> None:
    bad = counts.copy()
    bad.loc[4, "s"] = bad.loc[4, "trials"] + 2
    with pytest.raises(DataError, match=r"exceed the number of trials.*row 4"):
        glmm("s ~ x + (1 | g)", bad, family="binomial", trials="trials")
    with pytest.raises(DataError, match="negative"):
        glmm("cbind(s, trials - s) ~ x + (1 | g)", bad, family="binomial")


def test_bernoulli_response_outside_0_1(counts: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"must be 0 or 1.*cbind"):
        glmm("y ~ x + (1 | g)", counts, family="binomial")
    bad = counts.assign(
        lab=np.where(counts["b"] == 1, "yes", np.where(counts.x > 1, "maybe", "no"))
    )
    with pytest.raises(DataError, match="3 distinct"):
        glmm("lab ~ x + (1 | g)", bad, family="binomial")


def test_gamma_rejects_non_positive(counts: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"must be positive.*row"):
        glmm("y ~ x + (1 | g)", counts, family="gamma(log)")


def test_exact_pirls_mode_is_close_to_glmer_mode(counts: pd.DataFrame, pois) -> None:
    ex = glmm(
        "y ~ x + (1 | g)", counts, family="poisson", offset="logexpo", control={"pirls": "exact"}
    )
    assert abs(ex.loglik - pois.loglik) < 1e-6 * abs(pois.loglik)
    assert ex.loglik >= pois.loglik - 1e-9 * abs(pois.loglik)
    np.testing.assert_allclose(ex.fixef, pois.fixef, rtol=1e-3)


def test_other_bad_arguments(counts: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="not supported"):
        glmm("y ~ x + (1 | g)", counts, family="gaussian")
    with pytest.raises(DataError, match="link 'probit' is not available"):
        glmm("y ~ x + (1 | g)", counts, family="poisson(probit)")
    with pytest.raises(FormulaError, match="binomial response"):
        glmm("cbind(s, f) ~ x + (1 | g)", counts, family="poisson")
    with pytest.raises(DataError, match="nagq"):
        glmm("y ~ x + (1 | g)", counts, family="poisson", nagq=30)
    two = counts.assign(h=np.arange(len(counts)) % 5)
    with pytest.raises(ModelError, match="single scalar random-effects term"):
        glmm("y ~ x + (1 | g) + (1 | h)", two, family="poisson", nagq=5)
    with pytest.raises(DataError, match="Unknown control"):
        glmm("y ~ x + (1 | g)", counts, family="poisson", control={"bogus": 1})


# ----------------------------------------------------------------------------- separation
def test_all_zero_group_is_named(counts: pd.DataFrame) -> None:
    d = counts.copy()
    d.loc[d["g"].isin(["g03", "g11"]), "y"] = 0
    with pytest.warns(SeparationWarning, match=r"random term 'g'.*all-zero.*g03, g11"):
        res = glmm("y ~ x + (1 | g)", d, family="poisson")
    assert np.all(np.isfinite(res.fixef)) and np.all(np.isfinite(res.fixef_se))
    assert res.ranef["g"].loc["g03", "(Intercept)"] < 0
    assert any("all-zero" in w for w in res.warnings)


def test_complete_separation_warns_and_stays_finite(counts: pd.DataFrame) -> None:
    d = counts.copy()
    d["grp"] = np.where(d["x"] > 0.8, "hi", "lo")
    d.loc[d["grp"] == "hi", "b"] = 1
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = glmm("b ~ grp + (1 | g)", d, family="binomial")
    msgs = [str(w.message) for w in rec if issubclass(w.category, SeparationWarning)]
    assert any("complete separation" in m and "grplo" in m for m in msgs), msgs
    assert np.all(np.isfinite(res.fixef)) and np.isfinite(res.loglik)
    assert any("separation" in w for w in res.warnings)


# ----------------------------------------------------------------------------- equivalences
def test_offset_column_equals_formula_offset(counts: pd.DataFrame, pois) -> None:
    res2 = glmm("y ~ x + offset(log(expo)) + (1 | g)", counts, family="poisson")
    assert abs(pois.loglik - res2.loglik) < 1e-8 * abs(pois.loglik)
    np.testing.assert_allclose(pois.fixef, res2.fixef, rtol=1e-6)
    np.testing.assert_allclose(res2.predict(counts), pois.linear_predictor, rtol=1e-6)
    res3 = glmm("y ~ x + (1 | g)", counts, family="poisson", offset=counts["logexpo"].to_numpy())
    with pytest.raises(DataError, match="offset given as an array"):
        res3.predict(counts)
    np.testing.assert_allclose(
        res3.predict(counts, offset="logexpo"), pois.linear_predictor, rtol=1e-6
    )


def test_trials_equals_cbind(counts: pd.DataFrame) -> None:
    a = glmm("cbind(s, f) ~ x + (1 | g)", counts, family="binomial")
    b = glmm("s ~ x + (1 | g)", counts, family="binomial", trials="trials")
    assert abs(a.loglik - b.loglik) < 1e-9 * abs(a.loglik)
    np.testing.assert_allclose(a.fixef, b.fixef, rtol=1e-8)


def test_engine_schur_and_dense_solvers_agree(counts: pd.DataFrame) -> None:
    d = counts.assign(h=[f"h{i % 7}" for i in range(len(counts))])
    fits = []
    for mode in ("schur", "dense", "engine"):
        m = GeneralizedLinearMixedModel("cbind(s, f) ~ x + (1 | g) + (1 | h)", d, family="binomial")
        m.objective.pls = PLS(m.terms, m.X, mode=mode)
        assert m.objective.pls.mode == mode
        fits.append(m.fit())
    a = fits[0]
    for b in fits[1:]:
        assert abs(a.loglik - b.loglik) < 1e-7 * abs(a.loglik)
        np.testing.assert_allclose(a.fixef, b.fixef, rtol=1e-5)
        np.testing.assert_allclose(a.fixef_se, b.fixef_se, rtol=1e-4)
        for ta, tb in zip(a.terms, b.terms):
            np.testing.assert_allclose(ta.modes, tb.modes, rtol=1e-4, atol=1e-7)
            np.testing.assert_allclose(ta.condvar, tb.condvar, rtol=1e-4)


def test_family_aic_matches_fast_constants(counts: pd.DataFrame) -> None:
    m = GeneralizedLinearMixedModel("cbind(s, f) ~ x + (1 | g)", counts, family="binomial")
    o = m.objective
    eta = np.linspace(-2, 2, m.n)
    mu = m.family.link.linkinv(eta)
    fast = o._aic_const - 2 * o._ll(eta)
    assert abs(fast - o.aic(mu)) < 1e-8 * abs(fast)
    assert abs(o._sat - 2 * o._ll(eta) - o.devres_sum(mu)) < 1e-8 * o.devres_sum(mu)


@pytest.mark.parametrize("link", ["probit", "cloglog"])
def test_links_run(counts: pd.DataFrame, link: str) -> None:
    res = glmm("cbind(s, f) ~ x + (1 | g)", counts, family=f"binomial({link})")
    assert res.link == link and np.isfinite(res.loglik)
    assert res.fixef["x"] > 0


# ----------------------------------------------------------------------------- results
def test_prediction_scales_and_new_levels(counts: pd.DataFrame, pois) -> None:
    np.testing.assert_allclose(pois.predict(counts), pois.linear_predictor, rtol=1e-10)
    np.testing.assert_allclose(
        pois.predict(counts, type="response"), np.exp(pois.linear_predictor), rtol=1e-10
    )
    new = pd.DataFrame({"x": [0.0, 1.0], "g": ["g00", "zz"], "logexpo": [0.0, 0.0]})
    with pytest.raises(DataError, match="allow_new_levels"):
        pois.predict(new)
    p = pois.predict(new, allow_new_levels=True, type="response")
    b0, b1 = pois.fixef
    assert p[1] == pytest.approx(np.exp(b0 + b1))
    assert p[0] == pytest.approx(np.exp(b0 + pois.ranef["g"].loc["g00", "(Intercept)"]))
    with pytest.raises(DataError, match="offset column"):
        pois.predict(new.drop(columns="logexpo"), allow_new_levels=True)


def test_wald_table_and_information_criteria(pois) -> None:
    tab = pois.coef_table()
    z = tab["Estimate"] / tab["Std. Error"]
    np.testing.assert_allclose(tab["z value"], z)
    np.testing.assert_allclose(tab["Pr(>|z|)"], 2 * stats.norm.sf(np.abs(z)))
    assert pois.npar == 3
    assert pois.aic == pytest.approx(-2 * pois.loglik + 6)
    assert pois.bic == pytest.approx(-2 * pois.loglik + 3 * np.log(pois.nobs))
    cv = pois.ranef_condvar["g"]
    assert cv.shape == (30, 1, 1) and np.all(cv > 0)


def test_overdispersion_ratio(pois) -> None:
    od = pois.overdispersion()
    pr = pois.residuals("pearson")
    assert od["chisq"] == pytest.approx(float(np.sum(pr**2)))
    assert od["ratio"] == pytest.approx(od["chisq"] / (pois.nobs - pois.npar))
    assert 0.7 < od["ratio"] < 1.3  # simulated from the model


def test_quantile_residuals_seeded_and_uniform(counts: pd.DataFrame, pois) -> None:
    r1 = pois.quantile_residuals(nsim=200, seed=3)
    r2 = pois.quantile_residuals(nsim=200, seed=3)
    np.testing.assert_array_equal(r1, r2)
    assert np.all((r1 >= 0) & (r1 <= 1))
    assert stats.kstest(r1, "uniform").pvalue > 1e-3
    # a misspecified model (overdispersed counts fitted as Poisson) is flagged
    rng = np.random.default_rng(1)
    od = counts.assign(y=rng.negative_binomial(1, 1 / (1 + np.exp(1.5)), len(counts)))
    bad = glmm("y ~ x + (1 | g)", od, family="poisson")
    assert bad.overdispersion()["ratio"] > 2
    assert stats.kstest(bad.quantile_residuals(nsim=200, seed=3), "uniform").pvalue < 1e-3


def test_bernoulli_nagq_and_serialization(counts: pd.DataFrame) -> None:
    r1 = glmm("b ~ x + (1 | g)", counts, family="binomial")
    r5 = glmm("b ~ x + (1 | g)", counts, family="binomial", nagq=5)
    r0 = glmm("b ~ x + (1 | g)", counts, family="binomial", nagq=0)
    assert r5.nagq == 5 and r0.vcov_method == "RX"
    np.testing.assert_allclose(r1.fixef, r5.fixef, rtol=0.05)
    np.testing.assert_allclose(r1.fixef, r0.fixef, rtol=0.1)
    d = json.loads(r1.to_json())
    assert d["family"] == "binomial" and d["loglik"] == r1.loglik
    assert "Laplace" in r1.summary() and "Quadrature" in r5.summary()
    again = pickle.loads(pickle.dumps(r1))
    assert again.loglik == r1.loglik
    assert set(make_family("binomial").link.name for _ in range(1)) == {"logit"}


def test_theta_ml_recovers_the_size() -> None:
    from lmmkit.glmm.nb import theta_ml

    rng = np.random.default_rng(3)
    mu = np.exp(rng.normal(1.0, 0.5, 20_000))
    y = rng.negative_binomial(3.0, 3.0 / (3.0 + mu)).astype(float)
    assert theta_ml(y, mu) == pytest.approx(3.0, rel=0.1)

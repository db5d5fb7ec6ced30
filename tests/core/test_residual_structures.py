"""nlme residual structures (varIdent, corAR1, corCompSymm) in lme and gls fits.

References: tests/reference/nlme/nlme_*.json, made by tests/reference/nlme/make_reference.R
(nlme 3.1 on R 4.2, tight tolerances) on nlme's Orthodont and Ovary data exported next to it.
Tolerances: log-likelihood 1e-6 relative, fixed effects 1e-4 absolute, residual parameters
(phi, SD ratios) 1e-3 absolute; sigma, the random-intercept SD and (REML) standard errors
1e-4 relative.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest

import lmmkit
from lmmkit.errors import DataError, ModelError
from lmmkit.models.residual_structures import (
    CorAR1,
    CorCompSymm,
    GLSResult,
    ResidualLMMResult,
    VarIdent,
    gls_fit,
    lmm_residual,
)
from tests.conftest import REFERENCE

NLME = REFERENCE / "nlme"


def _orthodont() -> pd.DataFrame:
    df = pd.read_csv(NLME / "orthodont.csv")
    df["Sex"] = pd.Categorical(df["Sex"], ["Male", "Female"])  # nlme's level order
    return df


def _ovary() -> pd.DataFrame:
    return pd.read_csv(NLME / "ovary.csv")


CASES = {
    "ortho_ar1_reml": (_orthodont, True, None, CorAR1(group="Subject")),
    "ortho_ar1_age_ml": (_orthodont, False, None, CorAR1(group="Subject", time="age")),
    "ortho_varident_reml": (_orthodont, True, VarIdent("Sex"), None),
    "ortho_ar1_varident_ml": (_orthodont, False, VarIdent("Sex"), CorAR1(group="Subject")),
    "ovary_ar1_reml": (_ovary, True, None, CorAR1(group="Mare")),
    "gls_ortho_cs_reml": (_orthodont, True, None, CorCompSymm(group="Subject")),
    "gls_ortho_ar1_varident_ml": (
        _orthodont,
        False,
        VarIdent("Sex"),
        CorAR1(group="Subject"),
    ),
    "gls_ovary_ar1_reml": (_ovary, True, None, CorAR1(group="Mare")),
}

_FITS: dict[str, object] = {}


def _fit(name: str):
    if name not in _FITS:
        load, reml, variance, correlation = CASES[name]
        ref = json.loads((NLME / f"nlme_{name}.json").read_text())
        fn = gls_fit if ref["fit"] == "gls" else lmm_residual
        _FITS[name] = fn(
            ref["formula"], load(), reml=reml, variance=variance, correlation=correlation
        )
    return _FITS[name]


@pytest.mark.parametrize("name", sorted(CASES))
def test_agrees_with_nlme(name: str) -> None:
    ref = json.loads((NLME / f"nlme_{name}.json").read_text())
    res = _fit(name)
    assert isinstance(res, GLSResult if ref["fit"] == "gls" else ResidualLMMResult)
    assert res.reml == (ref["method"] == "REML")
    assert res.nobs == ref["nobs"]
    assert res.optimization.converged
    assert abs(res.loglik - ref["loglik"]) <= 1e-6 * abs(ref["loglik"])
    assert list(res.fixef.index) == ref["fixef_names"]
    np.testing.assert_allclose(res.fixef.to_numpy(), ref["fixef"], rtol=0, atol=1e-4)
    assert res.npar == ref["npar"]
    assert res.aic == pytest.approx(ref["AIC"], rel=1e-6)
    # nlme's ML standard errors use sigma^2 n / (n - p); its REML BIC uses log(n - p)
    n, p = res.nobs, len(res.fixef)
    se_scale = 1.0 if res.reml else math.sqrt(n / (n - p))
    np.testing.assert_allclose(res.fixef_se.to_numpy() * se_scale, ref["fixef_se"], rtol=1e-4)
    nbic = n - p if res.reml else n
    assert res.objective + res.npar * math.log(nbic) == pytest.approx(ref["BIC"], rel=1e-6)

    sigma_ref_scale = 1.0
    if ref["ratios"] is not None:
        # nlme names the non-reference strata; ratios relative to its reference stratum
        ours = res.variance_ratios
        (stratum, ratio), *more = ref["ratios"].items()
        assert not more
        nlme_ref = next(lv for lv in ours.index if lv != stratum)
        assert ours.iloc[0] == 1.0
        assert ours[stratum] / ours[nlme_ref] == pytest.approx(ratio, abs=1e-3)
        sigma_ref_scale = ours[nlme_ref]
    else:
        assert res.variance_ratios is None
    assert res.sigma * sigma_ref_scale == pytest.approx(ref["sigma"], rel=1e-4)
    if ref["phi"] is None:
        assert res.correlation_value is None
    elif name == "ortho_ar1_age_ml":
        # lags are all even (ages 8, 10, 12, 14): only phi^2 is identified
        assert abs(res.correlation_value) == pytest.approx(abs(ref["phi"]), abs=1e-3)
    else:
        assert res.correlation_value == pytest.approx(ref["phi"], abs=1e-3)
    if "re_sd" in ref:
        assert res.varcorr["sdcor"].iloc[0] == pytest.approx(ref["re_sd"], rel=1e-4)
        assert res.varcorr["group"].iloc[-1] == "Residual"


# ------------------------------------------------------------------- properties
FORMULA = "distance ~ age + Sex + (1 | Subject)"


@pytest.mark.parametrize(
    "variance, correlation",
    [
        (None, None),
        (VarIdent("Sex", fixed=True), None),
        (None, CorAR1(group="Subject", value=0.0, fixed=True)),
        (None, CorAR1(group="Subject", time="age", fixed=True)),
        (VarIdent("Sex", fixed=True), CorCompSymm(group="Subject", fixed=True)),
    ],
)
def test_identity_structure_equals_lmm_exactly(variance, correlation) -> None:
    df = _orthodont()
    plain = lmmkit.lmm(FORMULA, df)
    res = lmm_residual(FORMULA, df, variance=variance, correlation=correlation)
    assert res.objective == plain.objective
    assert res.loglik == plain.loglik
    np.testing.assert_array_equal(res.theta, plain.theta)
    np.testing.assert_array_equal(res.fixef.to_numpy(), plain.fixef.to_numpy())
    np.testing.assert_array_equal(res.vcov.to_numpy(), plain.vcov.to_numpy())
    assert res.sigma == plain.sigma
    assert res.npar == plain.npar
    assert res.aic == plain.aic
    pd.testing.assert_frame_equal(res.varcorr, plain.varcorr)
    np.testing.assert_array_equal(res.fitted, plain.fitted)


def test_fixed_ratios_are_held() -> None:
    df = _orthodont()
    res = lmm_residual(FORMULA, df, variance=VarIdent("Sex", value={"Female": 0.5}, fixed=True))
    assert res.variance_ratios.to_dict() == {"Male": 1.0, "Female": 0.5}
    assert res.residual_parameters == ()
    assert res.npar == lmmkit.lmm(FORMULA, df).npar


def _simulated(seed: int = 3) -> pd.DataFrame:
    """Unbalanced series with gaps, shuffled rows, two strata with different SDs."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(12):
        times = np.sort(rng.choice(np.arange(10), size=rng.integers(2, 7), replace=False))
        u = rng.normal(scale=1.0)
        e = 0.0
        for k, t in enumerate(times):
            e = rng.normal() if k == 0 else 0.5 * e + rng.normal()
            s = "b" if g % 3 == 0 else "a"
            rows.append((f"g{g}", t, s, 1.0 + 0.3 * t + u + (2.0 if s == "b" else 1.0) * e))
    df = pd.DataFrame(rows, columns=["g", "t", "s", "y"])
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def _dense_loglik(res, df: pd.DataFrame, reml: bool) -> float:
    """(RE)ML log-likelihood from the explicit marginal covariance at the estimates."""
    n = len(df)
    X = np.column_stack([np.ones(n), df["t"].to_numpy(float)])
    y = df["y"].to_numpy(float)
    phi, ratios = res.correlation_value, res.variance_ratios
    sd = ratios[df["s"]].to_numpy() if ratios is not None else np.ones(n)
    same = df["g"].to_numpy()[:, None] == df["g"].to_numpy()[None, :]
    t = df["t"].to_numpy(float)
    C = np.where(same, phi ** np.abs(t[:, None] - t[None, :]), 0.0)
    V = res.sigma**2 * sd[:, None] * C * sd[None, :]
    if isinstance(res, ResidualLMMResult):
        V = V + res.varcorr["vcov"].iloc[0] * same
    Vi = np.linalg.inv(V)
    beta = np.linalg.solve(X.T @ Vi @ X, X.T @ Vi @ y)
    r = y - X @ beta
    ll = -0.5 * (n * math.log(2 * math.pi) + np.linalg.slogdet(V)[1] + r @ Vi @ r)
    if reml:
        p = X.shape[1]
        ll += 0.5 * p * math.log(2 * math.pi) - 0.5 * np.linalg.slogdet(X.T @ Vi @ X)[1]
    return ll, beta


@pytest.mark.parametrize("reml", [True, False])
def test_whitening_matches_dense_likelihood(reml: bool) -> None:
    """Gaps in time, shuffled rows, unequal group sizes: the fitted log-likelihood equals the
    explicit N(X beta, V) one, and the fixed effects are the GLS estimate under V."""
    df = _simulated()
    cor = CorAR1(group="g", time="t")
    for res in (
        lmm_residual("y ~ t + (1 | g)", df, reml=reml, variance=VarIdent("s"), correlation=cor),
        gls_fit("y ~ t", df, reml=reml, variance=VarIdent("s"), correlation=cor),
    ):
        ll, beta = _dense_loglik(res, df, reml)
        assert res.loglik == pytest.approx(ll, rel=1e-10)
        np.testing.assert_allclose(res.fixef.to_numpy(), beta, rtol=1e-8)
        # permuting the rows changes nothing
        again = (lmm_residual if isinstance(res, ResidualLMMResult) else gls_fit)(
            res.formula,
            df.iloc[::-1].reset_index(drop=True),
            reml=reml,
            variance=VarIdent("s"),
            correlation=cor,
        )
        assert again.loglik == pytest.approx(res.loglik, rel=1e-9)


def test_gls_without_structure_is_ols() -> None:
    df = _orthodont()
    res = gls_fit("distance ~ age + Sex", df, reml=False)
    X = np.column_stack([np.ones(len(df)), df["age"], (df["Sex"] == "Female").astype(float)])
    beta, *_ = np.linalg.lstsq(X, df["distance"].to_numpy(), rcond=None)
    np.testing.assert_allclose(res.fixef.to_numpy(), beta, rtol=1e-10)
    assert res.npar == 4
    assert "Generalized least squares" in str(res)


# ------------------------------------------------------------------- bad input
def test_duplicated_time_names_group_and_time() -> None:
    df = _orthodont()
    df.loc[5, "age"] = 8.0  # second row of subject M02 now repeats age 8
    subject = df.loc[5, "Subject"]
    with pytest.raises(DataError, match=rf"age.*= 8 occurs more than once in group '{subject}'"):
        lmm_residual(FORMULA, df, correlation=CorAR1(group="Subject", time="age"))


def test_non_integer_time() -> None:
    df = _orthodont()
    df["age"] = df["age"] + 0.5 * (df.index % 2)
    with pytest.raises(DataError, match="non-integer"):
        gls_fit("distance ~ age", df, correlation=CorAR1(group="Subject", time="age"))


def test_unknown_strata_column_suggests() -> None:
    with pytest.raises(DataError, match=r"'sex'.*Did you mean 'Sex'"):
        lmm_residual(FORMULA, _orthodont(), variance=VarIdent("sex"))
    with pytest.raises(DataError, match=r"'Subjekt'.*Did you mean 'Subject'"):
        gls_fit("distance ~ age", _orthodont(), correlation=CorCompSymm(group="Subjekt"))


def test_correlation_group_must_nest_in_random_terms() -> None:
    df = _orthodont()
    with pytest.raises(ModelError, match="changes level within a correlation group"):
        lmm_residual(FORMULA, df, correlation=CorAR1(group="Sex"))


def test_bad_specs() -> None:
    df = _orthodont()
    with pytest.raises(ModelError, match="VarIdent"):
        lmm_residual(FORMULA, df, variance="Sex")
    with pytest.raises(DataError, match=r"\(-1, 1\)"):
        lmm_residual(FORMULA, df, correlation=CorAR1(group="Subject", value=1.5))
    with pytest.raises(ModelError, match="without random-effects"):
        gls_fit(FORMULA, df)


def test_missing_structure_values_are_dropped() -> None:
    df = _orthodont()
    df["Sex"] = df["Sex"].astype(object)
    df.loc[[0, 1], "Sex"] = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = lmm_residual("distance ~ age + (1 | Subject)", df, variance=VarIdent("Sex"))
    assert res.nobs == len(df) - 2
    assert res.n_dropped == 2

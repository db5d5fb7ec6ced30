"""Random-effects covariance structures: cs, homcs, ar1, diag (and us) against glmmTMB and nlme,
against a dense GLS brute force, and their bad input.

References: tests/reference/recov/recov_reference.json, made by make_reference.R next to it
(glmmTMB 1.1.5 for cs / ar1 / diag, nlme 3.1 pdCompSymm for homcs; REML and ML).
Tolerances: log-likelihood 1e-6 relative, and ours never lower than the reference's by more
than that (a reference short of the optimum can only make ours higher); fixed effects, GLS
standard errors, residual SD, per-column SDs and the correlation 1e-4 relative.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.linalg import block_diag

import lmmkit
from lmmkit.errors import FormulaError, ModelError
from lmmkit.linalg.blocked import TermBlock, build_cross_products, factor
from lmmkit.linalg.covstruct import CovStructure, ar1_factor, cs_factor
from lmmkit.objective.profiled import profiled_deviance

REF = Path(__file__).resolve().parents[1] / "reference" / "recov"
CASES = json.loads((REF / "recov_reference.json").read_text())["cases"]
LL_RTOL = 1e-6
PAR_RTOL = 1e-4


def _data(name: str) -> pd.DataFrame:
    if name == "oats":
        return pd.read_csv(REF / "oats.csv")
    if name == "ortho":
        df = pd.read_csv(REF / "orthodont.csv")
        df["Sex"] = pd.Categorical(df["Sex"], ["Male", "Female"])  # R's level order
        df["fage"] = pd.Categorical(df["age"])
        return df
    df = pd.read_csv(REF / "sleepstudy.csv")
    df["fday"] = pd.Categorical(df["Days"])
    return df


def _fit(formula: str, data: pd.DataFrame, reml: bool) -> lmmkit.LMMResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular-fit notes are not under test here
        return lmmkit.lmm(formula, data, reml=reml)


def _rel(a, b) -> float:
    a, b = np.atleast_1d(np.asarray(a, float)), np.atleast_1d(np.asarray(b, float))
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


# ----------------------------------------------------------------- references
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_against_reference(case: dict) -> None:
    res = _fit(case["formula"], _data(case["name"].split("_")[0]), case["reml"])
    assert res.nobs == case["nobs"]
    ll = case["loglik"]
    assert res.loglik >= ll - LL_RTOL * abs(ll)  # never worse than the reference
    assert _rel(res.loglik, ll) < LL_RTOL
    assert list(res.fixef.index) == case["fixef_names"]
    assert _rel(res.fixef, case["fixef"]) < PAR_RTOL
    assert _rel(res.fixef_se, case["fixef_se_gls"]) < PAR_RTOL
    assert _rel(res.sigma, case["sigma"]) < PAR_RTOL
    vc = res.varcorr
    for term, ref in zip(res.terms, case["terms"]):
        assert list(term.columns) == ref["columns"]
        rows = vc[(vc["group"] == term.name) & vc["var2"].isna()]
        assert _rel(rows["sdcor"], ref["sd"]) < PAR_RTOL
        corr = vc[(vc["group"] == term.name) & vc["var2"].notna()]["sdcor"].to_numpy()
        if ref["structure"] == "diag":
            assert corr.size == 0  # no correlation rows: zero by construction
        elif ref["structure"] == "ar1":
            p = len(term.columns)
            rho = ref["corr"]
            want = [rho ** (j - i) for i in range(p) for j in range(i + 1, p)]
            assert _rel(corr, want) < PAR_RTOL
        elif ref["structure"] in ("cs", "homcs"):
            assert _rel(corr, np.full(corr.size, ref["corr"])) < PAR_RTOL
    if "loglik_lme4_nested" in case:  # nlme's REML constant is lme4's here
        assert _rel(res.loglik, case["loglik_lme4_nested"]) < LL_RTOL


# ----------------------------------------------------------------- closed-form factors
@pytest.mark.parametrize("p", [2, 3, 5])
def test_closed_form_factors(p: int) -> None:
    for rho in [-1 / (p - 1), -0.3 / (p - 1), 0.0, 0.4, 0.95, 1.0]:
        C = cs_factor(rho, p)
        want = (1 - rho) * np.eye(p) + rho * np.ones((p, p))
        np.testing.assert_allclose(C @ C.T, want, atol=1e-12)
        assert np.allclose(C, np.tril(C))
    for rho in [-1.0, -0.7, 0.0, 0.3, 0.99, 1.0]:
        A = ar1_factor(rho, p)
        i, j = np.indices((p, p))
        np.testing.assert_allclose(A @ A.T, rho ** np.abs(i - j).astype(float), atol=1e-12)
        assert np.allclose(A, np.tril(A))


def test_correlation_transform_round_trip() -> None:
    for kind, p in [("ar1", 4), ("cs", 3), ("homcs", 2), ("homcs", 5)]:
        s = CovStructure(kind, p)
        lo, hi = s.rho_bounds
        for rho in np.linspace(lo, hi, 7)[1:-1]:
            assert math.isclose(s.rho(s.kappa(rho)), rho, abs_tol=1e-12)
        assert s.rho(s.start[-1]) == pytest.approx(0.0, abs=1e-15)
        np.testing.assert_allclose(s.T(s.start), np.eye(p), atol=1e-15)  # lme4's start


# ----------------------------------------------------------------- dense GLS brute force
def _sim(seed: int = 3, ng: int = 9, nt: int = 4, rep: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [(g, t) for g in range(ng) for t in range(nt) for _ in range(rep)]
    df = pd.DataFrame(rows, columns=["g", "t"])
    df = df.sample(frac=0.85, random_state=seed).reset_index(drop=True)  # unbalanced
    df["x"] = rng.normal(size=len(df))
    df["h"] = rng.integers(0, 5, len(df))
    b = rng.normal(size=(ng, nt)).cumsum(axis=1)
    df["y"] = 1 + 0.5 * df.x + b[df.g, df.t] + rng.normal(size=5)[df.h] + rng.normal(size=len(df))
    df["time"] = pd.Categorical(df.t)
    df["g"] = df.g.astype(str)
    return df


def _sigma_rel(kind: str, par: np.ndarray, p: int) -> np.ndarray:
    """Sigma_term / sigma^2 straight from the structure's definition (no factor)."""
    i, j = np.indices((p, p))
    if kind == "diag":
        return np.diag(par**2)
    if kind == "ar1":
        rho = par[1] / math.sqrt(1 + par[1] ** 2)
        return par[0] ** 2 * rho ** np.abs(i - j).astype(float)
    a = 1 / (p - 1)
    rho = (1 + a) / (1 + math.exp(-par[-1])) - a
    R = np.where(i == j, 1.0, rho)
    tau = np.full(p, par[0]) if kind == "homcs" else par[:p]
    return tau[:, None] * R * tau[None, :]


def _gls_deviance(
    model: lmmkit.LinearMixedModel, par: np.ndarray, reml: bool, diag_equal: bool = False
) -> float:
    """-2 (RE)ML log-likelihood with sigma and beta profiled out, from V = Z G Z' + I.
    ``diag_equal``: every structured term is tau^2 I with tau its first parameter."""
    d = model.design
    n, p = d.X.shape
    Zs, Gs, at = [], [], 0
    for t in d.terms:
        Z = np.zeros((n, t.nlevels * t.p))
        for c in range(t.p):
            Z[np.arange(n), t.index * t.p + c] = t.Zx[:, c]
        k = t.ntheta
        seg = par[at : at + k]
        at += k
        if t.structure is None:  # lme4's theta
            T = np.zeros((t.p, t.p))
            cols, rows = np.triu_indices(t.p)
            T[rows, cols] = seg
            S = T @ T.T
        elif diag_equal:
            S = seg[0] ** 2 * np.eye(t.p)
        else:
            S = _sigma_rel(t.structure.kind, seg, t.p)
        Zs.append(Z)
        Gs.append(np.kron(np.eye(t.nlevels), S))
    Z, G = np.hstack(Zs), block_diag(*Gs)
    V = Z @ G @ Z.T + np.eye(n)
    Vi = np.linalg.inv(V)
    XtViX = d.X.T @ Vi @ d.X
    beta = np.linalg.solve(XtViX, d.X.T @ Vi @ d.y)
    r = d.y - d.X @ beta
    q = float(r @ Vi @ r)
    ld = np.linalg.slogdet(V)[1]
    if reml:
        return (
            ld + np.linalg.slogdet(XtViX)[1] + (n - p) * (1 + math.log(2 * math.pi * q / (n - p)))
        )
    return ld + n * (1 + math.log(2 * math.pi * q / n))


FORMULAS = [
    "y ~ x + cs(0 + time | g)",
    "y ~ x + homcs(0 + time | g)",
    "y ~ x + ar1(0 + time | g)",
    "y ~ x + diag(0 + time | g)",
    "y ~ x + ar1(0 + time | g) + (1 | h)",  # structured first term (block mode) + another
    "y ~ x + (1 + x | h) + cs(0 + time | g)",  # structured term in the dense rest
]


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("dense", [False, True])
def test_engine_equals_dense_gls(formula: str, dense: bool) -> None:
    df = _sim()
    if "ar1" in formula:  # at most one observation per group and time point
        df = df.drop_duplicates(["g", "t"]).reset_index(drop=True)
    model = lmmkit.LinearMixedModel(formula, df)
    model.use_cross_products(
        build_cross_products(model.cp.terms, model.design.X, model.design.y, dense=dense)
    )
    rng = np.random.default_rng(7)
    for _ in range(3):
        par = model.layout.theta0 + rng.uniform(-0.6, 0.6, len(model.layout.theta0))
        par = np.where(model.layout.lower == 0, np.abs(par), par)
        for reml in (True, False):
            got = model.objective(par, reml=reml)
            assert got == pytest.approx(_gls_deviance(model, par, reml), rel=1e-10)


def test_ar1_at_zero_correlation_is_the_equal_variance_diagonal() -> None:
    """ar1 at rho = 0 is tau^2 I: the engine's ar1 objective equals the dense GLS deviance of
    the equal-variance diagonal structure and the engine's unstructured (lme4 theta) path at
    T = tau I on the same cross-products."""
    df = _sim(ng=12).drop_duplicates(["g", "t"]).reset_index(drop=True)
    ar1 = lmmkit.LinearMixedModel("y ~ x + ar1(0 + time | g)", df)
    d = ar1.design
    (t,) = ar1.cp.terms
    plain = build_cross_products([TermBlock(t.index, t.Zx, t.nlevels)], d.X, d.y)
    assert not plain.structured
    rows, cols = np.triu_indices(4)
    for tau in (0.3, 1.0, 2.5):
        theta = np.where(rows == cols, tau, 0.0)  # lme4's theta of T = tau I
        for reml in (True, False):
            want = _gls_deviance(ar1, np.array([tau, 0.0]), reml, diag_equal=True)
            assert ar1.objective(np.array([tau, 0.0]), reml) == pytest.approx(want, rel=1e-11)
            got_us = profiled_deviance(factor(plain, theta), ar1.n, ar1.p, reml, 0.0)
            assert got_us == pytest.approx(want, rel=1e-11)


def test_homcs_is_the_nested_intercept_model() -> None:
    """Sigma = tau^2 ((1 - rho) I + rho J), rho >= 0, is (1 | Block) + (1 | Block:Variety)
    with variances tau^2 rho and tau^2 (1 - rho): same likelihood, same fixed effects."""
    oats = _data("oats")
    for reml in (True, False):
        a = _fit("yield ~ nitro + homcs(0 + Variety | Block)", oats, reml)
        b = _fit("yield ~ nitro + (1 | Block) + (1 | Block:Variety)", oats, reml)
        assert a.loglik == pytest.approx(b.loglik, rel=1e-9)
        np.testing.assert_allclose(a.fixef, b.fixef, rtol=1e-6)
        np.testing.assert_allclose(a.fixef_se, b.fixef_se, rtol=1e-6)
        vb = b.varcorr.set_index("group")["vcov"]
        tau2 = a.varcorr["vcov"].iloc[0]
        rho = a.varcorr["sdcor"].iloc[3]
        assert tau2 * rho == pytest.approx(vb["Block"], rel=1e-5)
        assert tau2 * (1 - rho) == pytest.approx(vb["Block:Variety"], rel=1e-5)


def test_synonyms_us_and_diag() -> None:
    df = _sim()
    for a, b in [
        ("y ~ x + us(1 + x | g)", "y ~ x + (1 + x | g)"),
        ("y ~ x + diag(1 + x | g)", "y ~ x + (1 + x || g)"),
    ]:
        ra, rb = _fit(a, df, True), _fit(b, df, True)
        assert ra.loglik == rb.loglik
        np.testing.assert_array_equal(ra.theta, rb.theta)
        assert ra.varcorr.equals(rb.varcorr)


def test_result_and_prediction_of_a_structured_fit() -> None:
    df = _data("ortho")
    res = _fit("distance ~ age + Sex + ar1(0 + fage | Subject)", df, True)
    assert res.npar == 2 + 3 + 1  # tau, kappa; 3 fixed effects; sigma
    assert res.terms[0].structure.kind == "ar1"
    np.testing.assert_allclose(res.predict(df), res.fitted, rtol=1e-12)
    json.loads(res.to_json())


# ----------------------------------------------------------------- bad input
def test_unknown_structure_points_at_the_token() -> None:
    f = "y ~ x + toep(0 + time | g)"
    with pytest.raises(FormulaError, match="Unknown covariance structure 'toep'") as err:
        lmmkit.lmm(f, _sim())
    lines = str(err.value).splitlines()
    at = lines.index(f"    {f}")
    assert lines[at + 1] == "    " + " " * f.index("toep") + "^^^^"


def test_double_bar_inside_a_structure() -> None:
    with pytest.raises(FormulaError, match="'\\|\\|' inside a covariance structure"):
        lmmkit.lmm("y ~ x + cs(0 + time || g)", _sim())


@pytest.mark.parametrize("kind", ["cs", "homcs", "ar1"])
def test_single_column_structure(kind: str) -> None:
    with pytest.raises(ModelError, match=rf"Term {kind}\(0 \+ x \| g\) has a single column"):
        lmmkit.lmm(f"y ~ x + {kind}(0 + x | g)", _sim())


def test_ar1_duplicated_time_in_a_group() -> None:
    df = _sim()  # two replicates per g and t
    with pytest.raises(ModelError) as err:
        lmmkit.lmm("y ~ x + ar1(0 + time | g)", df)
    msg = str(err.value)
    assert "ar1(0 + time | g)" in msg
    dup = df.groupby(["g", "t"]).size()
    g0, t0 = sorted(dup[dup > 1].index)[0]
    assert f"g = '{g0}'" in msg and f"time = {t0}" in msg
    assert "same time point" in msg


def test_ar1_needs_time_indicator_columns_in_order() -> None:
    df = _sim().drop_duplicates(["g", "t"])
    with pytest.raises(ModelError, match="exactly one of its columns"):
        lmmkit.lmm("y ~ x + ar1(time | g)", df)  # intercept + contrasts
    df["stime"] = (df.t * 4 + 2).astype(str)  # '2', '6', '10', '14': text order is wrong
    with pytest.raises(ModelError, match="not increasing in time"):
        lmmkit.lmm("y ~ x + ar1(0 + stime | g)", df)


def test_structured_terms_are_refused_where_not_implemented() -> None:
    from lmmkit.inference import kenward_roger, profile

    df = _data("oats")
    model = lmmkit.LinearMixedModel("yield ~ nitro + cs(0 + Variety | Block)", df)
    res = model.fit()
    with pytest.raises(ModelError, match=r"Kenward-Roger .* cs\(0 \+ Variety \| Block\)"):
        kenward_roger.coef_table(model, res)
    with pytest.raises(ModelError, match=r"Profile .* heterogeneous compound symmetry"):
        profile.confint(model, res)
    wald = profile.confint(model, res, method="Wald")
    assert np.isfinite(wald.loc["nitro"]).all()
    with pytest.raises(ModelError, match=r"conditional AIC .* cs\(0 \+ Variety \| Block\)"):
        lmmkit.caic(model, res)
    counts = df.assign(n=np.arange(len(df)) % 5)
    with pytest.raises(ModelError, match="implemented for lmm\\(\\) only"):
        lmmkit.glmm("n ~ nitro + cs(0 + Variety | Block)", counts, family="poisson")

"""The sparse rest block (issue #17 item 1): CHOLMOD factor, symbolic counts, selected inverse,
and the sparse path against the dense one and against lme4.

Linear-algebra identities (L L' equals the matrix it factors, the symbolic column counts
equal the factor's structure, the selected inverse equals the inverse on the factor's
pattern) are checked on the Schur complement of real crossed designs; the sparse path's
deviance, gradient, conditional modes and variances against the dense path's (1e-10) on
small crossed designs (forced with ``rest="sparse"``); the fit on Penicillin- and
InstEval-like simulated designs; the objective against lme4 (tests/reference/sparse).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from benchmarks.sparse_design import FORMULA, simulate

from lmmkit.errors import ModelError
from lmmkit.linalg.blocked import build_cross_products, describe_rest, factor
from lmmkit.linalg.cholmod import CholmodFactor
from lmmkit.linalg.selected_inverse import lower_solve, lower_t_solve, selected_inverse
from lmmkit.linalg.solve import fixed_effects, term_condvars, term_modes
from lmmkit.linalg.sparse_rest import SparseFactor, rest_values
from lmmkit.linalg.sparse_symbolic import analyze
from lmmkit.models.lmm import LinearMixedModel
from lmmkit.objective.ai_newton import profiled_gradient

REF = Path(__file__).resolve().parents[1] / "reference" / "sparse"


def _regional(seed: int = 3, n: int = 3000, l1: int = 300, l2: int = 200) -> pd.DataFrame:
    """Crossed g1 x g2 with locality (g2 near g1's region), a covariate and a response."""
    rng = np.random.default_rng(seed)
    g1 = rng.integers(0, l1, n)
    g2 = (g1 * l2 // l1 + rng.integers(-3, 4, n)) % l2
    x = rng.standard_normal(n)
    u1 = rng.standard_normal((l1, 2)) * [1.0, 0.5]
    u2 = rng.standard_normal((l2, 2)) * [0.7, 0.3]
    y = 1 + 0.5 * x + u1[g1, 0] + u1[g1, 1] * x + u2[g2, 0] + u2[g2, 1] * x
    y = y + rng.standard_normal(n)
    return pd.DataFrame(
        {
            "y": y,
            "x": x,
            "g1": np.char.add("a", g1.astype(str)),
            "g2": np.char.add("b", g2.astype(str)),
        }
    )


def _models(formula: str, data: pd.DataFrame) -> tuple[LinearMixedModel, LinearMixedModel]:
    """(dense, sparse) models of the same formula and data."""
    dense = LinearMixedModel(formula, data)
    sparse = LinearMixedModel(formula, data)
    cp = dense.cp
    sparse.use_cross_products(
        build_cross_products(list(cp.terms), cp.X, dense._working_y(dense._y), rest="sparse")
    )
    assert cp.sparse is None and sparse.cp.sparse is not None
    return dense, sparse


FORMULAS = [
    "y ~ x + (1 + x | g1) + (1 | g2)",  # vector first term, scalar rest
    "y ~ x + (1 | g1) + (1 + x | g2)",  # vector rest term
    "y ~ x + (1 | g1) + (1 | g2) + (0 + x | g2)",  # two rest terms
]


def _dense_S(model: LinearMixedModel, theta: np.ndarray) -> tuple[np.ndarray, sp.csc_matrix]:
    """S on its pattern (lower, compressed columns) and as a dense symmetric matrix."""
    cp = model.cp
    from lmmkit.linalg.blocked import _first_block, term_factors

    Ts = term_factors(theta, cp.terms)
    _, _, H, _ = _first_block(Ts[0], cp.D1, cp.B1, False)
    sr = cp.sparse
    data = rest_values(sr, cp, Ts[1:], H)
    Sl = sp.csc_matrix((data, sr.pattern.indices, sr.pattern.indptr), shape=(sr.Rz, sr.Rz))
    Sd = Sl.toarray()
    return Sd + np.tril(Sd, -1).T, Sl


@pytest.mark.parametrize("formula", FORMULAS)
def test_factor_reproduces_the_schur_complement(formula):
    """L L' = P S P' for CHOLMOD's factor; S equals the dense path's Schur complement; the
    symbolic column counts equal the factor's structural nonzeros."""
    dense, sparse = _models(formula, _regional())
    theta = dense.layout.theta0 * 0.8 + 0.05
    S, Sl = _dense_S(sparse, theta)
    fd = factor(dense.cp, theta)
    Rz = dense.cp.Rz
    Ld = fd.L[:Rz, :Rz]
    np.testing.assert_allclose(S, Ld @ Ld.T, rtol=0, atol=1e-11 * np.abs(S).max())
    sr = sparse.cp.sparse
    perm = sr.perm
    chol = CholmodFactor(sr.pattern, Sl.data, perm)
    ip, ii, dd = chol.to_csc()
    L = sp.csc_matrix((dd, ii, ip), shape=S.shape).toarray()
    Sp = S[np.ix_(perm, perm)]
    np.testing.assert_allclose(L @ L.T, Sp, rtol=0, atol=1e-12 * np.abs(S).max())
    dense_L = np.linalg.cholesky(Sp)
    structural = (np.abs(dense_L) > 1e-300).sum(axis=0)
    assert np.array_equal(sr.analysis.colcounts, structural) or np.all(
        sr.analysis.colcounts >= structural
    )
    assert sr.analysis.nnz_factor <= len(dd)


def test_column_counts_are_exact_on_generic_values():
    rng = np.random.default_rng(0)
    for seed in range(3):
        n = 300
        A = sp.random(n, n, density=0.015, random_state=seed)
        A = A + A.T + sp.identity(n) * 50.0
        Al = sp.tril(A, format="csc")
        Al.sort_indices()
        perm = rng.permutation(n)
        an = analyze(Al, perm)
        Ad = A.toarray()
        L = np.linalg.cholesky(Ad[np.ix_(an.perm, an.perm)])
        assert np.array_equal(an.colcounts, (L != 0).sum(axis=0))
        assert an.flops == float((an.colcounts.astype(float) ** 2).sum())


@pytest.mark.parametrize("formula", FORMULAS[:2])
def test_selected_inverse_equals_the_inverse_on_the_pattern(formula):
    _, sparse = _models(formula, _regional(seed=5))
    theta = sparse.layout.theta0 * 0.7 + 0.1
    S, Sl = _dense_S(sparse, theta)
    sr = sparse.cp.sparse
    chol = CholmodFactor(sr.pattern, Sl.data, sr.perm)
    ip, ii, dd = chol.to_csc()
    Z = selected_inverse(ip, ii, dd)
    Sinv = np.linalg.inv(S[np.ix_(sr.perm, sr.perm)])
    cols = np.repeat(np.arange(len(ip) - 1), np.diff(ip))
    ref = Sinv[ii, cols]
    assert np.abs(Z - ref).max() <= 1e-12 * np.abs(Sinv).max()
    B = np.random.default_rng(1).standard_normal((len(ip) - 1, 3))
    x = lower_t_solve(ip, ii, dd, lower_solve(ip, ii, dd, B.copy()))
    np.testing.assert_allclose(x, Sinv @ B, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("reml", [True, False])
def test_sparse_path_equals_dense_path(formula, reml):
    """Deviance pieces, gradient, fixed effects, conditional modes and variances at one theta:
    the sparse rest block against the dense one, 1e-10 relative."""
    dense, sparse = _models(formula, _regional(seed=7))
    theta = dense.layout.theta0 * 0.9 + 0.07
    fd = factor(dense.cp, theta, full=True)
    fs = factor(sparse.cp, theta, full=True)
    assert isinstance(fs, SparseFactor)
    for a in ("logdet_L", "logdet_RX", "pwrss"):
        assert getattr(fs, a) == pytest.approx(getattr(fd, a), rel=1e-11, abs=1e-9)
    assert sparse.objective(theta, reml) == pytest.approx(dense.objective(theta, reml), rel=1e-12)
    y = dense._working_y(dense._y)
    gd = profiled_gradient(dense.cp, theta, y, reml)
    gs = profiled_gradient(sparse.cp, theta, y, reml)
    np.testing.assert_allclose(gs, gd, rtol=1e-10, atol=1e-10 * np.abs(gd).max())
    bd, Vd = fixed_effects(dense.cp, fd)
    bs, Vs = fixed_effects(sparse.cp, fs)
    np.testing.assert_allclose(bs, bd, rtol=1e-10)
    np.testing.assert_allclose(Vs, Vd, rtol=1e-10)
    for md, ms in zip(term_modes(dense.cp, fd, bd), term_modes(sparse.cp, fs, bd)):
        np.testing.assert_allclose(ms, md, rtol=0, atol=1e-10 * np.abs(md).max())
    for cd, cs in zip(term_condvars(dense.cp, fd, 1.3), term_condvars(sparse.cp, fs, 1.3)):
        np.testing.assert_allclose(cs, cd, rtol=1e-10, atol=1e-14)


def _penicillin_like(seed: int = 11) -> pd.DataFrame:
    """Penicillin's layout: 24 plates x 6 samples fully crossed, one diameter each."""
    rng = np.random.default_rng(seed)
    plate, sample = np.meshgrid(np.arange(24), np.arange(6), indexing="ij")
    plate, sample = plate.ravel(), sample.ravel()
    y = 23 + rng.normal(0, 0.85, 24)[plate] + rng.normal(0, 1.9, 6)[sample]
    y = y + rng.normal(0, 0.55, len(plate))
    return pd.DataFrame(
        {"diameter": y, "plate": np.char.add("p", plate.astype(str)), "sample": sample.astype(str)}
    )


def _insteval_like(seed: int = 12) -> pd.DataFrame:
    """InstEval's structure at a smaller scale: students x lecturers crossed (each student
    rates ~8 lecturers of a few departments), lecturers nested in departments."""
    rng = np.random.default_rng(seed)
    ns, nd, ndept = 1500, 400, 14
    dept_of = rng.integers(0, ndept, nd)
    s = np.repeat(np.arange(ns), 8)
    home = rng.integers(0, ndept, ns)[s]
    pool = [np.flatnonzero(dept_of == k) for k in range(ndept)]
    d = np.array([rng.choice(pool[h]) for h in home])
    service = rng.integers(0, 2, len(s))
    y = (
        3.2
        - 0.07 * service
        + rng.normal(0, 0.32, ns)[s]
        + rng.normal(0, 0.51, nd)[d]
        + rng.normal(0, 0.08, ndept)[dept_of[d]]
        + rng.normal(0, 1.18, len(s))
    )
    return pd.DataFrame(
        {
            "y": y,
            "service": service.astype(str),
            "s": np.char.add("s", s.astype(str)),
            "d": np.char.add("d", d.astype(str)),
            "dept": np.char.add("k", dept_of[d].astype(str)),
        }
    )


@pytest.mark.parametrize(
    "formula, data",
    [
        ("diameter ~ 1 + (1 | plate) + (1 | sample)", _penicillin_like),
        ("y ~ service + (1 | s) + (1 | d) + (1 | dept)", _insteval_like),
        ("y ~ x + (1 + x | g1) + (1 | g2)", lambda: simulate(4000, 400, 20)),
    ],
)
@pytest.mark.parametrize("reml", [True, False])
def test_sparse_fit_equals_dense_fit(formula, data, reml):
    df = data()
    dense, sparse = _models(formula, df)
    rd, rs = dense.fit(reml=reml), sparse.fit(reml=reml)
    assert rs.objective == pytest.approx(rd.objective, rel=1e-12)
    # same optimizer path on both (measured differences ~1e-13): 1e-8 everywhere
    np.testing.assert_allclose(rs.theta, rd.theta, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(rs.fixef, rd.fixef, rtol=1e-8)
    assert rs.sigma == pytest.approx(rd.sigma, rel=1e-8)
    for a, b in zip(rd.terms, rs.terms):
        np.testing.assert_allclose(b.modes, a.modes, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(b.condvar, a.condvar, rtol=1e-8, atol=1e-12)
    assert rs.optimization.linear_algebra.startswith("sparse rest block")
    assert "dense" in rd.optimization.linear_algebra


def test_objective_equals_lme4_on_the_crossed_design():
    """lme4's REML criterion and ML deviance at fixed theta (1e-10) and its tight optimum
    (the sparse fit is at least as good, within 1e-6 relative) on the 4,000-row crossed
    design (tests/reference/sparse/crossed_4k.json, made by lme4_crossed.R)."""
    ref = json.loads((REF / "crossed_4k.json").read_text())
    df = simulate(4000, 400, 20)
    _, m = _models(FORMULA, df)
    for th, reml_ref, ml_ref in zip(ref["theta_grid"], ref["reml_at"], ref["ml_at"]):
        assert m.objective(np.array(th), True) == pytest.approx(reml_ref, rel=1e-10)
        assert m.objective(np.array(th), False) == pytest.approx(ml_ref, rel=1e-10)
    res = m.fit()
    tight = ref["tight"]["objective"]
    assert res.objective <= tight + 1e-9 * abs(tight)
    assert res.objective == pytest.approx(tight, rel=1e-6)
    np.testing.assert_allclose(res.theta, ref["tight"]["theta"], rtol=0, atol=2e-5)
    np.testing.assert_allclose(res.fixef, ref["tight"]["fixef"], rtol=1e-6)


def test_refit_new_response_sparse():
    df = _regional(seed=9)
    _, sparse = _models(FORMULAS[0], df)
    y2 = df["y"].to_numpy() * 1.5 + np.random.default_rng(2).standard_normal(len(df))
    refit = sparse.refit(y2)
    fresh_dense, fresh_sparse = _models(FORMULAS[0], df.assign(y=y2))
    ref = fresh_dense.fit()
    assert refit.objective == pytest.approx(ref.objective, rel=1e-12)
    assert fresh_sparse.fit().objective == pytest.approx(ref.objective, rel=1e-12)


def test_refusal_when_the_factor_exceeds_memory():
    """A sparse factor larger than the memory allowed is refused before any numeric work,
    with the numbers: nnz of S and L, the multiply-adds, the GB needed and available."""
    dense, _ = _models(FORMULAS[0], _regional())
    cp = dense.cp
    with pytest.raises(ModelError) as err:
        build_cross_products(
            list(cp.terms), cp.X, dense._working_y(dense._y), rest="sparse", memory_limit=1e5
        )
    msg = str(err.value)
    for needle in ("nnz(L)", "nnz(S)", "MB", "available", "multiply-adds", f"{cp.Rz} effects"):
        assert needle in msg, needle


def test_auto_choice_small_models_stay_dense():
    """Below SPARSE_MIN_RZ rest effects nothing is analysed: the dense path runs as before."""
    dense = LinearMixedModel(FORMULAS[0], _regional())
    assert dense.cp.sparse is None and dense.cp.rest_choice is None
    res = dense.fit()
    assert res.optimization.linear_algebra == f"dense rest block ({dense.cp.Rz} random effects)"


def test_auto_choice_takes_sparse_for_large_sparse_crossing():
    """12,000 x 12,000 crossed levels with locality: auto takes the sparse block (its
    factorization at least 5x cheaper than the dense one) and reports it in
    ``result.optimization``."""
    df = simulate(36_000, 12_000, 400)
    m = LinearMixedModel(FORMULA, df)
    assert m.cp.sparse is not None
    choice = m.cp.rest_choice
    assert choice.kind == "sparse" and choice.flops_sparse * 5 < choice.flops_dense
    res = m.fit()
    assert res.optimization.converged
    # the rest block's effects are the provider levels that occur (not all 12,000 are drawn)
    rz = m.cp.Rz
    assert 11_000 < rz <= 12_000
    assert f"sparse rest block ({rz} random effects; CHOLMOD" in res.optimization.linear_algebra


def test_missing_cvxopt_is_a_clear_error(monkeypatch):
    """cvxopt is a declared dependency; if it cannot be imported the sparse block says so."""
    import sys

    dense = LinearMixedModel(FORMULAS[0], _regional())
    cp = dense.cp
    monkeypatch.setitem(sys.modules, "cvxopt", None)  # makes ``import cvxopt`` fail
    with pytest.raises(ModelError, match="cvxopt"):
        build_cross_products(list(cp.terms), cp.X, dense._working_y(dense._y), rest="sparse")


def _satterthwaite_against_lmertest(model: LinearMixedModel, ref: dict) -> None:
    from lmmkit.inference.satterthwaite import coef_table

    res = model.fit()
    np.testing.assert_allclose(res.theta, ref["theta"], rtol=0, atol=2e-5)
    tab = coef_table(model, res)
    assert list(tab.index) == ref["names"]
    np.testing.assert_allclose(tab["Estimate"], ref["estimate"], rtol=1e-6)
    np.testing.assert_allclose(tab["Std. Error"], ref["se"], rtol=1e-5)
    np.testing.assert_allclose(tab["df"], ref["df"], rtol=1e-3)
    np.testing.assert_allclose(tab["t value"], ref["t"], rtol=1e-5)


def test_satterthwaite_through_the_sparse_factor_equals_lmertest():
    """Satterthwaite df (issue #17 item 2) on the sparse rest block: its Hessian and the
    Jacobian of Var(beta) come from sparse factorizations (no n x n matrix); against
    lmerTest at lme4's tight optimum (tests/reference/sparse/satterthwaite_4k.json, made by
    lmertest_crossed.R): df within 1e-3, SE and t within 1e-5 relative."""
    ref = json.loads((REF / "satterthwaite_4k.json").read_text())
    _, m = _models(FORMULA, simulate(4000, 400, 20))
    _satterthwaite_against_lmertest(m, ref)


@pytest.mark.slow
@pytest.mark.parametrize("n, levels, name", [(90_000, 30_000, "90k"), (200_000, 50_000, "200k")])
def test_second_term_beyond_the_dense_ceiling_equals_lme4(n, levels, name):
    """90,000 rows, 30,000 patients (1 + x | g1) crossed with 28,544 providers (1 | g2), and
    200,000 rows, 50,000 x 49,136 (the issue's 200k design): the rest block is above the
    old dense ceiling of 25,000, so auto takes the sparse block. lme4
    (tests/reference/sparse/crossed_{90k,200k}.json, lme4_crossed.R): the REML criterion and
    ML deviance at fixed theta 1e-10 relative; at the optimum the objective no worse than
    lme4's tight fit and within 1e-9 relative, theta within 2e-5, beta 1e-6, sigma 1e-5
    relative."""
    ref = json.loads((REF / f"crossed_{name}.json").read_text())
    df = simulate(n, levels, 1_000)
    m = LinearMixedModel(FORMULA, df)
    assert m.cp.sparse is not None and m.cp.Rz == ref["levels_g2"] > 25_000
    for th, reml_ref, ml_ref in zip(ref["theta_grid"], ref["reml_at"], ref["ml_at"]):
        assert m.objective(np.array(th), True) == pytest.approx(reml_ref, rel=1e-10)
        assert m.objective(np.array(th), False) == pytest.approx(ml_ref, rel=1e-10)
    res = m.fit()
    tight = ref["tight"]
    assert res.objective <= tight["objective"] + 1e-9 * abs(tight["objective"])
    assert res.objective == pytest.approx(tight["objective"], rel=1e-9)
    np.testing.assert_allclose(res.theta, tight["theta"], rtol=0, atol=2e-5)
    np.testing.assert_allclose(res.fixef, tight["fixef"], rtol=1e-6)
    # sigma moves with theta along the flat optimum (lme4's own default and tight fits
    # differ by 1e-6 relative here)
    assert res.sigma == pytest.approx(tight["sigma"], rel=1e-5)
    assert res.optimization.linear_algebra.startswith(f"sparse rest block ({m.cp.Rz} random")
    if name == "90k":
        _satterthwaite_against_lmertest(m, json.loads((REF / "satterthwaite_90k.json").read_text()))


def test_auto_choice_keeps_dense_when_the_crossing_fills_in():
    """Random (no locality) crossing of 6,000 x 2,500 levels: the symbolic analysis finds the
    factor nearly dense (fill), so auto keeps the dense block and reports the numbers."""
    rng = np.random.default_rng(4)
    n = 30_000
    df = pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "g1": rng.integers(0, 6_000, n).astype(str),
            "g2": rng.integers(0, 2_500, n).astype(str),
        }
    )
    m = LinearMixedModel("y ~ 1 + (1 | g1) + (1 | g2)", df)
    assert m.cp.sparse is None
    choice = m.cp.rest_choice
    assert choice.kind == "dense" and choice.flops_sparse * 5 > choice.flops_dense > 0
    assert choice.nnz_factor > 10 * choice.nnz_matrix
    assert "not 5x cheaper than the dense one" in describe_rest(m.cp)

"""All-scalar-terms models: analytic gradient and the average-information Newton optimizer.

The gradient is checked against central differences of a brute-force dense deviance
(H built whole) and of the engine's own deviance in block mode; the Newton optimum
against BOBYQA (``control={"ai_newton": False}``) and, through test_reference_lme4, lme4.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lmmkit
from lmmkit.models.lmm import LinearMixedModel, SingularFitWarning
from lmmkit.objective.ai_newton import profiled_gradient, supports_ai_newton


def _crossed(seed: int = 1, n_subj: int = 420, n_item: int = 25, weights: bool = False):
    """Simulated crossed design large enough for block mode (first term kept sparse)."""
    rng = np.random.default_rng(seed)
    n = 4 * n_subj
    subj = rng.integers(0, n_subj, n)
    item = rng.integers(0, n_item, n)
    x = rng.normal(size=n)
    y = (
        1.0
        + 0.5 * x
        + rng.normal(0, 0.8, n_subj)[subj]
        + rng.normal(0, 0.5, n_item)[item]
        + rng.normal(0, 1.0, n)
    )
    d = pd.DataFrame({"y": y, "x": x, "subj": subj.astype(str), "item": item.astype(str)})
    if weights:
        d["w"] = 0.5 + rng.random(n)
    return d


def _brute_deviance(m: LinearMixedModel, theta: np.ndarray, reml: bool) -> float:
    """lme4's profiled deviance from H = I + sum theta_k^2 Z_k Z_k' built whole."""
    cp = m.cp
    X = cp.X
    y = m._working_y(m._y)
    n, p = X.shape
    H = np.eye(n)
    for t, th in zip(cp.terms, theta):
        Z = np.zeros((n, t.nlevels))
        Z[np.arange(n), t.index] = t.Zx[:, 0]
        H += th**2 * Z @ Z.T
    Hi = np.linalg.inv(H)
    XHX = X.T @ Hi @ X
    P = Hi - Hi @ X @ np.linalg.solve(XHX, X.T @ Hi)
    Q = float(y @ P @ y)
    ld = np.linalg.slogdet(H)[1]
    if reml:
        df = n - p
        return ld + np.linalg.slogdet(XHX)[1] + df * (1 + np.log(2 * np.pi * Q / df))
    return ld + n * (1 + np.log(2 * np.pi * Q / n))


@pytest.mark.parametrize("reml", [True, False])
def test_gradient_equals_brute_force_differences(lme4_data, reml):
    d = lme4_data("Penicillin")
    m = LinearMixedModel("diameter ~ 1 + (1 | plate) + (1 | sample)", d)
    assert supports_ai_newton(m.cp)
    th = np.array([1.2, 2.0])
    y = m._working_y(m._y)
    g = profiled_gradient(m.cp, th, y, reml)
    h = 1e-5
    fd = [
        (_brute_deviance(m, th + e, reml) - _brute_deviance(m, th - e, reml)) / (2 * h)
        for e in np.eye(2) * h
    ]
    np.testing.assert_allclose(g, fd, rtol=1e-7)
    # the brute force is the engine's deviance (so the engine is what is differentiated)
    assert abs(_brute_deviance(m, th, reml) - m.objective(th, reml)) < 1e-9 * 340


@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("reml", [True, False])
def test_gradient_in_block_mode(weights, reml):
    d = _crossed(weights=weights)
    m = LinearMixedModel("y ~ x + (1 | subj) + (1 | item)", d, weights=d["w"] if weights else None)
    assert m.cp.first is not None  # block mode: the first term's block is diagonal
    th = np.array([0.7, 0.4])
    g = profiled_gradient(m.cp, th, m._working_y(m._y), reml)
    h = 1e-5
    fd = [(m.objective(th + e, reml) - m.objective(th - e, reml)) / (2 * h) for e in np.eye(2) * h]
    np.testing.assert_allclose(g, fd, rtol=2e-5)


@pytest.mark.parametrize(
    "formula,data",
    [
        ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin"),
        ("strength ~ 1 + (1 | batch) + (1 | batch:cask)", "Pastes"),
        ("y ~ x + (1 | subj) + (1 | item)", None),
    ],
)
@pytest.mark.parametrize("reml", [True, False])
def test_newton_optimum_equals_bobyqa(lme4_data, formula, data, reml):
    d = lme4_data(data) if data else _crossed(seed=3)
    a = lmmkit.lmm(formula, d, reml=reml)
    b = lmmkit.lmm(formula, d, reml=reml, control={"ai_newton": False})
    assert a.optimization.optimizer == "AI-Newton" and a.optimization.converged
    assert b.optimization.optimizer == "LN_BOBYQA"
    # the same optimum: deviance within rounding, never worse than BOBYQA's
    assert a.objective <= b.objective + 1e-10 * abs(b.objective)
    assert abs(a.objective - b.objective) < 1e-9 * abs(b.objective)
    np.testing.assert_allclose(a.theta, b.theta, rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(a.fixef, b.fixef, rtol=1e-6)
    # and the gradient vanishes there
    m = LinearMixedModel(formula, d)
    g = profiled_gradient(m.cp, np.asarray(a.theta), m._working_y(m._y), reml)
    assert np.max(np.abs(g)) < 1e-5 * max(1.0, abs(a.objective)) ** 0.5


def test_singular_fit_falls_back_to_bobyqa():
    """A factor without variance (theta -> 0): the Newton path gives up and BOBYQA's fit
    (lme4's treatment of the boundary) is returned unchanged."""
    rng = np.random.default_rng(7)
    d = _crossed(seed=5)
    d["noise"] = rng.integers(0, 6, len(d)).astype(str)  # a factor with no effect
    d["y"] = d["y"] - d.groupby("noise")["y"].transform("mean")  # exactly no variance
    with pytest.warns(SingularFitWarning):
        a = lmmkit.lmm("y ~ x + (1 | subj) + (1 | item) + (1 | noise)", d)
    with pytest.warns(SingularFitWarning):
        b = lmmkit.lmm(
            "y ~ x + (1 | subj) + (1 | item) + (1 | noise)", d, control={"ai_newton": False}
        )
    assert a.optimization.optimizer == "LN_BOBYQA"
    assert a.is_singular and b.is_singular
    np.testing.assert_allclose(a.theta, b.theta, rtol=0, atol=0)


def _slopes(seed: int = 4):
    """Crossed design with a correlated random slope: (1 + x | subj) + (1 | item)."""
    rng = np.random.default_rng(seed)
    n_subj, n_item, per = 300, 60, 12
    subj = np.repeat(np.arange(n_subj), per)
    item = np.concatenate([rng.choice(n_item, per, replace=False) for _ in range(n_subj)])
    x = rng.normal(size=subj.size)
    b = rng.multivariate_normal([0, 0], [[1.0, 0.15], [0.15, 0.25]], n_subj)
    y = 2 + 0.5 * x + b[subj, 0] + b[subj, 1] * x + rng.normal(0, 0.7, n_item)[item]
    y = y + rng.normal(size=subj.size)
    return pd.DataFrame({"y": y, "x": x, "subj": subj.astype(str), "item": item.astype(str)})


SLOPES = "y ~ x + (1 + x | subj) + (1 | item)"


@pytest.mark.parametrize("reml", [True, False])
def test_gradient_with_a_vector_term(reml):
    d = _slopes()
    m = LinearMixedModel(SLOPES, d)
    assert m.cp.first is not None and m.cp.first.p == 2
    th = np.array([0.9, 0.2, 0.4, 0.6])
    g = profiled_gradient(m.cp, th, m._working_y(m._y), reml)
    h = 1e-5
    fd = [(m.objective(th + e, reml) - m.objective(th - e, reml)) / (2 * h) for e in np.eye(4) * h]
    np.testing.assert_allclose(g, fd, rtol=2e-6)


@pytest.mark.parametrize("reml", [True, False])
def test_newton_with_a_vector_term_equals_bobyqa(reml):
    d = _slopes()
    a = lmmkit.lmm(SLOPES, d, reml=reml)
    b = lmmkit.lmm(SLOPES, d, reml=reml, control={"ai_newton": False})
    assert a.optimization.optimizer == "AI-Newton" and a.optimization.converged
    assert a.objective <= b.objective + 1e-10 * abs(b.objective)
    np.testing.assert_allclose(a.theta, b.theta, rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(a.varcorr["sdcor"], b.varcorr["sdcor"], rtol=2e-5)


def test_conditional_variances_equal_the_dense_inverse():
    """The selected inverse (pattern reads of S^-1 for the first term, p1 = 2) against
    sigma^2 Lambda (Lambda'Z'Z Lambda + I)^-1 Lambda' built whole."""
    d = _slopes()
    res = lmmkit.lmm(SLOPES, d)
    m = LinearMixedModel(SLOPES, d)
    cp = m.cp
    n = len(d)
    blocks, lams = [], []
    T_subj = np.array([[res.theta[0], 0.0], [res.theta[1], res.theta[2]]])  # lme4's theta
    for t, T in zip(cp.terms, [T_subj, np.array([[res.theta[3]]])]):
        Z = np.zeros((n, t.q))
        for a in range(t.p):
            Z[np.arange(n), t.index * t.p + a] = t.Zx[:, a]
        blocks.append(Z)
        lams.append(np.kron(np.eye(t.nlevels), T))
    Z = np.hstack(blocks)
    Lam = np.zeros((Z.shape[1], Z.shape[1]))
    Lam[: lams[0].shape[0], : lams[0].shape[0]] = lams[0]
    Lam[lams[0].shape[0] :, lams[0].shape[0] :] = lams[1]
    A = Lam.T @ Z.T @ Z @ Lam + np.eye(Z.shape[1])
    C = res.sigma**2 * Lam @ np.linalg.inv(A) @ Lam.T
    first = cp.terms[0]
    dense1 = np.stack([C[2 * k : 2 * k + 2, 2 * k : 2 * k + 2] for k in range(first.nlevels)])
    ours1 = res.ranef_condvar["subj"]
    np.testing.assert_allclose(ours1, dense1, rtol=1e-8)
    off = 2 * first.nlevels
    np.testing.assert_allclose(res.ranef_condvar["item"][:, 0, 0], np.diagonal(C)[off:], rtol=1e-8)


def test_newton_with_weights_equals_bobyqa():
    """Prior weights (the working scale) and a start from lme4's theta (no moment start)."""
    d = _crossed(seed=9, weights=True)
    f = "y ~ x + (1 | subj) + (1 | item)"
    a = lmmkit.lmm(f, d, weights=d["w"])
    b = lmmkit.lmm(f, d, weights=d["w"], control={"ai_newton": False})
    assert a.optimization.optimizer == "AI-Newton" and a.optimization.theta0 == (1.0, 1.0)
    assert a.objective <= b.objective + 1e-10 * abs(b.objective)
    np.testing.assert_allclose(a.theta, b.theta, rtol=2e-5)
    np.testing.assert_allclose(a.fixef, b.fixef, rtol=1e-6)

"""The blocked factorization against dense linear algebra, for every block type.

Each case builds Z explicitly (small data only) and computes the profiled deviance straight
from its definition; the blocked Cholesky must reproduce it, and L L' must reproduce the
Schur complement it factors.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import lmmkit
from lmmkit.linalg.blocked import build_cross_products, factor, theta_to_T


def _model(formula: str, data: pd.DataFrame, dense: bool) -> lmmkit.LinearMixedModel:
    """The model with its cross-products built in the requested mode (block or dense)."""
    model = lmmkit.LinearMixedModel(formula, data)
    model.use_cross_products(
        build_cross_products(model.cp.terms, model.design.X, model.design.y, dense=dense)
    )
    return model


def _data(seed: int = 1, n: int = 240) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "g": rng.integers(0, 12, n),
            "h": rng.integers(0, 7, n),
            "k": rng.integers(0, 4, n),
            "x": rng.normal(size=n),
            "z": rng.normal(size=n),
        }
    )
    df["y"] = (
        1
        + df.x
        + rng.normal(size=12)[df.g]
        + rng.normal(size=7)[df.h] * 0.5
        + rng.normal(size=12)[df.g] * df.x
        + rng.normal(size=n)
    )
    return df


def _dense_deviance(model: lmmkit.LinearMixedModel, theta: np.ndarray, reml: bool) -> float:
    d = model.design
    n, p = d.X.shape
    Zs, Ls, at = [], [], 0
    for t in d.terms:
        Z = np.zeros((n, t.nlevels * t.p))
        for c in range(t.p):
            Z[np.arange(n), t.index * t.p + c] = t.Zx[:, c]
        T = theta_to_T(theta[at : at + t.ntheta], t.p)
        at += t.ntheta
        Zs.append(Z)
        Ls.append(np.kron(np.eye(t.nlevels), T))
    Z = np.hstack(Zs)
    from scipy.linalg import block_diag

    Lam = block_diag(*Ls)
    ZL = Z @ Lam
    q = ZL.shape[1]
    M = np.block([[ZL.T @ ZL + np.eye(q), ZL.T @ d.X], [d.X.T @ ZL, d.X.T @ d.X]])
    rhs = np.concatenate([ZL.T @ d.y, d.X.T @ d.y])
    sol = np.linalg.solve(M, rhs)
    u, beta = sol[:q], sol[q:]
    r2 = np.sum((d.y - d.X @ beta - ZL @ u) ** 2) + u @ u
    ld = np.linalg.slogdet(ZL.T @ ZL + np.eye(q))[1]
    if reml:
        RX = d.X.T @ d.X - d.X.T @ ZL @ np.linalg.solve(ZL.T @ ZL + np.eye(q), ZL.T @ d.X)
        return ld + np.linalg.slogdet(RX)[1] + (n - p) * (1 + math.log(2 * math.pi * r2 / (n - p)))
    return ld + n * (1 + math.log(2 * math.pi * r2 / n))


FORMULAS = [
    "y ~ x + (1 | g)",  # first block diagonal, no rest
    "y ~ x + (x | g)",  # first block 2x2 blocks (closed form)
    "y ~ x + (x + z | g)",  # first block 3x3 blocks (batched LAPACK)
    "y ~ x + (1 | g) + (1 | h)",  # scalar rest term, sparse update
    "y ~ x + (x | g) + (1 | h) + (1 | k)",  # two scalar rest terms
    "y ~ x + (1 | g) + (x | h)",  # vector-valued rest term
    "y ~ x + (x + z | g) + (z | h) + (1 | k)",
]


@pytest.mark.parametrize("dense", [False, True], ids=["block", "dense"])
@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("reml", [True, False])
def test_blocked_deviance_equals_dense(formula: str, reml: bool, dense: bool) -> None:
    model = _model(formula, _data(), dense)
    rng = np.random.default_rng(7)
    for _ in range(3):
        theta = np.abs(rng.normal(size=len(model.layout.theta0))) + 0.1
        theta[model.layout.lower < 0] = rng.normal(size=int((model.layout.lower < 0).sum()))
        assert model.objective(theta, reml) == pytest.approx(
            _dense_deviance(model, theta, reml), rel=1e-10
        )


@pytest.mark.parametrize("dense", [False, True], ids=["block", "dense"])
@pytest.mark.parametrize("formula", FORMULAS)
def test_cholesky_reproduces_the_matrix_it_factors(formula: str, dense: bool) -> None:
    model = _model(formula, _data(3), dense)
    theta = np.linspace(0.3, 1.2, len(model.layout.theta0))
    f = factor(model.cp, theta, full=True)
    L = f.L
    # Rebuild the Schur complement densely and compare with L L'.
    d = model.design
    n = len(d.y)
    first, rest = d.terms[0], d.terms[1:]

    def zmat(t):
        Z = np.zeros((n, t.nlevels * t.p))
        for c in range(t.p):
            Z[np.arange(n), t.index * t.p + c] = t.Zx[:, c]
        return Z

    at = 0
    lams = []
    for t in d.terms:
        lams.append(np.kron(np.eye(t.nlevels), theta_to_T(theta[at : at + t.ntheta], t.p)))
        at += t.ntheta
    if dense:  # one dense block: [Z Lambda, X, y]' [Z Lambda, X, y] + I on the Z part
        ZL = np.hstack([zmat(t) @ lam for t, lam in zip(d.terms, lams)])
        W = np.column_stack([ZL, d.X, d.y])
        S = W.T @ W
        S[: ZL.shape[1], : ZL.shape[1]] += np.eye(ZL.shape[1])
        np.testing.assert_allclose(L @ L.T, S, rtol=1e-9, atol=1e-9 * np.abs(S).max())
        return
    Z1L = zmat(first) @ lams[0]
    if rest:
        ZrL = np.hstack([zmat(t) @ lam for t, lam in zip(rest, lams[1:])])
    else:
        ZrL = np.zeros((n, 0))
    W = np.column_stack([ZrL, d.X, d.y])
    M11 = Z1L.T @ Z1L + np.eye(Z1L.shape[1])
    Mrr = W.T @ W
    Mrr[: ZrL.shape[1], : ZrL.shape[1]] += np.eye(ZrL.shape[1])
    S = Mrr - W.T @ Z1L @ np.linalg.solve(M11, Z1L.T @ W)
    np.testing.assert_allclose(L @ L.T, S, rtol=1e-9, atol=1e-9 * np.abs(S).max())
    # and the first block's inverses
    np.testing.assert_allclose(f.M1inv[0], np.linalg.inv(M11[: first.p, : first.p]), rtol=1e-10)

"""R survival's gaussian frailty: penalized partial likelihood with theta by its REML rule.

The inner loop is survival's ``coxfit5_b`` and the outer one ``frailty.controlgauss``
(see :mod:`lmmkit.survival.frailty` for the method). The information is kept in blocks:
frailty-frailty (its diagonal when the factor has more than 5 levels, survival's "sparse"
mode; the full block otherwise), frailty-by-covariate and covariate-covariate, and every
solve goes through the p x p Schur complement. The sparse sweep costs O(n p) per Newton
step (:func:`lmmkit.survival._kernels.cox_pass` with the group codes), so hundreds of
sites on 1e5 rows fit in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .newton import NewtonControl

__all__ = ["Blocks", "SparseFrailtyProblem", "DenseFrailtyProblem", "ppl_fit"]


@dataclass(frozen=True, eq=False)
class Blocks:
    """The information of PL in blocks: ``bb`` (q,) diagonal or (q, q), ``bx`` (q, p),
    ``xx`` (p, p)."""

    bb: np.ndarray
    bx: np.ndarray
    xx: np.ndarray

    def _d(self, pen: np.ndarray):
        return self.bb + pen if self.bb.ndim == 1 else self.bb + np.diag(pen)

    def _dinv(self, pen: np.ndarray, M: np.ndarray) -> np.ndarray:
        D = self._d(pen)
        if D.ndim == 1:
            return M / (D[:, None] if M.ndim == 2 else D)
        return np.linalg.solve(D, M)

    def solve(self, pen: np.ndarray, g_x: np.ndarray, g_b: np.ndarray):
        """The Newton step for the penalized information H = I + diag(0, pen)."""
        DiB = self._dinv(pen, self.bx)
        S = self.xx - self.bx.T @ DiB
        dx = np.linalg.solve(S, g_x - DiB.T @ g_b) if S.size else np.zeros(0)
        db = self._dinv(pen, g_b - self.bx @ dx)
        return dx, db

    def inverse(self, pen: np.ndarray):
        """Blocks of H^-1: (xx (p, p), bx (q, p), diagonal of bb (q,))."""
        DiB = self._dinv(pen, self.bx)
        S = self.xx - self.bx.T @ DiB
        V = np.linalg.inv(S) if S.size else np.zeros((0, 0))
        M = -DiB @ V
        D = self._d(pen)
        dinv_diag = 1.0 / D if D.ndim == 1 else np.diag(np.linalg.inv(D))
        bb_diag = dinv_diag + np.einsum("ij,jk,ik->i", DiB, V, DiB)
        return V, M, bb_diag


class SparseFrailtyProblem:
    """One grouping factor, frailty-frailty information reduced to its diagonal."""

    def __init__(self, problem, codes: np.ndarray, q: int):
        self.problem = problem
        self.codes = np.ascontiguousarray(codes, dtype=np.int64)
        self.q = q
        self.p = problem.X.shape[1]

    def evaluate(self, coef: np.ndarray):
        beta, b = coef[: self.p], coef[self.p :]
        pr = self.problem
        eta = (pr.X @ beta if self.p else 0.0) + b[self.codes] + pr.offset
        ll, u, wrh, A, wbar, _, ub, diag2, cross2 = pr.sweep(eta, group=self.codes, q=self.q)
        w0 = wrh[:, 0]
        expected = np.bincount(self.codes, weights=w0, minlength=self.q)
        u_b = ub - expected
        bb = expected - diag2
        bx = np.empty((self.q, self.p))
        for j in range(self.p):
            bx[:, j] = np.bincount(self.codes, weights=w0 * pr.X[:, j], minlength=self.q)
        bx -= cross2
        xx = pr.information(w0, A, wbar)
        return float(ll), u, u_b, Blocks(bb, bx, xx)


class DenseFrailtyProblem:
    """The design with indicator columns appended: the exact information."""

    def __init__(self, problem, p: int, q: int, sparse: bool):
        self.problem = problem
        self.p, self.q, self.sparse = p, q, sparse

    def evaluate(self, coef: np.ndarray):
        ll, u, imat = self.problem.evaluate(coef)
        p = self.p
        bb = imat[p:, p:]
        if self.sparse:
            bb = np.diag(bb).copy()
        return ll, u[:p], u[p:], Blocks(bb, imat[p:, :p], imat[:p, :p])


def _inner(problem, theta: float, init: np.ndarray, control: NewtonControl):
    """survival's coxfit5_b at fixed theta: Newton steps with the block information,
    frailties recentred to mean zero at every evaluation, plain step halving, and the stop
    rule |1 - loglik_old / loglik_new| <= eps on the penalized log-likelihood
    PL - 0.5 sum((b - mean b)^2 / theta + log(2 pi theta)). Following survival's path (not
    only its optimum) matters: it stops these approximate-Newton steps early enough that
    theta moves in the 4th digit."""
    p = problem.p
    coef = init.copy()
    old = coef.copy()
    best = 0.0
    halving = False
    for it in range(control.iter_max + 1):
        ll, u_x, u_b, blocks = problem.evaluate(coef)
        b = coef[p:] - coef[p:].mean()
        coef[p:] = b
        newlk = ll - 0.5 * float(np.sum(b * b / theta + np.log(2 * np.pi * theta)))
        if abs(newlk) < control.eps or (abs(1 - best / newlk) <= control.eps and not halving):
            return coef, ll, blocks, newlk, it
        if it == control.iter_max:
            break
        if it > 0 and newlk < best:
            halving = True
            coef = (old + coef) / 2
        else:
            halving = False
            best = newlk
            dx, db = blocks.solve(np.full(problem.q, 1.0 / theta), u_x, u_b - b / theta)
            old = coef.copy()
            coef = coef + np.concatenate([dx, db])
    return coef, ll, blocks, newlk, it


def controlgauss(history: list[tuple[float, float]], it: int) -> float:
    """survival's frailty.controlgauss: the next theta from the (theta, resid) history;
    ``it`` is the outer iteration (1-based) that produced the last entry."""
    theta, resid = history[-1]
    if it == 1:
        return theta * 3 if resid > 0 else theta / 3
    if it == 2:
        r = [h[1] for h in history]
        if all(v > 0 for v in r):
            return history[1][0] * 2
        if all(v < 0 for v in r):
            return history[1][0] / 2
        return (history[0][0] + history[1][0]) / 2
    order = np.argsort([h[0] for h in history], kind="stable")
    tx = np.array([history[k][0] for k in order])
    ty = np.array([history[k][1] for k in order])
    if (ty > 0).all():
        return 2 * tx.max()
    if (ty < 0).all():
        return 0.5 * tx.min()
    b1 = int(np.flatnonzero(order == it - 1)[0])
    if b1 == 0:
        b1 = 1
    elif b1 == it - 1:
        b1 = it - 2
    R = ty[b1] / ty[b1 + 1]
    S = ty[b1] / ty[b1 - 1]
    U = R / S
    P = S * (U * (R - U) * (tx[b1 + 1] - tx[b1]) - (1 - R) * (tx[b1] - tx[b1 - 1]))
    Q = (U - 1) * (R - 1) * (S - 1)
    new = tx[b1] + P / Q
    if new > tx[b1 + 1]:
        new = (tx[b1] + tx[b1 + 1]) / 2
    if new < tx[b1 - 1]:
        new = (tx[b1] + tx[b1 - 1]) / 2
    return float(new)


@dataclass(frozen=True, eq=False)
class PplFit:
    theta: float
    coef: np.ndarray
    loglik: float
    plik: float
    blocks: Blocks
    history: pd.DataFrame
    converged: bool
    outer: int


def ppl_fit(
    problem, control: NewtonControl, *, outer_max: int = 10, theta_init: float = 1.0
) -> PplFit:
    """Theta by survival's REML-type rule, with the inner fit at each theta."""
    q, p = problem.q, problem.p
    eps = np.sqrt(control.eps)  # survival passes sqrt(eps) to the control function
    theta = theta_init
    init = np.zeros(p + q)
    history: list[tuple[float, float]] = []
    rows = []
    saved: list[tuple[float, np.ndarray]] = []
    done = False
    it = 0
    for it in range(1, outer_max + 1):
        coef, ll, blocks, plik, inner = _inner(problem, theta, init, control)
        _, _, bb_diag = blocks.inverse(np.full(q, 1.0 / theta))
        trH = float(bb_diag.sum())
        b = coef[p:]
        fsum = float(b @ b)
        resid = fsum / (q - trH / theta) - theta
        history.append((theta, resid))
        rows.append(
            {
                "theta": theta,
                "resid": resid,
                "fsum": fsum,
                "trH": trH,
                "loglik": ll,
                "inner_iterations": inner,
            }
        )
        result = (theta, coef, ll, plik, blocks)
        done = it >= 3 and abs(resid) < eps
        if done:
            break
        saved.append((theta, coef))
        theta = controlgauss(history, it)
        # the next inner fit starts from the solution at the closest theta (survival)
        init = min(saved, key=lambda s: (s[0] - theta) ** 2)[1]
    theta, coef, ll, plik, blocks = result
    return PplFit(theta, coef, ll, plik, blocks, pd.DataFrame(rows), done, it)

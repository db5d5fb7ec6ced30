"""Optimize stage: Newton-Raphson on the partial likelihood, as R survival's coxph.fit.

The rules of survival's ``coxfit6``/``agfit4``: the columns are centred and scaled (those
whose values are all in {-1, 0, 1} are left alone), the first step is a full Newton step
from ``init``, iteration stops when ``|1 - loglik_best / loglik_new| <= eps`` (1e-9) with
no step halving under way, a step that lowers the log-likelihood (or gives non-finite
values) is pulled back toward the best point so far, ``(new + h * best) / (h + 1)`` on the
h-th halving, and the information is factored by survival's ``cholesky2`` with tolerance
``toler_chol`` (columns below it are aliased and get NA coefficients).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._kernels import chinv2, cholesky2, chsolve2

__all__ = ["NewtonControl", "NewtonResult", "column_scaling", "is_nocenter", "newton_raphson"]

Evaluate = Callable[[np.ndarray], tuple[float, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class NewtonControl:
    """survival's ``coxph.control`` defaults."""

    eps: float = 1e-9
    toler_chol: float = float(np.finfo(float).eps ** 0.75)
    iter_max: int = 20
    toler_inf: float = float(np.sqrt(1e-9))


@dataclass(frozen=True, eq=False)
class NewtonResult:
    """Where Newton-Raphson stopped (in the coordinates it was run in)."""

    beta: np.ndarray
    loglik_init: float
    loglik: float
    score: np.ndarray  # at beta
    var: np.ndarray  # inverse information at beta (aliased rows/cols zero)
    score_test: float  # at init
    iterations: int
    converged: bool
    rank: int
    halving: bool


def column_scaling(
    X: np.ndarray, weights: np.ndarray, nocenter=(-1.0, 0.0, 1.0), *, weighted_means: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """coxfit6's centring and scaling: (means, scale) so that ``(X - means) * scale`` is
    what the iteration sees; columns all in ``nocenter`` get mean 0 and scale 1."""
    p = X.shape[1]
    means = np.zeros(p)
    scale = np.ones(p)
    wsum = weights.sum()
    for j in range(p):
        col = X[:, j]
        if is_nocenter(col, nocenter):
            continue
        means[j] = (weights @ col) / wsum if weighted_means else col.mean()
        spread = weights @ np.abs(col - means[j])
        scale[j] = wsum / spread if spread > 0 else 1.0
    return means, scale


def is_nocenter(col: np.ndarray, nocenter=(-1.0, 0.0, 1.0)) -> bool:
    """Whether every value is in ``nocenter`` (survival leaves such columns alone)."""
    if tuple(nocenter) == (-1.0, 0.0, 1.0):
        a = np.abs(col)
        return bool(np.all((a == 0.0) | (a == 1.0)))
    return bool(np.isin(col, nocenter).all())


def _solve(imat: np.ndarray, u: np.ndarray, toler: float) -> tuple[np.ndarray, int]:
    fac = imat.copy()
    rank = cholesky2(fac, toler)
    step = u.copy()
    chsolve2(fac, step)
    return step, rank


def newton_raphson(
    evaluate: Evaluate, init: np.ndarray, control: NewtonControl | None = None
) -> NewtonResult:
    """Maximize a concave log-likelihood with survival's Newton-Raphson rules.

    Parameters
    ----------
    evaluate : callable
        ``beta -> (loglik, score, information)``.
    init : ndarray
        Starting value.
    control : NewtonControl, optional

    Returns
    -------
    NewtonResult

    Examples
    --------
    >>> import numpy as np
    >>> f = lambda b: (-(b[0] - 1) ** 2 - 1, np.array([-2 * (b[0] - 1.0)]), np.array([[2.0]]))
    >>> float(newton_raphson(f, np.zeros(1)).beta[0])
    1.0
    """
    c = control or NewtonControl()
    beta = np.array(init, dtype=float)
    loglik0, u, imat = evaluate(beta)
    step, rank = _solve(imat, u, c.toler_chol)
    score_test = float(u @ step)
    if c.iter_max == 0 or not np.isfinite(loglik0):
        fac = imat.copy()
        cholesky2(fac, c.toler_chol)
        return NewtonResult(
            beta, loglik0, loglik0, u, chinv2(fac), score_test, 0, c.iter_max == 0, rank, False
        )
    best = loglik0
    newbeta = beta + step
    halving = 0
    for it in range(1, c.iter_max + 1):
        newlk, u, imat = evaluate(newbeta)
        fac = imat.copy()
        rank = cholesky2(fac, c.toler_chol)
        finite = np.isfinite(u).all() and np.isfinite(imat).all() and np.isfinite(newlk)
        if finite and abs(1.0 - best / newlk) <= c.eps:
            return NewtonResult(
                newbeta, loglik0, newlk, u, chinv2(fac), score_test, it, True, rank, bool(halving)
            )
        if not finite or newlk < best:
            halving += 1
            newbeta = (newbeta + halving * beta) / (halving + 1.0)
        else:
            halving = 0
            best = newlk
            step = u.copy()
            chsolve2(fac, step)
            beta = newbeta
            newbeta = newbeta + step
    # out of iterations: the last good point, re-evaluated
    best, u, imat = evaluate(beta)
    fac = imat.copy()
    rank = cholesky2(fac, c.toler_chol)
    return NewtonResult(
        beta, loglik0, best, u, chinv2(fac), score_test, c.iter_max, False, rank, bool(halving)
    )

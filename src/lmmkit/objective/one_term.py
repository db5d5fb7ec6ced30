"""Models with one grouping factor: a fused deviance, its analytic gradient, a Newton polish.

The commonest mixed model has a single grouping factor (repeated measures in patients,
sleepstudy's ``(Days | Subject)``). Its penalized system is block diagonal by level, so the
profiled deviance is one pass over tiny p1 x p1 blocks: ``one_term_parts`` does that pass
in compiled code (no Python per level or per evaluation beyond one call).

BOBYQA stops when its trust region is small; the deviance is flat near the optimum, so the
variance parameters it returns can sit ~1e-7 away from the optimum even when the deviance
agrees to 1e-12. For a model with a single grouping factor (no other random terms) the
gradient has a closed form from the per-level cross-products, so the optimum can be
located by solving grad = 0, which pins theta down to ~1e-12 (the gradient is computed to
full precision, unlike the deviance differences BOBYQA relies on).

With Sigma = T T' (the relative covariance of one level), V0 = I + Z Sigma Z', W = [X y]:

* d log|I + T'D_i T| = tr(G_i dSigma),       G_i = Z_i'V0^-1 Z_i = D_i - D_i T A_i^-1 T'D_i
* dM = -sum_i H_i' dSigma H_i,               M = W'V0^-1 W,  H_i = Z_i'V0^-1 W
* d r^2 = v'dM v (envelope over beta),       v = [-Mxx^-1 Mxy; 1],  r^2 = v'Mv
* d log|Mxx| = tr(Mxx^-1 dMxx)               (REML only)

so d(deviance) = tr(C dSigma) with C = sum_i G_i - [sum_i Hx_i Mxx^-1 Hx_i'] - c/r^2 *
sum_i (H_i v)(H_i v)', c = n (ML) or n - p (REML), and d/dtheta_k = 2 (C T)[r_k, c_k] for
theta_k in position (r_k, c_k) of T.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg.lapack import dpotrf

from lmmkit._jit import cached_njit, numba_preferred
from lmmkit.linalg.blocked import CrossProducts, _first_block, _lower_indices, theta_to_T
from lmmkit.linalg.kernels import _first_block_small_numpy
from lmmkit.objective.profiled import deviance_from_parts

__all__ = [
    "one_term_parts",
    "one_term_deviance",
    "single_term_gradient",
    "newton_polish",
    "supports_polish",
    "polish_opt",
    "bobyqa_polished",
    "POLISH_START_FTOL",
]

#: BOBYQA's relative tolerance on the deviance before the Newton polish of a one-term model.
#: From there the polish (chord Newton: one Hessian, linear convergence, up to 20 steps) lands
#: on the same optimum (theta within ~1e-13 of the fully converged BOBYQA start on sleepstudy
#: and Penicillin, REML and ML) with about a third of BOBYQA's evaluations; when it does not
#: converge, BOBYQA runs again from the start at the requested tolerance.
POLISH_START_FTOL = 1e-6

#: Where the one-term passes are vectorized NumPy over the levels (batched products of the
#: p1 x p1 blocks; ``linalg.blocked._first_block``) rather than numba's fused loops, by
#: measurement (per call, one core of a loaded machine):
#:
#: * the deviance, p1 <= 2: always (18 levels 27 vs 2 us; 1,000 levels 51 vs 54 us;
#:   300,000 levels 6.9 vs 17 ms); p1 >= 3: up to ``ONE_TERM_NUMPY_MAX_LEVELS_P3`` levels
#:   (18 levels 39 vs 2 us, but 1,000 levels 1.0 vs 0.1 ms);
#: * the gradient (a few dozen calls per fit): up to ``GRADIENT_NUMPY_MAX_LEVELS`` levels
#:   (18 levels 40 vs 3 us; 1,000 levels 0.6 vs 0.09 ms; 10,000 levels 6.2 vs 0.8 ms).
ONE_TERM_NUMPY_MAX_LEVELS_P3 = 200
GRADIENT_NUMPY_MAX_LEVELS = 2_000


def _numpy_deviance(cp: CrossProducts) -> bool:
    if numba_preferred():
        return False
    return cp.D1.shape[1] <= 2 or cp.D1.shape[0] <= ONE_TERM_NUMPY_MAX_LEVELS_P3


def _numpy_gradient(cp: CrossProducts) -> bool:
    return cp.D1.shape[0] <= GRADIENT_NUMPY_MAX_LEVELS and not numba_preferred()


def supports_polish(cp: CrossProducts) -> bool:
    """True for one block-diagonal unstructured grouping term and no known-covariance
    kernels (a covariance structure's parameters are not lme4's theta)."""
    return (
        cp.first is not None and not cp.rest and not cp.kernels and cp.Rz == 0 and not cp.structured
    )


@cached_njit(inline="always")
def _t_d(T, D, k, TD):  # pragma: no cover - compiled
    """TD <- T'D_k (p1 x p1), shared by the deviance and gradient passes."""
    p1 = T.shape[0]
    for a in range(p1):
        for c in range(p1):
            acc = 0.0
            for b in range(p1):
                acc += T[b, a] * D[k, b, c]
            TD[a, c] = acc


@cached_njit()
def _one_term_parts(D, B, Arr, T):  # pragma: no cover - compiled
    """(ok, log|L|^2, log|R_X|^2, r^2) of the penalized system for one grouping term.

    Per level: A_k = T'D_k T + I by Cholesky; then M = W'W - sum_k B_k'T A_k^-1 T'B_k, whose
    Cholesky factor holds R_X (leading p x p) and r (last diagonal entry).
    """
    nl, p1 = D.shape[0], D.shape[1]
    R = Arr.shape[0]
    p = R - 1
    M = Arr.copy()
    TD = np.empty((p1, p1))
    L = np.empty((p1, p1))
    Y = np.empty((p1, R))
    logdet = 0.0
    for k in range(nl):
        _t_d(T, D, k, TD)
        for a in range(p1):  # lower Cholesky of A_k = TD T + I
            for d in range(a + 1):
                acc = 1.0 if a == d else 0.0
                for c in range(p1):
                    acc += TD[a, c] * T[c, d]
                for c in range(d):
                    acc -= L[a, c] * L[d, c]
                if a == d:
                    if acc <= 0.0:
                        return False, 0.0, 0.0, 0.0
                    L[a, a] = np.sqrt(acc)
                    logdet += 2.0 * np.log(L[a, a])
                else:
                    L[a, d] = acc / L[d, d]
        for r in range(R):  # Y = L^-1 T'B_k
            for a in range(p1):
                acc = 0.0
                for b in range(p1):
                    acc += T[b, a] * B[r, k, b]
                for c in range(a):
                    acc -= L[a, c] * Y[c, r]
                Y[a, r] = acc / L[a, a]
        for r in range(R):
            for t in range(r + 1):
                acc = 0.0
                for a in range(p1):
                    acc += Y[a, r] * Y[a, t]
                M[r, t] -= acc
    ldx = 0.0
    for i in range(R):  # lower Cholesky of M in place (lower triangle used)
        for j in range(i + 1):
            acc = M[i, j]
            for c in range(j):
                acc -= M[i, c] * M[j, c]
            if i == j:
                if acc <= 0.0:
                    return False, 0.0, 0.0, 0.0
                M[i, i] = np.sqrt(acc)
                if i < p:
                    ldx += 2.0 * np.log(M[i, i])
            else:
                M[i, j] = acc / M[j, j]
    return True, logdet, ldx, M[p, p] * M[p, p]


def one_term_parts(cp: CrossProducts, theta: np.ndarray) -> tuple[bool, float, float, float]:
    """(ok, log|L|^2, log|R_X|^2, pwrss) at theta for a one-term model (``supports_polish``)."""
    T = theta_to_T(np.asarray(theta, dtype=float), cp.first.p)  # type: ignore[union-attr]
    if _numpy_deviance(cp):
        return _one_term_parts_numpy(cp.D1, cp.B1, cp.Arr, T)
    return _one_term_parts(cp.D1, cp.B1, cp.Arr, T)


def _one_term_parts_numpy(D, B, Arr, T):
    """_one_term_parts with the first block's pass vectorized over the levels
    (``linalg.blocked._first_block``: M = Arr - sum_k B_k'T A_k^-1 T'B_k), then LAPACK."""
    try:
        if T.shape[0] <= 2:  # pairwise sums (this pass was never the numba kernel's rounding)
            logdet, _, _, BHB = _first_block_small_numpy(T, D, B, False, in_order=False)
        else:
            logdet, _, _, BHB = _first_block(T, D, B, False)
    except np.linalg.LinAlgError:
        return False, 0.0, 0.0, 0.0
    if not np.isfinite(logdet):
        return False, 0.0, 0.0, 0.0
    L, info = dpotrf(Arr - BHB, lower=1, overwrite_a=1, clean=0)
    if info != 0:
        return False, 0.0, 0.0, 0.0
    d = np.diagonal(L)
    p = Arr.shape[0] - 1
    return True, logdet, 2.0 * float(np.log(d[:p]).sum()), float(d[p] * d[p])


def one_term_deviance(
    cp: CrossProducts, theta: np.ndarray, n: int, p: int, reml: bool, log_weights: float = 0.0
) -> float:
    """The profiled deviance of a one-term model (equal to ``profiled_deviance(factor(...))``
    up to rounding)."""
    ok, ld, ldx, r2 = one_term_parts(cp, theta)
    return deviance_from_parts(ok, ld, ldx, r2, n, p, reml, log_weights)


@cached_njit()
def _level_sums(D, B, Arr, T):  # pragma: no cover - compiled
    """sum_k G_k, H_k for every level, and M = W'V0^-1 W (see the module docstring).

    Levels have tiny p1 x p1 blocks: explicit loops (no BLAS/LAPACK call per level).
    """
    nl, p1 = D.shape[0], D.shape[1]
    R = Arr.shape[0]
    H = np.empty((nl, p1, R))
    G = np.zeros((p1, p1))
    M = Arr.copy()
    TD = np.empty((p1, p1))
    A = np.empty((p1, p1))
    Ai = np.empty((p1, p1))
    TB = np.empty((p1, R))
    sB = np.empty((p1, R))
    P = np.empty((p1, p1))
    for k in range(nl):
        _t_d(T, D, k, TD)  # T'D_k; D_k T = TD'
        for a in range(p1):
            for d in range(p1):
                acc = 1.0 if a == d else 0.0
                for c in range(p1):
                    acc += TD[a, c] * T[c, d]
                A[a, d] = acc
        # inverse of the SPD A by Gauss-Jordan without pivoting
        for a in range(p1):
            for d in range(p1):
                Ai[a, d] = 1.0 if a == d else 0.0
        for c in range(p1):
            piv = A[c, c]
            for d in range(p1):
                A[c, d] /= piv
                Ai[c, d] /= piv
            for a in range(p1):
                if a != c:
                    f = A[a, c]
                    if f != 0.0:
                        for d in range(p1):
                            A[a, d] -= f * A[c, d]
                            Ai[a, d] -= f * Ai[c, d]
        for a in range(p1):
            for r in range(R):
                acc = 0.0
                for b in range(p1):
                    acc += T[b, a] * B[r, k, b]
                TB[a, r] = acc
        for a in range(p1):
            for r in range(R):
                acc = 0.0
                for c in range(p1):
                    acc += Ai[a, c] * TB[c, r]
                sB[a, r] = acc
        for a in range(p1):  # P = D_k T A^-1
            for d in range(p1):
                acc = 0.0
                for c in range(p1):
                    acc += TD[c, a] * Ai[c, d]
                P[a, d] = acc
        for a in range(p1):
            for d in range(p1):
                acc = 0.0
                for c in range(p1):
                    acc += P[a, c] * TD[c, d]
                G[a, d] += D[k, a, d] - acc
            for r in range(R):
                acc = 0.0
                for c in range(p1):
                    acc += TD[c, a] * sB[c, r]
                H[k, a, r] = B[r, k, a] - acc
        for r in range(R):
            for t in range(R):
                acc = 0.0
                for a in range(p1):
                    acc += TB[a, r] * sB[a, t]
                M[r, t] -= acc
    return G, H, M


@cached_njit()
def _gradient_C(D, B, Arr, T, reml, n):  # pragma: no cover - compiled
    """C with d(deviance) = tr(C dSigma) (module docstring)."""
    G, H, M = _level_sums(D, B, Arr, T)
    nl, p1, R = H.shape
    p = R - 1
    v = np.empty(R)
    v[p] = 1.0
    Mxx = np.ascontiguousarray(M[:p, :p])
    if p > 0:
        Mi = np.linalg.inv(Mxx)
        for i in range(p):
            acc = 0.0
            for j in range(p):
                acc += Mi[i, j] * M[j, p]
            v[i] = -acc
    else:
        Mi = np.zeros((0, 0))
    r2 = 0.0
    for i in range(R):
        for j in range(R):
            r2 += v[i] * M[i, j] * v[j]
    c = (n - p) if reml else n
    C = G.copy()
    Hv = np.empty(p1)
    S = np.empty((p1, p))
    for k in range(nl):
        for a in range(p1):
            acc = 0.0
            for r in range(R):
                acc += H[k, a, r] * v[r]
            Hv[a] = acc
        for a in range(p1):
            for b in range(p1):
                C[a, b] -= c / r2 * Hv[a] * Hv[b]
        if reml and p > 0:
            for a in range(p1):
                for j in range(p):
                    acc = 0.0
                    for i in range(p):
                        acc += H[k, a, i] * Mi[i, j]
                    S[a, j] = acc
            for a in range(p1):
                for b in range(p1):
                    acc = 0.0
                    for j in range(p):
                        acc += S[a, j] * H[k, b, j]
                    C[a, b] -= acc
    return C


def _gradient_C_numpy(D, B, Arr, T, reml, n):
    """_gradient_C with _level_sums' per-level blocks as batched products over the levels."""
    p1 = D.shape[1]
    R = Arr.shape[0]
    p = R - 1
    TD = T.T @ D  # T'D_k
    DT = TD.transpose(0, 2, 1)  # D_k T
    Ai = np.linalg.inv(TD @ T + np.eye(p1))
    Bk = B.transpose(1, 2, 0)  # (levels, p1, R): B_k
    TB = T.T @ Bk
    sB = Ai @ TB
    G = D.sum(axis=0) - ((DT @ Ai) @ TD).sum(axis=0)
    H = Bk - DT @ sB  # (levels, p1, R)
    M = Arr - TB.reshape(-1, R).T @ sB.reshape(-1, R)
    v = np.empty(R)
    v[p] = 1.0
    if p > 0:
        Mi = np.linalg.inv(np.ascontiguousarray(M[:p, :p]))
        v[:p] = -(Mi @ M[:p, p])
    r2 = float(v @ M @ v)
    c = (n - p) if reml else n
    Hv = H @ v  # (levels, p1)
    C = G - (c / r2) * (Hv.T @ Hv)
    if reml and p > 0:
        Hx = H[:, :, :p]
        C -= np.tensordot(Hx @ Mi, Hx, axes=([0, 2], [0, 2]))
    return C


def single_term_gradient(cp: CrossProducts, theta: np.ndarray, reml: bool, n: int) -> np.ndarray:
    """d(profiled deviance)/d(theta) for a model with one grouping term (see module doc)."""
    p1 = cp.first.p  # type: ignore[union-attr]
    T = theta_to_T(np.asarray(theta, dtype=float), p1)
    gradient_C = _gradient_C_numpy if _numpy_gradient(cp) else _gradient_C
    CT = gradient_C(cp.D1, cp.B1, cp.Arr, T, bool(reml), float(n)) @ T
    if p1 == 1:
        return np.array([2.0 * CT[0, 0]])
    rows, cols = _lower_indices(p1)
    return 2.0 * CT[rows, cols]


def newton_polish(
    cp: CrossProducts,
    theta: np.ndarray,
    lower: np.ndarray,
    deviance,
    reml: bool,
    n: int,
    *,
    max_iter: int = 8,
) -> tuple[np.ndarray, float, int]:
    """Newton steps on grad = 0 from BOBYQA's theta (chord method: one Hessian).

    The Hessian is a forward difference of the analytic gradient, computed once; BOBYQA's
    theta is within ~1e-6 of the optimum, where one step already lands within ~1e-12.
    A step is kept only if the deviance does not rise beyond rounding and theta stays
    within bounds. Fits with a parameter on its bound (singular fits) are left as they are.
    Returns (theta, deviance, steps taken).
    """
    th, f, steps, _ = _polish(cp, theta, lower, deviance, reml, n, max_iter)
    return th, f, steps


def _polish(cp, theta, lower, deviance, reml, n, max_iter=8):
    """newton_polish, and whether it ended on a converged (tiny) Newton step."""
    th = np.asarray(theta, dtype=float).copy()
    f0 = deviance(th)
    if not math.isfinite(f0):  # no residual left (pwrss 0): a degenerate response
        return th, f0, 0, False
    try:
        return _newton_steps(
            cp, th, f0, np.asarray(lower, dtype=float), deviance, reml, n, max_iter
        )
    except ZeroDivisionError:  # a residual sum of squares of exactly 0 (degenerate response)
        return th, f0, 0, False


def _newton_steps(
    cp: CrossProducts,
    th: np.ndarray,
    f0: float,
    lower: np.ndarray,
    deviance,
    reml: bool,
    n: int,
    max_iter: int,
) -> tuple[np.ndarray, float, int, bool]:
    """newton_polish's steps from theta ``th`` with deviance ``f0``; True at the end when
    the last step was below ``_CONVERGED`` of theta."""
    grad = single_term_gradient(cp, th, reml, n)
    if np.any(th <= lower + 1e-8) or not np.all(np.isfinite(grad)):
        return th, f0, 0, False
    k = len(th)
    Hm = np.empty((k, k))
    for j in range(k):
        e = np.zeros(k)
        e[j] = 1e-6 * max(1.0, abs(th[j]))
        Hm[:, j] = (single_term_gradient(cp, th + e, reml, n) - grad) / e[j]
    Hm = 0.5 * (Hm + Hm.T)
    try:
        if not np.all(np.isfinite(Hm)) or np.linalg.eigvalsh(Hm).min() <= 0:
            return th, f0, 0, False
    except np.linalg.LinAlgError:
        return th, f0, 0, False
    steps = 0
    for _ in range(max_iter):
        step = np.linalg.solve(Hm, grad)
        new = th - step
        if np.any(new < lower):
            break
        f1 = deviance(new)
        if not (math.isfinite(f1) and f1 <= f0 + 1e-12 * max(1.0, abs(f0))):
            break
        th, f0 = new, f1
        steps += 1
        if np.max(np.abs(step)) < _CONVERGED * max(1.0, np.max(np.abs(th))):
            return th, f0, steps, True
        grad = single_term_gradient(cp, th, reml, n)
    return th, f0, steps, False


_CONVERGED = 1e-12  # a Newton step this small (relative to theta) ends the polish


def polish_opt(
    cp: CrossProducts, opt, deviance, reml: bool, n: int, *, converged=None, max_iter: int = 8
):
    """BOBYQA's OptSummary with theta and fmin replaced by the Newton-polished ones
    (``converged``: a list that receives whether the polish ended on a converged step)."""
    import dataclasses
    import time

    if not supports_polish(cp) or len(opt.theta) == 0:
        return opt
    start = time.perf_counter()
    th, f, steps, ok = _polish(
        cp, np.array(opt.theta), np.array(opt.lower), deviance, reml, n, max_iter
    )
    if converged is not None:
        converged.append(ok)
    if steps == 0:
        return opt
    return dataclasses.replace(
        opt,
        theta=tuple(map(float, th)),
        fmin=float(f),
        polish_steps=steps,
        seconds=opt.seconds + time.perf_counter() - start,
    )


def bobyqa_polished(cp: CrossProducts, deviance, theta0, lower, control, reml: bool, n: int):
    """BOBYQA, then the Newton polish (``control.polish``); for one-term models BOBYQA
    first runs only to ``POLISH_START_FTOL``; when the polish does not end on a converged
    Newton step (a parameter on its bound, an indefinite Hessian, a step that raises the
    deviance) BOBYQA runs again from ``theta0`` at ``control``'s tolerance, as without the
    loose start."""
    import dataclasses

    from lmmkit.optim.bobyqa import minimize_bobyqa

    loose = (
        control.polish and supports_polish(cp) and len(theta0) > 0
        and control.ftol_rel < POLISH_START_FTOL
    )  # fmt: skip
    if not loose:
        opt = minimize_bobyqa(deviance, theta0, lower, control)
        return polish_opt(cp, opt, deviance, reml, n) if control.polish else opt
    first = minimize_bobyqa(
        deviance, theta0, lower, dataclasses.replace(control, ftol_rel=POLISH_START_FTOL)
    )
    ok: list[bool] = []
    polished = polish_opt(cp, first, deviance, reml, n, converged=ok, max_iter=20)
    if ok and ok[0] and polished.fmin <= first.fmin:
        return dataclasses.replace(polished, control=control)
    # from lme4's start again, not from where the loose run stopped: near a singular fit the
    # surface is flat and a restart there can stop short of the full run's optimum
    rest = minimize_bobyqa(deviance, theta0, lower, control)
    rest = dataclasses.replace(rest, evaluations=first.evaluations + rest.evaluations,
                               seconds=first.seconds + rest.seconds)  # fmt: skip
    return polish_opt(cp, rest, deviance, reml, n)

"""Models whose random terms are all scalar (crossed or nested intercepts): an analytic
gradient and an average-information Newton optimizer of the profiled deviance.

With every term of the form ``(1 | g)`` (or one column ``(0 + x | g)``) the relative
covariance is diagonal, Lambda = diag(theta_k I_{q_k}). Write gamma_k = theta_k^2,
H = I + sum_k gamma_k V_k with V_k = Z_k Z_k' (weighted scale), P the REML projection
H^-1 - H^-1 X (X'H^-1 X)^-1 X'H^-1 and e = P y (the penalized residual). The profiled
deviance (lme4's scale, Bates et al. 2015 eq. 34 and 41) is, up to constants,

    f(gamma) = log|H| [+ log|X'H^-1 X|] + c log(y'Py),      c = n - p (REML) or n (ML)

and its gradient is

    df/dgamma_k = tr(P V_k) - c e'V_k e / y'Py      (REML)
    df/dgamma_k = tr(H^-1 V_k) - c e'V_k e / y'Py   (ML; e'V_k e by the envelope theorem)

with tr(H^-1 V_k) = (q_k - tr_k(A^-1)) / gamma_k, A = Lambda'Z'Z Lambda + I, so the
traces need only the diagonal of A^-1: the selected inverse the conditional variances
already compute (one dpotri of the dense block, pattern reads for the first block). The
REML correction is tr((X'H^-1X)^-1 G_k'G_k), G_k = Z_k'H^-1 X.

The curvature is the average information of Gilmour, Thompson and Cullis (1995) adapted
to the profiled sigma^2: with w_k = V_k e,

    AI_kl = c [ w_k'P w_l / y'Py - (e'w_k)(e'w_l) / (y'Py)^2 ]

(positive semi-definite by Cauchy-Schwarz in the P inner product); every product with
H^-1 is a solve with the factor the deviance already computed. Newton steps are taken in
log gamma, so the parameters stay positive; a step that raises the deviance is halved.
From lme4's start (theta = 1) this converges in about ten iterations where BOBYQA needs
over a hundred deviance evaluations on InstEval (three crossed factors). The optimizer
gives up (and the caller falls back to BOBYQA) when a parameter heads to its bound of 0,
i.e. for singular fits, which BOBYQA handles as lme4 does.
"""

from __future__ import annotations

import functools
import math
import time

import numba
import numpy as np
import scipy.linalg as sla
from scipy.linalg.lapack import dpotri

from lmmkit.linalg.blocked import CrossProducts, Factor, factor
from lmmkit.objective.profiled import profiled_deviance

__all__ = ["supports_ai_newton", "scalar_terms_gradient", "ai_newton"]


@functools.cache
def _controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def supports_ai_newton(cp: CrossProducts) -> bool:
    """True for two or more random terms, all scalar and unstructured, no kernels."""
    terms = cp.terms
    return len(terms) >= 2 and all(t.p == 1 for t in terms) and not cp.kernels and not cp.structured


@numba.njit(cache=True, nogil=True)
def _zt_cols(index, zx, W, nlev):  # pragma: no cover - compiled
    """Z_k'W for a scalar term: out[l, j] = sum over rows i of level l of zx_i W_ij."""
    n, m = W.shape
    out = np.zeros((nlev, m))
    for i in range(n):
        lv = index[i]
        z = zx[i]
        for j in range(m):
            out[lv, j] += z * W[i, j]
    return out


@numba.njit(cache=True, nogil=True)
def _sub_z(out, index, zx, coef, U):  # pragma: no cover - compiled
    """out -= coef * Z_k U for a scalar term (in place)."""
    n, m = out.shape
    for i in range(n):
        lv = index[i]
        z = coef * zx[i]
        for j in range(m):
            out[i, j] -= z * U[lv, j]


@numba.njit(cache=True, nogil=True)
def _pattern_trace(Sinv, ptr, rows, vs, w):  # pragma: no cover - compiled
    """sum_k w_k c_k'S^-1 c_k, c_k the level-k column of the scaled coupling (values ``vs``
    on rows ``rows[ptr[k]:ptr[k+1]]``, sorted); reads the lower triangle of S^-1 only,
    column by column (Fortran order)."""
    total = 0.0
    for k in range(ptr.shape[0] - 1):
        s, e = ptr[k], ptr[k + 1]
        acc = 0.0
        for b in range(s, e):
            rb = rows[b]
            vb = vs[b]
            inner = 0.0
            for a in range(b + 1, e):
                inner += vs[a] * Sinv[rows[a], rb]
            acc += vb * (2.0 * inner + vb * Sinv[rb, rb])
        total += w[k] * acc
    return total


class _Ops:
    """Products with Z_k, Z_k' and H^-1 at one theta, from the factor at that theta."""

    def __init__(self, cp: CrossProducts, f: Factor, theta: np.ndarray):
        self.cp, self.f = cp, f
        self.theta = theta
        self.terms = cp.terms
        self.zx = [np.ascontiguousarray(t.Zx[:, 0]) for t in self.terms]
        Rz = cp.Rz
        # one Fortran-ordered copy: LAPACK would otherwise copy the slice at every solve
        self.Lzz = np.asfortranarray(f.L[:Rz, :Rz])
        rest_theta = theta if cp.first is None else theta[1:]
        self.lam_r = (
            np.concatenate([np.full(t.q, th) for t, th in zip(cp.rest, rest_theta)])
            if cp.rest
            else np.zeros(0)
        )
        if cp.first is not None:
            self.h1 = f.M1inv[:, 0, 0]  # type: ignore[index]
        self.Sinv: np.ndarray | None = None

    def zt(self, k: int, W: np.ndarray) -> np.ndarray:
        """Z_k' W for W (n, m)."""
        t = self.terms[k]
        return _zt_cols(t.index, self.zx[k], np.ascontiguousarray(W), t.nlevels)

    def zt_all(self, e: np.ndarray) -> list[np.ndarray]:
        """Z_k'e for every term, e (n,)."""
        return [self.zt(k, e[:, None])[:, 0] for k in range(len(self.terms))]

    def hinv(self, W: np.ndarray) -> np.ndarray:
        """H^-1 W = W - Z Lambda A^-1 Lambda'Z'W, by block elimination of the first term."""
        cp, th = self.cp, self.theta
        W = np.ascontiguousarray(W)
        v = [th[k] * self.zt(k, W) for k in range(len(self.terms))]
        if cp.first is None:
            x = sla.cho_solve((self.Lzz, True), np.vstack(v), check_finite=False)
            xs = [x[o : o + t.q] for t, o in zip(cp.rest, cp.rest_offsets)]
        else:
            v1, th1 = v[0], th[0]
            hv1 = self.h1[:, None] * v1
            if cp.Rz:
                vr = np.vstack(v[1:])
                t_ = vr - self.lam_r[:, None] * (cp.Az1 @ (th1 * hv1))
                xr = sla.cho_solve((self.Lzz, True), t_, check_finite=False)
                x1 = hv1 - self.h1[:, None] * (th1 * (cp.A1z @ (self.lam_r[:, None] * xr)))
                xs = [x1] + [xr[o : o + t.q] for t, o in zip(cp.rest, cp.rest_offsets)]
            else:
                xs = [hv1]
        out = W.copy()
        for k, x in enumerate(xs):
            t = self.terms[k]
            _sub_z(out, t.index, self.zx[k], float(th[k]), np.ascontiguousarray(x))
        return out

    def ainv_traces(self) -> np.ndarray:
        """tr_k(A^-1) for every term: the rest's from the diagonal of S^-1 (one dpotri),
        the first term's as sum_k h_k + theta_1^2 sum_k h_k^2 c_k'S^-1 c_k."""
        cp, th = self.cp, self.theta
        out = np.empty(len(self.terms))
        Sinv: np.ndarray | None = None
        if cp.Rz:
            Sinv, info = dpotri(self.Lzz, lower=1)
            if info != 0:
                raise np.linalg.LinAlgError("the random-effects factor is singular")
            dg = np.diagonal(Sinv)
            for j, (t, o) in enumerate(zip(cp.rest, cp.rest_offsets)):
                out[j + (cp.first is not None)] = float(dg[o : o + t.q].sum())
        if cp.first is not None:
            h = self.h1
            tr = float(h.sum())
            if cp.Rz:
                vs = cp.V[:, 0] * self.lam_r[cp.rows]
                tr += th[0] ** 2 * _pattern_trace(Sinv, cp.ptr, cp.rows, vs, h * h)
            out[0] = tr
        self.Sinv = Sinv
        return out


def _pieces(cp: CrossProducts, f: Factor, theta: np.ndarray, y: np.ndarray, reml: bool):
    """Gradient in gamma and the average information at theta (all theta_k > 0)."""
    ops = _Ops(cp, f, theta)
    X = cp.X
    n, p = X.shape
    K = len(theta)
    c = n - p if reml else n
    HXy = ops.hinv(np.column_stack([X, y]))
    HX, Hy = HXy[:, :p], HXy[:, p]
    XHX = X.T @ HX
    cf = sla.cho_factor(XHX, lower=True)
    beta = sla.cho_solve(cf, X.T @ Hy)
    e = Hy - HX @ beta
    Q = float(y @ e)
    gamma = theta**2
    tr_a = ops.ainv_traces()
    ze = ops.zt_all(e)
    grad = np.empty(K)
    W = np.empty((n, K))
    for k, t in enumerate(cp.terms):
        tr_hv = (t.q - tr_a[k]) / gamma[k]
        if reml:
            G = ops.zt(k, HX)
            tr_hv -= float(np.sum(G * sla.cho_solve(cf, G.T).T))
        ete = float(ze[k] @ ze[k])
        grad[k] = tr_hv - c * ete / Q
        W[:, k] = t.Zx[:, 0] * ze[k][t.index]
    HW = ops.hinv(W)
    PW = HW - HX @ sla.cho_solve(cf, X.T @ HW)
    ew = np.array([float(z @ z) for z in ze])
    ai = c * ((W.T @ PW) / Q - np.outer(ew, ew) / Q**2)
    return grad, 0.5 * (ai + ai.T), ops.Sinv


def scalar_terms_gradient(
    cp: CrossProducts, theta: np.ndarray, y: np.ndarray, reml: bool
) -> np.ndarray:
    """d(profiled deviance)/d(theta) for an all-scalar-terms model, theta > 0 (``y`` is the
    working response on the weighted scale)."""
    theta = np.asarray(theta, dtype=float)
    f = factor(cp, theta, full=True)
    g, _, _ = _pieces(cp, f, theta, y, reml)
    return 2.0 * theta * g


def ai_newton(
    cp: CrossProducts,
    theta0: np.ndarray,
    y: np.ndarray,
    reml: bool,
    n: int,
    log_weights: float = 0.0,
    *,
    max_iter: int = 50,
    tol: float = 1e-6,
) -> tuple[np.ndarray, float, int, int, str, Factor, np.ndarray | None] | None:
    """Minimize the profiled deviance by average-information Newton steps in log gamma.

    Returns (theta, deviance, iterations, factorizations, status, the factor at theta and
    the lower triangle of S^-1 there), or None when the fit
    heads to a boundary (a variance ratio below 1e-10) or does not converge, so that the
    caller can use BOBYQA instead.
    """
    th = np.asarray(theta0, dtype=float).copy()
    if np.any(th <= 0):
        return None
    p = cp.p

    def dev(fac: Factor) -> float:
        return profiled_deviance(fac, n, p, reml, log_weights)

    f = factor(cp, th, full=True)
    f0 = dev(f)
    nfac = 1
    if not math.isfinite(f0):
        return None
    E = np.zeros((len(th), len(th)))  # secant (SR1) estimate of Hessian - AI
    prev: tuple[np.ndarray, np.ndarray] | None = None
    was_crossing = np.zeros(len(th), dtype=bool)
    for it in range(1, max_iter + 1):
        g, ai, Sinv = _pieces(cp, f, th, y, reml)
        gamma = th**2
        if prev is not None and np.max(np.abs(np.log(gamma / prev[0]))) < 0.05:
            s_ = gamma - prev[0]
            r = g - prev[1] - (ai + E) @ s_
            den = float(r @ s_)
            if abs(den) > 1e-8 * np.linalg.norm(r) * np.linalg.norm(s_):
                E = E + np.outer(r, r) / den
        prev = (gamma, g)
        B = ai + E
        try:
            if np.linalg.eigvalsh(B).min() <= 0:
                B, E = ai, np.zeros_like(E)
            step = -np.linalg.solve(B, g)
        except np.linalg.LinAlgError:
            return None
        if not np.all(np.isfinite(step)):
            return None
        raw = step / gamma
        if np.max(np.abs(raw)) < tol:  # the next step would be below tolerance: converged
            return th, f0, it, nfac, "CONVERGED", f, Sinv
        # a variance ratio whose Newton step would cross zero twice running is heading to
        # its bound (a singular fit): leave it to BOBYQA
        crossing = raw < -1.0
        if np.any(crossing & was_crossing) or np.min(th) < 1e-4:
            return None
        was_crossing = crossing
        delta = np.clip(raw, -3.0, 3.0)  # Newton step in log gamma, bounded
        accepted = False
        for _ in range(30):
            new = th * np.exp(0.5 * delta)
            fn = factor(cp, new, full=True)
            nfac += 1
            d1 = dev(fn)
            if math.isfinite(d1) and d1 <= f0 + 1e-12 * max(1.0, abs(f0)):
                accepted = True
                break
            delta *= 0.5
        if not accepted:
            return None
        th, f, f0 = new, fn, d1
    return None


def moment_start(cp: CrossProducts, y: np.ndarray) -> np.ndarray | None:
    """Starting theta from one-way ANOVA moments of the OLS residuals, per term:
    sigma_k^2 = (MSB_k - MSW_k) / n0_k, sigma^2 = var(r) - sum_k sigma_k^2 (at least a
    tenth of var(r)), theta_k = sigma_k / sigma within [0.01, 10]. None unless every term
    is an unweighted intercept (model column of ones)."""
    terms = cp.terms
    if not all(np.all(t.Zx[:, 0] == 1.0) for t in terms):
        return None
    X = cp.X
    n = len(y)
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    r = y - X @ beta
    rss = float(r @ r)
    vr = rss / max(n - X.shape[1], 1)
    s2 = []
    for t in terms:
        cnt = np.bincount(t.index, minlength=t.nlevels).astype(float)
        sm = np.bincount(t.index, weights=r, minlength=t.nlevels)
        ok = cnt > 0
        J = int(ok.sum())
        if J < 2 or n - J < 1:
            s2.append(vr)
            continue
        between = float((sm[ok] ** 2 / cnt[ok]).sum()) - float(r.sum()) ** 2 / n
        msb = between / (J - 1)
        msw = (rss - float((sm[ok] ** 2 / cnt[ok]).sum())) / (n - J)
        n0 = (n - float((cnt[ok] ** 2).sum()) / n) / (J - 1)
        s2.append(max(msb - msw, 0.0) / n0)
    s2e = max(vr - sum(s2), 0.1 * vr)
    return np.clip(np.sqrt(np.array(s2) / s2e), 0.01, 10.0)


def ai_newton_opt(
    cp: CrossProducts,
    theta0: np.ndarray,
    lower: np.ndarray,
    y: np.ndarray,
    reml: bool,
    n: int,
    log_weights: float,
    control,
):
    """(OptSummary, factor at the optimum, lower triangle of S^-1 there or None) from
    :func:`ai_newton` (started from :func:`moment_start` when it applies, else from
    ``theta0``), or None: then BOBYQA from ``theta0`` decides."""
    from lmmkit.optim.bobyqa import OptSummary

    start = time.perf_counter()
    st = moment_start(cp, y)
    th0 = np.asarray(theta0, dtype=float) if st is None else st
    # one BLAS thread: the iteration alternates LAPACK calls with compiled loops, and
    # OpenBLAS's second thread spins between calls on the core those loops need (measured on
    # InstEval, 2 vCPUs: 0.40 s with one thread against 0.54 s with two)
    with _controller().limit(limits=1, user_api="blas"):
        res = ai_newton(cp, th0, y, reml, n, log_weights)
    if res is None:
        return None
    th, fmin, iters, nfac, status, fac, Sinv = res
    summary = OptSummary(
        "AI-Newton",
        tuple(map(float, th0)),
        tuple(map(float, lower)),
        tuple(map(float, th)),
        float(fmin),
        nfac,
        status,
        time.perf_counter() - start,
        control,
        polish_steps=iters,
    )
    return summary, fac, Sinv

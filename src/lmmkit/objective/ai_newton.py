"""Average-information Newton optimization of the profiled deviance for models with two or
more unstructured random-effects terms (crossed or nested; intercepts or vector terms).

Write V = sigma^2 H, H = I + sum_k Z_k (I_{l_k} (x) Sigma_k) Z_k' with Sigma_k = T_k T_k' the
relative covariance of one level of term k (lme4's theta is the column-major lower triangle
of T_k), P the REML projection H^-1 - H^-1 X (X'H^-1 X)^-1 X'H^-1 and e = P y (the penalized
residual, weighted scale). The profiled deviance (lme4's scale, Bates et al. 2015 eq. 34
and 41) is, up to constants,

    f = log|H| [+ log|X'H^-1 X|] + c log(y'Py),        c = n - p (REML) or n (ML).

For a symmetric perturbation dSigma_k, df = tr(M_k dSigma_k) with

    M_k = sum_l B_l - [sum_l G_l (X'H^-1X)^-1 G_l'] - c/y'Py sum_l u_l u_l'

where, per level l of term k, B_l = T_k^-T (I - A^-1_l) T_k^-1 (the level's block of
Z_k'H^-1 Z_k, A = Lambda'Z'Z Lambda + I and A^-1_l its diagonal block: the conditional
variances' selected inverse, one dpotri of the dense block plus pattern reads for the first
term), G_l the level's rows of Z_k'H^-1 X (REML only) and u_l those of Z_k'e (the envelope
theorem removes beta's dependence). So df/dtheta = 2 (M_k T_k) at theta's positions, and for
a scalar term df/dgamma = M_k with gamma = theta^2.

The curvature is the average information of Gilmour, Thompson and Cullis (1995) adapted to
the profiled sigma^2: with w_j = V_j e for each variance parameter j (V_j = dH/dSigma_j),

    AI_ij = c [ w_i'P w_j / y'Py - (e'w_i)(e'w_j) / (y'Py)^2 ]

(positive semi-definite by Cauchy-Schwarz in the P inner product); every product with H^-1
is a solve with the factor the deviance already computed. Newton steps are taken in the
elements of Sigma_k, in log gamma for scalar terms (they stay positive), with a secant
(SR1) correction of AI once the steps are small, and halved when the deviance would rise
or a Sigma_k would leave the positive-definite cone. On InstEval (three crossed intercepts)
this converges in about five iterations where BOBYQA needs over a hundred deviance
evaluations. The optimizer gives up, and the caller falls back to BOBYQA from lme4's start,
when a variance heads to zero or a correlation to +-1 (a singular fit, which BOBYQA treats as
lme4 does).
"""

from __future__ import annotations

import functools
import math
import time

import numpy as np
import scipy.linalg as sla
from scipy.linalg.lapack import dpotri

from lmmkit._jit import cached_njit, numba_preferred
from lmmkit.linalg.blocked import CrossProducts, Factor, _lower_indices, factor
from lmmkit.linalg.kernels import selected_quadratic_forms, symmetrize_lower
from lmmkit.linalg.pattern import pattern_products
from lmmkit.linalg.solve import _lambda_rest, term_condvars
from lmmkit.linalg.sparse_rest import SparseFactor
from lmmkit.objective.profiled import profiled_deviance

__all__ = ["supports_ai_newton", "profiled_gradient", "ai_newton", "ai_newton_opt"]


@functools.cache
def _controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def supports_ai_newton(cp: CrossProducts) -> bool:
    """True for two or more unstructured random terms and no known-covariance kernels."""
    return len(cp.terms) >= 2 and not cp.kernels and not cp.structured


#: Multiply-adds (rows x p x columns) up to which the products with Z_k are NumPy
#: (``np.bincount`` and gathers per column) rather than numba's one pass: at InstEval's size
#: (73,421 rows, 3 columns) both take ~0.3 ms; at a million rows NumPy takes 2-2.5x longer
#: (8-10 vs 4.4 ms per product, one core), where the numba kernels are used.
Z_NUMPY_MAX_WORK = 2_000_000


def _numpy_size(work: int) -> bool:
    return work <= Z_NUMPY_MAX_WORK and not numba_preferred()


def _zt_numpy(index, Zx, W, nlev):
    """_zt_cols by one ``np.bincount`` per (column of Z_k, column of W)."""
    m = W.shape[1]
    p = Zx.shape[1]
    out = np.empty((nlev, p, m))
    for a in range(p):
        for j in range(m):
            out[:, a, j] = np.bincount(index, Zx[:, a] * W[:, j], minlength=nlev)
    return out


def _add_z_numpy(out, index, Zx, U, sign):
    """_add_z by a gather of each (a, j) column of U."""
    for a in range(Zx.shape[1]):
        z = sign * Zx[:, a]
        for j in range(out.shape[1]):
            out[:, j] += z * U[:, a, j][index]


def _level_products_numpy(A, x, transpose):
    """_level_products as p broadcast multiply-adds over all levels (p is small)."""
    At = A.transpose(0, 2, 1) if transpose else A
    out = At[:, :, 0, None] * x[:, None, 0, :]
    for b in range(1, x.shape[1]):
        out += At[:, :, b, None] * x[:, None, b, :]
    return out


@cached_njit(nogil=True)
def _zt_cols(index, Zx, W, nlev):  # pragma: no cover - compiled
    """Z_k'W per level: out[l, a, j] = sum over rows i of level l of Zx[i, a] W[i, j]."""
    n, m = W.shape
    p = Zx.shape[1]
    out = np.zeros((nlev, p, m))
    for i in range(n):
        lv = index[i]
        for a in range(p):
            z = Zx[i, a]
            for j in range(m):
                out[lv, a, j] += z * W[i, j]
    return out


@cached_njit(nogil=True)
def _add_z(out, index, Zx, U, sign):  # pragma: no cover - compiled
    """out += sign * Z_k U in place, U (levels, p, m) per level."""
    n, m = out.shape
    p = Zx.shape[1]
    for i in range(n):
        lv = index[i]
        for a in range(p):
            z = sign * Zx[i, a]
            for j in range(m):
                out[i, j] += z * U[lv, a, j]


@cached_njit(nogil=True)
def _level_products(A, x, transpose):  # pragma: no cover - compiled
    """A_l x_l (A_l' x_l if transpose) for every level l; A (levels or 1, p, p), x (levels,
    p, m). One pass over x: NumPy's einsum or matmul on stacks of 2 x 2 blocks spends ~10x
    longer per level on dispatch than on the multiply-adds."""
    levels, p, m = x.shape
    out = np.empty((levels, p, m))
    shared = A.shape[0] == 1
    for lv in range(levels):
        la = 0 if shared else lv
        for a in range(p):
            for j in range(m):
                s = 0.0
                for b in range(p):
                    s += (A[la, b, a] if transpose else A[la, a, b]) * x[lv, b, j]
                out[lv, a, j] = s
    return out


def _per_level(A: np.ndarray, x: np.ndarray, transpose: bool = False) -> np.ndarray:
    """A_l x_l (or A_l' x_l) per level, A (levels, p, p) or one (p, p) for every level."""
    if A.ndim == 2:
        A = A[None]
    if A.shape[-1] == 1:  # scalar terms: a broadcast product
        return A * x
    if _numpy_size(x.size * x.shape[1]):
        return _level_products_numpy(A, x, transpose)
    return _level_products(
        np.ascontiguousarray(A, dtype=np.float64), np.ascontiguousarray(x, dtype=np.float64),
        transpose,
    )  # fmt: skip


def _times_T(T: np.ndarray, x: np.ndarray, transpose: bool) -> np.ndarray:
    """T (or T') applied to every level's block of x (levels, p, m)."""
    if T.shape[0] == 1:
        return T[0, 0] * x
    return _per_level(T, x, transpose)


class _Ops:
    """Products with Z_k, Z_k' and H^-1 at one theta, from the factor at that theta."""

    def __init__(self, cp: CrossProducts, f: Factor | SparseFactor):
        self.cp, self.f = cp, f
        self.terms = cp.terms
        self.T = f.T
        self.sparse = isinstance(f, SparseFactor)
        # one Fortran-ordered copy: LAPACK would otherwise copy the slice at every solve
        self.Lzz = None if self.sparse else np.asfortranarray(f.L[: cp.Rz, : cp.Rz])
        self.Sinv: np.ndarray | None = None

    def _solve_rest(self, rhs: np.ndarray) -> np.ndarray:
        """S^-1 rhs for the random-effects part of the rest block."""
        if self.sparse:
            return self.f.solve(rhs)
        return sla.cho_solve((self.Lzz, True), rhs, check_finite=False)

    def zt(self, k: int, W: np.ndarray) -> np.ndarray:
        """Z_k'W, (levels, p, m), for W (n, m)."""
        t = self.terms[k]
        if _numpy_size(W.size * t.Zx.shape[1]):
            return _zt_numpy(t.index, t.Zx, W, t.nlevels)
        return _zt_cols(t.index, t.Zx, np.ascontiguousarray(W), t.nlevels)

    def add_z(self, out: np.ndarray, k: int, U: np.ndarray, sign: float = 1.0) -> None:
        """out += sign Z_k U in place, U (levels, p, m)."""
        t = self.terms[k]
        if _numpy_size(out.size * t.Zx.shape[1]):
            _add_z_numpy(out, t.index, t.Zx, U, sign)
        else:
            _add_z(out, t.index, t.Zx, np.ascontiguousarray(U), sign)

    def hinv(self, W: np.ndarray) -> np.ndarray:
        """H^-1 W = W - Z Lambda A^-1 Lambda'Z'W, by block elimination of the first term."""
        cp, f = self.cp, self.f
        W = np.ascontiguousarray(W)
        m = W.shape[1]
        v = [_times_T(self.T[k], self.zt(k, W), True) for k in range(len(self.terms))]
        if cp.first is None:
            x = sla.cho_solve(
                (self.Lzz, True), np.vstack([a.reshape(-1, m) for a in v]), check_finite=False
            )
            xs = [
                x[o : o + t.q].reshape(t.nlevels, t.p, m) for t, o in zip(cp.rest, cp.rest_offsets)
            ]
        else:
            M1inv = f.M1inv
            hv1 = _per_level(M1inv, v[0])
            if cp.Rz:
                vr = np.vstack([a.reshape(-1, m) for a in v[1:]])
                y1 = _times_T(self.T[0], hv1, False).reshape(-1, m)
                rhs = vr - _lambda_rest(cp, f, cp.Az1 @ y1, transpose=True)
                xr = self._solve_rest(rhs)
                z1 = (cp.A1z @ _lambda_rest(cp, f, xr, transpose=False)).reshape(hv1.shape)
                x1 = hv1 - _per_level(M1inv, _times_T(self.T[0], z1, True))
                xs = [x1] + [
                    xr[o : o + t.q].reshape(t.nlevels, t.p, m)
                    for t, o in zip(cp.rest, cp.rest_offsets)
                ]
            else:
                xs = [hv1]
        out = W.copy()
        for k, x in enumerate(xs):
            self.add_z(out, k, _times_T(self.T[k], x, False), -1.0)
        return out

    def _sinv(self) -> np.ndarray | None:
        if self.sparse:
            return None  # the sparse factor keeps its selected inverse
        if self.Sinv is None and self.cp.Rz:
            Sinv, info = dpotri(self.Lzz, lower=1)
            if info != 0:
                raise np.linalg.LinAlgError("the random-effects factor is singular")
            self.Sinv = Sinv
        return self.Sinv

    def ainv_sums(self) -> list[np.ndarray]:
        """sum over levels of the diagonal blocks A^-1_l, per term (p x p each)."""
        cp = self.cp
        Sinv = self._sinv()
        if all(t.p == 1 for t in self.terms):  # scalar terms: diagonal and pattern reads
            out = []
            if cp.first is not None:
                h = self.f.M1inv[:, 0, 0]  # type: ignore[index]
                tr = float(h.sum())
                if cp.Rz:
                    lam = np.concatenate(
                        [np.full(t.q, T[0, 0]) for t, T in zip(cp.rest, self.T[1:])]
                    )
                    G = (cp.V[:, 0] * lam[cp.rows] * h[cp.pair_level])[:, None]
                    pp = None if self.sparse else pattern_products(cp)
                    if self.sparse:
                        quad = self.f.sinv_quadratic_forms(cp.ptr, cp.rows, G)
                    elif pp is not None:  # G_i = V_i lam_r h_k; Sinv's lower triangle
                        quad = h**2 * pp.quadratic_forms(Sinv, lam)[:, 0, 0]
                    else:
                        quad = selected_quadratic_forms(
                            symmetrize_lower(Sinv), cp.ptr, cp.rows, G, cp.schur_work
                        )
                    tr += self.T[0][0, 0] ** 2 * float(quad.sum())
                out.append(np.array([[tr]]))
            if self.sparse:
                dg = self.f.sinv_diagonal()
            else:
                dg = np.diagonal(Sinv) if cp.Rz else np.zeros(0)
            for t, o in zip(cp.rest, cp.rest_offsets):
                out.append(np.array([[float(dg[o : o + t.q].sum())]]))
            return out
        cv = term_condvars(cp, self.f, 1.0, Sinv)  # T A^-1_l T' per level
        sums = []
        for T, c in zip(self.T, cv):
            Ti = sla.solve_triangular(T, np.eye(T.shape[0]), lower=True)
            sums.append(Ti @ c.sum(axis=0) @ Ti.T)
        return sums


def _param_index(terms) -> list[tuple[int, int, int]]:
    """(term, row, col) of every variance parameter, in lme4's theta order."""
    out = []
    for k, t in enumerate(terms):
        rows, cols = _lower_indices(t.p)
        out += [(k, int(a), int(b)) for a, b in zip(rows, cols)]
    return out


def _pieces(cp: CrossProducts, f: Factor, y: np.ndarray, reml: bool):
    """Per-term gradient matrices M_k, the element-space gradient and the average
    information at the factor's theta (interior: every T_k invertible)."""
    ops = _Ops(cp, f)
    X = cp.X
    n, p = X.shape
    c = n - p if reml else n
    HXy = ops.hinv(np.column_stack([X, y]))
    HX, Hy = HXy[:, :p], HXy[:, p]
    XHX = X.T @ HX
    if p:
        cf = sla.cho_factor(XHX, lower=True)
        beta = sla.cho_solve(cf, X.T @ Hy)
        e = Hy - HX @ beta
    else:
        e = Hy
    Q = float(y @ e)
    sums = ops.ainv_sums()
    Ms, us = [], []
    for k, t in enumerate(cp.terms):
        Ti = sla.solve_triangular(f.T[k], np.eye(t.p), lower=True)
        M = Ti.T @ (t.nlevels * np.eye(t.p) - sums[k]) @ Ti
        if reml and p:
            G = ops.zt(k, HX)  # (levels, p, p_x)
            GX = sla.cho_solve(cf, G.reshape(-1, p).T).T.reshape(G.shape)
            M -= np.tensordot(G, GX, axes=([0, 2], [0, 2]))
        u = ops.zt(k, e[:, None])[:, :, 0]  # (levels, p)
        M -= (c / Q) * (u.T @ u)
        Ms.append(0.5 * (M + M.T))
        us.append(u)
    idx = _param_index(cp.terms)
    grad = np.array([Ms[k][a, b] * (1.0 if a == b else 2.0) for k, a, b in idx])
    W = np.zeros((n, len(idx)))
    ew = np.empty(len(idx))
    for j, (k, a, b) in enumerate(idx):
        u = us[k]
        D = np.zeros((u.shape[0], u.shape[1], 1))
        D[:, a, 0] += u[:, b]
        if a != b:
            D[:, b, 0] += u[:, a]
        ops.add_z(W[:, j : j + 1], k, D)
        ew[j] = float(u[:, a] @ u[:, b]) * (1.0 if a == b else 2.0)
    HW = ops.hinv(W)
    PW = HW - HX @ sla.cho_solve(cf, X.T @ HW) if p else HW
    ai = c * ((W.T @ PW) / Q - np.outer(ew, ew) / Q**2)
    return Ms, grad, 0.5 * (ai + ai.T), ops.Sinv


def profiled_gradient(
    cp: CrossProducts, theta: np.ndarray, y: np.ndarray, reml: bool
) -> np.ndarray:
    """d(profiled deviance)/d(theta) in lme4's theta order (interior theta; ``y`` is the
    working response on the weighted scale)."""
    theta = np.asarray(theta, dtype=float)
    f = factor(cp, theta, full=True)
    Ms, _, _, _ = _pieces(cp, f, y, reml)
    out = []
    for M, T, t in zip(Ms, f.T, cp.terms):
        rows, cols = _lower_indices(t.p)
        out.append(2.0 * (M @ T)[rows, cols])
    return np.concatenate(out)


def _sigmas(Ts: list[np.ndarray]) -> list[np.ndarray]:
    return [T @ T.T for T in Ts]


def _theta_of(sigmas: list[np.ndarray]) -> np.ndarray | None:
    """lme4's theta from the relative covariances (None if one is not positive definite)."""
    out = []
    for S in sigmas:
        try:
            T = np.linalg.cholesky(S)
        except np.linalg.LinAlgError:
            return None
        rows, cols = _lower_indices(S.shape[0])
        out.append(T[rows, cols])
    return np.concatenate(out)


def _near_singular(S: np.ndarray) -> bool:
    d = np.sqrt(np.diagonal(S))
    if np.any(d < 1e-4):
        return True
    if S.shape[0] == 1:
        return False
    return float(np.linalg.eigvalsh(S / np.outer(d, d)).min()) < 1e-6


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
    """Minimize the profiled deviance by average-information Newton steps.

    Returns (theta, deviance, iterations, factorizations, status, the factor at theta and
    the lower triangle of S^-1 there), or None when the fit heads to a boundary (a variance
    to zero, a correlation to +-1) or does not converge, so that the caller can use BOBYQA.
    """
    p = cp.p
    terms = cp.terms
    idx = _param_index(terms)
    scalar = np.array([terms[k].p == 1 for k, _, _ in idx])

    def dev(fac: Factor) -> float:
        return profiled_deviance(fac, n, p, reml, log_weights)

    f = factor(cp, np.asarray(theta0, dtype=float), full=True)
    f0 = dev(f)
    nfac = 1
    if not math.isfinite(f0):
        return None
    sig = _sigmas(f.T)
    if any(_near_singular(S) for S in sig):
        return None
    npar = len(idx)
    E = np.zeros((npar, npar))  # secant (SR1) estimate of Hessian - AI
    prev: tuple[np.ndarray, np.ndarray] | None = None
    was_leaving = np.zeros(npar, dtype=bool)
    for it in range(1, max_iter + 1):
        _, g, ai, Sinv = _pieces(cp, f, y, reml)
        x = np.array([sig[k][a, b] for k, a, b in idx])
        scale = np.array([math.sqrt(sig[k][a, a] * sig[k][b, b]) for k, a, b in idx])
        if prev is not None and np.max(np.abs(x - prev[0]) / scale) < 0.05:
            s_ = x - prev[0]
            r = g - prev[1] - (ai + E) @ s_
            den = float(r @ s_)
            if abs(den) > 1e-8 * np.linalg.norm(r) * np.linalg.norm(s_):
                E = E + np.outer(r, r) / den
        prev = (x, g)
        B = ai + E
        try:
            if np.linalg.eigvalsh(B).min() <= 0:
                B, E = ai, np.zeros_like(E)
            step = -np.linalg.solve(B, g)
        except np.linalg.LinAlgError:
            return None
        if not np.all(np.isfinite(step)):
            return None
        rel = step / scale
        if np.max(np.abs(rel)) < tol:  # the next step would be below tolerance: converged
            theta = _theta_of(sig)
            return theta, f0, it, nfac, "CONVERGED", f, Sinv  # type: ignore[return-value]
        # a variance whose Newton step would cross zero twice running is heading to its
        # bound (a singular fit): leave it to BOBYQA
        leaving = scalar & (rel < -1.0)
        if np.any(leaving & was_leaving):
            return None
        was_leaving = leaving
        log_step = np.clip(rel, -3.0, 3.0)  # scalar terms: step in log gamma, bounded
        accepted = False
        t = 1.0
        for _ in range(30):
            xn = np.where(scalar, x * np.exp(t * log_step), x + t * step)
            new_sig = [S.copy() for S in sig]
            for (k, a, b), v in zip(idx, xn):
                new_sig[k][a, b] = new_sig[k][b, a] = v
            theta = _theta_of(new_sig)
            if theta is not None:
                fn = factor(cp, theta, full=True)
                nfac += 1
                d1 = dev(fn)
                if math.isfinite(d1) and d1 <= f0 + 1e-12 * max(1.0, abs(f0)):
                    accepted = True
                    break
            t *= 0.5
        if not accepted:
            return None
        f, f0, sig = fn, d1, new_sig
        if any(_near_singular(S) for S in sig):
            return None
    return None


def moment_start(cp: CrossProducts, y: np.ndarray) -> np.ndarray | None:
    """Starting theta from one-way ANOVA moments of the OLS residuals, per term:
    sigma_k^2 = (MSB_k - MSW_k) / n0_k, sigma^2 = var(r) - sum_k sigma_k^2 (at least a
    tenth of var(r)), theta_k = sigma_k / sigma within [0.01, 10]. None unless every term
    is an unweighted intercept (model column of ones)."""
    terms = cp.terms
    if not all(t.p == 1 and np.all(t.Zx[:, 0] == 1.0) for t in terms):
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

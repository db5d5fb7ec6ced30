"""Exact per-SNP linear-mixed-model tests in the eigenbasis of one kinship matrix.

Model (Zhou & Stephens 2012, GEMMA ``-lmm``): y = W a + x b + g + e, g ~ N(0, Vg K),
e ~ N(0, Ve I), lambda = Vg/Ve.  With K = U diag(s) U' every quantity is a weighted sum
over the n rotated samples with weights 1/(lambda s_i + 1), so after rotating y, W and a
block of SNPs once, the likelihood of each SNP is a cheap function of its own lambda.

Per SNP (all vectorized over the SNPs of a block):

* Wald  -- lambda re-estimated by REML under the alternative; F = b^2/se^2 ~ F(1, n-c-1).
* LRT   -- lambda re-estimated by ML under the alternative, against the ML null;
  2 (logL1 - logL0) ~ chi2(1).
* score -- lambda fixed at the null model's ML estimate (as GEMMA); F = n (x'Py)^2 / (x'Px y'Py) ~ F(1, n-c-1),
  P the projection of the null model (c covariates).

lambda is searched, like GEMMA, over [1e-5, 1e5] split into 10 log-spaced regions: the sign
of d logL / d lambda at the 11 region ends (one lambda for all SNPs, so these are matrix
products) brackets each local maximum; each bracket is then solved for
d logL / d log(lambda) = 0 by a Newton iteration with analytic second derivatives,
safeguarded by bisection, until the step is below 1e-10 in log(lambda); the best of the
interior maxima and the two bounds is kept.  The per-SNP weighted Gram matrices of
[W, x, y] (weights 1/h, s/h^2, s^2/h^3 with h = lambda s + 1) are sums over the samples.

:func:`assoc_rotated` runs this search per SNP in one compiled kernel (:func:`_k_snps`,
threads over SNPs): the Grams at the grid and at the null lambdas come from matrix
products; the bracket holding the null lambda starts from the Newton step off it; a
Newton step below 1e-5 in log(lambda) is the last one, its Grams taken from their Taylor
series in lambda (relative error < 1e-15) instead of another pass over the samples.
:func:`optimize_lambda` (null model) and ``_assoc_rotated_numpy`` run the same search
vectorized in NumPy; the tests hold the two to 1e-8.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numba
import numpy as np
from scipy import linalg, special

from lmmkit.errors import DataError

__all__ = [
    "NullModel",
    "fit_null",
    "assoc_rotated",
    "optimize_lambda",
    "LAMBDA_BOUNDS",
    "N_REGION",
]

LAMBDA_BOUNDS = (1e-5, 1e5)
# kinships up to this size are eigendecomposed with one BLAS thread (see fit_null)
EIGH_SERIAL_MAX = 2000
# the compiled search ends with a Taylor step (no further pass) once a Newton step in
# log(lambda) is below this: the remaining error is O(step^2)
_TAYLOR_STEP = 1e-5
N_REGION = 10
_LOG2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True)
class NullModel:
    """Eigendecomposition of the (re-centered) kinship and the fitted null model."""

    s: np.ndarray = field(repr=False)  # eigenvalues (n,)
    u: np.ndarray = field(repr=False)  # eigenvectors (n, n)
    uty: np.ndarray = field(repr=False)  # U'y
    utw: np.ndarray = field(repr=False)  # U'W
    lam_remle: float
    lam_mle: float
    logl_remle: float
    logl_mle: float
    vg: float
    ve: float
    pve: float
    trace_k: float

    @property
    def n(self) -> int:
        return len(self.s)

    @property
    def c(self) -> int:
        return self.utw.shape[1]


# ----------------------------------------------------------------------------- Gram matrices
#
# For each SNP j the columns are Z_j = [W, x_j, y]; q = c + 2.  A "Gram" is
# G[j] = sum_i w_ij Z_ij Z_ij' for a weight matrix w (n x m) or a shared weight vector.


def _z0_outer(z0: np.ndarray) -> np.ndarray:
    """(n, (c+1)^2) products of the columns of z0 = [W, y]."""
    n, k = z0.shape
    return (z0[:, :, None] * z0[:, None, :]).reshape(n, k * k)


def _assemble(gzz: np.ndarray, gzx: np.ndarray, gxx: np.ndarray) -> np.ndarray:
    """Stack the [W, y] block, the cross terms and x'x into (m, q, q) with order [W, x, y]."""
    m = gxx.shape[0]
    k = gzx.shape[1]  # c + 1
    c = k - 1
    q = k + 1
    g = np.empty((m, q, q))
    zz = gzz.reshape(m, k, k)
    order = list(range(c)) + [c + 1]  # positions of W columns and y in the q-ordering
    g[np.ix_(np.arange(m), order, order)] = zz
    g[:, order, c] = gzx
    g[:, c, order] = gzx
    g[:, c, c] = gxx
    return g


def _pairs(q: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.tril_indices(q)
    return a.astype(np.int64), b.astype(np.int64)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _grams_kernel(s, z0, x, lam, pa, pb, out, tr):  # pragma: no cover - compiled
    """out[w, p, j] += sum_i weight_w(lam_j, s_i) z_a z_b for the column pairs p = (pa, pb)
    of [W..., x, y] (x at position c = z0.shape[1] - 1); weights 1/h, s/h^2, s^2/h^3 with
    h = lam_j s_i + 1.  tr[0] += s/h, tr[1] += (s/h)^2.  SNPs are processed in tiles of
    64 so the accumulators stay in L1 cache."""
    n, k = z0.shape
    c = k - 1
    m = x.shape[1]
    npair = pa.shape[0]
    tile = 64
    h1 = np.empty(tile)
    w2 = np.empty(tile)
    w3 = np.empty(tile)
    v = np.empty(tile)
    acc = np.zeros((3, npair, tile))
    t0 = np.zeros(tile)
    t1 = np.zeros(tile)
    for j0 in range(0, m, tile):
        jn = min(tile, m - j0)
        acc[:] = 0.0
        t0[:] = 0.0
        t1[:] = 0.0
        lt = lam[j0 : j0 + jn]
        for i in range(n):
            si = s[i]
            xi = x[i, j0 : j0 + jn]
            for j in range(jn):
                h = 1.0 / (lt[j] * si + 1.0)
                sh = si * h
                h1[j] = h
                w2[j] = sh * h
                w3[j] = sh * sh * h
                t0[j] += sh
                t1[j] += sh * sh
            for p in range(npair):
                a = pa[p]
                b = pb[p]
                if a == c and b == c:
                    for j in range(jn):
                        v[j] = xi[j] * xi[j]
                elif a == c or b == c:
                    other = b if a == c else a
                    zo = z0[i, other if other < c else c]
                    for j in range(jn):
                        v[j] = xi[j] * zo
                else:
                    zz = z0[i, a if a < c else c] * z0[i, b if b < c else c]
                    for j in range(jn):
                        v[j] = zz
                for j in range(jn):
                    acc[0, p, j] += h1[j] * v[j]
                    acc[1, p, j] += w2[j] * v[j]
                    acc[2, p, j] += w3[j] * v[j]
        for w in range(3):
            for p in range(npair):
                for j in range(jn):
                    out[w, p, j0 + j] += acc[w, p, j]
        for j in range(jn):
            tr[0, j0 + j] += t0[j]
            tr[1, j0 + j] += t1[j]


def _grams_varying(
    s: np.ndarray,
    z0: np.ndarray,
    zz0: np.ndarray,
    x: np.ndarray,
    lam: np.ndarray,
    second: bool = False,
):
    """Grams with weights 1/h, s/h^2 (and s^2/h^3 when ``second``), h = lam_j s_i + 1,
    for per-SNP lambda (one fused compiled pass over the block).  Also returns
    sum_i s_i/h_ij and sum_i s_i^2/h_ij^2."""
    q = z0.shape[1] + 1
    pa, pb = _pairs(q)
    nw = 3 if second else 2
    m = x.shape[1]
    acc = np.zeros((3, len(pa), m))
    tr = np.zeros((2, m))
    _grams_kernel(
        s,
        np.ascontiguousarray(z0),
        np.ascontiguousarray(x),
        np.ascontiguousarray(lam, dtype=np.float64),
        pa,
        pb,
        acc,
        tr,
    )
    out = []
    for w in range(nw):
        g = np.empty((m, q, q))
        g[:, pa, pb] = acc[w].T
        g[:, pb, pa] = acc[w].T
        out.append(g)
    return out, tr[0], (tr[1] if second else None)


def _grams_fixed(
    s: np.ndarray, z0: np.ndarray, zz0: np.ndarray, x: np.ndarray, x2: np.ndarray, lam: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Same as :func:`_grams_varying` for one lambda shared by all SNPs (matrix products)."""
    h1 = 1.0 / (lam * s + 1.0)
    h2 = s * h1 * h1
    m = x.shape[1]
    out = []
    for w in (h1, h2):
        gxx = w @ x2
        gzx = x.T @ (z0 * w[:, None])
        gzz = np.broadcast_to(w @ zz0, (m, zz0.shape[1]))
        out.append(_assemble(gzz, gzx, gxx))
    return out[0], out[1], float(s @ h1)


def _solve_sym(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched solve of small SPD systems a (m,k,k) x = b (m,k)."""
    return np.linalg.solve(a, b[..., None])[..., 0]


def _deriv_pieces(g1: np.ndarray, g2: np.ndarray, na: int):
    """y'Py, y'PKPy and tr(M^-1 A'DKDA) for the design of the first ``na`` columns."""
    m1 = g1[:, :na, :na]
    ay = g1[:, :na, -1]
    beta = _solve_sym(m1, ay)
    ypy = g1[:, -1, -1] - np.einsum("ij,ij->i", ay, beta)
    rho = np.concatenate([-beta, np.ones((beta.shape[0], 1))], axis=1)
    sel = list(range(na)) + [g1.shape[1] - 1]
    g2s = g2[:, sel][:, :, sel]
    ypkpy = np.einsum("ij,ijk,ik->i", rho, g2s, rho)
    minv_b = np.linalg.solve(m1, g2[:, :na, :na])
    trm = np.trace(minv_b, axis1=1, axis2=2)
    logdet_m = np.linalg.slogdet(m1)[1]
    return ypy, ypkpy, trm, logdet_m


def _dlogl_dt(
    method: str, lam: np.ndarray, n: int, na: int, g1, g2, tr1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """d logL / d log(lambda) (REML 'R' or ML 'L'), plus y'Py and log|A'H^-1A|."""
    ypy, ypkpy, trm, logdet_m = _deriv_pieces(g1, g2, na)
    if method == "R":
        df = n - na
        d = -0.5 * (tr1 - trm) + 0.5 * df * ypkpy / ypy
    else:
        d = -0.5 * tr1 + 0.5 * n * ypkpy / ypy
    return lam * d, ypy, logdet_m


def _d12_dt(method: str, lam, n: int, na: int, g1, g2, g3, tr1, tr2):
    """First and second derivatives of logL in t = log(lambda)."""
    m1 = g1[:, :na, :na]
    ay = g1[:, :na, -1]
    beta = _solve_sym(m1, ay)
    ypy = g1[:, -1, -1] - np.einsum("ij,ij->i", ay, beta)
    rho = np.concatenate([-beta, np.ones((beta.shape[0], 1))], axis=1)
    sel = list(range(na)) + [g1.shape[1] - 1]
    g2s = g2[:, sel][:, :, sel]
    g3s = g3[:, sel][:, :, sel]
    ypkpy = np.einsum("ij,ijk,ik->i", rho, g2s, rho)
    u = np.einsum("ijk,ik->ij", g2s[:, :na, :], rho)  # A' D K D r
    ypkpkpy = np.einsum("ij,ijk,ik->i", rho, g3s, rho) - np.einsum("ij,ij->i", u, _solve_sym(m1, u))
    q = ypkpy / ypy
    if method == "R":
        df = n - na
        minv_b1 = np.linalg.solve(m1, g2[:, :na, :na])
        minv_b2 = np.linalg.solve(m1, g3[:, :na, :na])
        trpk = tr1 - np.trace(minv_b1, axis1=1, axis2=2)
        trpkpk = (
            tr2
            - 2.0 * np.trace(minv_b2, axis1=1, axis2=2)
            + np.einsum("ijk,ikj->i", minv_b1, minv_b1)
        )
        d1 = -0.5 * trpk + 0.5 * df * q
        d2 = 0.5 * trpkpk - df * ypkpkpy / ypy + 0.5 * df * q * q
    else:
        d1 = -0.5 * tr1 + 0.5 * n * q
        d2 = 0.5 * tr2 - n * ypkpkpy / ypy + 0.5 * n * q * q
    return lam * d1, lam * lam * d2 + lam * d1


def _logl(method: str, n: int, na: int, logdet_h, ypy, logdet_m, logdet_ww):
    """REML ('R') or ML log-likelihood from its pieces (arrays broadcast); the compiled
    kernel's formula, evaluated elementwise."""
    parts = np.broadcast_arrays(
        *(np.atleast_1d(np.asarray(v, dtype=float)) for v in (logdet_h, ypy, logdet_m, logdet_ww))
    )
    flat = [np.ascontiguousarray(v).ravel() for v in parts]
    return _k_logl(method == "R", float(n), float(na), *flat).reshape(parts[0].shape)


def _select_cols(g: np.ndarray, na: int, with_x: bool) -> np.ndarray:
    if with_x:
        return g
    q = g.shape[1]
    sel = list(range(na)) + [q - 1]
    return g[:, sel][:, :, sel]


@dataclass
class _Grid:
    """Grams of every SNP at the GEMMA grid of lambdas (shared by REML and ML)."""

    t: np.ndarray  # log lambda grid (K,)
    g1: np.ndarray  # (K, m, q, q)
    g2: np.ndarray
    tr1: np.ndarray  # (K,)
    logdet_aa: np.ndarray  # (m,) log|A'A| of the design [W, x]
    logdet_h: np.ndarray  # (K,) sum log(1 + lambda s)


def _make_grid(s, z0, zz0, x, bounds, n_region) -> _Grid:
    t = np.linspace(np.log(bounds[0]), np.log(bounds[1]), n_region + 1)
    lam = np.exp(t)
    kk = len(t)
    n, k1 = z0.shape
    m = x.shape[1]
    h1 = 1.0 / (np.multiply.outer(s, lam) + 1.0)  # (n, K)
    wts = np.concatenate([np.ones((n, 1)), h1, s[:, None] * h1 * h1], axis=1)  # (n, 1+2K)
    nw = wts.shape[1]
    gxx = (x * x).T @ wts  # (m, nw)
    zw = (wts[:, :, None] * z0[:, None, :]).reshape(n, nw * k1)
    gzx = (x.T @ zw).reshape(m, nw, k1)
    gzz = wts.T @ zz0  # (nw, k1^2)
    q = k1 + 1
    c = k1 - 1
    order = list(range(c)) + [c + 1]
    g = np.empty((nw, m, q, q))
    zzr = gzz.reshape(nw, k1, k1)
    for a_i, a in enumerate(order):
        for b_i, b in enumerate(order):
            g[:, :, a, b] = zzr[:, a_i, b_i][:, None]
    gzx_t = np.moveaxis(gzx, 1, 0)  # (nw, m, k1)
    g[:, :, order, c] = gzx_t
    g[:, :, c, order] = gzx_t
    g[:, :, c, c] = gxx.T
    logdet_aa = np.linalg.slogdet(g[0, :, : c + 1, : c + 1])[1]
    return _Grid(
        t=t,
        g1=g[1 : 1 + kk],
        g2=g[1 + kk :],
        tr1=s @ h1,
        logdet_aa=logdet_aa,
        logdet_h=np.log1p(np.multiply.outer(s, lam)).sum(axis=0),
    )


def optimize_lambda(
    method: str,
    s: np.ndarray,
    uty: np.ndarray,
    utw: np.ndarray,
    utx: np.ndarray | None,
    bounds: tuple[float, float] = LAMBDA_BOUNDS,
    n_region: int = N_REGION,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-SNP maximizer of the REML ('R') or ML ('L') likelihood in lambda, and its logL.

    ``utx`` (n, m) holds rotated SNPs; None fits the null model (returns arrays of length 1).
    """
    lam, logl, _ = _optimize(method, s, uty, utw, utx, bounds, n_region, tol, max_iter)
    return lam, logl


def _optimize(
    method: str,
    s: np.ndarray,
    uty: np.ndarray,
    utw: np.ndarray,
    utx: np.ndarray | None,
    bounds: tuple[float, float] = LAMBDA_BOUNDS,
    n_region: int = N_REGION,
    tol: float = 1e-10,
    max_iter: int = 100,
    grid: _Grid | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`optimize_lambda` plus the weighted Gram matrices (1/h) at the optimum."""
    n, c = utw.shape
    with_x = utx is not None
    x = np.ascontiguousarray(utx) if with_x else np.zeros((n, 1))
    m = x.shape[1]
    na = c + 1 if with_x else c
    z0 = np.column_stack([utw, uty])
    zz0 = _z0_outer(z0)
    if grid is None:
        grid = _make_grid(s, z0, zz0, x, bounds, n_region)
    logdet_ww = float(np.linalg.slogdet(utw.T @ utw)[1])
    logdet_aa = grid.logdet_aa if with_x else np.full(m, logdet_ww)
    t_grid = grid.t
    kk = len(t_grid)
    g1 = _select_cols(grid.g1.reshape(kk * m, c + 2, c + 2), na, with_x)
    g2 = _select_cols(grid.g2.reshape(kk * m, c + 2, c + 2), na, with_x)
    lam_rep = np.repeat(np.exp(t_grid), m)
    d, ypy, ldm = _dlogl_dt(method, lam_rep, n, na, g1, g2, np.repeat(grid.tr1, m))
    d_grid = d.reshape(kk, m).T
    ypy, ldm = ypy.reshape(kk, m), ldm.reshape(kk, m)
    l_bound = np.empty((m, 2))
    for col, k in ((0, 0), (1, kk - 1)):
        l_bound[:, col] = _logl(method, n, na, grid.logdet_h[k], ypy[k], ldm[k], logdet_aa)

    lower = l_bound[:, 0] >= l_bound[:, 1]
    best_l = np.where(lower, l_bound[:, 0], l_bound[:, 1])
    best_t = np.where(lower, t_grid[0], t_grid[-1])
    g1_grid = g1.reshape(kk, m, na + 1, na + 1)
    best_g = np.where(lower[:, None, None], g1_grid[0], g1_grid[-1])
    # brackets of interior maxima: derivative changes sign from + to -
    snp_i, reg_k = np.nonzero((d_grid[:, :-1] > 0) & (d_grid[:, 1:] <= 0))
    if len(snp_i):
        a = t_grid[reg_k].copy()
        b = t_grid[reg_k + 1].copy()
        fa = d_grid[snp_i, reg_k].copy()
        fb = d_grid[snp_i, reg_k + 1].copy()
        xp = np.take(x, snp_i, axis=1)
        root, g1r = _newton(method, s, z0, zz0, xp, n, na, with_x, a, b, fa, fb, tol, max_iter)
        lam = np.exp(root)
        ypy, ldm = _ypy_logdet(g1r, na)
        ldh = np.log1p(np.multiply.outer(s, lam)).sum(axis=0)
        lroot = _logl(method, n, na, ldh, ypy, ldm, logdet_aa[snp_i])
        # keep the best candidate per SNP: interior maxima and the two bounds
        cand_j = np.concatenate([np.arange(m), snp_i])
        cand_l = np.concatenate([best_l, lroot])
        cand_t = np.concatenate([best_t, root])
        cand_g = np.concatenate([best_g, g1r])
        order = np.lexsort((-cand_l, cand_j))
        first = np.ones(len(order), dtype=bool)
        first[1:] = cand_j[order][1:] != cand_j[order][:-1]
        pick = order[first]
        best_l, best_t, best_g = cand_l[pick], cand_t[pick], cand_g[pick]
    return np.exp(best_t), best_l, best_g


def _ypy_logdet(g1: np.ndarray, na: int) -> tuple[np.ndarray, np.ndarray]:
    """y'Py and log|A'H^-1 A| from the (1/h)-weighted Gram of [A, y]."""
    m1 = g1[:, :na, :na]
    ay = g1[:, :na, -1]
    ypy = g1[:, -1, -1] - np.einsum("ij,ij->i", ay, _solve_sym(m1, ay))
    return ypy, np.linalg.slogdet(m1)[1]


def _newton(method, s, z0, zz0, x, n, na, with_x, a, b, fa, fb, tol, max_iter):
    """Vectorized safeguarded Newton search for f(t) = d logL/d t = 0 on brackets [a, b]
    with f(a) > 0 > f(b); a step leaving the bracket is replaced by bisection."""
    p = len(a)
    denom = np.where(fb != fa, fb - fa, 1.0)
    t = np.clip(b - fb * (b - a) / denom, a, b)  # start at the secant point
    t_eval = t.copy()
    g1_eval = None
    active = np.arange(p)
    for _ in range(max_iter):
        if len(active) == 0:
            break
        ta = t[active]
        lam = np.exp(ta)
        xa = x if len(active) == p else np.take(x, active, axis=1)
        (g1, g2, g3), tr1, tr2 = _grams_varying(s, z0, zz0, xa, lam, second=True)
        if not with_x:
            g1, g2, g3 = (_select_cols(g, na, False) for g in (g1, g2, g3))
        f, df = _d12_dt(method, lam, n, na, g1, g2, g3, tr1, tr2)
        if g1_eval is None:
            g1_eval = np.empty((p, *g1.shape[1:]))
        g1_eval[active] = g1
        t_eval[active] = ta
        aa, bb = a[active], b[active]
        pos = f > 0
        aa = np.where(pos, ta, aa)
        bb = np.where(pos, bb, ta)
        a[active], b[active] = aa, bb
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(df < 0, -f / df, np.nan)
        tn = ta + step
        bad = ~np.isfinite(tn) | (tn < aa) | (tn > bb)
        tn = np.where(bad, 0.5 * (aa + bb), tn)
        tn = np.where(f == 0, ta, tn)
        t[active] = tn
        done = (np.abs(tn - ta) < tol) | (f == 0) | ((bb - aa) < tol)
        active = active[~done]
    # the last evaluated point (within tol of the root) and its Gram matrices
    return t_eval, g1_eval


def fit_null(
    kinship: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    *,
    center_kernel: bool = True,
    bounds: tuple[float, float] = LAMBDA_BOUNDS,
) -> NullModel:
    """Eigendecompose K (re-centered on the analyzed samples, as GEMMA does) and fit the
    null model by REML and ML.  ``y`` (n,) and ``w`` (n, c) must be complete."""
    k = np.array(kinship, dtype=float, copy=True)
    n = len(y)
    if k.shape != (n, n):
        raise DataError(f"kinship is {k.shape[0]}x{k.shape[1]} but there are {n} samples.")
    if center_kernel:
        k -= k.mean(axis=0)[None, :]
        k -= k.mean(axis=1)[:, None]
    k = 0.5 * (k + k.T)
    trace_k = float(np.trace(k) / n)
    if n <= EIGH_SERIAL_MAX:
        # dsyevd at this size is bound by thread synchronization (tridiagonal reduction by
        # level-2 BLAS): two threads save ~0.2 s on an idle 2-core machine at n = 1410, but
        # are several times slower as soon as another process holds a core
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            s, u = linalg.eigh(k, driver="evd", overwrite_a=True)
    else:
        s, u = linalg.eigh(k, driver="evd", overwrite_a=True)
    s = np.where(np.abs(s) < 1e-10 * max(1.0, float(np.abs(s).max())), 0.0, s)
    if s.min() < -1e-6 * max(1.0, float(s.max())):
        raise DataError(f"kinship matrix is not positive semi-definite (eigenvalue {s.min():.3g}).")
    s = np.clip(s, 0.0, None)
    uty = u.T @ y
    utw = u.T @ w
    lr, llr = optimize_lambda("R", s, uty, utw, None, bounds)
    lm, llm = optimize_lambda("L", s, uty, utw, None, bounds)
    lam = float(lr[0])
    h1 = 1.0 / (lam * s + 1.0)
    a = utw.T @ (utw * h1[:, None])
    beta = np.linalg.solve(a, utw.T @ (uty * h1))
    r = uty - utw @ beta
    ve = float(r @ (r * h1)) / (n - w.shape[1])
    return NullModel(
        s=s,
        u=u,
        uty=uty,
        utw=utw,
        lam_remle=lam,
        lam_mle=float(lm[0]),
        logl_remle=float(llr[0]),
        logl_mle=float(llm[0]),
        vg=lam * ve,
        ve=ve,
        pve=trace_k * lam / (trace_k * lam + 1.0),
        trace_k=trace_k,
    )


def _p_values_x(model: NullModel, utx: np.ndarray, lam: np.ndarray | float):
    """Pxx, Pxy, Pyy of the null design at lambda (per SNP or shared)."""
    s, uty, utw = model.s, model.uty, model.utw
    z0 = np.column_stack([utw, uty])
    zz0 = _z0_outer(z0)
    if np.ndim(lam) == 0:
        g1 = _grams_fixed(s, z0, zz0, utx, utx * utx, float(lam))[0]
    else:
        g1 = _grams_varying(s, z0, zz0, utx, np.asarray(lam))[0][0]
    return _p_from_gram(g1, utw.shape[1])


def _nan_columns(m: int) -> dict[str, np.ndarray]:
    """The per-SNP output columns, NaN until a test fills them."""
    return {
        k: np.full(m, np.nan)
        for k in ("beta", "se", "l_remle", "l_mle", "p_wald", "p_lrt", "p_score")
    }


def _wald_columns(out: dict, g1: np.ndarray, c: int, df: int, lam: np.ndarray) -> None:
    """beta, se, lambda and the Wald p-value from the Grams at each SNP's REML lambda."""
    pxx, pxy, pyy = _p_from_gram(g1, c)
    beta = pxy / pxx
    tau = df / (pyy - pxy * beta)
    se = np.sqrt(1.0 / (tau * pxx))
    out.update(beta=beta, se=se, l_remle=lam, p_wald=special.fdtrc(1.0, df, (beta / se) ** 2))


def _score_columns(out: dict, pxx, pxy, pyy, n: int, df: int, with_beta: bool) -> None:
    """The score p-value (and beta, se when no Wald test ran) at the null ML lambda."""
    out["p_score"] = special.fdtrc(1.0, df, n * pxy * pxy / (pyy * pxx))
    if with_beta:
        out["beta"] = pxy / pxx
        out["se"] = np.sqrt((pyy - pxy * pxy / pxx) / df / pxx)


def _p_from_gram(g1: np.ndarray, c: int):
    """Pxx, Pxy, Pyy (P projects out the c covariates) from the Gram of [W, x, y]."""
    mw = g1[:, :c, :c]
    sub = g1[:, c:, :c]  # rows x, y against W
    proj = np.einsum("mik,mkj->mij", sub, np.linalg.solve(mw, np.swapaxes(sub, 1, 2)))
    pm = g1[:, c:, c:] - proj  # (m, 2, 2): [[Pxx, Pxy], [Pxy, Pyy]]
    return pm[:, 0, 0], pm[:, 0, 1], pm[:, 1, 1]


def _assoc_rotated_numpy(
    model: NullModel,
    utx: np.ndarray,
    tests: tuple[str, ...] = ("wald", "lrt", "score"),
) -> dict[str, np.ndarray]:
    """:func:`assoc_rotated` by the vectorized NumPy search (:func:`_optimize`); kept as
    the reference the compiled path is tested against."""
    n, c = model.n, model.c
    m = utx.shape[1]
    df = n - c - 1
    out = _nan_columns(m)
    if m == 0:
        return out
    utx = np.ascontiguousarray(utx, dtype=np.float64)
    grid = None
    if "wald" in tests or "lrt" in tests:
        z0 = np.column_stack([model.utw, model.uty])
        grid = _make_grid(model.s, z0, _z0_outer(z0), utx, LAMBDA_BOUNDS, N_REGION)
    if "wald" in tests:
        lam_r, _, g1 = _optimize("R", model.s, model.uty, model.utw, utx, grid=grid)
        _wald_columns(out, g1, c, df, lam_r)
    if "lrt" in tests:
        lam_m, l1, _ = _optimize("L", model.s, model.uty, model.utw, utx, grid=grid)
        stat = np.maximum(2.0 * (l1 - model.logl_mle), 0.0)
        out.update(l_mle=lam_m, p_lrt=special.chdtrc(1.0, stat))
    if "score" in tests:
        # GEMMA's score test uses the null lambda estimated by maximum likelihood
        _score_columns(out, *_p_values_x(model, utx, model.lam_mle), n, df, "wald" not in tests)
    return out


# ----------------------------------------------------------------------------- compiled path
#
# assoc_rotated() runs the same search as _optimize() but per SNP in compiled code: the
# Grams at the GEMMA grid and at the null lambdas (one lambda for all SNPs) come from one
# set of matrix products; each SNP then evaluates the grid derivative signs, solves every
# bracket by the safeguarded Newton iteration (the bracket holding the null lambda starts
# from the Newton step off the null lambda, whose Grams are already known) and keeps the
# best of the interior maxima and the bounds, all in cache.


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _k_chol(g, na, lo):  # pragma: no cover - compiled
    """Lower Cholesky factor of g[:na, :na] into lo; returns log det (NaN if not SPD)."""
    ld = 0.0
    for i in range(na):
        for j in range(i + 1):
            acc = g[i, j]
            for k in range(j):
                acc -= lo[i, k] * lo[j, k]
            if i == j:
                if not acc > 0.0:
                    return np.nan
                lo[i, i] = np.sqrt(acc)
                ld += np.log(acc)
            else:
                lo[i, j] = acc / lo[j, j]
    return ld


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _k_solve(lo, na, b, out):  # pragma: no cover - compiled
    """out = (lo lo')^-1 b."""
    for i in range(na):
        acc = b[i]
        for k in range(i):
            acc -= lo[i, k] * out[k]
        out[i] = acc / lo[i, i]
    for i in range(na - 1, -1, -1):
        acc = out[i]
        for k in range(i + 1, na):
            acc -= lo[k, i] * out[k]
        out[i] = acc / lo[i, i]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _k_derivs(reml, n, na, g1, g2, g3, tr1, tr2, lam, second, lo, wk):  # pragma: no cover
    """d logL/dt (t = log lambda), and d2 logL/dt2 when ``second``, with y'Py and
    log|A'H^-1A| for the design of the first ``na`` columns of the Grams (y = column na).
    ``wk`` is scratch of shape (4 + 2 na, na + 1)."""
    ldm = _k_chol(g1, na, lo)
    beta = wk[0]
    rho = wk[1]
    u = wk[2]
    v = wk[3]
    cm1 = wk[4 : 4 + na]
    cm2 = wk[4 + na : 4 + 2 * na]
    for a in range(na):
        v[a] = g1[a, na]
    _k_solve(lo, na, v, beta)
    ypy = g1[na, na]
    for a in range(na):
        ypy -= v[a] * beta[a]
        rho[a] = -beta[a]
    rho[na] = 1.0
    ypkpy = 0.0
    for a in range(na + 1):
        acc = 0.0
        for b in range(na + 1):
            acc += g2[a, b] * rho[b]
        ypkpy += rho[a] * acc
        if a < na:
            u[a] = acc
    qq = ypkpy / ypy
    trm1 = 0.0
    if reml:
        # cm1 = M^-1 B1 (rows = columns of the solve)
        for b in range(na):
            for a in range(na):
                v[a] = g2[a, b]
            _k_solve(lo, na, v, cm1[b])
            trm1 += cm1[b, b]
        df = n - na
        d1 = -0.5 * (tr1 - trm1) + 0.5 * df * qq
    else:
        d1 = -0.5 * tr1 + 0.5 * n * qq
    f = lam * d1
    if not second:
        return f, 0.0, ypy, ldm
    _k_solve(lo, na, u, v)
    ypkpkpy = 0.0
    for a in range(na + 1):
        acc = 0.0
        for b in range(na + 1):
            acc += g3[a, b] * rho[b]
        ypkpkpy += rho[a] * acc
    for a in range(na):
        ypkpkpy -= u[a] * v[a]
    if reml:
        trm2 = 0.0
        for b in range(na):
            for a in range(na):
                v[a] = g3[a, b]
            _k_solve(lo, na, v, cm2[b])
            trm2 += cm2[b, b]
        tcc = 0.0
        for a in range(na):
            for b in range(na):
                tcc += cm1[a, b] * cm1[b, a]
        d2 = 0.5 * (tr2 - 2.0 * trm2 + tcc) - df * ypkpkpy / ypy + 0.5 * df * qq * qq
    else:
        d2 = 0.5 * tr2 - n * ypkpkpy / ypy + 0.5 * n * qq * qq
    return f, lam * lam * d2 + lam * d1, ypy, ldm


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _k_logl(reml, n, na, logdet_h, ypy, logdet_m, logdet_aa):  # pragma: no cover
    if reml:
        df = n - na
        return (
            0.5 * df * (np.log(df) - _LOG2PI - 1.0)
            - 0.5 * logdet_h
            - 0.5 * (logdet_m - logdet_aa)
            - 0.5 * df * np.log(ypy)
        )
    return 0.5 * n * (np.log(n) - _LOG2PI - 1.0) - 0.5 * logdet_h - 0.5 * n * np.log(ypy)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _k_fill(gzz, gzx, gxx, j, col, c, g):  # pragma: no cover - compiled
    """Gram of [W, x_j, y] for weight column ``col`` from the matrix-product pieces."""
    k1 = c + 1
    for a in range(k1):
        qa = a if a < c else c + 1
        for b in range(k1):
            qb = b if b < c else c + 1
            g[qa, qb] = gzz[col, a * k1 + b]
        g[c, qa] = gzx[j, col, a]
        g[qa, c] = gzx[j, col, a]
    g[c, c] = gxx[j, col]


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _k_pass1(s, zw, zy, zww, zwy, zyy, x, lam, g1, g2, g3):  # pragma: no cover
    """Exact Grams (weights 1/h, s/h^2, s^2/h^3) of [w, x, y] for one covariate (c = 1);
    returns sum s/h and sum (s/h)^2.  Scalar accumulators so the loop vectorizes."""
    a0 = a1 = a2 = a3 = a4 = a5 = 0.0
    b0 = b1 = b2 = b3 = b4 = b5 = 0.0
    c0 = c1 = c2 = c3 = c4 = c5 = 0.0
    t1 = t2 = 0.0
    for i in range(s.shape[0]):
        si = s[i]
        h = 1.0 / (lam * si + 1.0)
        sh = si * h
        w2 = sh * h
        w3 = sh * w2
        t1 += sh
        t2 += sh * sh
        xi = x[i]
        v0 = zww[i]
        v1 = xi * zw[i]
        v2 = xi * xi
        v3 = zwy[i]
        v4 = xi * zy[i]
        v5 = zyy[i]
        a0 += h * v0
        a1 += h * v1
        a2 += h * v2
        a3 += h * v3
        a4 += h * v4
        a5 += h * v5
        b0 += w2 * v0
        b1 += w2 * v1
        b2 += w2 * v2
        b3 += w2 * v3
        b4 += w2 * v4
        b5 += w2 * v5
        c0 += w3 * v0
        c1 += w3 * v1
        c2 += w3 * v2
        c3 += w3 * v3
        c4 += w3 * v4
        c5 += w3 * v5
    _k_set3(g1, a0, a1, a2, a3, a4, a5)
    _k_set3(g2, b0, b1, b2, b3, b4, b5)
    _k_set3(g3, c0, c1, c2, c3, c4, c5)
    return t1, t2


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _k_set3(g, e0, e1, e2, e3, e4, e5):  # pragma: no cover - compiled
    g[0, 0] = e0
    g[1, 0] = e1
    g[0, 1] = e1
    g[1, 1] = e2
    g[2, 0] = e3
    g[0, 2] = e3
    g[2, 1] = e4
    g[1, 2] = e4
    g[2, 2] = e5


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _k_pass(s, z0, x, lam, g1, g2, g3, acc):  # pragma: no cover - compiled
    """Exact Grams of [W, x, y] for any number of covariates (see :func:`_k_pass1`);
    ``acc`` is scratch of shape (3, k1 + 1, k1 + 1)."""
    n, k1 = z0.shape
    c = k1 - 1
    acc[:] = 0.0
    t1 = 0.0
    t2 = 0.0
    for i in range(n):
        si = s[i]
        h = 1.0 / (lam * si + 1.0)
        sh = si * h
        w = (h, sh * h, sh * sh * h)
        t1 += sh
        t2 += sh * sh
        xi = x[i]
        for a in range(k1):
            za = z0[i, a]
            for b in range(a + 1):
                v = za * z0[i, b]
                for r in range(3):
                    acc[r, a, b] += w[r] * v
            v = xi * za
            for r in range(3):
                acc[r, k1, a] += w[r] * v
        v = xi * xi
        for r in range(3):
            acc[r, k1, k1] += w[r] * v
    for r in range(3):
        g = g1 if r == 0 else (g2 if r == 1 else g3)
        for a in range(k1):
            qa = a if a < c else c + 1
            for b in range(a + 1):
                qb = b if b < c else c + 1
                g[qa, qb] = acc[r, a, b]
                g[qb, qa] = acc[r, a, b]
            g[c, qa] = acc[r, k1, a]
            g[qa, c] = acc[r, k1, a]
        g[c, c] = acc[r, k1, k1]
    return t1, t2


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _k_logdet_h(s, lam):  # pragma: no cover - compiled
    """sum_i log(1 + lam s_i), one log per ~1e200 of product."""
    acc = 0.0
    p = 1.0
    for i in range(s.shape[0]):
        p *= 1.0 + lam * s[i]
        if p > 1e200:
            acc += np.log(p)
            p = 1.0
    return acc + np.log(p)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _k_logdet_near(s, lam, ld0):  # pragma: no cover - compiled
    """sum_i log(1 + lam s_i) from its series about lam0 when |lam - lam0| max(s h0) < 0.1
    (ld0 = [log det at lam0, lam0, max(s h0), M_1..M_K] with M_k = sum (s h0)^k, h0 =
    1/(lam0 s + 1), d = lam - lam0): log(1 + lam s) = log(1 + lam0 s) + log(1 + d s h0),
    truncation error < 0.1^(K+1); farther away, the sum itself."""
    d = lam - ld0[1]
    if abs(d) * ld0[2] >= 0.1:
        return _k_logdet_h(s, lam)
    acc = 0.0
    p = 1.0
    for k in range(1, ld0.shape[0] - 2):
        p *= -d
        acc -= p * ld0[2 + k] / k
    return ld0[0] + acc


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _k_step(t, f, fp, a, b, tol):  # pragma: no cover - compiled
    """One safeguarded Newton update: new bracket, next t, done, and whether the Newton
    step itself was taken (not bisection)."""
    if f > 0:
        a = t
    else:
        b = t
    tn = t - f / fp if fp < 0 else np.nan
    newton = True
    if not np.isfinite(tn) or tn < a or tn > b:
        tn = 0.5 * (a + b)
        newton = False
    if f == 0:
        tn = t
    done = abs(tn - t) < tol or f == 0 or (b - a) < tol
    return a, b, tn, done, newton


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _k_snps(
    j0, j1, s, z0, zw, zy, zww, zwy, zyy, xt, gzz, gzx, gxx, tr, t_grid, ldh_grid, lam0, ld0,
    do, tol, max_iter, out_lam, out_logl, out_g1,
):  # pragma: no cover - compiled  # fmt: skip
    """Per SNP j0 <= j < j1: for REML (r = 0) and ML (r = 1) when do[r], the maximizer of logL
    over the grid brackets and bounds: out_lam[r, j], out_logl[r, j]; REML's Gram (1/h) at
    the optimum in out_g1[j].  Weight columns of gzz/gzx/gxx: 0 ones, 1..K 1/h at the grid,
    K+1..2K s/h^2 at the grid, then 1/h, s/h^2, s^2/h^3 at lam0[0] and at lam0[1]; tr[0],
    tr[1] the matching sum s/h and sum (s/h)^2 per column."""
    m, n = xt.shape
    k1 = z0.shape[1]
    c = k1 - 1
    q = c + 2
    na = c + 1
    kk = t_grid.shape[0]
    for j in range(j0, j1):
        g1 = np.empty((q, q))
        g2 = np.empty((q, q))
        g3 = np.empty((q, q))
        gb = np.empty((q, q))
        gbest = np.empty((q, q))
        lo = np.empty((na, na))
        wk = np.empty((4 + 2 * na, na + 1))
        acc = np.empty((3, k1 + 1, k1 + 1))
        dg = np.empty(kk)
        x = xt[j]
        _k_fill(gzz, gzx, gxx, j, 0, c, g1)
        ldaa = _k_chol(g1, na, lo)
        for r in range(2):
            if not do[r]:
                continue
            reml = r == 0
            l_lo = 0.0
            l_hi = 0.0
            for k in range(kk):
                _k_fill(gzz, gzx, gxx, j, 1 + k, c, g1)
                _k_fill(gzz, gzx, gxx, j, 1 + kk + k, c, g2)
                lam = np.exp(t_grid[k])
                f, _, ypy, ldm = _k_derivs(
                    reml, n, na, g1, g2, g2, tr[0, 1 + k], 0.0, lam, False, lo, wk
                )
                dg[k] = f
                if k == 0:
                    l_lo = _k_logl(reml, n, na, ldh_grid[k], ypy, ldm, ldaa)
                elif k == kk - 1:
                    l_hi = _k_logl(reml, n, na, ldh_grid[k], ypy, ldm, ldaa)
            if l_lo >= l_hi:
                best_l = l_lo
                best_t = t_grid[0]
                _k_fill(gzz, gzx, gxx, j, 1, c, gbest)
            else:
                best_l = l_hi
                best_t = t_grid[kk - 1]
                _k_fill(gzz, gzx, gxx, j, kk, c, gbest)
            t0 = np.log(lam0[r])
            col0 = 1 + 2 * kk + 3 * r
            for k in range(kk - 1):
                if not (dg[k] > 0 and dg[k + 1] <= 0):
                    continue
                a = t_grid[k]
                b = t_grid[k + 1]
                start_null = a < t0 < b
                if start_null:
                    t = t0
                else:
                    fa = dg[k]
                    fb = dg[k + 1]
                    t = b - fb * (b - a) / ((fb - fa) if fb != fa else 1.0)
                    t = min(max(t, a), b)
                it = 0
                while True:
                    lam = np.exp(t)
                    if it == 0 and start_null:
                        # the null lambda: Grams from the matrix products
                        _k_fill(gzz, gzx, gxx, j, col0, c, gb)
                        _k_fill(gzz, gzx, gxx, j, col0 + 1, c, g2)
                        _k_fill(gzz, gzx, gxx, j, col0 + 2, c, g3)
                        tr1 = tr[0, col0]
                        tr2 = tr[1, col0]
                    elif c == 1:
                        tr1, tr2 = _k_pass1(s, zw, zy, zww, zwy, zyy, x, lam, gb, g2, g3)
                    else:
                        tr1, tr2 = _k_pass(s, z0, x, lam, gb, g2, g3, acc)
                    it += 1
                    f, fp, _, _ = _k_derivs(reml, n, na, gb, g2, g3, tr1, tr2, lam, True, lo, wk)
                    t_eval = t
                    a, b, t, done, newton = _k_step(t, f, fp, a, b, tol)
                    if done or it >= max_iter:
                        ldh = _k_logdet_near(s, lam, ld0[r])
                        break
                    if newton and abs(t - t_eval) < _TAYLOR_STEP:
                        # last Newton step, |d log lambda| < 1e-5: the Grams at the new
                        # point by their Taylor series in lambda, truncated after
                        # d^2 (relative error < 1e-15): h(l + d) = h - d s h^2 + d^2 s^2 h^3
                        d = np.exp(t) - lam
                        for aa in range(q):
                            for bb in range(q):
                                gb[aa, bb] += d * (d * g3[aa, bb] - g2[aa, bb])
                        ldh = _k_logdet_near(s, lam, ld0[r]) + d * (tr1 - 0.5 * d * tr2)
                        t_eval = t
                        break
                lam = np.exp(t_eval)
                ldm = _k_chol(gb, na, lo)
                for aa in range(na):
                    wk[3, aa] = gb[aa, na]
                _k_solve(lo, na, wk[3], wk[0])
                ypy = gb[na, na]
                for aa in range(na):
                    ypy -= wk[3, aa] * wk[0, aa]
                lr = _k_logl(reml, n, na, ldh, ypy, ldm, ldaa)
                if lr > best_l:
                    best_l = lr
                    best_t = t_eval
                    gbest[:, :] = gb
            out_lam[r, j] = np.exp(best_t)
            out_logl[r, j] = best_l
            if reml:
                out_g1[j] = gbest


def _run_snps(m: int, args: tuple) -> None:
    """:func:`_k_snps` over SNPs 0..m: on the main thread split in 4 ranges per thread over
    ``numba.get_num_threads()`` Python threads (the kernel releases the GIL); called from a
    worker thread (a parallel executor already uses the cores), in the calling thread."""
    nth = min(numba.get_num_threads(), m // 32)
    if nth <= 1 or threading.current_thread() is not threading.main_thread():
        _k_snps(0, m, *args)
        return
    from concurrent.futures import ThreadPoolExecutor

    edges = np.linspace(0, m, 4 * nth + 1).astype(np.int64)
    with ThreadPoolExecutor(max_workers=nth, thread_name_prefix="lmmkit-snps") as pool:
        list(pool.map(lambda k: _k_snps(edges[k], edges[k + 1], *args), range(4 * nth)))


def _logdet_series(s: np.ndarray, lam0: np.ndarray, n_terms: int = 24) -> np.ndarray:
    """Per lam0: [log det(lam0 S + I), lam0, max(s h0), M_1..M_K], M_k = sum (s h0)^k,
    for :func:`_k_logdet_near`."""
    out = np.empty((len(lam0), 3 + n_terms))
    for r, lam in enumerate(lam0):
        sh = s / (lam * s + 1.0)
        out[r, 0] = np.log1p(lam * s).sum()
        out[r, 1] = lam
        out[r, 2] = sh.max()
        out[r, 3:] = np.cumprod(np.broadcast_to(sh[:, None], (len(s), n_terms)), axis=1).sum(0)
    return out


def _weight_columns(s: np.ndarray, t_grid: np.ndarray, lam0: tuple[float, float]) -> np.ndarray:
    """(n, 1 + 2K + 6) weights: ones, 1/h at the grid, s/h^2 at the grid, then 1/h, s/h^2,
    s^2/h^3 at each null lambda (h = lambda s + 1)."""
    h = 1.0 / (np.multiply.outer(s, np.exp(t_grid)) + 1.0)
    cols = [np.ones((len(s), 1)), h, s[:, None] * h * h]
    for lam in lam0:
        h0 = 1.0 / (lam * s + 1.0)
        sh = s * h0
        cols.append(np.column_stack([h0, sh * h0, sh * sh * h0]))
    return np.ascontiguousarray(np.concatenate(cols, axis=1))


def _optimize_compiled(
    model: NullModel, xt: np.ndarray, do_reml: bool = True, do_ml: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Per-SNP REML and ML maximizers for rotated SNPs ``xt`` (m, n, C order): lambda (2, m),
    logL (2, m) (row 0 REML, row 1 ML; NaN when not asked), REML's (1/h)-weighted Gram of
    [W, x, y] at its optimum (m, q, q), and the matrix-product pieces (``gzz``, ``gzx``,
    ``gxx`` per weight column of :func:`_weight_columns`, ``K`` the grid size)."""
    n, c = model.n, model.c
    m = xt.shape[0]
    s = model.s
    z0 = np.ascontiguousarray(np.column_stack([model.utw, model.uty]))
    k1 = c + 1
    t_grid = np.linspace(np.log(LAMBDA_BOUNDS[0]), np.log(LAMBDA_BOUNDS[1]), N_REGION + 1)
    wts = _weight_columns(s, t_grid, (model.lam_remle, model.lam_mle))
    nw = wts.shape[1]
    gxx = np.ascontiguousarray((xt * xt) @ wts)  # (m, nw)
    zw = (wts[:, :, None] * z0[:, None, :]).reshape(n, nw * k1)
    gzx = np.ascontiguousarray((xt @ zw).reshape(m, nw, k1))
    gzz = np.ascontiguousarray(wts.T @ _z0_outer(z0))  # (nw, k1^2)
    pieces = {"gzz": gzz, "gzx": gzx, "gxx": gxx, "K": np.array(len(t_grid))}
    q = c + 2
    lam_o = np.full((2, m), np.nan)
    logl_o = np.full((2, m), np.nan)
    g1_o = np.zeros((m, q, q))
    do = np.array([do_reml, do_ml])
    if do.any() and m:
        tr = np.ascontiguousarray(np.stack([s @ wts, (s * s) @ (wts * wts)]))
        ldh_grid = np.log1p(np.multiply.outer(s, np.exp(t_grid))).sum(axis=0)
        lam0 = np.array([model.lam_remle, model.lam_mle])
        args = (
            s, z0, z0[:, 0].copy(), z0[:, c].copy(), z0[:, 0] * z0[:, 0], z0[:, 0] * z0[:, c],
            z0[:, c] * z0[:, c], xt, gzz, gzx, gxx, tr, t_grid, ldh_grid,
            lam0, _logdet_series(s, lam0), do, 1e-10, 100, lam_o, logl_o, g1_o,
        )  # fmt: skip
        _run_snps(m, args)
    return lam_o, logl_o, g1_o, pieces


def assoc_rotated(
    model: NullModel,
    utx: np.ndarray,
    tests: tuple[str, ...] = ("wald", "lrt", "score"),
) -> dict[str, np.ndarray]:
    """Per-SNP tests for rotated genotypes ``utx`` (n, m).  Returns arrays of length m:
    beta, se, l_remle, l_mle, p_wald, p_lrt, p_score (NaN where a test was not asked).

    The lambda search is GEMMA's (see the module docstring), run per SNP in compiled code
    (:func:`_k_snps`); an F-ordered ``utx`` (e.g. the transpose of ``X' U``) is used
    without a copy."""
    n, c = model.n, model.c
    m = utx.shape[1]
    df = n - c - 1
    out = _nan_columns(m)
    if m == 0:
        return out
    xt = np.ascontiguousarray(np.asarray(utx, dtype=np.float64).T)  # (m, n)
    lam_o, logl_o, g1_o, pc = _optimize_compiled(model, xt, "wald" in tests, "lrt" in tests)
    k1 = c + 1
    kk = int(pc["K"])
    gzz, gzx, gxx = pc["gzz"], pc["gzx"], pc["gxx"]
    if "wald" in tests:
        _wald_columns(out, g1_o, c, df, lam_o[0])
    if "lrt" in tests:
        stat = np.maximum(2.0 * (logl_o[1] - model.logl_mle), 0.0)
        out.update(l_mle=lam_o[1], p_lrt=special.chdtrc(1.0, stat))
    if "score" in tests:
        # GEMMA's score test uses the null lambda estimated by maximum likelihood
        col = 1 + 2 * kk + 3
        g1 = _assemble(np.broadcast_to(gzz[col], (m, k1 * k1)), gzx[:, col], gxx[:, col])
        _score_columns(out, *_p_from_gram(g1, c), n, df, "wald" not in tests)
    return out

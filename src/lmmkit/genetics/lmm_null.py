"""The null model of the exact per-SNP tests and GEMMA's lambda search in NumPy.

Model (Zhou & Stephens 2012, GEMMA ``-lmm``): y = W a + x b + g + e, g ~ N(0, Vg K),
e ~ N(0, Ve I), lambda = Vg/Ve.  With K = U diag(s) U' every quantity is a weighted sum
over the n rotated samples with weights 1/(lambda s_i + 1).  :func:`fit_null`
eigendecomposes K (re-centered on the analyzed samples, as GEMMA) and fits lambda under
the null model by REML and ML (:func:`optimize_lambda`).

lambda is searched, like GEMMA, over [1e-5, 1e5] split into 10 log-spaced regions: the sign
of d logL / d lambda at the 11 region ends (one lambda for all SNPs, so these are matrix
products) brackets each local maximum; each bracket is then solved for
d logL / d log(lambda) = 0 by a Newton iteration with analytic second derivatives,
safeguarded by bisection, until the step is below 1e-10 in log(lambda); the best of the
interior maxima and the two bounds is kept.  The per-SNP weighted Gram matrices of
[W, x, y] (weights 1/h, s/h^2, s^2/h^3 with h = lambda s + 1) are sums over the samples.
The same search, given rotated SNPs, is the NumPy reference of the per-SNP tests
(:func:`lmmkit.genetics.lmm_assoc._assoc_rotated_numpy`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import linalg

from lmmkit.errors import DataError
from lmmkit.genetics.lmm_kernels import _grams_kernel, _k_logl

__all__ = [
    "NullModel",
    "fit_null",
    "optimize_lambda",
    "LAMBDA_BOUNDS",
    "N_REGION",
    "EIGH_SERIAL_MAX",
]

LAMBDA_BOUNDS = (1e-5, 1e5)
# kinships up to this size are eigendecomposed with one BLAS thread (see fit_null)
EIGH_SERIAL_MAX = 2000
N_REGION = 10


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

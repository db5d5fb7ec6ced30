"""The compiled (numba) kernels of the exact per-SNP tests.

:func:`_grams_kernel` accumulates the per-SNP weighted Gram matrices of the NumPy lambda
search (:mod:`lmmkit.genetics.lmm_null`); the ``_k_*`` kernels run GEMMA's whole lambda
search per SNP in cache (:func:`_k_snps`, driven by :func:`lmmkit.genetics.lmm_assoc.assoc_rotated`).
Pure functions over arrays; compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import numpy as np

from lmmkit._jit import cached_njit

# the compiled search ends with a Taylor step (no further pass) once a Newton step in
# log(lambda) is below this: the remaining error is O(step^2)
_TAYLOR_STEP = 1e-5
_LOG2PI = float(np.log(2.0 * np.pi))


@cached_njit(nogil=True, error_model="numpy")
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


# ----------------------------------------------------------------------------- compiled path
#
# assoc_rotated() runs the same search as _optimize() but per SNP in compiled code: the
# Grams at the GEMMA grid and at the null lambdas (one lambda for all SNPs) come from one
# set of matrix products; each SNP then evaluates the grid derivative signs, solves every
# bracket by the safeguarded Newton iteration (the bracket holding the null lambda starts
# from the Newton step off the null lambda, whose Grams are already known) and keeps the
# best of the interior maxima and the bounds, all in cache.


@cached_njit(nogil=True, error_model="numpy")
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


@cached_njit(nogil=True, error_model="numpy")
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


@cached_njit(nogil=True, error_model="numpy")
def _k_first(na, g1, g2, lo, wk):  # pragma: no cover - compiled
    """The pieces of the first derivative shared by REML and ML: log|A'H^-1A| (Cholesky of
    g1's first ``na`` columns into lo), y'Py and y'PKPy / y'Py; wk[0] = beta, wk[1] = rho
    (the residual maker's coefficients), wk[2] = the design's rows of g2 rho."""
    ldm = _k_chol(g1, na, lo)
    beta = wk[0]
    rho = wk[1]
    u = wk[2]
    v = wk[3]
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
    return ldm, ypy, ypkpy / ypy


@cached_njit(nogil=True, error_model="numpy")
def _k_trm1(na, g2, lo, wk):  # pragma: no cover - compiled
    """tr(M^-1 B1), REML's extra term; wk[4:4+na] = M^-1 B1 (rows = columns of the solve)."""
    v = wk[3]
    cm1 = wk[4 : 4 + na]
    trm1 = 0.0
    for b in range(na):
        for a in range(na):
            v[a] = g2[a, b]
        _k_solve(lo, na, v, cm1[b])
        trm1 += cm1[b, b]
    return trm1


@cached_njit(nogil=True, error_model="numpy")
def _k_derivs(reml, n, na, g1, g2, g3, tr1, tr2, lam, second, lo, wk):  # pragma: no cover
    """d logL/dt (t = log lambda), and d2 logL/dt2 when ``second``, with y'Py and
    log|A'H^-1A| for the design of the first ``na`` columns of the Grams (y = column na).
    ``wk`` is scratch of shape (4 + 2 na, na + 1)."""
    ldm, ypy, qq = _k_first(na, g1, g2, lo, wk)
    rho = wk[1]
    u = wk[2]
    v = wk[3]
    cm1 = wk[4 : 4 + na]
    cm2 = wk[4 + na : 4 + 2 * na]
    if reml:
        df = n - na
        d1 = -0.5 * (tr1 - _k_trm1(na, g2, lo, wk)) + 0.5 * df * qq
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


@cached_njit(nogil=True, error_model="numpy")
def _k_grid_derivs(reml, n, na, g1, g2, tr1, lam, lo, wk):  # pragma: no cover - compiled
    """:func:`_k_derivs` without the second derivative, for REML (when ``reml``; else NaN)
    and ML at once: d logL/dt of both, y'Py and log|A'H^-1A|, with the same arithmetic."""
    ldm, ypy, qq = _k_first(na, g1, g2, lo, wk)
    f_reml = np.nan
    if reml:
        df = n - na
        f_reml = lam * (-0.5 * (tr1 - _k_trm1(na, g2, lo, wk)) + 0.5 * df * qq)
    f_ml = lam * (-0.5 * tr1 + 0.5 * n * qq)
    return f_reml, f_ml, ypy, ldm


@cached_njit(nogil=True, error_model="numpy")
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


@cached_njit(nogil=True, error_model="numpy")
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


@cached_njit(nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
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


@cached_njit(nogil=True, error_model="numpy")
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


@cached_njit(nogil=True, error_model="numpy")
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


@cached_njit(nogil=True, error_model="numpy")
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


@cached_njit(nogil=True, error_model="numpy")
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


@cached_njit(nogil=True, error_model="numpy")
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


@cached_njit(nogil=True, error_model="numpy")
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
    # scratch, allocated once per call (every entry read is written first for each SNP)
    g1 = np.empty((q, q))
    g2 = np.empty((q, q))
    g3 = np.empty((q, q))
    gb = np.empty((q, q))
    gbest = np.empty((q, q))
    lo = np.empty((na, na))
    wk = np.empty((4 + 2 * na, na + 1))
    acc = np.empty((3, k1 + 1, k1 + 1))
    dg_all = np.empty((2, kk))
    ends = np.empty((2, 2))  # logL at the lower and the upper bound, REML and ML
    for j in range(j0, j1):
        x = xt[j]
        _k_fill(gzz, gzx, gxx, j, 0, c, g1)
        ldaa = _k_chol(g1, na, lo)
        # the grid: REML's and ML's derivatives share the Grams and their factorization
        for k in range(kk):
            _k_fill(gzz, gzx, gxx, j, 1 + k, c, g1)
            _k_fill(gzz, gzx, gxx, j, 1 + kk + k, c, g2)
            lam = np.exp(t_grid[k])
            f_r, f_m, ypy, ldm = _k_grid_derivs(do[0], n, na, g1, g2, tr[0, 1 + k], lam, lo, wk)
            dg_all[0, k] = f_r
            dg_all[1, k] = f_m
            if k == 0 or k == kk - 1:
                for r in range(2):
                    if do[r]:
                        ends[r, 0 if k == 0 else 1] = _k_logl(
                            r == 0, n, na, ldh_grid[k], ypy, ldm, ldaa
                        )
        for r in range(2):
            if not do[r]:
                continue
            reml = r == 0
            dg = dg_all[r]
            l_lo = ends[r, 0]
            l_hi = ends[r, 1]
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

"""Exact per-SNP linear-mixed-model tests in the eigenbasis of one kinship matrix.

The model and its null fit are in :mod:`lmmkit.genetics.lmm_null`: after rotating y, W and
a block of SNPs once by the kinship's eigenvectors, the likelihood of each SNP is a cheap
function of its own lambda = Vg/Ve.

Per SNP (all vectorized over the SNPs of a block):

* Wald  -- lambda re-estimated by REML under the alternative; F = b^2/se^2 ~ F(1, n-c-1).
* LRT   -- lambda re-estimated by ML under the alternative, against the ML null;
  2 (logL1 - logL0) ~ chi2(1).
* score -- lambda fixed at the null model's ML estimate (as GEMMA); F = n (x'Py)^2 / (x'Px y'Py) ~ F(1, n-c-1),
  P the projection of the null model (c covariates).

lambda is searched per SNP as GEMMA does (log-spaced grid brackets, safeguarded Newton;
see :mod:`lmmkit.genetics.lmm_null`).
:func:`assoc_rotated` runs this search per SNP in one compiled kernel (:func:`_k_snps`,
threads over SNPs): the Grams at the grid and at the null lambdas come from matrix
products; the bracket holding the null lambda starts from the Newton step off it; a
Newton step below 1e-5 in log(lambda) is the last one, its Grams taken from their Taylor
series in lambda (relative error < 1e-15) instead of another pass over the samples.
:func:`~lmmkit.genetics.lmm_null.optimize_lambda` (null model,
:mod:`lmmkit.genetics.lmm_null`) and ``_assoc_rotated_numpy`` run the same search
vectorized in NumPy; the tests hold the two to 1e-8.  The kernels are in
:mod:`lmmkit.genetics.lmm_kernels`.
"""

from __future__ import annotations

import threading
from typing import Any

import numba
import numpy as np
from scipy import special

from lmmkit.genetics.lmm_kernels import _k_snps
from lmmkit.genetics.lmm_null import (
    EIGH_SERIAL_MAX,
    LAMBDA_BOUNDS,
    N_REGION,
    NullModel,
    _assemble,
    _grams_fixed,
    _grams_varying,
    _make_grid,
    _optimize,
    _z0_outer,
    fit_null,
    optimize_lambda,
)

__all__ = [
    "NullModel",
    "fit_null",
    "assoc_rotated",
    "optimize_lambda",
    "LAMBDA_BOUNDS",
    "N_REGION",
    "EIGH_SERIAL_MAX",
]


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
        for k in ("beta", "se", "logl_h1", "l_remle", "l_mle", "p_wald", "p_lrt", "p_score")
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
        lam_r, l1_r, g1 = _optimize("R", model.s, model.uty, model.utw, utx, grid=grid)
        _wald_columns(out, g1, c, df, lam_r)
        out["logl_h1"] = l1_r
    if "lrt" in tests:
        lam_m, l1, _ = _optimize("L", model.s, model.uty, model.utw, utx, grid=grid)
        stat = np.maximum(2.0 * (l1 - model.logl_mle), 0.0)
        out.update(l_mle=lam_m, p_lrt=special.chdtrc(1.0, stat), logl_h1=l1)
    if "score" in tests:
        # GEMMA's score test uses the null lambda estimated by maximum likelihood
        _score_columns(out, *_p_values_x(model, utx, model.lam_mle), n, df, "wald" not in tests)
    return out


# ----------------------------------------------------------------------------- compiled path


_POOL: dict[tuple[int, int], Any] = {}  # (process id, thread count) -> the pool


def _pool(nth: int):
    """One thread pool per process and thread count, started on first use: no thread
    start-up per block.  Keyed by the process id: a forked child (whose copy of the
    parent's pool has no threads) starts its own."""
    import os

    key = (os.getpid(), nth)
    pool = _POOL.get(key)
    if pool is None:
        from concurrent.futures import ThreadPoolExecutor

        pool = _POOL[key] = ThreadPoolExecutor(max_workers=nth, thread_name_prefix="lmmkit-snps")
    return pool


def _run_snps(m: int, args: tuple) -> None:
    """:func:`_k_snps` over SNPs 0..m: on the main thread split in 4 ranges per thread over
    ``numba.get_num_threads()`` threads of a persistent pool (the kernel releases the GIL);
    called from a worker thread (a parallel executor already uses the cores), in the
    calling thread."""
    nth = min(numba.get_num_threads(), m // 32)
    if nth <= 1 or threading.current_thread() is not threading.main_thread():
        _k_snps(0, m, *args)
        return
    edges = np.linspace(0, m, 4 * nth + 1).astype(np.int64)
    list(_pool(nth).map(lambda k: _k_snps(edges[k], edges[k + 1], *args), range(4 * nth)))


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


_SETUPS: dict[int, tuple[NullModel, dict[str, Any]]] = {}


def _setup(model: NullModel) -> dict[str, Any]:
    """What :func:`_optimize_compiled` needs of the null model alone (weights, the [W, y]
    Grams, traces, log-determinants), computed once per model, not per block."""
    hit = _SETUPS.get(id(model))
    if hit is not None and hit[0] is model:
        return hit[1]
    n, c = model.n, model.c
    s = model.s
    z0 = np.ascontiguousarray(np.column_stack([model.utw, model.uty]))
    k1 = c + 1
    t_grid = np.linspace(np.log(LAMBDA_BOUNDS[0]), np.log(LAMBDA_BOUNDS[1]), N_REGION + 1)
    wts = _weight_columns(s, t_grid, (model.lam_remle, model.lam_mle))
    nw = wts.shape[1]
    zw = np.ascontiguousarray((wts[:, :, None] * z0[:, None, :]).reshape(n, nw * k1))
    gzz = np.ascontiguousarray(wts.T @ _z0_outer(z0))  # (nw, k1^2)
    tr = np.ascontiguousarray(np.stack([s @ wts, (s * s) @ (wts * wts)]))
    ldh_grid = np.log1p(np.multiply.outer(s, np.exp(t_grid))).sum(axis=0)
    lam0 = np.array([model.lam_remle, model.lam_mle])
    out = {
        "wts": wts,
        "zw": zw,
        "gzz": gzz,
        "K": len(t_grid),
        "args_head": (
            s,
            z0,
            z0[:, 0].copy(),
            z0[:, c].copy(),
            z0[:, 0] * z0[:, 0],
            z0[:, 0] * z0[:, c],
            z0[:, c] * z0[:, c],
        ),  # fmt: skip
        "args_mid": (tr, t_grid, ldh_grid, lam0, _logdet_series(s, lam0)),
    }
    if len(_SETUPS) >= 8:  # LOCO: one model per chromosome, used in turn
        _SETUPS.pop(next(iter(_SETUPS)))
    _SETUPS[id(model)] = (model, out)
    return out


def _optimize_compiled(
    model: NullModel, xt: np.ndarray, do_reml: bool = True, do_ml: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Per-SNP REML and ML maximizers for rotated SNPs ``xt`` (m, n, C order): lambda (2, m),
    logL (2, m) (row 0 REML, row 1 ML; NaN when not asked), REML's (1/h)-weighted Gram of
    [W, x, y] at its optimum (m, q, q), and the matrix-product pieces (``gzz``, ``gzx``,
    ``gxx`` per weight column of :func:`_weight_columns`, ``K`` the grid size)."""
    c = model.c
    m = xt.shape[0]
    st = _setup(model)
    wts, zw, kk = st["wts"], st["zw"], st["K"]
    gxx = np.ascontiguousarray(np.square(xt) @ wts)  # (m, nw)
    gzx = np.ascontiguousarray((xt @ zw).reshape(m, wts.shape[1], c + 1))
    pieces = {"gzz": st["gzz"], "gzx": gzx, "gxx": gxx, "K": np.array(kk)}
    q = c + 2
    lam_o = np.full((2, m), np.nan)
    logl_o = np.full((2, m), np.nan)
    g1_o = np.zeros((m, q, q))
    do = np.array([do_reml, do_ml])
    if do.any() and m:
        args = (
            *st["args_head"], xt, st["gzz"], gzx, gxx, *st["args_mid"], do, 1e-10, 100,
            lam_o, logl_o, g1_o,
        )  # fmt: skip
        _run_snps(m, args)
    return lam_o, logl_o, g1_o, pieces


def assoc_rotated(
    model: NullModel,
    utx: np.ndarray,
    tests: tuple[str, ...] = ("wald", "lrt", "score"),
) -> dict[str, np.ndarray]:
    """Per-SNP tests for rotated genotypes ``utx`` (n, m).  Returns arrays of length m:
    beta, se, logl_h1, l_remle, l_mle, p_wald, p_lrt, p_score (NaN where a test was not
    asked; ``logl_h1`` is GEMMA's: the ML log-likelihood under H1 when the LRT ran, else
    the REML one).

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
        out["logl_h1"] = logl_o[0]
    if "lrt" in tests:
        stat = np.maximum(2.0 * (logl_o[1] - model.logl_mle), 0.0)
        out.update(l_mle=lam_o[1], p_lrt=special.chdtrc(1.0, stat), logl_h1=logl_o[1])
    if "score" in tests:
        # GEMMA's score test uses the null lambda estimated by maximum likelihood
        col = 1 + 2 * kk + 3
        g1 = _assemble(np.broadcast_to(gzz[col], (m, k1 * k1)), gzx[:, col], gxx[:, col])
        _score_columns(out, *_p_from_gram(g1, c), n, df, "wald" not in tests)
    return out

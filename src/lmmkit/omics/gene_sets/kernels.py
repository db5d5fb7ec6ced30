"""Numerical kernels of the gene-set scores (pure functions over arrays, compiled by numba).

GSVA's kernel estimate of each gene's CDF (Haenzelmann et al. 2013) as R GSVA computes it:

* Gaussian: bandwidth h = sd(x_g) / 4 (the sd accumulated in extended precision, as GSVA's C
  code does), and the standard normal CDF read from a table of Phi(10 i / 10000),
  i = 0..10000, at index floor(|v| / 10 * 10000) for v = (x_gj - x_gi) / h (0 below -10,
  1 above 10). The table is part of the definition: exact Phi moves scores by ~1e-4.
* Poisson (counts): F(x_gj) = mean_i P(X <= x_gj), X ~ Poisson(x_gi + 0.5) (R's ppois, via
  the regularized incomplete gamma function; terms whose Chernoff bound is below exp(-40)
  are taken as exactly 0 or 1).

Each estimate is turned into log-odds, log(F / (1 - F)). The enrichment walk of a set in a
sample visits the genes by decreasing log-odds; it rises by r^tau / sum(r^tau) at a gene of
the set (r the symmetric rank score |G - k - G/2| at position k) and falls by 1/(G - |set|)
elsewhere. Its extremes are reached at the set's genes, so only their positions are visited.
"""

from __future__ import annotations

import ctypes

import numba as nb
import numpy as np
from numba.extending import get_cython_function_address
from scipy.special import ndtr

from lmmkit._jit import cached_njit

__all__ = [
    "gaussian_table",
    "row_sd_extended",
    "gaussian_logodds",
    "poisson_logodds",
    "walk_scores",
    "ssgsea_scores",
]

_MAX_PRECOMPUTE = 10.0
_RESOLUTION = 10000
_SKIP = -40.0

_gammaincc = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double, ctypes.c_double)(
    get_cython_function_address("scipy.special.cython_special", "gammaincc")
)


def gaussian_table() -> np.ndarray:
    """Phi(10 i / 10000) for i = 0..10000, GSVA's precomputed normal CDF."""
    return ndtr(_MAX_PRECOMPUTE * np.arange(_RESOLUTION + 1) / float(_RESOLUTION))


def row_sd_extended(x: np.ndarray) -> np.ndarray:
    """Row standard deviations accumulated in extended precision, in GSVA's order of operations
    (R's cov.c: a two-pass mean with a correction step, then the sum of squares)."""
    n = x.shape[1]
    xl = x.astype(np.longdouble)
    total = np.cumsum(xl, axis=1)[:, -1]  # cumsum: sequential, like the C loop
    tmp = total / n
    finite = np.isfinite(tmp.astype(np.float64))
    corr = np.cumsum(xl - tmp[:, None], axis=1)[:, -1]
    mean = np.where(finite, tmp + corr / n, tmp).astype(np.float64)
    dev = x - mean[:, None]
    ss = np.cumsum((dev * dev).astype(np.longdouble), axis=1)[:, -1]
    return np.sqrt((ss / np.longdouble(n - 1)).astype(np.float64))


@cached_njit(error_model="numpy")
def gaussian_logodds(x: np.ndarray, sd: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Log-odds of the Gaussian-kernel CDF of every value of every row of ``x``."""
    n_genes, n = x.shape
    out = np.empty((n_genes, n))
    for g in range(n_genes):
        bw = sd[g] / 4.0
        for j in range(n):
            left = 0.0
            for i in range(n):
                v = (x[g, j] - x[g, i]) / bw
                if v < -_MAX_PRECOMPUTE:
                    c = 0.0
                elif v > _MAX_PRECOMPUTE:
                    c = 1.0
                else:
                    c = table[int(abs(v) / _MAX_PRECOMPUTE * _RESOLUTION)]
                    if v < 0:
                        c = 1.0 - c
                left += c
            left = left / n
            out[g, j] = -1.0 * np.log((1.0 - left) / left)
    return out


@nb.njit(error_model="numpy")
def _poisson_cdf(k: float, lam: float) -> float:
    """P(Poisson(lam) <= k) for an integer k >= 0; exactly 0 or 1 where the Chernoff bound of
    the other side is below exp(-40) (4e-18), which saves the incomplete gamma function."""
    if k < lam:
        log_bound = -lam if k == 0.0 else -lam + k + k * np.log(lam / k)
        if log_bound < _SKIP:
            return 0.0
    else:
        k1 = k + 1.0
        if -lam + k1 + k1 * np.log(lam / k1) < _SKIP:
            return 1.0
    return _gammaincc(k + 1.0, lam)


@nb.njit(error_model="numpy")
def poisson_logodds(counts: np.ndarray) -> np.ndarray:
    """Log-odds of the Poisson-kernel CDF (lambda = count + 0.5) of every count."""
    n_genes, n = counts.shape
    out = np.empty((n_genes, n))
    for g in range(n_genes):
        for j in range(n):
            k = np.floor(counts[g, j] + 1e-7)
            left = 0.0
            for i in range(n):
                left += _poisson_cdf(k, counts[g, i] + 0.5)
            left = left / n
            out[g, j] = -1.0 * np.log((1.0 - left) / left)
    return out


@cached_njit()
def _walk_extremes(pos, weight, n_genes):
    """max and min of the enrichment walk given the set's sorted positions and weights."""
    k = pos.shape[0]
    total = 0.0
    for m in range(k):
        total += weight[m]
    dec = 1.0 / (n_genes - k)
    cum_in = 0.0
    mx_pos = 0.0
    mx_neg = 0.0
    for m in range(k):
        before = cum_in - dec * (pos[m] - m)
        if before < mx_neg:
            mx_neg = before
        cum_in += weight[m] / total
        after = cum_in - dec * (pos[m] - m)
        if after > mx_pos:
            mx_pos = after
    end = cum_in - dec * (n_genes - k)
    if end < mx_neg:
        mx_neg = end
    return mx_pos, mx_neg


@cached_njit()
def walk_scores(position, rank_score, set_genes, set_start, tau, mx_diff, abs_ranking):
    """GSVA enrichment scores, sets x samples.

    ``position[g, j]`` is gene g's place (0 = top) in sample j's ordering, ``rank_score[g, j]``
    its weight before the power ``tau``; the genes of set s are
    ``set_genes[set_start[s]:set_start[s + 1]]``.
    """
    n_genes, n = position.shape
    n_sets = set_start.shape[0] - 1
    out = np.empty((n_sets, n))
    for s in range(n_sets):
        genes = set_genes[set_start[s] : set_start[s + 1]]
        k = genes.shape[0]
        pos = np.empty(k, dtype=np.int64)
        w = np.empty(k)
        for j in range(n):
            for m in range(k):
                pos[m] = position[genes[m], j]
            order = np.argsort(pos)
            ps = pos[order]
            for m in range(k):
                w[m] = rank_score[genes[order[m]], j] ** tau
            mx_pos, mx_neg = _walk_extremes(ps, w, n_genes)
            if mx_diff:
                out[s, j] = mx_pos - mx_neg if abs_ranking else mx_pos + mx_neg
            else:
                out[s, j] = mx_pos if mx_pos > abs(mx_neg) else mx_neg
    return out


@cached_njit()
def ssgsea_scores(position, weight, set_genes, set_start):
    """ssGSEA's sum of the walk, sets x samples (R GSVA's closed form of the running sum).

    ``position[g, j]`` is 0-based in sample j's decreasing order, ``weight[g, j] = rank^alpha``.
    """
    n_genes, n = position.shape
    n_sets = set_start.shape[0] - 1
    out = np.empty((n_sets, n))
    for s in range(n_sets):
        genes = set_genes[set_start[s] : set_start[s + 1]]
        k = genes.shape[0]
        for j in range(n):
            num = 0.0
            den = 0.0
            below = 0.0
            for m in range(k):
                g = genes[m]
                steps = n_genes - position[g, j]  # n - idx + 1 with a 1-based idx
                num += weight[g, j] * steps
                den += weight[g, j]
                below += steps
            inside = num / den
            outside = (n_genes * (n_genes + 1) / 2.0 - below) / (n_genes - k)
            out[s, j] = inside - outside
    return out

"""One block of SNPs as the association tests see it: read the genotypes of the analyzed
samples, compute GEMMA's per-SNP filters on them (missing rate, MAF, a single genotype
class, collinearity with the covariates) and mean-impute the missing calls.

Shared by the exact and the matrix-free paths; block tasks run under :func:`blas_limit`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numba
import numpy as np

from lmmkit._jit import cached_njit

__all__ = ["R2_MAX", "as_index", "blas_limit", "filter_block"]

R2_MAX = 0.9999  # GEMMA drops SNPs with r^2 > 0.9999 against the covariates


@cached_njit(parallel=True, nogil=True)
def _stats_impute(g, x, st):  # pragma: no cover - compiled
    """Per column of g (NaN = missing): st[j] = (non-missing, sum, #0, #1, #2); x = g with
    missing calls replaced by the column mean (0 when all are missing).  x may be g."""
    n, m = g.shape
    for j in numba.prange(m):
        n_obs = 0.0
        tot = 0.0
        c0 = 0.0
        c1 = 0.0
        c2 = 0.0
        for i in range(n):
            v = g[i, j]
            if v == v:
                n_obs += 1.0
                tot += v
                c0 += v == 0.0
                c1 += v == 1.0
                c2 += v == 2.0
        st[j, 0] = n_obs
        st[j, 1] = tot
        st[j, 2] = c0
        st[j, 3] = c1
        st[j, 4] = c2
        fill = tot / n_obs if n_obs > 0 else 0.0
        for i in range(n):
            v = g[i, j]
            x[i, j] = v if v == v else fill


def filter_block(
    g: np.ndarray, w_q: np.ndarray, maf: float, max_missing: float, inplace: bool = False
):
    """Per-SNP stats over the analyzed samples and GEMMA's skip reasons ('' = tested).
    Returns the mean-imputed genotypes (``g`` itself, imputed in place, with ``inplace``)."""
    n = g.shape[0]
    g = np.asarray(g, dtype=np.float64)
    x = g if inplace else np.empty_like(g, order="F")
    st = np.empty((g.shape[1], 5))
    _stats_impute(g, x, st)
    n_obs = st[:, 0].astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = st[:, 1] / st[:, 0]
    af = mean / 2.0
    n0, n1, n2 = st[:, 2], st[:, 3], st[:, 4]
    reason = np.full(g.shape[1], "", dtype=object)
    mono = ((n0 + n1) == 0) | ((n1 + n2) == 0) | ((n0 + n2) == 0)
    reason[mono] = "monomorphic"
    mafv = np.minimum(af, 1.0 - af)
    reason[(reason == "") & ~(mafv >= maf)] = f"MAF < {maf:g}"
    reason[(reason == "") & (1.0 - n_obs / n > max_missing)] = f"missing rate > {max_missing:g}"
    reason[n_obs == 0] = "all genotypes missing"
    ok = reason == ""
    if ok.any() and w_q.shape[1] > 1:  # intercept only: collinear = monomorphic (done)
        xs = x[:, ok]
        xc = xs - xs.mean(0)
        tss = np.einsum("ij,ij->j", xc, xc)
        proj = w_q.T @ xs
        rss = np.einsum("ij,ij->j", xs, xs) - np.einsum("ij,ij->j", proj, proj)
        with np.errstate(invalid="ignore", divide="ignore"):
            r2 = np.where(tss > 0, 1.0 - rss / tss, 1.0)
        bad = np.flatnonzero(ok)[r2 > R2_MAX]
        reason[bad] = "collinear with covariates"
    return x, af, n_obs, reason


def as_index(snps: np.ndarray):
    """A contiguous run of SNP indices as a slice (a faster read), else the indices."""
    snps = np.asarray(snps)
    if len(snps) and snps[-1] - snps[0] + 1 == len(snps):
        return slice(int(snps[0]), int(snps[-1]) + 1)
    return snps


@contextmanager
def blas_limit(threads: int | None) -> Iterator[None]:
    """Cap BLAS threads (threadpoolctl) inside the block; None leaves them alone."""
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    limiter = threadpool_limits(limits=threads)
    try:
        yield
    finally:
        limiter.restore_original_limits()

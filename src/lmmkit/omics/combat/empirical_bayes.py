"""Empirical-Bayes shrinkage of the per-batch location (gamma) and scale (delta), as sva.

Priors: normal for ``gamma`` (mean ``gamma_bar``, variance ``tau2``), inverse gamma for
``delta`` (``a_prior``, ``b_prior`` by the method of moments).  Posteriors: sva's parametric
fixed-point iteration (``it.sol``) or its non-parametric empirical prior (``int.eprior``).
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from lmmkit.omics.combat.model import ConvergenceWarning

__all__ = ["CONV_TOL", "Shrunk", "shrink"]

#: sva's convergence tolerance of the parametric fixed-point iteration (``it.sol``).
CONV_TOL = 1e-4
_MAX_ITER = 10_000


@dataclass(frozen=True)
class Shrunk:
    """Priors and posterior batch effects (per batch ``(B,)``, per batch and feature ``(B, G)``)."""

    gamma_star: np.ndarray
    delta_star: np.ndarray
    gamma_bar: np.ndarray
    tau2: np.ndarray
    a_prior: np.ndarray
    b_prior: np.ndarray
    iterations: tuple[int, ...]


def shrink(S, members, gamma_hat, delta_hat, *, ref, parametric, mean_only, levels) -> Shrunk:
    """Posterior ``gamma_star``, ``delta_star`` of every batch from the standardized data ``S``.

    ``members`` holds the sample positions of each batch; the reference batch (``ref``, a
    position or None) gets 0 and 1, as in sva.
    """
    nb, G = gamma_hat.shape
    gamma_bar = gamma_hat.mean(axis=1)
    tau2 = gamma_hat.var(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        m_d = delta_hat.mean(axis=1)
        s2_d = delta_hat.var(axis=1, ddof=1)
        a_prior = (2 * s2_d + m_d**2) / s2_d
        b_prior = (m_d * s2_d + m_d**3) / s2_d
    if mean_only:
        a_prior[:] = np.nan
        b_prior[:] = np.nan

    gamma_star = np.empty((nb, G))
    delta_star = np.empty((nb, G))
    iterations = [0] * nb
    for i, m in enumerate(members):
        if i == ref:
            continue  # overwritten below; sva's estimate for it is discarded
        if parametric:
            if mean_only:
                # sva: postmean(gamma.hat, gamma.bar, n = 1, d.star = 1, t2)
                gamma_star[i] = (tau2[i] * gamma_hat[i] + gamma_bar[i]) / (tau2[i] + 1.0)
                delta_star[i] = 1.0
            else:
                gamma_star[i], delta_star[i], iterations[i] = _it_sol(
                    S[:, m], gamma_hat[i], delta_hat[i], gamma_bar[i], tau2[i], a_prior[i],
                    b_prior[i], batch=levels[i],
                )  # fmt: skip
        else:
            gamma_star[i], delta_star[i] = _int_eprior(S[:, m], gamma_hat[i], delta_hat[i])
    if ref is not None:
        gamma_star[ref] = 0.0
        delta_star[ref] = 1.0
    return Shrunk(gamma_star, delta_star, gamma_bar, tau2, a_prior, b_prior, tuple(iterations))


def _it_sol(sdat, g_hat, d_hat, g_bar, t2, a, b, *, batch, conv=CONV_TOL):
    """Parametric EB posterior by sva's fixed-point iteration, vectorized over genes.

    Convergence as in sva: stop once ``max(|g_new - g_old| / g_old, |d_new - d_old| /
    d_old) <= conv`` (signed denominators, exactly as sva, so genes with negative
    ``g_old`` never hold the loop up).
    """
    n = sdat.shape[1]
    g_old, d_old = g_hat, d_hat
    for count in range(1, _MAX_ITER + 1):
        g_new = (t2 * n * g_hat + d_old * g_bar) / (t2 * n + d_old)
        sum2 = np.sum((sdat - g_new[:, None]) ** 2, axis=1)
        d_new = (0.5 * sum2 + b) / (n / 2.0 + a - 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            change = max(
                np.nanmax(np.abs(g_new - g_old) / g_old), np.nanmax(np.abs(d_new - d_old) / d_old)
            )
        g_old, d_old = g_new, d_new
        if not change > conv:
            return g_new, d_new, count
    warnings.warn(
        f"parametric ComBat for batch {batch!r} did not converge in {_MAX_ITER} iterations "
        f"(last relative change {change:.3g})",
        ConvergenceWarning,
        stacklevel=5,
    )
    return g_new, d_new, _MAX_ITER


def _int_eprior(sdat, g_hat, d_hat, chunk_elems: int = 1 << 20, workers: int | None = None):
    """Non-parametric EB posterior (sva's ``int.eprior``), vectorized in row chunks.

    For gene k the prior is the empirical distribution of the other genes' (g_j, d_j);
    each is weighted by the likelihood prod_s N(x_ks; g_j, d_j), whose log is

        -n/2 log(2 pi d_j) - (sum_s x_ks^2 - 2 g_j sum_s x_ks + n g_j^2) / (2 d_j),

    a rank-3 product of per-gene terms, so a chunk of log-weights is one small matrix
    product.  The weights are normalized by their row maximum before exponentiating (sva
    multiplies raw densities and gets 0/0 when all of them underflow).  Genes with
    d_j = 0 get weight 0, as in sva.
    """
    G, n = sdat.shape
    workers = workers or min(8, os.cpu_count() or 1)
    mean_k = sdat.mean(axis=1)
    sumsq_k = np.sum((sdat - mean_k[:, None]) ** 2, axis=1) + n * mean_k * mean_k
    prior = np.flatnonzero(d_hat > 0)
    g_j, d_j = g_hat[prior], d_hat[prior]
    inv2d = 0.5 / d_j
    # log-weight[k, j] = [1, sumsq_k, mean_k] @ coef[:, j]
    coef = np.vstack(
        [-0.5 * n * np.log(2 * np.pi * d_j) - n * inv2d * g_j * g_j, -inv2d, 2 * n * inv2d * g_j]
    )
    feats = np.column_stack([np.ones(G), sumsq_k, mean_k])
    col_of = np.full(G, -1)
    col_of[prior] = np.arange(prior.size)
    rhs = np.column_stack([g_j, d_j, np.ones(prior.size)])
    g_star = np.empty(G)
    d_star = np.empty(G)

    def work(start: int) -> None:
        stop = min(G, start + step)
        logw = feats[start:stop] @ coef
        cols = col_of[start:stop]
        own = cols >= 0
        logw[np.flatnonzero(own), cols[own]] = -np.inf  # leave the gene itself out
        logw -= logw.max(axis=1, keepdims=True)
        np.exp(logw, out=logw)
        sums = logw @ rhs
        g_star[start:stop] = sums[:, 0] / sums[:, 2]
        d_star[start:stop] = sums[:, 1] / sums[:, 2]

    step = max(1, chunk_elems // max(prior.size, 1))
    starts = range(0, G, step)
    # The products have inner dimension 3: multi-threaded BLAS only adds overhead (4x
    # slower measured), so BLAS runs single-threaded and chunks run in parallel threads
    # (NumPy releases the GIL in exp and in the products).
    with _single_threaded_blas():
        if len(starts) > 1 and workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(work, starts))
        else:
            for start in starts:
                work(start)
    return g_star, d_star


@contextmanager
def _single_threaded_blas():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield

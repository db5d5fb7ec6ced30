"""Multi-kernel REML without n x n matrices (BOLT-REML-like, stochastic traces).

Model, as :func:`lmmkit.genetics.multi_reml.multi_reml` with one kernel per SNP set::

    y = X beta + sum_k g_k + e,   g_k ~ N(0, s2_k K_k),   e ~ N(0, s2_e I),
    K_k = Z_k Z_k' / M_k  (the SNPs of set k, never formed)

fitted by average-information REML: score_k = 1/2 [y'P K_k P y - tr(P K_k)],
AI_kl = 1/2 (K_k P y)' P (K_l P y), the first step EM (as the dense fit).  Every V^-1 is a
batched Jacobi-preconditioned CG solve (V = sum_k s2_k K_k + s2_e I applied in one pass over
the int8 genotypes for all sets at once); the traces by Hutchinson's estimator
tr(P K_k) ~ mean_r (K_k u_r)' P u_r over ``n_probes`` fixed Rademacher probes (K_k u_r
computed once), with the u'K_l u (whose mean tr(K_l) is known exactly) as control
variates (regression coefficients fitted over the probes); the AI matrix uses the previous iteration's K_k P y (one solve batch per
iteration; the fixed point score = 0 is unchanged).  Reported: each s2 with its SE from the
inverse AI matrix and its Monte-Carlo SE from the probes' spread
(0.25 AI^-1 Cov(trace estimates) AI^-1), h2_k = s2_k / Vp.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import linalg

from lmmkit.errors import DataError, ModelError
from lmmkit.genetics.gwas.matfree.binary import pcg
from lmmkit.genetics.gwas.matfree.genotypes import _Operator

__all__ = ["MatrixFreeMultiReml", "multi_reml_matrix_free"]


@dataclass(frozen=True)
class MatrixFreeMultiReml:
    """A matrix-free multi-kernel REML fit (the residual is the last component).

    Examples
    --------
    >>> r = MatrixFreeMultiReml(("a", "residual"), np.array([1.0, 1.0]), np.ones(2),
    ...                         np.zeros(2), np.array([0.5]), 5, True, 40)
    >>> float(r.h2[0])
    0.5
    """

    names: tuple[str, ...]
    sigma2: np.ndarray
    sigma2_se: np.ndarray
    sigma2_mc_se: np.ndarray
    h2: np.ndarray
    n_iter: int
    converged: bool
    passes: int
    beta: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)


def _group_apply(op: _Operator, v: np.ndarray, n_groups: int) -> np.ndarray:
    """(G, n, r): K_k v for every SNP set k in one pass (blocks of code >= G unused)."""
    op.passes += 1
    out = np.zeros((n_groups, op.n, v.shape[1]))
    vs = np.asarray(v, dtype=np.float32, order="F")
    for b, c in op._blocks():
        if c < n_groups:
            out[c] += b @ (b.T @ vs)
    return out / op.geno.m_chrom[:n_groups, None, None]


def _group_diag(op: _Operator, n_groups: int) -> np.ndarray:
    op.passes += 1
    d = np.zeros((n_groups, op.n))
    for b, c in op._blocks():
        if c < n_groups:
            d[c] += np.einsum("ij,ij->i", b, b, dtype=np.float64)
    return d / op.geno.m_chrom[:n_groups, None]


def _top_subspace(op: _Operator, n_groups: int, rank: int, seed: int):
    """Randomized subspace iteration (one power step) for the leading ``rank`` eigenvectors
    of the whole kinship sum_k M_k K_k / M: returns Q (n, rank + 8), orthonormal, and
    B (G, rank + 8, rank + 8) = Q' K_k Q per set.  Three passes over the genotypes."""
    weights = op.geno.m_chrom[:n_groups] / op.geno.m_chrom[:n_groups].sum()
    omega = np.random.default_rng(seed + 7).standard_normal((op.n, rank + 8))
    q = np.linalg.qr(np.tensordot(weights, _group_apply(op, omega, n_groups), axes=1))[0]
    q = np.linalg.qr(np.tensordot(weights, _group_apply(op, q, n_groups), axes=1))[0]
    kq = _group_apply(op, q, n_groups)
    b = np.einsum("ik,gil->gkl", q, kq)
    return q, 0.5 * (b + b.transpose(0, 2, 1))


def _nystrom_preconditioner(q: np.ndarray, b: np.ndarray, s2: np.ndarray):
    """M^-1 for V = sum_k s2_k K_k + s2_e I from its restriction to span(Q) (Nystrom
    preconditioner, Frangella, Tropp & Udell 2023): exact inverse of V on span(Q), the
    complement scaled by the smallest kept eigenvalue, so the preconditioned spectrum is
    bounded by (lambda_(rank+1) + s2_e) / (lambda_rank + s2_e)-ish instead of
    (lambda_1 + s2_e) / s2_e."""
    g = len(b)
    lam, e = np.linalg.eigh(np.tensordot(s2[:g], b, axes=1))
    u = q @ e
    mu = s2[g]
    lam = np.clip(lam, 0.0, None) + mu
    scale = (lam.min() / lam)[:, None]

    def apply(r: np.ndarray) -> np.ndarray:
        c = u.T @ r
        return r - u @ c + u @ (scale * c)

    return apply


def multi_reml_matrix_free(
    op: _Operator,
    y: np.ndarray,
    x: np.ndarray,
    names: list[str],
    *,
    n_probes: int = 100,
    seed: int = 0,
    tol: float = 1e-5,
    cg_tol: float = 1e-6,
    max_cg_iter: int = 500,
    max_iter: int = 50,
    precondition_rank: int = 64,
    say: Callable[[str], None] = lambda s: None,
) -> MatrixFreeMultiReml:
    """AI-REML of one variance component per SNP set (module docstring).

    Parameters
    ----------
    op
        The genotype operator whose block codes 0..G-1 are the SNP sets (codes >= G are
        ignored) and whose covariate projection is empty (``q`` of shape (n, 0)).
    y, x
        Phenotype (n,) and covariates with the intercept (n, c), complete.
    names
        The G set names.
    n_probes, seed
        Rademacher probes of the trace estimator (the Monte-Carlo SE shrinks as
        1/sqrt(n_probes)).
    tol
        Stop when every component changes by less than ``tol`` x Vp.
    cg_tol, max_cg_iter
        CG relative residual and iteration cap (not reaching it raises ModelError).
    max_iter
        AI-REML iterations.
    precondition_rank
        Leading eigenvectors of the kinship (randomized, three passes) for the Nystrom
        preconditioner of V, which takes the few large eigenvalues of a structured cohort
        (demes, families) out of CG's way; 0 = Jacobi (diag V) only.
    say
        Progress lines (one per REML iteration, with its CG iterations and seconds).

    Returns
    -------
    MatrixFreeMultiReml

    Examples
    --------
    >>> multi_reml_matrix_free  # doctest: +ELLIPSIS
    <function multi_reml_matrix_free at ...>
    """
    y = np.asarray(y, dtype=float).ravel()
    x = np.asarray(x, dtype=float)
    n, c = x.shape
    g = len(names)
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(x))):
        raise DataError("y and the covariates must be complete for the matrix-free REML.")
    if n_probes < 2:
        raise DataError(f"n_probes must be >= 2, got {n_probes}.")
    if precondition_rank < 0:
        raise DataError(f"precondition_rank must be >= 0, got {precondition_rank}.")
    passes0 = op.passes
    clock = time.perf_counter()
    resid = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
    vy = float(resid @ resid) / (n - c)
    s2 = np.full(g + 1, vy / (g + 1))
    dk = _group_diag(op, g)
    top = None
    if precondition_rank:
        top = _top_subspace(op, g, min(precondition_rank, n - 9), seed)
        say(
            f"  Nystrom preconditioner: {top[0].shape[1]} leading kinship eigenvectors, "
            f"{time.perf_counter() - clock:.0f} s"
        )
    u = np.random.default_rng(seed).choice([-1.0, 1.0], size=(n, n_probes))
    ku = _group_apply(op, u, g)  # (G, n, R)
    # control variates: u'K_l u has the known mean tr(K_l)
    cv = np.einsum("kir,ir->kr", ku, u) - dk.sum(1)[:, None]
    cvc = cv - cv.mean(1, keepdims=True)
    h_prev: np.ndarray | None = None
    sol: np.ndarray | None = None
    converged = False
    it = 0
    ai = np.eye(g + 1)
    t_samples = np.zeros((g + 1, n_probes))

    def matvec(v: np.ndarray) -> np.ndarray:
        kv = _group_apply(op, v, g)
        return np.tensordot(s2[:g], kv, axes=1) + s2[g] * v

    for it in range(1, max_iter + 1):
        cols = [y[:, None], x, u] + ([h_prev] if h_prev is not None else [])
        rhs = np.hstack(cols)
        x0 = None
        if sol is not None and sol.shape[1] <= rhs.shape[1]:
            x0 = np.zeros_like(rhs)
            x0[:, : sol.shape[1]] = sol
        diag = s2[:g] @ dk + s2[g]
        pre = _nystrom_preconditioner(*top, s2) if top is not None else None
        sol, resid_cg, n_cg = pcg(matvec, diag, rhs, x0, cg_tol, max_cg_iter, precond=pre)
        worst = float(resid_cg.max())
        if worst > 10 * cg_tol:
            raise ModelError(
                f"conjugate gradients for V (components {np.round(s2, 6).tolist()}) did not "
                f"converge: relative residual {worst:.3g} after {n_cg} iterations (tolerance "
                f"{cg_tol:g}); raise max_cg_iter (now {max_cg_iter}) or cg_tol."
            )
        sx = sol[:, 1 : 1 + c]
        a_inv = linalg.inv(x.T @ sx)

        def proj(cols_sol: np.ndarray, cols_rhs: np.ndarray) -> np.ndarray:
            return cols_sol - sx @ (a_inv @ (sx.T @ cols_rhs))  # noqa: B023

        py = proj(sol[:, :1], y[:, None])[:, 0]
        pu = proj(sol[:, 1 + c : 1 + c + n_probes], u)
        kpy = _group_apply(op, py[:, None], g)[:, :, 0]  # (G, n)
        t_samples = np.vstack(
            [np.einsum("kir,ir->kr", ku, pu), np.einsum("ir,ir->r", u, pu)[None, :]]
        )
        coef = np.linalg.lstsq(cvc.T, (t_samples - t_samples.mean(1, keepdims=True)).T,
                               rcond=None)[0]  # fmt: skip
        t_samples = t_samples - coef.T @ cv
        traces = t_samples.mean(1)
        quad = np.append(kpy @ py, py @ py)
        score = 0.5 * (quad - traces)
        if h_prev is None:
            new = s2 + 2.0 * s2 * s2 * score / n  # EM (always in the parameter space)
            step_kind = "EM"
        else:
            ph = proj(sol[:, 1 + c + n_probes :], h_prev)
            ai = 0.5 * h_prev.T @ ph
            ai = 0.5 * (ai + ai.T)
            try:
                step = linalg.solve(ai, score, assume_a="pos")
            except linalg.LinAlgError:
                step = 2.0 * s2 * s2 * score / n
            new = s2 + step
            step_kind = "AI"
            halvings = 0
            while np.any(new < 0) and halvings < 20:
                step /= 2.0
                new = s2 + step
                halvings += 1
            if np.any(new < 0):
                new = np.maximum(s2 + 2.0 * s2 * s2 * score / n, 0.0)
                step_kind = "EM"
        h_prev = np.column_stack([kpy.T, py])
        change = float(np.max(np.abs(new - s2))) / float(new.sum())
        say(
            f"  REML iteration {it} ({step_kind}): "
            + ", ".join(f"{nm} {v:.5g}" for nm, v in zip([*names, "residual"], new))
            + f"; CG {n_cg} iterations, {op.passes - passes0} passes, "
            f"{time.perf_counter() - clock:.0f} s"
        )
        s2 = new
        if it > 2 and step_kind == "AI" and change < tol:
            converged = True
            break
    cov = linalg.inv(ai)
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    c_t = np.cov(t_samples) / n_probes
    mc = 0.25 * cov @ c_t @ cov
    mc_se = np.sqrt(np.clip(np.diag(mc), 0, None))
    return MatrixFreeMultiReml(
        names=(*names, "residual"),
        sigma2=s2,
        sigma2_se=se,
        sigma2_mc_se=mc_se,
        h2=s2[:g] / s2.sum(),
        n_iter=it,
        converged=converged,
        passes=op.passes - passes0,
    )

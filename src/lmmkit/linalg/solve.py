"""Solutions at the optimum: fixed effects, conditional modes and their conditional variances.

Only called once per fit (not on the optimizer's hot path).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
from scipy.linalg.blas import dtrsm
from scipy.linalg.lapack import dpotri, dtrtrs

from lmmkit.linalg.blocked import CrossProducts, Factor
from lmmkit.linalg.kernels import selected_quadratic_forms, symmetrize_lower
from lmmkit.linalg.pattern import pattern_products
from lmmkit.linalg.sparse_rest import SparseFactor, lambda_t_pattern_rows, lambda_t_rest

__all__ = [
    "fixed_effects",
    "conditional_modes",
    "conditional_variances",
    "term_modes",
    "term_condvars",
]


def _parts(cp: CrossProducts, f: Factor) -> tuple[np.ndarray, ...]:
    Rz, p, L = cp.Rz, cp.p, f.L
    return (
        L[:Rz, :Rz],
        L[Rz : Rz + p, :Rz],
        L[Rz : Rz + p, Rz : Rz + p],
        L[-1, :Rz],
        L[-1, Rz : Rz + p],
    )


def _triangular_solve(L: np.ndarray, b: np.ndarray, trans: int) -> np.ndarray:
    """L^{-1} b (trans=0) or L'^{-1} b (trans=1) for lower-triangular L and a vector or
    matrix b; the same LAPACK/BLAS arithmetic as scipy's solve_triangular (identical
    results), without its per-call overhead.

    A matrix right-hand side goes to BLAS trsm, not LAPACK trtrs: OpenBLAS runs trtrs with
    several right-hand sides on its thread pool whatever the size, and the woken threads then
    spin on the cores for milliseconds, which slows a small fit several-fold on a busy machine.
    """
    if b.size == 0:  # no fixed effects
        return np.empty(b.shape)
    if not (np.isfinite(L).all() and np.isfinite(b).all()):
        raise ValueError("array must not contain infs or NaNs")
    diag = L.diagonal()
    if not diag.all():
        i = int(np.flatnonzero(diag == 0)[0])
        raise np.linalg.LinAlgError(f"singular matrix: resolution failed at diagonal {i}")
    # scipy's rule: LAPACK reads Fortran order, so a C-ordered L is passed as L' (upper)
    fortran = L.flags.f_contiguous
    A, lower, tr = (L, 1, trans) if fortran else (L.T, 0, 1 - trans)
    if b.ndim == 1:
        x, info = dtrtrs(A, b, lower=lower, trans=tr)
        if info != 0:
            raise np.linalg.LinAlgError(f"triangular solve failed (LAPACK info {info})")
        return x
    return dtrsm(1.0, A, b, lower=lower, trans_a=tr)


def fixed_effects(cp: CrossProducts, f: Factor | SparseFactor) -> tuple[np.ndarray, np.ndarray]:
    """beta and the unscaled covariance (R_X' R_X)^{-1}."""
    if isinstance(f, SparseFactor):
        Lxx, lyx = f.Lx[: cp.p, : cp.p], f.Lx[cp.p, : cp.p]
    else:
        _, _, Lxx, _, lyx = _parts(cp, f)
    beta = _triangular_solve(Lxx, lyx, trans=1)
    Linv = _triangular_solve(Lxx, np.eye(cp.p), trans=0)
    return beta, Linv.T @ Linv


def _rest_T(cp: CrossProducts, f: Factor) -> list[np.ndarray]:
    """The relative covariance factors of the terms in the dense block."""
    return f.T if cp.first is None else f.T[1:]


def _lambda_rest(cp: CrossProducts, f: Factor, u: np.ndarray, transpose: bool) -> np.ndarray:
    """Lambda_rest u (or Lambda_rest' u) for u with Rz rows (any number of columns)."""
    out = np.empty_like(u)
    for t, off, T in zip(cp.rest, cp.rest_offsets, _rest_T(cp, f)):
        if t.p == 1:
            np.multiply(u[off : off + t.q], T[0, 0], out=out[off : off + t.q])
            continue
        block = u[off : off + t.q].reshape(t.nlevels, t.p, -1)
        M = T.T if transpose else T
        out[off : off + t.q] = np.einsum("ab,lbr->lar", M, block).reshape(t.q, -1)
    return out


def conditional_modes(
    cp: CrossProducts, f: Factor, beta: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """(b of the first term, [b of the other terms]) for a block-mode factor."""
    modes = term_modes(cp, f, beta)
    return modes[0], modes[1:]


def term_modes(cp: CrossProducts, f: Factor, beta: np.ndarray) -> list[np.ndarray]:
    """b = Lambda u per term, (l_j, p_j) each, in the engine's term order."""
    if isinstance(f, SparseFactor):
        u_rest = f.lt_solve(f.Lxz[:, cp.p] - f.Lxz[:, : cp.p] @ beta)
        b_rest = lambda_t_rest(f.sr, f.T[1:], u_rest, transpose=False)
    elif cp.Rz:
        Lzz, Lxz, _, lyz, _ = _parts(cp, f)
        u_rest = sla.solve_triangular(Lzz, lyz - Lxz.T @ beta, lower=True, trans="T")
        b_rest = _lambda_rest(cp, f, u_rest[:, None], transpose=False)[:, 0]
    else:
        b_rest = np.zeros(0)
    rest = [
        b_rest[off : off + t.q].reshape(t.nlevels, t.p) for t, off in zip(cp.rest, cp.rest_offsets)
    ]
    if cp.first is None:
        return rest
    l1, p1 = cp.first.nlevels, cp.first.p
    rhs = cp.B1[-1] - np.einsum("rla,r->la", cp.B1[:-1], beta)
    if cp.Rz:
        rhs = rhs - (cp.A1z @ b_rest).reshape(l1, p1)
    T1 = f.T[0]
    w = rhs @ T1  # Lambda_1' per level, as row vectors
    u1 = np.einsum("lab,lb->la", f.M1inv, w)
    return [u1 @ T1.T, *rest]


def conditional_variances(
    cp: CrossProducts, f: Factor, sigma2: float
) -> tuple[np.ndarray, list[np.ndarray]]:
    """(first term's, [other terms']) conditional covariances for a block-mode factor."""
    out = term_condvars(cp, f, sigma2)
    return out[0], out[1:]


def term_condvars(
    cp: CrossProducts, f: Factor, sigma2: float, sinv_lower: np.ndarray | None = None
) -> list[np.ndarray]:
    """Conditional covariance of b per level: the diagonal blocks of
    sigma^2 Lambda (Lambda'Z'Z Lambda + I)^{-1} Lambda' (lme4's condVar, conditional on beta).

    With S the Schur complement of the first block (random-effects part), the rest's blocks
    are the diagonal blocks of S^{-1}, and the first term's are
    M1_k^{-1} + G_k' (Lambda_r S^{-1} Lambda_r') G_k with G_k = A_{z1,k} T1 M1_k^{-1}: only the
    entries of S^{-1} on each level's pattern are read (a selected inverse).
    ``sinv_lower``: S^{-1} already computed at this factor (dpotri's lower triangle).
    """
    rest: list[np.ndarray] = []
    if cp.first is None:
        Sinv = _rest_inverse(cp, f, sinv_lower)
        for t, off in zip(cp.rest, cp.rest_offsets):
            blk = Sinv[off : off + t.q, off : off + t.q].reshape(t.nlevels, t.p, t.nlevels, t.p)
            rest.append(np.einsum("lalb->lab", blk))
        return [sigma2 * np.einsum("ab,lbc,dc->lad", T, V, T) for T, V in zip(f.T, rest)]
    T1 = f.T[0]
    V1 = f.M1inv.copy()
    if isinstance(f, SparseFactor):
        for t, off in zip(cp.rest, cp.rest_offsets):
            rest.append(f.sinv_diagonal_blocks(int(off), t.nlevels, t.p))
        K = T1 @ f.M1inv  # T1 M1inv_k
        G = (cp.V[:, None, :] @ K[cp.pair_level])[:, 0, :]
        V1 += f.sinv_quadratic_forms(cp.ptr, cp.rows, lambda_t_pattern_rows(f.sr, cp, f.T[1:], G))
    elif cp.Rz:
        Sinv = _rest_inverse(cp, f, sinv_lower)
        for t, off in zip(cp.rest, cp.rest_offsets):
            blk = Sinv[off : off + t.q, off : off + t.q].reshape(t.nlevels, t.p, t.nlevels, t.p)
            rest.append(np.einsum("lalb->lab", blk))
        # Lambda_r S^-1 Lambda_r' (rows, then columns)
        LS = _lambda_rest(cp, f, Sinv, transpose=False)
        LSL = _lambda_rest(cp, f, np.ascontiguousarray(LS.T), transpose=False)
        K = T1 @ f.M1inv  # T1 M1inv_k
        pp = pattern_products(cp)
        if pp is not None:  # G_k = V_k K_k: G_k' LSL G_k = K_k' (V_k' LSL V_k) K_k
            V1 += K.transpose(0, 2, 1) @ pp.quadratic_forms(LSL) @ K
        else:
            G = np.ascontiguousarray((cp.V[:, None, :] @ K[cp.pair_level])[:, 0, :])
            V1 += selected_quadratic_forms(
                LSL, cp.ptr, cp.rows, G, 2.0 * cp.schur_work * cp.first.p
            )
    cv1 = sigma2 * (T1 @ V1 @ T1.T)
    cvr = [sigma2 * (T @ Vr @ T.T) for T, Vr in zip(f.T[1:], rest)]
    return [cv1, *cvr]


def _rest_inverse(cp: CrossProducts, f: Factor, lower: np.ndarray | None = None) -> np.ndarray:
    """S^{-1} for the random-effects part of the dense block, from its Cholesky factor
    (or from its lower triangle ``lower`` when already computed)."""
    if lower is None:
        lower, info = dpotri(np.array(f.L[: cp.Rz, : cp.Rz]), lower=1)
        if info != 0:
            raise np.linalg.LinAlgError("conditional variances: the factor is singular")
    return symmetrize_lower(lower)

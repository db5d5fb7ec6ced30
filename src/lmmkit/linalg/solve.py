"""Solutions at the optimum: fixed effects, conditional modes and their conditional variances.

Only called once per fit (not on the optimizer's hot path).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from lmmkit.linalg.blocked import CrossProducts, Factor

__all__ = ["fixed_effects", "conditional_modes", "conditional_variances"]


def _parts(cp: CrossProducts, f: Factor) -> tuple[np.ndarray, ...]:
    Rz, p, L = cp.Rz, cp.p, f.L
    return (
        L[:Rz, :Rz],
        L[Rz : Rz + p, :Rz],
        L[Rz : Rz + p, Rz : Rz + p],
        L[-1, :Rz],
        L[-1, Rz : Rz + p],
    )


def fixed_effects(cp: CrossProducts, f: Factor) -> tuple[np.ndarray, np.ndarray]:
    """beta and the unscaled covariance (R_X' R_X)^{-1}."""
    _, _, Lxx, _, lyx = _parts(cp, f)
    beta = sla.solve_triangular(Lxx, lyx, lower=True, trans="T")
    Linv = sla.solve_triangular(Lxx, np.eye(cp.p), lower=True)
    return beta, Linv.T @ Linv


def _lambda_rest(cp: CrossProducts, f: Factor, u: np.ndarray, transpose: bool) -> np.ndarray:
    """Lambda_rest u (or Lambda_rest' u) for u with Rz rows (any number of columns)."""
    out = np.empty_like(u)
    for t, off, T in zip(cp.rest, cp.rest_offsets, f.T[1:]):
        block = u[off : off + t.q].reshape(t.nlevels, t.p, -1)
        M = T.T if transpose else T
        out[off : off + t.q] = np.einsum("ab,lbr->lar", M, block).reshape(t.q, -1)
    return out


def conditional_modes(
    cp: CrossProducts, f: Factor, beta: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """b = Lambda u per term: (l1, p1) for the first term and (l_j, p_j) for the rest."""
    Lzz, Lxz, _, lyz, _ = _parts(cp, f)
    if cp.Rz:
        u_rest = sla.solve_triangular(Lzz, lyz - Lxz.T @ beta, lower=True, trans="T")
        b_rest = _lambda_rest(cp, f, u_rest[:, None], transpose=False)[:, 0]
    else:
        b_rest = np.zeros(0)
    l1, p1 = cp.first.nlevels, cp.first.p
    rhs = cp.B1[-1] - np.einsum("rla,r->la", cp.B1[:-1], beta)
    if cp.Rz:
        rhs = rhs - (cp.A1z @ b_rest).reshape(l1, p1)
    T1 = f.T[0]
    w = rhs @ T1  # Lambda_1' per level, as row vectors
    u1 = np.einsum("lab,lb->la", f.M1inv, w)
    b1 = u1 @ T1.T
    rest = [
        b_rest[off : off + t.q].reshape(t.nlevels, t.p) for t, off in zip(cp.rest, cp.rest_offsets)
    ]
    return b1, rest


def conditional_variances(
    cp: CrossProducts, f: Factor, sigma2: float, chunk: int = 2048
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Conditional covariance of b per level, sigma^2 Lambda (Lambda'Z'Z Lambda + I)^{-1} Lambda'
    diagonal blocks (lme4's condVar, which conditions on beta)."""
    l1, p1 = cp.first.nlevels, cp.first.p
    T1 = f.T[0]
    V1 = f.M1inv.copy()
    rest: list[np.ndarray] = []
    if cp.Rz:
        Lzz = f.L[: cp.Rz, : cp.Rz]
        Linv = sla.solve_triangular(Lzz, np.eye(cp.Rz), lower=True)
        for t, off in zip(cp.rest, cp.rest_offsets):
            C = Linv[:, off : off + t.q].reshape(cp.Rz, t.nlevels, t.p)
            rest.append(np.einsum("cla,clb->lab", C, C))
        # First term: M11^-1 + (L_zz^-1 M_r1 M11^-1)' (L_zz^-1 M_r1 M11^-1), per level.
        V = cp.Az1.data.reshape(-1, p1)
        K = np.einsum("ab,lbc->lac", T1, f.M1inv)  # T1 M1inv_k
        G = np.einsum("ia,iab->ib", V, K[cp.pair_level]).ravel()
        import scipy.sparse as sp

        Gs = sp.csc_matrix(sp.csr_matrix((G, cp.Az1.indices, cp.Az1.indptr), shape=cp.Az1.shape))
        for start in range(0, l1, chunk):
            stop = min(l1, start + chunk)
            dense = Gs[:, start * p1 : stop * p1].toarray()
            dense = _lambda_rest(cp, f, dense, transpose=True)
            W = (Linv @ dense).reshape(cp.Rz, stop - start, p1)
            V1[start:stop] += np.einsum("cla,clb->lab", W, W)
    cv1 = sigma2 * np.einsum("ab,lbc,dc->lad", T1, V1, T1)
    cvr = [sigma2 * np.einsum("ab,lbc,dc->lad", T, Vr, T) for T, Vr in zip(f.T[1:], rest)]
    return cv1, cvr

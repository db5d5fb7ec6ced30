"""Compiled kernels for the hot loops (numba).

The pattern of Z_rest' Z_1 is stored by level k of the first term: ``ptr[k]:ptr[k+1]`` index
the nonzero rows ``rows`` (sorted, into the dense rest block) and ``V`` (npairs x p1) their
values. With H block-diagonal (one p1 x p1 block per level), the Schur-complement update is

    S[:Rz, :Rz] -= sum_k V_k H_k V_k'    (scattered into rows/columns ``rows[ptr[k]:ptr[k+1]]``)

whose cost, sum_k m_k^2 p1 / 2 on the lower triangle, is the inherent work of the Schur
complement. The update is tiled by output rows so that a tile of S stays in cache while all
levels stream past it, and tiles run in parallel (they write disjoint rows).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["schur_update_lower", "copy_scale_lower", "selected_quadratic_forms"]

TILE_ROWS = 128  # rows of S per tile (128 x 2,000 doubles = 2 MB stays in cache); measured best
PARALLEL_MIN_WORK = (
    2_000_000  # below this many multiply-adds, thread start-up costs more than it saves
)


def _schur_update_lower(
    S: np.ndarray,  # (R, R) float64; lower triangle of the first Rz rows is updated in place
    ptr: np.ndarray,  # (l1 + 1,) start of each level's nonzero rows
    rows: np.ndarray,  # (npairs,) row in the rest block, sorted within each level
    V: np.ndarray,  # (npairs, p1) values of Z_rest' Z_1
    W: np.ndarray,  # (npairs, p1) H_k V_k, row by row
    Rz: int,
) -> None:
    nlev = ptr.shape[0] - 1
    p1 = V.shape[1]
    ntiles = (Rz + TILE_ROWS - 1) // TILE_ROWS
    for t in prange(ntiles):
        lo = t * TILE_ROWS
        hi = min(Rz, lo + TILE_ROWS)
        for k in range(nlev):
            s, e = ptr[k], ptr[k + 1]
            if e == s or rows[e - 1] < lo or rows[s] >= hi:
                continue
            i0 = s + np.searchsorted(rows[s:e], lo)
            i1 = s + np.searchsorted(rows[s:e], hi)
            if p1 == 1:
                for i in range(i0, i1):
                    ri = rows[i]
                    vi = V[i, 0]
                    for j in range(s, i + 1):
                        S[ri, rows[j]] -= vi * W[j, 0]
            elif p1 == 2:
                for i in range(i0, i1):
                    ri = rows[i]
                    v0, v1 = V[i, 0], V[i, 1]
                    for j in range(s, i + 1):
                        S[ri, rows[j]] -= v0 * W[j, 0] + v1 * W[j, 1]
            else:
                for i in range(i0, i1):
                    ri = rows[i]
                    for j in range(s, i + 1):
                        acc = 0.0
                        for a in range(p1):
                            acc += V[i, a] * W[j, a]
                        S[ri, rows[j]] -= acc


def _copy_scale_lower(A: np.ndarray, lam: np.ndarray, S: np.ndarray) -> None:
    """S[i, j] = lam[i] * A[i, j] * lam[j] on the lower triangle (j <= i)."""
    n = A.shape[0]
    for i in prange(n):
        li = lam[i]
        for j in range(i + 1):
            S[i, j] = li * A[i, j] * lam[j]


def _selected_quadratic_forms(
    Sinv: np.ndarray,  # (Rz, Rz) symmetric
    ptr: np.ndarray,
    rows: np.ndarray,
    G: np.ndarray,  # (npairs, p1)
) -> np.ndarray:
    """out[k] = G_k' Sinv[rows_k, rows_k] G_k for every level k (p1 x p1 each)."""
    nlev = ptr.shape[0] - 1
    p1 = G.shape[1]
    out = np.zeros((nlev, p1, p1))
    for k in prange(nlev):
        s, e = ptr[k], ptr[k + 1]
        for i in range(s, e):
            ri = rows[i]
            for j in range(s, e):
                sij = Sinv[ri, rows[j]]
                for a in range(p1):
                    gia = G[i, a] * sij
                    for b in range(p1):
                        out[k, a, b] += gia * G[j, b]
    return out


# Each kernel compiled twice: serial (prange acts as range) and parallel over tiles/rows/levels.
_serial = {
    f.__name__: njit(cache=True, nogil=True)(f)
    for f in (_schur_update_lower, _copy_scale_lower, _selected_quadratic_forms)
}
_parallel = {
    f.__name__: njit(parallel=True, cache=True, nogil=True)(f)
    for f in (_schur_update_lower, _copy_scale_lower, _selected_quadratic_forms)
}


def _pick(name: str, work: float):
    return (_parallel if work >= PARALLEL_MIN_WORK else _serial)[name]


def schur_update_lower(
    S: np.ndarray,
    ptr: np.ndarray,
    rows: np.ndarray,
    V: np.ndarray,
    W: np.ndarray,
    Rz: int,
    work: float,
) -> None:
    """S[:Rz, :Rz] -= sum_k V_k W_k' on the lower triangle (W_k = H_k V_k); ``work`` is
    sum_k m_k^2 p1 / 2, which decides serial or parallel."""
    _pick("_schur_update_lower", work)(S, ptr, rows, V, W, Rz)


def copy_scale_lower(A: np.ndarray, lam: np.ndarray, S: np.ndarray) -> None:
    """S[i, j] = lam[i] A[i, j] lam[j] on the lower triangle."""
    _pick("_copy_scale_lower", A.shape[0] ** 2 / 2)(A, lam, S)


def selected_quadratic_forms(
    Sinv: np.ndarray, ptr: np.ndarray, rows: np.ndarray, G: np.ndarray, work: float
) -> np.ndarray:
    """out[k] = G_k' Sinv[rows_k, rows_k] G_k for every level k (p1 x p1 each)."""
    return _pick("_selected_quadratic_forms", work)(Sinv, ptr, rows, G)

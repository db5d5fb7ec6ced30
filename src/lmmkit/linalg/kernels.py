"""Kernels for the hot loops: NumPy/LAPACK formulations, numba for large problems.

Each public kernel here has a vectorized NumPy (or LAPACK) formulation, used up to a size
measured to be where it stops keeping up with the compiled numba loop, and the numba kernel
above it (numba is imported only then, see :mod:`lmmkit._jit`). Every small and medium fit
(sleepstudy, InstEval) thus runs without importing numba.

The pattern of Z_rest' Z_1 is stored by level k of the first term: ``ptr[k]:ptr[k+1]`` index
the nonzero rows ``rows`` (sorted, into the dense rest block) and ``V`` (npairs x p1) their
values. With H block-diagonal (one p1 x p1 block per level), the Schur-complement update is

    S[:Rz, :Rz] -= sum_k V_k H_k V_k'    (scattered into rows/columns ``rows[ptr[k]:ptr[k+1]]``)

whose cost, sum_k m_k^2 p1 / 2 on the lower triangle, is the inherent work of the Schur
complement. The update is tiled by output rows so that a tile of S stays in cache while all
levels stream past it, and tiles run in parallel (they write disjoint rows).
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np
from scipy.linalg.lapack import dpotrf

from lmmkit._jit import cached_njit, numba_preferred, prange

__all__ = [
    "schur_update_lower",
    "copy_scale_lower",
    "selected_quadratic_forms",
    "first_block_small",
    "dense_scalar_parts",
    "scaled_pattern",
    "symmetrize_lower",
]

TILE_ROWS = 128  # rows of S per tile (128 x 2,000 doubles = 2 MB stays in cache); measured best
# Below this many multiply-adds the serial kernel is used: numba's threads then compete with
# the BLAS threads of the dense Cholesky that follows (measured: InstEval 3.5 s serial,
# 6.2 s parallel on 2 cores); above it (the 1M-row design) the kernel dominates and 2 threads
# halve it.
PARALLEL_MIN_WORK = 2_000_000
# Levels of the first term up to which first_block_small is vectorized NumPy (bit for bit the
# numba kernel's result: sums over levels in its order). Per call, one core of a loaded
# machine, NumPy vs numba: 20-40 vs 2 us at 18 levels, 0.13-0.21 vs 0.04-0.06 ms at 3,000,
# 5-8 vs 0.5-0.7 ms at 40,000 levels. Up to 20,000 levels the extra time of a fit's factor
# evaluations (AI-Newton: ~10) stays below importing numba and loading the kernel (~0.4 s);
# above it the fused numba pass is used.
FIRST_BLOCK_NUMPY_MAX_LEVELS = 20_000
# Order up to which symmetrize_lower is NumPy: it runs once or twice per fit (conditional
# variances), 9 vs 1 ms (numba) at order 1,142 and 35 vs 12 ms at 3,000: less than importing
# numba and loading its kernel (~0.4 s) in a new process.
SYMMETRIZE_NUMPY_MAX = 4_000


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
    for idx in prange(ntiles):
        # interleaved order 0, n-1, 1, n-2, ...: the lower triangle's work grows with the row,
        # and prange hands each thread a contiguous half of idx, so both halves get equal work
        t = idx // 2 if idx % 2 == 0 else ntiles - 1 - idx // 2
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
    Sinv: np.ndarray,  # (Rz, Rz) symmetric (only the lower triangle is read)
    ptr: np.ndarray,
    rows: np.ndarray,
    G: np.ndarray,  # (npairs, p1)
) -> np.ndarray:
    """out[k] = G_k' Sinv[rows_k, rows_k] G_k for every level k (p1 x p1 each).

    Row by row, t = sum_{j < i} Sinv[r_i, r_j] G_j (the strict lower triangle, read along a
    row), then out += G_i t' + t G_i' + Sinv[r_i, r_i] G_i G_i': m_k^2 p1 / 2 multiply-adds
    per level instead of m_k^2 p1^2."""
    nlev = ptr.shape[0] - 1
    p1 = G.shape[1]
    out = np.zeros((nlev, p1, p1))
    for k in prange(nlev):
        s, e = ptr[k], ptr[k + 1]
        t = np.zeros(p1)
        for i in range(s, e):
            ri = rows[i]
            for b in range(p1):
                t[b] = 0.0
            for j in range(s, i):
                sij = Sinv[ri, rows[j]]
                for b in range(p1):
                    t[b] += sij * G[j, b]
            sii = Sinv[ri, ri]
            for a in range(p1):
                gia = G[i, a]
                for b in range(p1):
                    out[k, a, b] += gia * t[b] + t[a] * G[i, b] + sii * gia * G[i, b]
    return out


def first_block_small(
    T1: np.ndarray, D1: np.ndarray, B1: np.ndarray, full: bool
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """First block for p1 in (1, 2): log|M| summed over levels, M_k^{-1} (when ``full``, else
    an empty array), H_k = T1 M_k^{-1} T1' and sum_k B_k H_k B_k', M_k = T1' D1_k T1 + I.

    Vectorized over the levels in NumPy up to ``FIRST_BLOCK_NUMPY_MAX_LEVELS`` levels, the
    fused numba pass above.

    Examples
    --------
    >>> import numpy as np
    >>> from lmmkit.linalg.kernels import first_block_small
    >>> T1 = np.array([[1.0]]); D1 = np.full((3, 1, 1), 2.0); B1 = np.ones((2, 3, 1))
    >>> logdet, Minv, H, BHB = first_block_small(T1, D1, B1, True)
    >>> round(logdet, 6), Minv[:, 0, 0].tolist(), BHB.tolist()
    (3.295837, [0.3333333333333333, 0.3333333333333333, 0.3333333333333333], [[1.0, 1.0], [1.0, 1.0]])
    """
    if D1.shape[0] > FIRST_BLOCK_NUMPY_MAX_LEVELS or numba_preferred():
        return _first_block_small(T1, D1, B1, full)
    return _first_block_small_numpy(T1, D1, B1, full)


def _sum_in_order(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Sum along ``axis`` left to right, as the compiled loop adds (``np.sum`` adds pairwise,
    which rounds differently; fits on a knife edge, such as glmer's objective where PIRLS
    takes one step more or fewer, must not depend on the path taken)."""
    if x.shape[axis] == 0:
        return np.zeros(np.delete(x.shape, axis % x.ndim))
    return np.take(np.cumsum(x, axis=axis), -1, axis=axis)


def _first_block_small_numpy(
    T1: np.ndarray, D1: np.ndarray, B1: np.ndarray, full: bool, in_order: bool = True
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """first_block_small's arithmetic on whole arrays of levels: the same closed forms, and
    the sums over levels in the same order, so the same rounding as the numba kernel (bit
    for bit). ``in_order=False`` sums by NumPy's pairwise sums and BLAS instead (2-10x
    faster; rounding-level differences)."""
    nl, p1 = D1.shape[0], D1.shape[1]
    if p1 == 1:
        t2 = T1[0, 0] * T1[0, 0]
        m = t2 * D1[:, 0, 0] + 1.0
        h = t2 / m
        H = h[:, None, None]
        b = B1[:, :, 0]
        Minv = (1.0 / m)[:, None, None] if full else np.empty((0, 1, 1))
        logs, us, bs = np.log(m), [b * h], [b]
    else:
        a, b, c = T1[0, 0], T1[1, 0], T1[1, 1]
        d11, d12, d22 = D1[:, 0, 0], D1[:, 0, 1], D1[:, 1, 1]
        m11 = a * a * d11 + 2.0 * a * b * d12 + b * b * d22 + 1.0
        m12 = c * (a * d12 + b * d22)
        m22 = c * c * d22 + 1.0
        det = m11 * m22 - m12 * m12
        i11, i12, i22 = m22 / det, -m12 / det, m11 / det
        q = b * i11 + c * i12
        h11, h12, h22 = a * a * i11, a * q, q * b + (b * i12 + c * i22) * c
        H = np.empty((nl, 2, 2))
        H[:, 0, 0], H[:, 0, 1], H[:, 1, 0], H[:, 1, 1] = h11, h12, h12, h22
        Minv = np.empty((nl if full else 0, 2, 2))
        if full:
            Minv[:, 0, 0], Minv[:, 0, 1], Minv[:, 1, 0], Minv[:, 1, 1] = i11, i12, i12, i22
        b0, b1 = B1[:, :, 0], B1[:, :, 1]
        logs, us, bs = np.log(det), [b0 * h11 + b1 * h12, b0 * h12 + b1 * h22], [b0, b1]
    if in_order:
        return float(_sum_in_order(logs)), Minv, H, _bhb_in_order(us, bs)
    if p1 == 1:
        return float(logs.sum()), Minv, H, us[0] @ bs[0].T
    bhb = us[0] @ bs[0].T + us[1] @ bs[1].T
    return float(logs.sum()), Minv, H, 0.5 * (bhb + bhb.T)


_TERMS_MAX = 1 << 20  # (r, r, levels) terms summed at once up to this size, else row by row


def _bhb_in_order(us: list[np.ndarray], bs: list[np.ndarray]) -> np.ndarray:
    """sum_k sum_a u_a[i, k] b_a[j, k] for j <= i, added over k in order and mirrored (the
    compiled loop's rounding); u_a, b_a (r, levels)."""
    r, nl = bs[0].shape
    if r * r * nl <= _TERMS_MAX:
        terms = sum(u[:, None, :] * b[None, :, :] for u, b in zip(us, bs))
        out = _sum_in_order(terms)
    else:
        out = np.empty((r, r))
        for i in range(r):
            out[i] = _sum_in_order(sum(u[i] * b for u, b in zip(us, bs)))
    low = np.tril(out)
    low += np.tril(out, -1).T
    return low


@cached_njit(nogil=True)
def _first_block_small(
    T1: np.ndarray, D1: np.ndarray, B1: np.ndarray, full: bool
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """First block for p1 in (1, 2), fused in one pass over the levels.

    For M_k = T1' D1_k T1 + I: log|M| summed over levels, M_k^{-1} (when ``full``),
    H_k = T1 M_k^{-1} T1', and the Schur term sum_k B_k H_k B_k' of the [X y] rows.
    """
    nl, p1 = D1.shape[0], D1.shape[1]
    r = B1.shape[0]
    H = np.empty((nl, p1, p1))
    Minv = np.empty((nl if full else 0, p1, p1))
    BHB = np.zeros((r, r))
    logdet = 0.0
    if p1 == 1:
        t2 = T1[0, 0] * T1[0, 0]
        for k in range(nl):
            m = t2 * D1[k, 0, 0] + 1.0
            logdet += np.log(m)
            h = t2 / m
            H[k, 0, 0] = h
            if full:
                Minv[k, 0, 0] = 1.0 / m
            for i in range(r):
                bi = B1[i, k, 0] * h
                for j in range(i + 1):
                    BHB[i, j] += bi * B1[j, k, 0]
    else:
        a, b, c = T1[0, 0], T1[1, 0], T1[1, 1]
        for k in range(nl):
            d11, d12, d22 = D1[k, 0, 0], D1[k, 0, 1], D1[k, 1, 1]
            m11 = a * a * d11 + 2.0 * a * b * d12 + b * b * d22 + 1.0
            m12 = c * (a * d12 + b * d22)
            m22 = c * c * d22 + 1.0
            det = m11 * m22 - m12 * m12
            logdet += np.log(det)
            i11, i12, i22 = m22 / det, -m12 / det, m11 / det
            q = b * i11 + c * i12
            h11, h12, h22 = a * a * i11, a * q, q * b + (b * i12 + c * i22) * c
            H[k, 0, 0], H[k, 0, 1], H[k, 1, 0], H[k, 1, 1] = h11, h12, h12, h22
            if full:
                Minv[k, 0, 0], Minv[k, 0, 1], Minv[k, 1, 0], Minv[k, 1, 1] = i11, i12, i12, i22
            for i in range(r):
                u0 = B1[i, k, 0] * h11 + B1[i, k, 1] * h12
                u1 = B1[i, k, 0] * h12 + B1[i, k, 1] * h22
                for j in range(i + 1):
                    BHB[i, j] += u0 * B1[j, k, 0] + u1 * B1[j, k, 1]
    for i in range(r):
        for j in range(i):
            BHB[j, i] = BHB[i, j]
    return logdet, Minv, H, BHB


def dense_scalar_parts(
    Arr: np.ndarray, theta: np.ndarray, row_term: np.ndarray, Rz: int, p: int
) -> tuple[bool, float, float, float]:
    """Objective pieces for the dense mode when every term is scalar.

    S = Lambda' Arr Lambda + I (on the random-effects part), Lambda = diag(theta[row_term]),
    factored by LAPACK's dpotrf. Returns (ok, log|L_theta|^2, log|R_X|^2, r^2).

    Examples
    --------
    >>> import numpy as np
    >>> from lmmkit.linalg.kernels import dense_scalar_parts
    >>> Arr = np.array([[2.0, 1.0, 1.0], [1.0, 2.0, 1.0], [1.0, 1.0, 3.0]])
    >>> ok, ld, ldx, r2 = dense_scalar_parts(Arr, np.array([1.0]), np.array([0]), 1, 1)
    >>> ok, round(ld, 6), round(ldx, 6), round(r2, 6)
    (True, 1.098612, 0.510826, 2.4)
    """
    lam = np.ones(Arr.shape[0])
    lam[:Rz] = theta[row_term[:Rz]]
    S = Arr * lam[:, None] * lam[None, :]
    idx = np.arange(Rz)
    S[idx, idx] += 1.0
    L, info = dpotrf(S, lower=1, overwrite_a=1, clean=0)
    if info != 0:
        return False, 0.0, 0.0, 0.0
    d = np.diagonal(L)
    logdet = 2.0 * float(np.log(d[:Rz]).sum())
    logdet_rx = 2.0 * float(np.log(d[Rz : Rz + p]).sum())
    return True, logdet, logdet_rx, float(d[-1] ** 2)


def _scaled_pattern(
    V: np.ndarray, H: np.ndarray, level: np.ndarray, rows: np.ndarray, lam: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(lam[row] V, lam[row] H[level] V) row by row, in one pass without temporaries."""
    n, p1 = V.shape
    Vs = np.empty_like(V)
    Ws = np.empty_like(V)
    for i in prange(n):
        li = lam[rows[i]]
        k = level[i]
        for a in range(p1):
            acc = 0.0
            for b in range(p1):
                acc += H[k, a, b] * V[i, b]
            Ws[i, a] = li * acc
            Vs[i, a] = li * V[i, a]
    return Vs, Ws


# Each kernel compiled twice: serial (prange acts as range) and parallel over tiles/rows/levels.
_KERNELS = (_schur_update_lower, _copy_scale_lower, _selected_quadratic_forms, _scaled_pattern)


def _renamed(f: Any, suffix: str) -> Any:
    """A copy of f under another name: numba's on-disk cache is keyed by the function's name,
    not by the parallel flag, so the serial and parallel builds need distinct names (otherwise
    the parallel dispatcher silently loads the serial machine code)."""
    g = types.FunctionType(
        f.__code__, f.__globals__, f.__name__ + suffix, f.__defaults__, f.__closure__
    )
    g.__qualname__ = f.__qualname__ + suffix
    return g


_serial = {f.__name__: cached_njit(nogil=True)(f) for f in _KERNELS}
_parallel = {
    f.__name__: cached_njit(parallel=True, nogil=True)(_renamed(f, "_parallel"))
    for f in _KERNELS
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


def scaled_pattern(
    V: np.ndarray, H: np.ndarray, level: np.ndarray, rows: np.ndarray, lam: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(lam[row] V, lam[row] H[level] V) for the Schur update's pattern entries."""
    return _pick("_scaled_pattern", 4.0 * V.size)(V, H, level, rows, lam)


@cached_njit(nogil=True)
def _symmetrize_lower(A: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    n = A.shape[0]
    for j in range(n):
        for i in range(j, n):
            v = A[i, j]
            out[i, j] = v
            out[j, i] = v


def symmetrize_lower(A: np.ndarray) -> np.ndarray:
    """A new C-ordered symmetric matrix from the lower triangle of ``A``.

    NumPy (``tril`` plus the transposed strict lower triangle) up to order
    ``SYMMETRIZE_NUMPY_MAX``, numba's one pass above.

    Examples
    --------
    >>> import numpy as np
    >>> from lmmkit.linalg.kernels import symmetrize_lower
    >>> symmetrize_lower(np.array([[1.0, 9.0], [2.0, 3.0]])).tolist()
    [[1.0, 2.0], [2.0, 3.0]]
    """
    if A.shape[0] <= SYMMETRIZE_NUMPY_MAX and not numba_preferred():
        out = np.tril(A)
        out += np.tril(A, -1).T
        return out
    out = np.empty(A.shape)
    _symmetrize_lower(A, out)
    return out

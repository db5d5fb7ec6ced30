"""Selected inverse of a sparse symmetric positive-definite matrix from its Cholesky factor.

For S = L L' (L lower triangular, compressed columns), the Takahashi recurrences (Takahashi,
Fagan and Chin 1973; Erisman and Tinney 1975) give Z = S^-1 on the nonzero pattern of L
without forming any other entry: for column j with off-diagonal rows R,

    Z[R, j] = -Z[R, R] L[R, j] / L[j, j],    Z[j, j] = 1 / L[j, j]^2 - L[R, j]' Z[R, j] / L[j, j],

and Z[R, R] lies on the pattern of L (the rows of a column form a clique of the filled
graph), already computed because every row in R is eliminated after j. Here the recurrence
runs by supernodes (consecutive columns sharing one row structure): with the supernode's
diagonal block L_JJ, its rows below L_RJ and U = L_RJ L_JJ^-1,

    Z_RJ = -Z_RR U,    Z_JJ = L_JJ^-T L_JJ^-1 - U' Z_RJ,

dense products on gathered blocks, so the work is of the order of the factorization's
(sum over columns of count^2) and the memory one array the size of L. Every entry of S^-1
that a mixed-model gradient or conditional variance needs is on that pattern: the diagonal
blocks of each level, and each first-term level's co-occurring rest rows (a clique of S).

Also here: triangular solves with the compressed-column factor (several right-hand sides).
"""

from __future__ import annotations

import numpy as np

from lmmkit._jit import cached_njit, prange

__all__ = [
    "supernodes",
    "selected_inverse",
    "lookup",
    "lower_solve",
    "lower_t_solve",
    "selected_quadratic_forms_sparse",
    "diagonal_blocks",
]


@cached_njit(nogil=True)
def supernodes(indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:  # pragma: no cover
    """Start column of each fundamental supernode (plus n at the end): column j + 1 joins
    j's supernode when L[j + 1, j] is structurally nonzero and column j + 1 has exactly one
    entry fewer (then its rows are column j's without j, the filled graph being chordal)."""
    n = indptr.shape[0] - 1
    out = np.empty(n + 1, dtype=np.int64)
    ns = 0
    j = 0
    while j < n:
        out[ns] = j
        ns += 1
        while j + 1 < n:
            cnt = indptr[j + 1] - indptr[j]
            if (
                cnt > 1
                and indices[indptr[j] + 1] == j + 1
                and indptr[j + 2] - indptr[j + 1] == cnt - 1
            ):
                j += 1
            else:
                break
        j += 1
    out[ns] = n
    return out[: ns + 1].copy()


@cached_njit(nogil=True)
def _lower_inverse(Ljj: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    w = Ljj.shape[0]
    inv = np.zeros((w, w))
    for c in range(w):
        inv[c, c] = 1.0 / Ljj[c, c]
        for i in range(c + 1, w):
            acc = 0.0
            for k in range(c, i):
                acc += Ljj[i, k] * inv[k, c]
            inv[i, c] = -acc / Ljj[i, i]
    return inv


@cached_njit(nogil=True)
def selected_inverse(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray
) -> np.ndarray:  # pragma: no cover - compiled
    """Z = (L L')^-1 on the pattern of L (same layout as ``data``)."""
    sn = supernodes(indptr, indices)
    Z = np.zeros_like(data)
    for s in range(sn.shape[0] - 2, -1, -1):
        j0, j1 = sn[s], sn[s + 1]
        w = j1 - j0
        p0 = indptr[j0]
        r = indptr[j0 + 1] - p0 - w
        Ljj = np.zeros((w, w))
        for c in range(w):
            q = indptr[j0 + c]
            for i in range(c, w):
                Ljj[i, c] = data[q + i - c]
        Linv = _lower_inverse(Ljj)
        ZJJ = Linv.T @ Linv
        if r > 0:
            R = indices[p0 + w : p0 + w + r]
            Lrj = np.empty((r, w))
            for c in range(w):
                q = indptr[j0 + c] + (w - c)
                for a in range(r):
                    Lrj[a, c] = data[q + a]
            U = Lrj @ Linv
            Zrr = np.empty((r, r))
            for b in range(r):
                cb = R[b]
                q = indptr[cb]
                end = indptr[cb + 1]
                for a in range(b, r):
                    ra = R[a]
                    while q < end and indices[q] < ra:
                        q += 1
                    v = Z[q]  # indices[q] == ra: the filled graph is chordal
                    Zrr[a, b] = v
                    Zrr[b, a] = v
            Zrj = -(Zrr @ U)
            ZJJ -= U.T @ Zrj
            for c in range(w):
                q = indptr[j0 + c] + (w - c)
                for a in range(r):
                    Z[q + a] = Zrj[a, c]
        for c in range(w):
            q = indptr[j0 + c]
            for i in range(c, w):
                Z[q + i - c] = ZJJ[i, c]
    return Z


@cached_njit(nogil=True, inline="always")
def lookup(Z, indptr, indices, a, b):  # pragma: no cover - compiled
    """Z at (a, b) of the permuted matrix (either order); NaN off the pattern."""
    if a < b:
        a, b = b, a
    lo, hi = indptr[b], indptr[b + 1]
    while lo < hi:
        mid = (lo + hi) >> 1
        if indices[mid] < a:
            lo = mid + 1
        else:
            hi = mid
    if lo < indptr[b + 1] and indices[lo] == a:
        return Z[lo]
    return np.nan


@cached_njit(nogil=True)
def lower_solve(indptr, indices, data, B):  # pragma: no cover - compiled
    """L^-1 B in place for B (n, k) C-ordered."""
    n, k = B.shape
    for j in range(n):
        q = indptr[j]
        d = data[q]
        for c in range(k):
            B[j, c] /= d
        for p in range(q + 1, indptr[j + 1]):
            i = indices[p]
            lij = data[p]
            for c in range(k):
                B[i, c] -= lij * B[j, c]
    return B


@cached_njit(nogil=True)
def lower_t_solve(indptr, indices, data, B):  # pragma: no cover - compiled
    """L'^-1 B in place for B (n, k) C-ordered."""
    n, k = B.shape
    acc = np.empty(k)
    for j in range(n - 1, -1, -1):
        q = indptr[j]
        for c in range(k):
            acc[c] = B[j, c]
        for p in range(q + 1, indptr[j + 1]):
            i = indices[p]
            lij = data[p]
            for c in range(k):
                acc[c] -= lij * B[i, c]
        d = data[q]
        for c in range(k):
            B[j, c] = acc[c] / d
    return B


@cached_njit(nogil=True, parallel=True)
def selected_quadratic_forms_sparse(
    Z, indptr, indices, pinv, ptr, rows, G
):  # pragma: no cover - compiled
    """out[k] = G_k' Sinv[rows_k, rows_k] G_k per level k, reading S^-1 from the selected
    inverse Z of the permuted factor (pinv: position of each original row)."""
    nlev = ptr.shape[0] - 1
    p1 = G.shape[1]
    out = np.zeros((nlev, p1, p1))
    for k in prange(nlev):
        s, e = ptr[k], ptr[k + 1]
        t = np.zeros(p1)
        for i in range(s, e):
            ri = pinv[rows[i]]
            for b in range(p1):
                t[b] = 0.0
            for j in range(s, i):
                sij = lookup(Z, indptr, indices, ri, pinv[rows[j]])
                for b in range(p1):
                    t[b] += sij * G[j, b]
            sii = Z[indptr[ri]]
            for a in range(p1):
                gia = G[i, a]
                for b in range(p1):
                    out[k, a, b] += gia * t[b] + t[a] * G[i, b] + sii * gia * G[i, b]
    return out


@cached_njit(nogil=True)
def diagonal_blocks(Z, indptr, indices, pinv, offset, nlevels, p):  # pragma: no cover
    """(nlevels, p, p) diagonal blocks of S^-1 for a term occupying rows offset.. of S."""
    out = np.empty((nlevels, p, p))
    for lv in range(nlevels):
        base = offset + lv * p
        for a in range(p):
            for b in range(a + 1):
                v = lookup(Z, indptr, indices, pinv[base + a], pinv[base + b])
                out[lv, a, b] = v
                out[lv, b, a] = v
    return out

"""The sparse rest block: the random-effects terms after the first, factored by a supernodal
sparse Cholesky when they are many and their Schur complement is sparse.

After the first term (block diagonal) is eliminated, the random-effects part of the rest is

    S = Lambda_r'(A_rr - A_r1 H A_1r) Lambda_r + I,     H = blockdiag_k T1 M_k^-1 T1',

whose nonzero pattern is fixed: A_rr = Z_rest'Z_rest plus, for every level k of the first
term, the clique of rest rows co-occurring with k. For crossed factors with many levels on
both sides (patients x providers, students x items) S is large and sparse, and a dense
factor (the engine's default, ``linalg/blocked.py``) would not fit. Here:

* once per model: the pattern (lower triangle, compressed columns), the positions of every
  A_rr entry and of every Schur-update pair in it, the AMD ordering postordered
  (``linalg/sparse_symbolic.py``) and the factor's size, so that a design whose factor would
  not fit in memory is refused before any numeric work;
* per theta: the values of S on the pattern (compiled scatter), CHOLMOD's supernodal
  factor with that ordering (``linalg/cholmod.py``), the X and y rows by p + 1 sparse
  triangular solves and a dense (p + 1) x (p + 1) Cholesky.

The gradient and the conditional variances read entries of S^-1 on the factor's pattern:
the selected inverse (``linalg/selected_inverse.py``), never a dense inverse.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from lmmkit._jit import cached_njit
from lmmkit.errors import ModelError
from lmmkit.linalg.cholmod import CholmodFactor, PatternMatrix, amd_order
from lmmkit.linalg.kernels import scaled_pattern
from lmmkit.linalg.selected_inverse import (
    diagonal_blocks,
    lower_solve,
    lower_t_solve,
    selected_inverse,
    selected_quadratic_forms_sparse,
)
from lmmkit.linalg.sparse_symbolic import SymbolicAnalysis, analyze, memory_available

__all__ = [
    "SparseRest",
    "SparseFactor",
    "SparseChoice",
    "build_sparse_rest",
    "factor_sparse_rest",
    "schur_pairs",
    "SPARSE_MIN_RZ",
]

SPARSE_MIN_RZ = 2_000  # below this many rest effects the dense block is always used
# The sparse factor is chosen when its multiply-adds are this many times fewer than the
# dense Cholesky's R^3 / 3: CHOLMOD's supernodes run at a fraction of LAPACK's dense rate on
# small fronts, and each gradient also converts the factor and runs the selected inverse.
SPARSE_ADVANTAGE = 5.0
# bytes per nonzero of L held at once at the peak of a gradient evaluation: CHOLMOD's
# supernodal values with its relaxed amalgamation (~1.3 x 8), the compressed-column copy
# (values 8 + row indices 8) and the selected inverse (8)
BYTES_PER_FACTOR_NONZERO = 35.0


def schur_pairs(ptr: np.ndarray) -> int:
    """Number of (row >= column) pairs in the first term's cliques: sum_k m_k (m_k + 1) / 2."""
    m = np.diff(ptr).astype(np.int64)
    return int((m * (m + 1) // 2).sum())


# ------------------------------------------------------------------------ compiled kernels
@cached_njit(nogil=True)
def _find_positions(indptr, indices, rows, cols):  # pragma: no cover - compiled
    """Position of each (row, col) (row >= col) in the compressed-column lower pattern."""
    out = np.empty(rows.shape[0], dtype=np.int64)
    for t in range(rows.shape[0]):
        r, c = rows[t], cols[t]
        lo, hi = indptr[c], indptr[c + 1]
        while lo < hi:
            mid = (lo + hi) >> 1
            if indices[mid] < r:
                lo = mid + 1
            else:
                hi = mid
        out[t] = lo if (lo < indptr[c + 1] and indices[lo] == r) else -1
    return out


@cached_njit(nogil=True)
def _pair_positions(indptr, indices, ptr, rows):  # pragma: no cover - compiled
    """Positions of the Schur-update pairs, level by level: for level k and j <= i in its
    sorted rows, the entry (rows[i], rows[j]) of the lower pattern."""
    nlev = ptr.shape[0] - 1
    total = 0
    for k in range(nlev):
        m = ptr[k + 1] - ptr[k]
        total += m * (m + 1) // 2
    out = np.empty(total, dtype=np.int64)
    t = 0
    for k in range(nlev):
        s, e = ptr[k], ptr[k + 1]
        for j in range(s, e):
            c = rows[j]
            q = indptr[c]
            end = indptr[c + 1]
            for i in range(j, e):
                r = rows[i]
                while q < end and indices[q] < r:
                    q += 1
                out[t] = q if (q < end and indices[q] == r) else -1
                t += 1
    return out


@cached_njit(nogil=True)
def _schur_scatter(data, pos, ptr, V, W):  # pragma: no cover - compiled
    """data[pos] -= V_i . W_j for every pair j <= i of every level (same order as
    ``_pair_positions``)."""
    nlev = ptr.shape[0] - 1
    p1 = V.shape[1]
    t = 0
    for k in range(nlev):
        s, e = ptr[k], ptr[k + 1]
        for j in range(s, e):
            for i in range(j, e):
                acc = 0.0
                for a in range(p1):
                    acc += V[i, a] * W[j, a]
                data[pos[t]] -= acc
                t += 1


@cached_njit(nogil=True)
def _lambda_t_pattern(V, rows, row_term, row_local, psize, Tstack):  # pragma: no cover
    """Rows of Lambda_r' A_r1 on the first term's pattern: entry i (rest row r = rows[i]) is
    sum_a T[a, r_local] V[i - r_local + a] over the p columns of r's level (the pattern
    holds every column of a level, adjacently)."""
    n, p1 = V.shape
    out = np.empty_like(V)
    for i in range(n):
        r = rows[i]
        tt = row_term[r]
        tl = row_local[r]
        p = psize[tt]
        for c in range(p1):
            acc = 0.0
            for a in range(p):
                acc += Tstack[tt, a, tl] * V[i - tl + a, c]
            out[i, c] = acc
    return out


# ------------------------------------------------------------------------------ structure
@dataclass(frozen=True)
class SparseChoice:
    """Why the rest block is sparse or dense: the numbers the choice was made on."""

    kind: str  # "dense" or "sparse"
    reason: str
    Rz: int
    nnz_matrix: int = 0  # lower-triangle nonzeros of S
    nnz_factor: int = 0  # nonzeros of L (symbolic count)
    flops_sparse: float = 0.0
    flops_dense: float = 0.0
    memory_bytes: float = 0.0  # estimated peak of the sparse factor's arrays

    def describe(self) -> str:
        if self.kind == "dense":
            return f"dense rest block ({self.Rz} random effects): {self.reason}"
        return (
            f"sparse rest block ({self.Rz} random effects; CHOLMOD supernodal, AMD ordering; "
            f"nnz(S) {self.nnz_matrix:,}, nnz(L) {self.nnz_factor:,}, "
            f"{self.flops_sparse:.3g} multiply-adds per factorization against "
            f"{self.flops_dense:.3g} dense)"
        )


@dataclass
class SparseRest:
    """theta-independent structure of the sparse rest block (see the module docstring)."""

    Rz: int
    p: int
    pattern: PatternMatrix  # lower triangle of S, compressed columns, original order
    analysis: SymbolicAnalysis
    pinv: np.ndarray  # position in the factor of each original row
    arr_blocks: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]
    pair_pos: np.ndarray  # positions of the Schur-update pairs
    Azx: np.ndarray  # (Rz, p + 1): Z_rest'[X y]
    Axx: np.ndarray  # (p + 1, p + 1): [X y]'[X y]
    row_term: np.ndarray  # rest term of each rest row
    row_local: np.ndarray  # column of its term of each rest row
    psize: np.ndarray  # p of each rest term
    offsets: np.ndarray  # first rest row of each rest term
    term_q: np.ndarray  # rest rows of each rest term
    scalar: bool  # every rest term has one column
    choice: SparseChoice = field(default=None)  # type: ignore[assignment]

    @property
    def perm(self) -> np.ndarray:
        return self.analysis.perm


def _level_pair_blocks(ta: Any, tb: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z_a'Z_b aggregated by (level of a, level of b): (levels a, levels b, blocks)."""
    key = ta.index.astype(np.int64) * tb.nlevels + tb.index
    uniq, inv = np.unique(key, return_inverse=True)
    nb = len(uniq)
    blocks = np.empty((nb, ta.p, tb.p))
    for i in range(ta.p):
        for j in range(tb.p):
            blocks[:, i, j] = np.bincount(inv, weights=ta.Zx[:, i] * tb.Zx[:, j], minlength=nb)
    return uniq // tb.nlevels, uniq % tb.nlevels, blocks


def _bytes(x: float) -> str:
    return f"{x / 1e9:.2f} GB" if x >= 1e8 else f"{x / 1e6:.2f} MB"


def _refuse(choice: SparseChoice, avail: float, extra: str = "") -> ModelError:
    return ModelError(
        f"The random-effects terms after the first have {choice.Rz:,} effects; their sparse "
        f"factor would need about {_bytes(choice.memory_bytes)} (nnz(S) "
        f"{choice.nnz_matrix:,}, nnz(L) {choice.nnz_factor:,}, "
        f"{choice.flops_sparse:.3g} multiply-adds per factorization{extra}) and "
        f"{_bytes(avail)} are available; the dense block would be {choice.Rz:,} x "
        f"{choice.Rz:,} ({choice.flops_dense:.3g} multiply-adds). The crossing of the "
        f"factors is too dense for a sparse factor: fit a subset of the levels, or nest the "
        f"factors (e.g. providers within regions), which keeps the factor sparse."
    )


def build_sparse_rest(
    first: Any,
    rest: tuple[Any, ...],
    offsets: np.ndarray,
    Rz: int,
    XY: np.ndarray,
    ptr: np.ndarray,
    rows: np.ndarray,
    *,
    force: bool,
    dense_limit: int,
    memory_limit: float | None = None,
) -> SparseRest | SparseChoice:
    """The sparse rest structure, or the ``SparseChoice`` saying why the dense block is
    better (only when ``force`` is False). Raises ModelError when the sparse factor would
    not fit in memory and the dense block (at most ``dense_limit`` rows) is not possible
    either."""
    p = XY.shape[1] - 1
    R = Rz + p + 1
    flops_dense = R**3 / 3.0
    avail = float(memory_limit) if memory_limit is not None else float(memory_available())
    npairs = schur_pairs(ptr)
    dense_ok = R <= dense_limit
    pair_bytes = 8.0 * npairs
    if not force and npairs > 0.25 * Rz * Rz:
        # the cliques alone cover more than half of the lower triangle: S is dense
        return SparseChoice("dense", "the Schur complement is dense", Rz, flops_dense=flops_dense)
    if pair_bytes > 0.5 * avail:
        choice = SparseChoice(
            "sparse", "", Rz, nnz_matrix=npairs, flops_dense=flops_dense, memory_bytes=pair_bytes
        )
        if dense_ok and not force:
            return SparseChoice("dense", "the Schur update's pairs exceed memory", Rz)
        raise _refuse(choice, avail, f"; the Schur update alone has {npairs:,} index pairs")

    # pattern: cliques of the first term's levels, A_rr, the diagonal (values: positive counts,
    # so that sums never cancel an entry)
    l1 = first.nlevels
    level_of = np.repeat(np.arange(l1), np.diff(ptr))
    M1 = sp.csc_matrix((np.ones(len(rows)), (rows, level_of)), shape=(Rz, l1))
    pat = sp.tril(M1 @ M1.T, format="csc")
    del M1
    blocks: list[tuple[int, int, Any, Any, Any]] = []
    parts = [pat, sp.identity(Rz, format="csc")]
    for a, (ta, oa) in enumerate(zip(rest, offsets)):
        for b in range(a + 1):
            tb, ob = rest[b], offsets[b]
            la, lb, blk = _level_pair_blocks(ta, tb)
            r = (oa + la[:, None, None] * ta.p + np.arange(ta.p)[None, :, None]).repeat(tb.p, 2)
            c = (ob + lb[:, None, None] * tb.p + np.arange(tb.p)[None, None, :]).repeat(ta.p, 1)
            keep = r >= c
            parts.append(
                sp.csc_matrix((np.ones(int(keep.sum())), (r[keep], c[keep])), shape=(Rz, Rz))
            )
            blocks.append((a, b, r, c, blk))
    pattern = parts[0]
    for extra in parts[1:]:
        pattern = pattern + extra
    pattern = sp.csc_matrix(pattern)
    pattern.sort_indices()
    indptr = pattern.indptr.astype(np.int64)
    indices = pattern.indices.astype(np.int64)
    pm = PatternMatrix(indptr, indices)
    analysis = analyze(pattern, amd_order(pm))
    nnz_s = int(len(indices))
    mem = (
        BYTES_PER_FACTOR_NONZERO * analysis.nnz_factor
        + pair_bytes
        + 24.0 * nnz_s  # the pattern, its values and cvxopt's copy
        + 8.0 * Rz * (p + 1) * 4
    )
    choice = SparseChoice(
        "sparse",
        "",
        Rz,
        nnz_matrix=nnz_s,
        nnz_factor=analysis.nnz_factor,
        flops_sparse=analysis.flops,
        flops_dense=flops_dense,
        memory_bytes=mem,
    )
    if not force and dense_ok and analysis.flops * SPARSE_ADVANTAGE > flops_dense:
        return replace(
            choice,
            kind="dense",
            reason=f"the sparse factor ({analysis.flops:.3g} multiply-adds) is not "
            f"{SPARSE_ADVANTAGE:g}x cheaper than the dense one ({flops_dense:.3g})",
        )
    if mem > avail:
        if dense_ok and not force and 16.0 * R * R < avail:
            return SparseChoice("dense", "the sparse factor exceeds memory", Rz)
        raise _refuse(choice, avail)

    arr_blocks = []
    for a, b, r, c, blk in blocks:
        keep = r >= c
        pos = np.full(r.shape, -1, dtype=np.int64)
        pos[keep] = _find_positions(indptr, indices, r[keep].astype(np.int64), c[keep])
        if np.any(pos[keep] < 0):
            raise AssertionError("internal: an A_rr entry is missing from the pattern")
        arr_blocks.append((a, b, blk, pos, keep))
    pair_pos = _pair_positions(indptr, indices, ptr.astype(np.int64), rows.astype(np.int64))
    if np.any(pair_pos < 0):
        raise AssertionError("internal: a Schur pair is missing from the pattern")
    Azx = np.zeros((Rz, p + 1))
    row_term = np.empty(Rz, dtype=np.int64)
    row_local = np.empty(Rz, dtype=np.int64)
    for j, (t, off) in enumerate(zip(rest, offsets)):
        for i in range(t.p):
            for c in range(p + 1):
                Azx[off + i : off + t.q : t.p, c] = np.bincount(
                    t.index, weights=t.Zx[:, i] * XY[:, c], minlength=t.nlevels
                )
        row_term[off : off + t.q] = j
        row_local[off : off + t.q] = np.tile(np.arange(t.p), t.nlevels)
    pinv = np.empty(Rz, dtype=np.int64)
    pinv[analysis.perm] = np.arange(Rz)
    return SparseRest(
        Rz=Rz,
        p=p,
        pattern=pm,
        analysis=analysis,
        pinv=pinv,
        arr_blocks=arr_blocks,
        pair_pos=pair_pos,
        Azx=Azx,
        Axx=XY.T @ XY,
        row_term=row_term,
        row_local=row_local,
        psize=np.array([t.p for t in rest], dtype=np.int64),
        offsets=np.asarray(offsets, dtype=np.int64),
        term_q=np.array([t.q for t in rest], dtype=np.int64),
        scalar=all(t.p == 1 for t in rest),
        choice=choice,
    )


def update_sparse_response(sr: SparseRest, rest: tuple[Any, ...], offsets, X, y) -> None:
    """Replace the y-dependent parts (refit with a new response)."""
    for t, off in zip(rest, offsets):
        for i in range(t.p):
            sr.Azx[off + i : off + t.q : t.p, -1] = np.bincount(
                t.index, weights=t.Zx[:, i] * y, minlength=t.nlevels
            )
    col = np.concatenate([X.T @ y, [y @ y]])
    sr.Axx[:, -1] = col
    sr.Axx[-1, :] = col


# ------------------------------------------------------------------------- numeric factor
def _tstack(Ts: list[np.ndarray], psize: np.ndarray) -> np.ndarray:
    pmax = int(psize.max()) if len(psize) else 1
    out = np.zeros((len(Ts), pmax, pmax))
    for j, T in enumerate(Ts):
        out[j, : T.shape[0], : T.shape[1]] = T
    return out


def lambda_t_rest(sr: SparseRest, Ts: list[np.ndarray], U: np.ndarray, transpose: bool = True):
    """Lambda_r' U (transpose) or Lambda_r U for U with Rz rows (original order)."""
    if sr.scalar:
        lam = np.array([T[0, 0] for T in Ts])[sr.row_term]
        return U * (lam[:, None] if U.ndim == 2 else lam)
    out = np.empty_like(U)
    for j, (T, p) in enumerate(zip(Ts, sr.psize)):
        start, q = int(sr.offsets[j]), int(sr.term_q[j])
        block = U[start : start + q].reshape(q // p, p, -1)
        M = T.T if transpose else T
        out[start : start + q] = np.einsum("ab,lbr->lar", M, block).reshape(q, *U.shape[1:])
    return out


def lambda_t_pattern_rows(sr: SparseRest, cp: Any, Ts_rest: list[np.ndarray], G: np.ndarray):
    """Lambda_r' applied to rows of G laid out on the first term's pattern (cp.rows)."""
    if sr.scalar:
        lam = np.array([T[0, 0] for T in Ts_rest])[sr.row_term]
        return G * lam[cp.rows][:, None]
    return _lambda_t_pattern(
        np.ascontiguousarray(G),
        cp.rows,
        sr.row_term,
        sr.row_local,
        sr.psize,
        _tstack(Ts_rest, sr.psize),
    )


def rest_values(sr: SparseRest, cp: Any, Ts_rest: list[np.ndarray], H: np.ndarray) -> np.ndarray:
    """Values of S = Lambda_r'(A_rr - A_r1 H A_1r)Lambda_r + I on the pattern."""
    data = np.zeros(len(sr.pattern.indices))
    for a, b, blk, pos, keep in sr.arr_blocks:
        Ta, Tb = Ts_rest[a], Ts_rest[b]
        if blk.shape[1] == 1 and blk.shape[2] == 1:
            vals = blk * (Ta[0, 0] * Tb[0, 0])
        else:
            vals = np.einsum("ai,nab,bj->nij", Ta, blk, Tb)
        data[pos[keep]] = vals[keep]
    if len(cp.rows):
        if sr.scalar:
            lam = np.array([T[0, 0] for T in Ts_rest])[sr.row_term]
            Vs, Ws = scaled_pattern(cp.V, H, cp.pair_level, cp.rows, lam)
        else:
            Vs = lambda_t_pattern_rows(sr, cp, Ts_rest, cp.V)
            Ws = np.einsum("iab,ib->ia", H[cp.pair_level], Vs)
        _schur_scatter(data, sr.pair_pos, cp.ptr, Vs, Ws)
    data[sr.pattern.indptr[:-1]] += 1.0  # the diagonal leads each column
    return data


class SparseFactor:
    """The factor at one theta with a sparse rest block (same pieces as ``Factor``).

    ``chol`` is CHOLMOD's supernodal factor of P S P' until the factor is needed as arrays
    (solves after the deviance, the selected inverse): then ``csc`` holds L by columns."""

    def __init__(self, T, M1inv, sr, chol, Lxz, Lx, logdet_L, logdet_RX, pwrss, ok=True):
        self.T = T
        self.M1inv = M1inv
        self.sr = sr
        self.chol = chol
        self.Lxz = Lxz  # (Rz, p + 1) = L^-1 P s_zx: the X and y rows of the factor, permuted
        self.Lx = Lx  # (p + 1, p + 1) lower Cholesky of the X/y Schur complement
        self.logdet_L = logdet_L
        self.logdet_RX = logdet_RX
        self.pwrss = pwrss
        self.ok = ok
        self._csc: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._Z: np.ndarray | None = None

    def csc(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._csc is None:
            self._csc = self.chol.to_csc()
            self.chol = None
        return self._csc

    def _solve_perm(self, Bp: np.ndarray, transpose_only: bool = False) -> np.ndarray:
        """(L L')^-1 Bp, or L'^-1 Bp (``transpose_only``), in the permuted order."""
        if self.chol is not None:
            x = Bp if transpose_only else self.chol.solve_L(Bp)
            return self.chol.solve_Lt(x)
        ip, ii, dd = self.csc()
        X = np.ascontiguousarray(Bp.reshape(Bp.shape[0], -1), dtype=float).copy()
        if not transpose_only:
            lower_solve(ip, ii, dd, X)
        lower_t_solve(ip, ii, dd, X)
        return X.reshape(Bp.shape)

    def solve(self, B: np.ndarray) -> np.ndarray:
        """S^-1 B for B with Rz rows in the original order."""
        perm = self.sr.perm
        x = self._solve_perm(np.asarray(B, dtype=float)[perm])
        out = np.empty_like(x)
        out[perm] = x
        return out

    def lt_solve(self, b_perm: np.ndarray) -> np.ndarray:
        """L'^-1 b for b in the permuted order; the result in the original order."""
        x = self._solve_perm(b_perm, transpose_only=True)
        out = np.empty_like(x)
        out[self.sr.perm] = x
        return out

    def selected_inverse(self) -> np.ndarray:
        """S^-1 on the pattern of L (the factor's layout; see ``csc``)."""
        if self._Z is None:
            self._Z = selected_inverse(*self.csc())
        return self._Z

    def sinv_diagonal(self) -> np.ndarray:
        """Diagonal of S^-1 in the original order."""
        ip, _, _ = self.csc()
        return self.selected_inverse()[ip[:-1]][self.sr.pinv]

    def sinv_diagonal_blocks(self, offset: int, nlevels: int, p: int) -> np.ndarray:
        ip, ii, _ = self.csc()
        return diagonal_blocks(self.selected_inverse(), ip, ii, self.sr.pinv, offset, nlevels, p)

    def sinv_quadratic_forms(self, ptr, rows, G) -> np.ndarray:
        """G_k' S^-1[rows_k, rows_k] G_k per level k of the first term."""
        ip, ii, _ = self.csc()
        return selected_quadratic_forms_sparse(
            self.selected_inverse(), ip, ii, self.sr.pinv, ptr, rows, np.ascontiguousarray(G)
        )


def factor_sparse_rest(
    cp: Any,
    Ts: list[np.ndarray],
    logdet: float,
    M1inv: np.ndarray | None,
    H: np.ndarray,
    BHB: np.ndarray,
) -> SparseFactor:
    """The factor at theta (first block already done: log|M1|, M1^-1, H, B H B')."""
    sr: SparseRest = cp.sparse
    Ts_rest = Ts[1:]
    data = rest_values(sr, cp, Ts_rest, H)
    chol = CholmodFactor(sr.pattern, data, sr.perm)
    p = sr.p
    if not chol.ok:
        return SparseFactor(Ts, M1inv, sr, None, None, None, np.inf, np.inf, np.inf, ok=False)
    d = chol.diagonal()
    logdet += 2.0 * float(np.log(d).sum())
    BH = np.einsum("rla,lab->rlb", cp.B1, H).reshape(p + 1, -1)
    szx = lambda_t_rest(sr, Ts_rest, sr.Azx - cp.Az1 @ BH.T)
    Lxz = chol.solve_L(szx[sr.perm])
    Sxx = sr.Axx - BHB - Lxz.T @ Lxz
    try:
        Lx = np.linalg.cholesky(Sxx)
    except np.linalg.LinAlgError:
        return SparseFactor(Ts, M1inv, sr, None, None, None, np.inf, np.inf, np.inf, ok=False)
    dx = np.diagonal(Lx)
    return SparseFactor(
        Ts,
        M1inv,
        sr,
        chol,
        Lxz,
        Lx,
        logdet,
        2.0 * float(np.log(dx[:p]).sum()),
        float(dx[-1] ** 2),
    )

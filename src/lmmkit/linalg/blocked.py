"""Blocked Cholesky factor of the penalized system of a linear mixed model.

With relative covariance factor Lambda(theta) = blockdiag(I_l (x) T_j) the penalized
least-squares system (Bates et al. 2015, JSS 67(1), eq. 18-20) is

    [ Lambda'Z'Z Lambda + I   Lambda'Z'X   Lambda'Z'y ]
    [ X'Z Lambda              X'X          X'y        ]   =  L L'
    [ y'Z Lambda              y'X          y'y        ]

Block structure used here (in MixedModels.jl's spirit):

* term 1 (the term with most levels) gives a block-diagonal leading block of p1 x p1 blocks,
  one per level (diagonal when p1 = 1): ``FirstBlock``;
* everything else (the other terms, then X, then y) is the "rest": one dense block
  ``R x R``. Its Schur complement ``A_rr - A_r1 H A_1r`` needs only the sparse cross-product
  ``A_z1 = Z_rest' Z_1`` stored with full p1-blocks, so the update is a sparse product with the
  same pattern at every theta.

Z is never formed: all cross-products are accumulated from the per-term level indices and
model columns. Nothing here depends on theta except ``factor``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.linalg.lapack import dpotrf as _dpotrf

from lmmkit.errors import ModelError
from lmmkit.linalg.kernels import (
    copy_scale_lower,
    first_block_small,
    scaled_pattern,
    schur_update_lower,
)
from lmmkit.linalg.pattern import pattern_products
from lmmkit.linalg.sparse_rest import (
    SPARSE_MIN_RZ,
    SparseChoice,
    SparseRest,
    build_sparse_rest,
    factor_sparse_rest,
    update_sparse_response,
)

__all__ = [
    "TermBlock",
    "CrossProducts",
    "Factor",
    "build_cross_products",
    "factor",
    "theta_to_T",
    "term_factors",
    "describe_rest",
]

MAX_DENSE_REST = 25_000  # 25k x 25k doubles = 5 GB; beyond that the dense rest block is unwise


@dataclass(frozen=True)
class TermBlock:
    """Structure of one random-effects term: level index and (weighted) model columns."""

    index: np.ndarray  # (n,) level of each observation
    Zx: np.ndarray  # (n, p) model columns, already multiplied by sqrt(weights)
    nlevels: int
    # covariance structure (lmmkit.linalg.covstruct.CovStructure); None: lme4's theta
    structure: Any = None

    @property
    def p(self) -> int:
        return self.Zx.shape[1]

    @property
    def q(self) -> int:
        return self.nlevels * self.p


def theta_to_T(theta: np.ndarray, p: int) -> np.ndarray:
    """Lower-triangular T (p x p) from lme4's column-major lower-triangle theta."""
    T = np.zeros((p, p))
    if p == 1:
        T[0, 0] = theta[0]
        return T
    rows, cols = _lower_indices(p)
    T[rows, cols] = theta
    return T


def term_factors(theta: np.ndarray, terms: Any) -> list[np.ndarray]:
    """T of each term from the model's parameter vector: lme4's theta (column-major lower
    triangle) for an unstructured term, the structure's parameters for a structured one.
    ``terms`` are objects with ``p`` and ``structure`` (design terms or term blocks)."""
    theta = np.asarray(theta, dtype=float)
    out, at = [], 0
    for t in terms:
        structure = getattr(t, "structure", None)
        if structure is None:
            k = t.p * (t.p + 1) // 2
            out.append(theta_to_T(theta[at : at + k], t.p))
        else:
            k = structure.npar
            out.append(structure.T(theta[at : at + k]))
        at += k
    if at != len(theta):
        raise ModelError(
            f"The parameter vector has {len(theta)} values; the random-effects terms need {at}."
        )
    return out


@functools.cache
def _lower_indices(p: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the lower triangle in column-major order (lme4's theta)."""
    cols, rows = np.triu_indices(p)  # (col, row) pairs with row >= col, col-major order
    return rows, cols


@dataclass
class CrossProducts:
    """theta-independent blocks. ``update_response`` refreshes the y-dependent parts only."""

    first: TermBlock | None  # None: dense mode, every term is in the dense block
    rest: tuple[TermBlock, ...]
    rest_offsets: np.ndarray  # start of each rest term in the dense block
    Rz: int  # number of random effects in the rest
    p: int  # fixed-effect columns
    D1: np.ndarray  # (l1, p1, p1): Z1'Z1 per level
    Az1: sp.csr_matrix  # (Rz, q1) Z_rest' Z_1 with full p1-blocks
    A1z: sp.csr_matrix  # its transpose
    pair_level: np.ndarray  # level of term 1 of each pattern entry
    ptr: np.ndarray  # (l1 + 1,) level k's pattern entries are ptr[k]:ptr[k+1]
    rows: np.ndarray  # (npairs,) rest-block row of each pattern entry (sorted per level)
    V: np.ndarray  # (npairs, p1) values of Z_rest' Z_1 per pattern entry
    schur_work: float  # multiply-adds of one Schur update, sum_k m_k^2 p1 / 2
    B1: np.ndarray  # (p + 1, l1, p1): [X y]' Z_1
    Arr: np.ndarray  # (R, R) dense: [Z_rest X y]'[Z_rest X y]
    X: np.ndarray  # weighted X (kept for refits of y)
    # known-covariance terms: (offset, size, L) with K = L L'; the term's block of the dense
    # part is expressed in the coordinates v of b = L v (dense mode only)
    kernels: tuple[tuple[int, int, np.ndarray], ...] = ()
    # whether any term has a covariance structure (else theta is lme4's throughout); set once
    # here so that the hot path reads one attribute
    structured: bool = False
    # the sparse rest block (linalg/sparse_rest.py) when chosen; then Arr is empty and the
    # rest's cross-products live there
    sparse: SparseRest | None = None
    # the numbers the dense/sparse choice was made on (None: dense without analysis)
    rest_choice: SparseChoice | None = None

    @property
    def R(self) -> int:
        return self.Rz + self.p + 1

    @property
    def terms(self) -> tuple[TermBlock, ...]:
        return self.rest if self.first is None else (self.first, *self.rest)

    @property
    def term_ps(self) -> list[int]:
        return [t.p for t in self.terms]


def _bincount_cross(idx: np.ndarray, a: np.ndarray, b: np.ndarray, nl: int) -> np.ndarray:
    """out[k, i, j] = sum over observations of level k of a[:, i] * b[:, j]."""
    out = np.empty((nl, a.shape[1], b.shape[1]))
    for i in range(a.shape[1]):
        for j in range(b.shape[1]):
            out[:, i, j] = np.bincount(idx, weights=a[:, i] * b[:, j], minlength=nl)
    return out


def _coo_cross(
    ri: np.ndarray, rZ: np.ndarray, rp: int, ci: np.ndarray, cZ: np.ndarray, cp: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COO triplets of Z_r' Z_c for two terms given level indices and model columns."""
    rows = (ri[:, None, None] * rp + np.arange(rp)[None, :, None]).repeat(cp, axis=2)
    cols = (ci[:, None, None] * cp + np.arange(cp)[None, None, :]).repeat(rp, axis=1)
    vals = rZ[:, :, None] * cZ[:, None, :]
    return rows.ravel(), cols.ravel(), vals.ravel()


DENSE_MAX_Q = 400  # several terms with at most this many random effects in all: one dense block


def build_cross_products(
    terms: list[TermBlock] | tuple[TermBlock, ...],
    X: np.ndarray,
    y: np.ndarray,
    dense: bool | None = False,
    *,
    rest: str = "auto",
    memory_limit: float | None = None,
) -> CrossProducts:
    """theta-independent blocks. ``dense=True`` puts every term in the dense block (for
    several small terms one LAPACK call beats the block bookkeeping); ``None`` chooses.

    ``rest``: how the block after the first term is factored: ``"dense"`` (LAPACK),
    ``"sparse"`` (CHOLMOD, ``linalg/sparse_rest.py``) or ``"auto"``: sparse when the rest has
    at least ``SPARSE_MIN_RZ`` effects and its sparse factor is much cheaper than the dense
    one, or when the dense block would exceed ``MAX_DENSE_REST`` rows. ``memory_limit``
    (bytes; default the available memory) bounds the sparse factor's estimated size."""
    if rest not in ("auto", "dense", "sparse"):
        raise ValueError(f"rest must be 'auto', 'dense' or 'sparse'; got {rest!r}.")
    terms = tuple(terms)
    if dense is None:
        dense = len(terms) > 1 and sum(t.q for t in terms) <= DENSE_MAX_Q
    if dense:
        return _build(None, terms, X, y)
    return _build(terms[0], terms[1:], X, y, rest, memory_limit)


def _dense_refusal(Rz: int, R: int, choice: SparseChoice | None = None) -> ModelError:
    extra = ""
    if choice is not None and choice.nnz_factor:
        extra = (
            f" Its sparse factor was considered too: {choice.reason} (nnz(L) "
            f"{choice.nnz_factor:,})."
        )
    return ModelError(
        f"The random-effects terms after the first have {Rz} effects in all; the dense "
        f"block this engine factors would be {R} x {R} ({R * R * 8 / 1e9:.1f} GB).{extra} "
        f"Order the terms so that the factor with most levels comes first (it is kept "
        f"sparse), or reduce the other factors' levels."
    )


def _build(
    first: TermBlock | None,
    rest: tuple[TermBlock, ...],
    X: np.ndarray,
    y: np.ndarray,
    rest_block: str = "dense",
    memory_limit: float | None = None,
) -> CrossProducts:
    p = X.shape[1]
    sizes = np.array([t.q for t in rest], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if rest else np.zeros(0, np.int64)
    Rz = int(sizes.sum()) if rest else 0
    R = Rz + p + 1
    consider_sparse = (
        first is not None
        and Rz > 0
        and rest_block != "dense"
        and (rest_block == "sparse" or Rz >= SPARSE_MIN_RZ or R > MAX_DENSE_REST)
    )
    if R > MAX_DENSE_REST and not consider_sparse:
        raise _dense_refusal(Rz, R)
    XY = np.column_stack([X, y])
    if first is None:
        first_index, first_Zx, l1, p1 = np.zeros(len(y), np.int64), np.zeros((len(y), 1)), 0, 1
    else:
        first_index, first_Zx, l1, p1 = first.index, first.Zx, first.nlevels, first.p
    D1 = _bincount_cross(first_index, first_Zx, first_Zx, l1)
    B1 = _bincount_cross(first_index, XY, first_Zx, l1).transpose(1, 0, 2).copy()

    # Z_rest' Z_1 as CSR with full p1-blocks (explicit zeros kept for a fixed pattern).
    if rest and first is not None:
        trip = [_coo_cross(t.index, t.Zx, t.p, first_index, first_Zx, p1) for t in rest]
        rows = np.concatenate([r + off for (r, _, _), off in zip(trip, offsets)])
        cols = np.concatenate([c for _, c, _ in trip])
        vals = np.concatenate([v for _, _, v in trip])
        Az1 = sp.csr_matrix((vals, (rows, cols)), shape=(Rz, l1 * p1))
        Az1.sum_duplicates()
        Az1.sort_indices()
        if Az1.nnz % p1:
            raise AssertionError("internal: Z_rest'Z_1 lost its block pattern")
        A1z = Az1.T.tocsr()
        A1z.sort_indices()
    else:  # no pattern: both empty (built directly; a sparse transpose costs a small fit 3%)
        Az1 = sp.csr_matrix((0, l1 * p1))
        A1z = sp.csr_matrix((l1 * p1, 0))
    # Level-major pattern: rows k*p1 + a of A1z share one pattern per level k.
    counts = np.diff(A1z.indptr)
    m = counts[::p1]
    ptr = np.concatenate([[0], np.cumsum(m)]).astype(np.int64)
    comp = np.repeat(np.arange(l1 * p1) % p1, counts)
    rows_pat = A1z.indices[comp == 0].astype(np.int64)
    V = np.column_stack([A1z.data[comp == a] for a in range(p1)]) if A1z.nnz else np.zeros((0, p1))
    pair_level = np.repeat(np.arange(l1), m)

    sparse: SparseRest | None = None
    choice: SparseChoice | None = None
    if consider_sparse:
        built = build_sparse_rest(
            first,
            rest,
            offsets,
            Rz,
            XY,
            ptr,
            rows_pat,
            force=rest_block == "sparse",
            dense_limit=MAX_DENSE_REST,
            memory_limit=memory_limit,
        )
        if isinstance(built, SparseRest):
            sparse, choice = built, built.choice
        else:
            choice = built
            if R > MAX_DENSE_REST:
                raise _dense_refusal(Rz, R, choice)
    Arr = np.zeros((R, R) if sparse is None else (0, 0))
    for a, (ta, oa) in enumerate(zip(rest, offsets) if sparse is None else ()):
        for tb, ob in list(zip(rest, offsets))[a:]:
            r, c, v = _coo_cross(ta.index, ta.Zx, ta.p, tb.index, tb.Zx, tb.p)
            block = sp.coo_matrix((v, (r, c)), shape=(ta.q, tb.q)).toarray()
            Arr[oa : oa + ta.q, ob : ob + tb.q] = block
            Arr[ob : ob + tb.q, oa : oa + ta.q] = block.T
        zx = _bincount_cross(ta.index, ta.Zx, XY, ta.nlevels).reshape(ta.q, p + 1)
        Arr[oa : oa + ta.q, Rz:] = zx
        Arr[Rz:, oa : oa + ta.q] = zx.T
    if sparse is None:
        Arr[Rz:, Rz:] = XY.T @ XY
    return CrossProducts(
        first,
        rest,
        offsets,
        Rz,
        p,
        D1,
        Az1,
        A1z,
        pair_level,
        ptr,
        rows_pat,
        np.ascontiguousarray(V),
        float((m.astype(float) ** 2).sum() * p1 / 2),
        B1,
        Arr,
        X,
        structured=any(t.structure is not None for t in (*rest, *([first] if first else []))),
        sparse=sparse,
        rest_choice=choice,
    )


def update_response(cp: CrossProducts, y: np.ndarray) -> None:
    """Replace the y-dependent rows of the cross-products (for refit with a new response)."""
    first = cp.first
    if first is not None:
        cp.B1[-1] = _bincount_cross(first.index, y[:, None], first.Zx, first.nlevels)[:, 0, :]
    if cp.sparse is not None:
        update_sparse_response(cp.sparse, cp.rest, cp.rest_offsets, cp.X, y)
        return
    col = np.empty(cp.R)
    for t, off in zip(cp.rest, cp.rest_offsets):
        col[off : off + t.q] = _bincount_cross(t.index, t.Zx, y[:, None], t.nlevels).ravel()
    col[cp.Rz : cp.Rz + cp.p] = cp.X.T @ y
    col[-1] = y @ y
    for off, q, L in cp.kernels:
        col[off : off + q] = L.T @ col[off : off + q]
    cp.Arr[:, -1] = col
    cp.Arr[-1, :] = col


def apply_kernels(cp: CrossProducts, kernels: list[tuple[int, np.ndarray]]) -> None:
    """Re-express known-covariance terms (dense mode): for each (term position, L) with
    K = L L', the term's rows and columns of the dense block become L'(.) and (.)L, i.e.
    Z is replaced by Z L, whose random effects v are independent with variance sigma_a^2."""
    if cp.first is not None:
        raise ValueError("known-covariance terms need the dense mode")
    done = []
    for position, L in kernels:
        off, q = int(cp.rest_offsets[position]), cp.rest[position].q
        cp.Arr[:, off : off + q] = cp.Arr[:, off : off + q] @ L
        cp.Arr[off : off + q, :] = L.T @ cp.Arr[off : off + q, :]
        done.append((off, q, L))
    cp.kernels = tuple(done)


@dataclass
class Factor:
    """The factor at one theta, and the pieces of the objective."""

    T: list[np.ndarray]
    M1inv: np.ndarray | None  # (l1, p1, p1) inverses of the first block's diagonal blocks
    L: np.ndarray  # (R, R) lower Cholesky factor of the rest's Schur complement
    logdet_L: float  # log |L_theta|^2 (random-effects part)
    logdet_RX: float  # log |R_X|^2
    pwrss: float  # penalized weighted residual sum of squares r^2
    ok: bool = True


def _split_theta(theta: np.ndarray, ps: list[int]) -> list[np.ndarray]:
    out, at = [], 0
    for p in ps:
        k = p * (p + 1) // 2
        out.append(theta_to_T(theta[at : at + k], p))
        at += k
    return out


def _lambda_t_rows(S: np.ndarray, cp: CrossProducts, Ts: list[np.ndarray]) -> None:
    """In place: the first Rz rows of S <- blockdiag(I (x) T_j)' S[:Rz]."""
    for t, off, T in zip(cp.rest, cp.rest_offsets, Ts):
        block = S[off : off + t.q]
        if t.p == 1:
            block *= T[0, 0]
        else:
            shaped = block.reshape(t.nlevels, t.p, -1)
            block[:] = np.einsum("ba,lbr->lar", T, shaped).reshape(t.q, -1)


def _first_block(
    T1: np.ndarray, D1: np.ndarray, B1: np.ndarray, full: bool
) -> tuple[float, np.ndarray | None, np.ndarray, np.ndarray]:
    """log|M1|, M1^-1 (when ``full``), H = T1 M1^-1 T1' per level (M1 = T1' D1 T1 + I), and
    the [X y] Schur term sum_k B_k H_k B_k'. Fused compiled loop for p1 <= 2, LAPACK above."""
    p1 = T1.shape[0]
    if p1 <= 2:
        logdet, Minv, H, BHB = first_block_small(T1, D1, B1, full)
        return logdet, Minv if full else None, H, BHB
    M1 = np.einsum("ba,lbc,cd->lad", T1, D1, T1)
    M1[:, np.arange(p1), np.arange(p1)] += 1.0
    L1 = np.linalg.cholesky(M1)
    Minv = np.linalg.inv(M1)
    H = np.einsum("ab,lbc,dc->lad", T1, Minv, T1)
    BH = np.einsum("rla,lab->rlb", B1, H).reshape(B1.shape[0], -1)
    BHB = BH @ B1.reshape(B1.shape[0], -1).T
    logdet = 2.0 * float(np.log(np.diagonal(L1, axis1=1, axis2=2)).sum())
    return logdet, Minv, H, BHB


def _times_H(V: np.ndarray, H: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Row i of the result is H[level[i]] @ V[i] (H symmetric)."""
    p1 = V.shape[1]
    if p1 == 1:
        return V * H[level, 0, 0][:, None]
    if p1 == 2:
        Hl = H[level]
        W = np.empty_like(V)
        W[:, 0] = V[:, 0] * Hl[:, 0, 0] + V[:, 1] * Hl[:, 0, 1]
        W[:, 1] = V[:, 0] * Hl[:, 0, 1] + V[:, 1] * Hl[:, 1, 1]
        return W
    return np.einsum("iab,ib->ia", H[level], V)


def _factor_dense(cp: CrossProducts, Ts: list[np.ndarray]) -> Factor:
    """Dense mode: S = Lambda'A Lambda + I on the random-effects part, one LAPACK call."""
    Rz = cp.Rz
    if all(t.p == 1 for t in cp.rest):
        lam = np.ones(cp.R)
        for t, off, T in zip(cp.rest, cp.rest_offsets, Ts):
            lam[off : off + t.q] = T[0, 0]
        S = cp.Arr * lam[:, None] * lam[None, :]
    else:
        S = cp.Arr.copy()
        _lambda_t_rows(S, cp, Ts)
        S = np.ascontiguousarray(S.T)
        _lambda_t_rows(S, cp, Ts)
    S[np.arange(Rz), np.arange(Rz)] += 1.0
    return _finish(cp, Ts, None, S, 0.0)


def _finish(
    cp: CrossProducts,
    Ts: list[np.ndarray],
    M1inv: np.ndarray | None,
    S: np.ndarray,
    logdet: float,
) -> Factor:
    L, info = _dpotrf(S, lower=1, overwrite_a=1, clean=1)
    if info != 0:
        return Factor(Ts, M1inv, L, np.inf, np.inf, np.inf, ok=False)
    d = np.diagonal(L)
    Rz = cp.Rz
    logdet += 2.0 * float(np.log(d[:Rz]).sum())
    logdet_RX = 2.0 * float(np.log(d[Rz : Rz + cp.p]).sum())
    return Factor(Ts, M1inv, L, logdet, logdet_RX, float(d[-1] ** 2))


def describe_rest(cp: CrossProducts) -> str:
    """How the block after the first term is factored, for ``result.optimization``."""
    if cp.sparse is not None:
        return cp.sparse.choice.describe()
    if cp.first is None:
        return f"one dense block ({cp.R} rows: every random-effects term, X and y)"
    if cp.rest_choice is not None:
        return cp.rest_choice.describe()
    return f"dense rest block ({cp.Rz} random effects)"


def factor(cp: CrossProducts, theta: np.ndarray, full: bool = False) -> Factor:
    """Factor the penalized system at theta (the hot path of every fit). ``full`` also keeps
    the first block's inverses, needed for the conditional modes and variances."""
    if cp.structured:
        Ts = term_factors(theta, cp.terms)
    else:
        Ts = _split_theta(np.asarray(theta, dtype=float), cp.term_ps)
    if cp.first is None:
        return _factor_dense(cp, Ts)
    logdet, M1inv, H, BHB = _first_block(Ts[0], cp.D1, cp.B1, full)
    if cp.sparse is not None:
        return factor_sparse_rest(cp, Ts, logdet, M1inv, H, BHB)  # type: ignore[return-value]

    # Schur complement of the first block, S = Lambda_r'(A_rr - A_r1 H A_1r)Lambda_r + I,
    # built on the lower triangle only (all LAPACK reads).
    B = cp.B1
    Rz = cp.Rz
    pp = pattern_products(cp)  # None: the numba kernels (large patterns)
    if Rz and all(t.p == 1 for t in cp.rest):
        lam = np.ones(cp.R)
        for t, off, T in zip(cp.rest, cp.rest_offsets, Ts[1:]):
            lam[off : off + t.q] = T[0, 0]
        if pp is not None:
            S = cp.Arr * lam[:, None] * lam[None, :]
            pp.subtract_schur(S, H, lam)
        else:
            S = np.empty_like(cp.Arr)
            copy_scale_lower(cp.Arr, lam, S)
            Vs, Ws = scaled_pattern(cp.V, H, cp.pair_level, cp.rows, lam)
            schur_update_lower(S, cp.ptr, cp.rows, Vs, Ws, Rz, cp.schur_work)
        BH = np.einsum("rla,lab->rlb", B, H).reshape(cp.p + 1, -1)  # [X y]'Z1 H
        S[Rz:, :Rz] -= (cp.Az1 @ BH.T).T * lam[None, :Rz]
        S[Rz:, Rz:] -= BHB
        S[np.arange(Rz), np.arange(Rz)] += 1.0
    else:
        S = cp.Arr.copy()
        S[Rz:, Rz:] -= BHB
        if Rz:
            BH = np.einsum("rla,lab->rlb", B, H).reshape(cp.p + 1, -1)
            if pp is not None:
                pp.subtract_schur(S, H)
            else:
                schur_update_lower(
                    S, cp.ptr, cp.rows, cp.V, _times_H(cp.V, H, cp.pair_level), Rz, cp.schur_work
                )
            iu = np.triu_indices(Rz, 1)
            S[iu] = S[iu[1], iu[0]]  # the kernel filled the lower triangle only
            zb = cp.Az1 @ BH.T
            S[:Rz, Rz:] -= zb
            S[Rz:, :Rz] -= zb.T
            _lambda_t_rows(S, cp, Ts[1:])
            S = np.ascontiguousarray(S.T)
            _lambda_t_rows(S, cp, Ts[1:])
            S[np.arange(Rz), np.arange(Rz)] += 1.0
    return _finish(cp, Ts, M1inv, S, logdet)

"""The marginal covariance of a linear mixed model through the engine's factor: solves with
V^-1, and the trace moments of Z'V^-1 Z that Kenward-Roger's expected information and the
conditional AIC's bias correction need, without any n x n matrix and without a dense q x q
matrix.

With the (weighted) random-effects design Z (n x q, sparse, lme4's column order: per term,
level-major then column), the relative covariance factor Lambda (block diagonal,
I_l (x) T_j per term) and C = Lambda'Z'Z Lambda + I, the engine factors C blockwise: the
first term's diagonal blocks M1_k and the Schur complement S of the rest (dense LAPACK or
sparse CHOLMOD, ``linalg/blocked.py``). With V~ = I + Z Lambda Lambda' Z' (V / sigma^2),

    V~^-1 v = v - Z Lambda C^-1 Lambda' Z' v                   (Woodbury),
    K = Z' V~^-1 Z = Z'Z - (Z'Z Lambda) C^-1 (Lambda' Z'Z),    Lambda' K Lambda = I - C^-1.

Solves with C go through the blocks: y1 = M1^-1 b1, S x_r = b_r - C_r1 y1,
x1 = M1^-1 (b1 - C_1r x_r); only products with sparse matrices and the factor.

The traces tr(D_i K D_j K) (D_i = I (x) E_ab, the derivative of Lambda Lambda' in one
covariance element) are sums over all pairs of levels of two terms of products of p x p
blocks of K: they need every entry of K, which is dense (crossed factors couple every pair
of levels). They are computed exactly here from K's columns, a batch of columns at a time
(one multi-right-hand-side solve with the factor per batch): q solves in all, memory
q x batch. No selected-inverse shortcut exists: already tr(V^-2) = n - q + ||C^-1||_F^2
needs every entry of C^-1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from lmmkit.linalg.blocked import factor
from lmmkit.linalg.sparse_rest import SparseFactor

__all__ = ["FactorOps", "PairMoments", "pair_moments", "COLUMN_BATCH_BYTES"]

COLUMN_BATCH_BYTES = 64e6  # one batch of K's columns (q x batch doubles) held at a time


class FactorOps:
    """V~^-1 and K = Z'V~^-1 Z at theta through the engine's factor of ``model.cp``.

    ``Z`` is the design as the engine holds it (already multiplied by sqrt(weights)), so with
    prior weights w the operators are those of W^1/2 V0^-1 W^1/2, V0 = diag(1/w) + Z D Z'.
    """

    def __init__(self, model: Any, theta: np.ndarray) -> None:
        cp = model.cp
        self.cp = cp
        self.f = factor(cp, np.asarray(theta, float), full=True)
        if not self.f.ok:
            from lmmkit.errors import ModelError

            raise ModelError("The penalized system is not positive definite at this theta.")
        terms = cp.terms
        self.terms = terms
        self.offsets = np.concatenate([[0], np.cumsum([t.q for t in terms])]).astype(np.int64)
        self.q = int(self.offsets[-1])
        n = cp.X.shape[0]
        self.n = n
        rows, cols, vals = [], [], []
        for t, off in zip(terms, self.offsets):
            rows.append(np.repeat(np.arange(n), t.p))
            cols.append((off + t.index[:, None] * t.p + np.arange(t.p)[None, :]).ravel())
            vals.append(np.asarray(t.Zx, float).ravel())
        self.Z = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(n, self.q),
        )
        self.Zt = self.Z.T.tocsr()
        self.ZtZ = (self.Zt @ self.Z).tocsc()
        self.T = list(self.f.T)
        self.Lam = sp.block_diag(
            [sp.kron(sp.identity(t.nlevels), sp.csr_matrix(T)) for t, T in zip(terms, self.T)],
            format="csr",
        )
        self.LamT = self.Lam.T.tocsr()
        self.B = (self.ZtZ @ self.Lam).tocsr()  # Z'Z Lambda
        if cp.first is not None:
            l1, p1 = cp.first.nlevels, cp.first.p
            self.q1 = l1 * p1
            T1 = self.T[0]
            self.Lam1 = sp.kron(sp.identity(l1), sp.csr_matrix(T1), format="csr")
            self.Lam1T = self.Lam1.T.tocsr()
            self.Lamr = self.Lam[self.q1 :, self.q1 :].tocsr()
            self.LamrT = self.Lamr.T.tocsr()
        else:
            self.q1 = 0

    # ------------------------------------------------------------------ solves with C
    def _s_solve(self, B: np.ndarray) -> np.ndarray:
        if B.shape[0] == 0:
            return B
        if isinstance(self.f, SparseFactor):
            return self.f.solve(B)
        Rz = self.cp.Rz
        return sla.cho_solve((self.f.L[:Rz, :Rz], True), B, check_finite=False)

    def solve_c(self, B: np.ndarray) -> np.ndarray:
        """C^-1 B for B with q rows (any number of columns)."""
        B = np.asarray(B, float)
        vec = B.ndim == 1
        B = B.reshape(self.q, -1)
        cp = self.cp
        if cp.first is None:
            x = self._s_solve(B)
            return x[:, 0] if vec else x
        l1, p1 = cp.first.nlevels, cp.first.p
        m = B.shape[1]
        Minv = self.f.M1inv
        b1 = B[: self.q1].reshape(l1, p1, m)
        y1 = np.einsum("lab,lbm->lam", Minv, b1).reshape(self.q1, m)
        rhs = B[self.q1 :] - self.LamrT @ (cp.Az1 @ (self.Lam1 @ y1))
        xr = self._s_solve(np.ascontiguousarray(rhs))
        r1 = B[: self.q1] - self.Lam1T @ (cp.A1z @ (self.Lamr @ xr))
        x1 = np.einsum("lab,lbm->lam", Minv, r1.reshape(l1, p1, m)).reshape(self.q1, m)
        x = np.vstack([x1, xr])
        return x[:, 0] if vec else x

    def vinv(self, v: np.ndarray) -> np.ndarray:
        """V~^-1 v for v with n rows."""
        v = np.asarray(v, float)
        u = self.LamT @ (self.Zt @ v)
        return v - self.Z @ (self.Lam @ self.solve_c(u))

    def k_columns(self, c0: int, c1: int) -> np.ndarray:
        """Columns c0..c1 of K = Z'V~^-1 Z (q x (c1 - c0), dense)."""
        ztz = self.ZtZ[:, c0:c1].toarray()
        y = self.solve_c(np.ascontiguousarray(self.B[c0:c1].toarray().T))  # Lambda'Z'Z E
        return ztz - self.B @ y


@dataclass(frozen=True)
class PairMoments:
    """What the traces of K need, per pair of terms (a <= b in the engine's term order):
    ``H[(a, b)][x, c, y, z] = sum over levels l of a and m of b of
    K[(l, x), (m, c)] K[(l, y), (m, z)]`` (so tr(D_i K D_j K) =
    sum E_i[y, x] E_j[c, z] H[x, c, y, z]); ``diag[a]`` the diagonal blocks of K
    (levels, p, p) of term a; ``batches`` the number of multi-column solves."""

    H: dict[tuple[int, int], np.ndarray]
    diag: list[np.ndarray]
    batches: int


def pair_moments(
    ops: FactorOps, lowrank: tuple[np.ndarray, np.ndarray] | None = None
) -> PairMoments:
    """Pair moments of K (or of K - F M F' with ``lowrank=(F, M)``, F q x r, M r x r), from
    K's columns one batch at a time. Exact; q solves with the factor in all."""
    terms, offsets, q = ops.terms, ops.offsets, ops.q
    batch_cols = max(8, int(COLUMN_BATCH_BYTES / (8.0 * max(q, 1))))
    H: dict[tuple[int, int], np.ndarray] = {}
    diag: list[np.ndarray] = []
    batches = 0
    for b, tb in enumerate(terms):
        per = max(1, batch_cols // tb.p)  # whole levels per batch
        dg = np.empty((tb.nlevels, tb.p, tb.p))
        for a in range(b + 1):
            ta = terms[a]
            H[(a, b)] = np.zeros((ta.p, tb.p, ta.p, tb.p))
        for l0 in range(0, tb.nlevels, per):
            l1 = min(tb.nlevels, l0 + per)
            c0, c1 = int(offsets[b]) + l0 * tb.p, int(offsets[b]) + l1 * tb.p
            Kc = ops.k_columns(c0, c1)
            batches += 1
            if lowrank is not None:
                F, M = lowrank
                Kc -= F @ (M @ F[c0:c1].T)
            mb = l1 - l0
            own = Kc[c0:c1].reshape(mb, tb.p, mb, tb.p)
            dg[l0:l1] = np.einsum("lalb->lab", own)
            for a in range(b + 1):
                ta = terms[a]
                blk = Kc[offsets[a] : offsets[a + 1]].reshape(ta.nlevels, ta.p, mb, tb.p)
                Y = blk.transpose(1, 3, 0, 2).reshape(ta.p * tb.p, ta.nlevels * mb)
                H[(a, b)] += (Y @ Y.T).reshape(ta.p, tb.p, ta.p, tb.p)
        diag.append(dg)
    return PairMoments(H, diag, batches)


def pair_trace(pm: PairMoments, a: int, Ea: np.ndarray, b: int, Eb: np.ndarray) -> float:
    """tr(D_i K D_j K) for D_i = I (x) Ea on term a and D_j = I (x) Eb on term b."""
    if a > b:
        a, b, Ea, Eb = b, a, Eb, Ea
    return float(np.einsum("yx,cz,xcyz->", Ea, Eb, pm.H[(a, b)]))


def diag_trace(pm: PairMoments, a: int, Ea: np.ndarray) -> float:
    """tr(D_i K) for D_i = I (x) Ea on term a."""
    return float(np.einsum("ab,lba->", Ea, pm.diag[a]))

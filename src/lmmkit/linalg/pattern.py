"""The Schur update and the selected quadratic forms of the first term as sparse products.

The pattern of Z_rest' Z_1 (``CrossProducts.ptr``, ``rows``, ``V``: level k of the first
term meets rest-block rows ``rows[ptr[k]:ptr[k+1]]`` with values ``V``, one p1-row each) is
theta-independent. Both products that sweep it at every theta are linear in a per-level
p1 x p1 matrix:

* the Schur update sum_k V_k H_k V_k' (H_k = T1 M_k^{-1} T1'), read on its lower triangle;
* the quadratic forms Q_k = V_k' S V_k of a symmetric S (its lower triangle), the selected
  inverse reads of the conditional variances and the AI-Newton trace.

So both are one product with a sparse matrix P, built once per model: one row per touched
lower-triangle entry (r, c) of the rest block, one column per (level, a, b), holding
sum over pattern pairs (i, j) of level k with rows (r, c) of V_ia V_jb. The Schur update is
``P @ H.ravel()`` and the quadratic forms ``P' s`` (s the entries of S at those rows) plus
the transposed terms; scipy's sparse matrix-vector products do the work (InstEval: 1.8
million entries; 3.3 ms per Schur update against 6.1 ms for the numba loop, the build is
~0.15 s once). P has sum_k m_k (m_k + 1) / 2 p1^2 entries, so above
``PATTERN_NUMPY_MAX_ENTRIES`` the numba kernels of :mod:`lmmkit.linalg.kernels` (no extra
memory, parallel) are used instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from lmmkit._jit import numba_preferred

__all__ = ["PatternProducts", "pattern_products", "PATTERN_NUMPY_MAX_ENTRIES"]

#: Entries of P (12 bytes each, ~50 bytes each while it is built) above which the numba
#: kernels are used: 5 million entries is ~60 MB kept with the model (InstEval: 1.8 million).
PATTERN_NUMPY_MAX_ENTRIES = 5_000_000


_MARK_MAX = 1 << 24  # rest blocks up to order 4,096 find their touched entries by marking


@dataclass(frozen=True)
class PatternProducts:
    """P (see the module docstring) and where its rows sit in the rest block.

    Examples
    --------
    >>> import numpy as np
    >>> from lmmkit.linalg.pattern import PatternProducts
    >>> # two levels: level 0 meets rows 0 and 2, level 1 meets row 1 (p1 = 1)
    >>> pp = PatternProducts.build(np.array([0, 2, 3]), np.array([0, 2, 1]),
    ...                            np.array([[1.0], [2.0], [3.0]]), R=3)
    >>> S = np.zeros((3, 3)); pp.subtract_schur(S, np.array([[[1.0]], [[0.5]]]))
    >>> S.tolist()
    [[-1.0, 0.0, 0.0], [0.0, -4.5, 0.0], [-2.0, 0.0, -4.0]]
    >>> pp.quadratic_forms(np.eye(3))[:, 0, 0].tolist()  # V_k'V_k
    [5.0, 9.0]
    """

    P: sp.csr_matrix  # (entries touched, levels * p1 * p1)
    r: np.ndarray  # row of each touched entry (r >= c)
    c: np.ndarray  # its column
    flat: np.ndarray  # r * R + c, into a C-ordered (R, R) matrix
    nlevels: int
    p1: int
    level: np.ndarray  # level of each pattern entry (for the diagonal terms)
    rows: np.ndarray
    V: np.ndarray

    @staticmethod
    def entries(ptr: np.ndarray, p1: int) -> int:
        """Entries of P for this pattern: sum_k m_k (m_k + 1) / 2 p1^2."""
        m = np.diff(ptr).astype(np.int64)
        return int((m * (m + 1) // 2).sum()) * p1 * p1

    @classmethod
    def build(cls, ptr: np.ndarray, rows: np.ndarray, V: np.ndarray, R: int) -> PatternProducts:
        """P for the pattern (``ptr``, ``rows`` sorted within each level, ``V``) of an
        (R, R) rest block."""
        npairs, p1 = V.shape
        nl = ptr.shape[0] - 1
        m = np.diff(ptr)
        start = np.repeat(ptr[:-1], m)  # first pattern entry of each entry's level
        cnt = np.arange(npairs) - start + 1  # pairs (i, j) with j <= i in the level
        I = np.repeat(np.arange(npairs), cnt)  # noqa: E741
        first = np.cumsum(cnt) - cnt
        J = np.repeat(start - first, cnt) + np.arange(I.size)
        flat = rows[I].astype(np.int64) * R + rows[J]
        level = np.repeat(np.arange(nl), m)
        if p1 == 1:
            vals = V[I, 0] * V[J, 0]
            cols = level[I]
        else:
            vals = (V[I, :, None] * V[J, None, :]).reshape(-1)
            cols = (level[I][:, None] * (p1 * p1) + np.arange(p1 * p1)[None, :]).reshape(-1)
            flat = np.repeat(flat, p1 * p1)
        del I, J
        if R * R <= _MARK_MAX:  # touched entries by marking the (R, R) matrix: no sort
            mark = np.zeros(R * R, dtype=bool)
            mark[flat] = True
            touched = np.flatnonzero(mark)
            inv = (np.cumsum(mark, dtype=np.int64) - 1)[flat]
        else:
            touched, inv = np.unique(flat, return_inverse=True)
        P = sp.csr_matrix((vals, (inv.reshape(-1), cols)), shape=(touched.size, nl * p1 * p1))
        P.sum_duplicates()
        return cls(P, touched // R, touched % R, touched, nl, p1, level, rows, V)

    def subtract_schur(self, S: np.ndarray, H: np.ndarray, scale: np.ndarray | None = None):
        """S[r, c] -= (sum_k V_k H_k V_k')[r, c] on the lower triangle of the rest block,
        times ``scale[r] scale[c]`` when given; S C-ordered (R, R), H (levels, p1, p1)."""
        vals = self.P @ H.reshape(-1)
        if scale is not None:
            vals *= scale[self.r] * scale[self.c]
        if S.flags.c_contiguous:
            S.reshape(-1)[self.flat] -= vals
        else:
            S[self.r, self.c] -= vals

    def quadratic_forms(self, S: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
        """Q_k = V_k' S[rows_k, rows_k] V_k per level (levels, p1, p1), reading the lower
        triangle of S only; S is replaced by diag(scale) S diag(scale) when given."""
        p1 = self.p1
        s = S[self.r, self.c]
        d = S[self.rows, self.rows]
        if scale is not None:
            s = s * scale[self.r] * scale[self.c]
            d = d * scale[self.rows] ** 2
        q = (self.P.T @ s).reshape(self.nlevels, p1, p1)
        if p1 == 1:
            diag = np.bincount(self.level, d * self.V[:, 0] ** 2, minlength=self.nlevels)
            return (2.0 * q[:, 0, 0] - diag)[:, None, None]
        vv = (self.V[:, :, None] * self.V[:, None, :] * d[:, None, None]).reshape(-1, p1 * p1)
        diag = np.stack(
            [np.bincount(self.level, vv[:, j], minlength=self.nlevels) for j in range(p1 * p1)],
            axis=1,
        ).reshape(self.nlevels, p1, p1)
        return q + q.transpose(0, 2, 1) - diag


def pattern_products(cp) -> PatternProducts | None:
    """The model's :class:`PatternProducts` (built on first use and kept on ``cp``), or
    None when P would exceed ``PATTERN_NUMPY_MAX_ENTRIES`` or numba is preferred
    (:func:`lmmkit._jit.prefer_numba`): then the numba kernels do the sweeps.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from lmmkit.linalg.pattern import pattern_products
    >>> from lmmkit.models.lmm import LinearMixedModel
    >>> rng = np.random.default_rng(0)
    >>> g1 = np.repeat(np.arange(500), 3)  # 500 levels first (block mode), crossed with 5
    >>> d = pd.DataFrame({"y": rng.normal(size=1500), "g1": g1, "g2": np.arange(1500) % 5})
    >>> pp = pattern_products(LinearMixedModel("y ~ 1 + (1 | g1) + (1 | g2)", d).cp)
    >>> pp.P.shape  # the 15 lower entries of the 5 x 5 rest block, 500 levels x 1 x 1
    (15, 500)
    """
    if cp.first is None or not cp.Rz or numba_preferred():
        return None
    cached = cp.__dict__.get("_pattern_products")
    if cached is not None and cached[0] is cp.V:
        return cached[1]
    if PatternProducts.entries(cp.ptr, cp.first.p) > PATTERN_NUMPY_MAX_ENTRIES:
        return None
    pp = PatternProducts.build(cp.ptr, cp.rows, np.asarray(cp.V, dtype=np.float64), cp.R)
    cp.__dict__["_pattern_products"] = (cp.V, pp)
    return pp

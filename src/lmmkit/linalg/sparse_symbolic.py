"""Symbolic analysis of a sparse symmetric matrix: the fill-reducing permutation and the
size of its Cholesky factor, computed once per model before any numeric work.

The permutation is SuiteSparse's AMD (:func:`lmmkit.linalg.cholmod.amd_order`) followed by a
postorder of the elimination tree (so that the columns of each supernode are adjacent, as
CHOLMOD would arrange them). The column counts of L come from the elimination tree and the
row subtrees (Gilbert, Ng and Peyton 1994; the skeleton-matrix algorithm of Davis, *Direct
Methods for Sparse Linear Systems*, 2006, ch. 4), in time nearly linear in nnz(S): the fill
and the flop count are known before the factor is attempted, so a design whose factor would
not fit in memory is refused with the numbers instead of running out of memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from lmmkit._jit import cached_njit

__all__ = ["SymbolicAnalysis", "analyze", "etree", "postorder", "column_counts", "memory_available"]


@cached_njit(nogil=True)
def etree(n: int, rowptr: np.ndarray, colidx: np.ndarray) -> np.ndarray:  # pragma: no cover
    """Elimination tree of a symmetric matrix given by the rows of its lower triangle
    (compressed rows: row k holds columns j <= k). parent[j] = -1 for a root."""
    parent = np.full(n, -1, dtype=np.int64)
    ancestor = np.full(n, -1, dtype=np.int64)
    for k in range(n):
        for p in range(rowptr[k], rowptr[k + 1]):
            i = colidx[p]
            while i != -1 and i < k:
                inext = ancestor[i]
                ancestor[i] = k
                if inext == -1:
                    parent[i] = k
                i = inext
    return parent


@cached_njit(nogil=True)
def postorder(parent: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """A postorder of the forest given by parent (children in increasing order)."""
    n = parent.shape[0]
    head = np.full(n, -1, dtype=np.int64)
    nxt = np.full(n, -1, dtype=np.int64)
    for j in range(n - 1, -1, -1):
        if parent[j] != -1:
            nxt[j] = head[parent[j]]
            head[parent[j]] = j
    post = np.empty(n, dtype=np.int64)
    stack = np.empty(n, dtype=np.int64)
    k = 0
    for root in range(n):
        if parent[root] != -1:
            continue
        top = 0
        stack[0] = root
        while top >= 0:
            p = stack[top]
            i = head[p]
            if i == -1:
                top -= 1
                post[k] = p
                k += 1
            else:
                head[p] = nxt[i]
                top += 1
                stack[top] = i
    return post


@cached_njit(nogil=True)
def column_counts(
    n: int, colptr: np.ndarray, rowidx: np.ndarray, parent: np.ndarray, post: np.ndarray
) -> np.ndarray:  # pragma: no cover - compiled
    """Number of nonzeros (diagonal included) of each column of the Cholesky factor, from
    the lower triangle by columns (column j holds rows i >= j), its elimination tree and a
    postorder of it."""
    ancestor = np.arange(n)
    maxfirst = np.full(n, -1, dtype=np.int64)
    prevleaf = np.full(n, -1, dtype=np.int64)
    first = np.full(n, -1, dtype=np.int64)
    delta = np.zeros(n, dtype=np.int64)
    for k in range(n):
        j = post[k]
        delta[j] = 1 if first[j] == -1 else 0  # j is a leaf of the elimination tree
        while j != -1 and first[j] == -1:
            first[j] = k
            j = parent[j]
    for k in range(n):
        j = post[k]
        if parent[j] != -1:
            delta[parent[j]] -= 1
        for p in range(colptr[j], colptr[j + 1]):
            i = rowidx[p]
            if i <= j or first[j] <= maxfirst[i]:
                continue  # not a leaf of row subtree i
            maxfirst[i] = first[j]
            jprev = prevleaf[i]
            prevleaf[i] = j
            delta[j] += 1  # A(i, j) is in the skeleton
            if jprev != -1:  # a subsequent leaf: subtract the overlap at the common ancestor
                q = jprev
                while q != ancestor[q]:
                    q = ancestor[q]
                s = jprev
                while s != q:
                    nxt = ancestor[s]
                    ancestor[s] = q
                    s = nxt
                delta[q] -= 1
        if parent[j] != -1:
            ancestor[j] = parent[j]
    for j in range(n):  # parent[j] > j: children are summed before their parent
        if parent[j] != -1:
            delta[parent[j]] += delta[j]
    return delta


@dataclass(frozen=True)
class SymbolicAnalysis:
    """The fill-reducing permutation of a sparse symmetric matrix and its factor's size."""

    n: int
    perm: np.ndarray  # position k of the factor holds row/column perm[k] of the matrix
    colcounts: np.ndarray  # nonzeros of each column of L (permuted order, diagonal included)
    nnz_matrix: int  # nonzeros in the lower triangle of the matrix

    @property
    def nnz_factor(self) -> int:
        return int(self.colcounts.sum())

    @property
    def flops(self) -> float:
        """Multiply-adds of one numeric factorization, sum over columns of count^2 (the
        selected inverse costs the same order)."""
        c = self.colcounts.astype(float)
        return float((c * c).sum())


def _lower_csc(A: sp.spmatrix) -> sp.csc_matrix:
    L = sp.tril(A, format="csc")
    L.sort_indices()
    return L


def analyze(pattern_lower: sp.csc_matrix, perm: np.ndarray) -> SymbolicAnalysis:
    """Postorder ``perm`` (e.g. AMD's) and count the factor's nonzeros per column.

    ``pattern_lower``: the lower triangle (compressed columns) of the symmetric matrix."""
    n = pattern_lower.shape[0]
    perm = np.asarray(perm, dtype=np.int64)
    full = pattern_lower + pattern_lower.T  # symmetric pattern (values irrelevant)
    Pl = _lower_csc(full[perm][:, perm])
    rows = Pl.tocsr()
    parent = etree(n, rows.indptr.astype(np.int64), rows.indices.astype(np.int64))
    post = postorder(parent)
    counts = column_counts(n, Pl.indptr.astype(np.int64), Pl.indices.astype(np.int64), parent, post)
    return SymbolicAnalysis(n, perm[post], counts[post], int(pattern_lower.nnz))


def memory_available() -> int:
    """Bytes of memory available to this process: MemAvailable from /proc/meminfo (Linux),
    else the physical memory; capped by a cgroup limit when one is set."""
    avail = 0
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if not avail:
        try:
            avail = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 8 * 1024**3
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                text = fh.read().strip()
            if text.isdigit():
                avail = min(avail, int(text))
        except OSError:
            continue
    return avail

"""CHOLMOD (supernodal sparse Cholesky) through cvxopt: the one module that imports cvxopt.

Why cvxopt: scikit-sparse, the usual CHOLMOD binding, publishes no wheels for Python 3.11 on
PyPI (a source distribution that needs SuiteSparse's headers, libsuitesparse-dev, to build);
cvxopt ships manylinux wheels with SuiteSparse (CHOLMOD, AMD) and its BLAS inside, is
maintained, and exposes what a profiled-deviance loop needs: the AMD ordering, a symbolic
analysis with a given permutation, the supernodal numeric factorization, the diagonal of the
factor, triangular solves, and the factor as a compressed-column matrix (for the selected
inverse). qdldl (OSQP's LDL', simplicial, no access to the factor), cholespy (solves only) and
pypardiso (MKL, no access to the factor) do not give the factor's entries, which the Takahashi
recurrences need.

The fill-reducing ordering is computed once per model (:func:`amd_order`); every evaluation
then runs ``symbolic`` with that permutation (no ordering, no postordering: the permutation is
used exactly as given, so the factor's rows are known) and ``numeric``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["CholmodFactor", "amd_order", "PatternMatrix"]


def _cvx():
    try:
        from cvxopt import amd, cholmod, matrix, spmatrix
    except ImportError as exc:  # a core dependency; only a broken install lands here
        from lmmkit.errors import ModelError

        raise ModelError(
            "The sparse rest block (random-effects terms after the first, factored by "
            f"CHOLMOD) needs the package 'cvxopt', which could not be imported ({exc}). "
            "Install it with 'pip install cvxopt>=1.3' (a dependency of lmmkit), or fit a "
            "design whose terms after the first stay below 25,000 effects (dense block)."
        ) from exc

    return amd, cholmod, matrix, spmatrix


@contextlib.contextmanager
def _options(**kw: Any) -> Iterator[None]:
    """Set cvxopt.cholmod.options for one call (the dict is module-global)."""
    _, cholmod, _, _ = _cvx()
    old = dict(cholmod.options)
    cholmod.options.update(kw)
    try:
        yield
    finally:
        cholmod.options.clear()
        cholmod.options.update(old)


class PatternMatrix:
    """A symmetric matrix with a fixed lower-triangular compressed-column pattern (rows
    sorted within each column) whose values change; held as one cvxopt ``spmatrix`` whose
    values are overwritten in place."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray) -> None:
        _, _, matrix, spmatrix = _cvx()
        n = len(indptr) - 1
        self.n = n
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.indices = np.asarray(indices, dtype=np.int64)
        cols = np.repeat(np.arange(n, dtype=np.int64), np.diff(self.indptr))
        # explicit entries (1.0) so that cvxopt keeps every position of the pattern
        self._sp = spmatrix(
            matrix(np.ones(len(self.indices))), matrix(self.indices), matrix(cols), (n, n)
        )
        ccs = self._sp.CCS
        if not (
            np.array_equal(np.frombuffer(memoryview(ccs[0]), dtype=np.int64), self.indptr)
            and np.array_equal(np.frombuffer(memoryview(ccs[1]), dtype=np.int64), self.indices)
        ):
            raise AssertionError("internal: cvxopt reordered the sparse pattern")

    def set_values(self, data: np.ndarray) -> Any:
        _, _, matrix, _ = _cvx()
        self._sp.V = matrix(np.ascontiguousarray(data, dtype=float))
        return self._sp

    @property
    def spmatrix(self) -> Any:
        return self._sp


def amd_order(pattern: PatternMatrix) -> np.ndarray:
    """The AMD fill-reducing permutation of the pattern (SuiteSparse AMD via cvxopt)."""
    amd, _, _, _ = _cvx()
    return np.frombuffer(memoryview(amd.order(pattern.spmatrix, "L")), dtype=np.int64).copy()


class CholmodFactor:
    """The supernodal factor P S P' = L L' of one matrix, P the given permutation.

    ``diagonal`` and ``solve_L``/``solve_Lt`` work on the supernodal factor; ``to_csc`` hands
    the factor over as compressed-column arrays, after which cvxopt's object is consumed
    (cvxopt converts it in place) and the solves must use those arrays.
    """

    def __init__(self, pattern: PatternMatrix, data: np.ndarray, perm: np.ndarray) -> None:
        _, cholmod, matrix, _ = _cvx()
        A = pattern.set_values(data)
        with _options(nmethods=1, postorder=False, supernodal=2):
            self._F = cholmod.symbolic(A, p=matrix(np.asarray(perm, dtype=np.int64)), uplo="L")
            try:
                cholmod.numeric(A, self._F)
            except ArithmeticError as exc:  # not positive definite
                self._F = None
                self.failed_at = int(exc.args[0]) if exc.args else -1
                return
        self.failed_at = -1

    @property
    def ok(self) -> bool:
        return self._F is not None

    def diagonal(self) -> np.ndarray:
        _, cholmod, _, _ = _cvx()
        return np.frombuffer(memoryview(cholmod.diag(self._F)), dtype=float).copy()

    def _solve(self, B: np.ndarray, sys: int) -> np.ndarray:
        _, cholmod, matrix, _ = _cvx()
        Bc = matrix(np.asfortranarray(B, dtype=float))
        with _options(nmethods=1, postorder=False, supernodal=2):
            cholmod.solve(self._F, Bc, sys=sys)
        return np.array(memoryview(Bc), dtype=float).reshape(B.shape)

    def solve_L(self, B: np.ndarray) -> np.ndarray:
        """L^-1 B (B in the permuted order)."""
        return self._solve(B, 4)

    def solve_Lt(self, B: np.ndarray) -> np.ndarray:
        """L'^-1 B (B in the permuted order)."""
        return self._solve(B, 5)

    def to_csc(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(indptr, indices, data) of L, rows sorted within each column, the diagonal first.
        Consumes cvxopt's factor object."""
        _, cholmod, _, _ = _cvx()
        L = cholmod.getfactor(self._F)
        self._F = None
        indptr, indices, data = L.CCS
        return (
            np.frombuffer(memoryview(indptr), dtype=np.int64).copy(),
            np.frombuffer(memoryview(indices), dtype=np.int64).copy(),
            np.frombuffer(memoryview(data), dtype=float).copy(),
        )

"""The design stage's fast paths give what the general paths give (no reference needed: the
general path is the specification)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmmkit.design import model as design


def _factorize(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes, uniques = pd.factorize(pd.Series(v), sort=True)
    return np.asarray(uniques), codes


INT_TYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]


@pytest.mark.parametrize("dtype", INT_TYPES)
def test_integer_levels_lookup_matches_factorize(dtype) -> None:
    """Short-range integer labels (the lookup-table path), at both ends of each type."""
    rng = np.random.default_rng(5)
    info = np.iinfo(dtype)
    for lo in (int(info.min), 0, int(info.max) - 40):
        v = np.array([int(x) + lo for x in rng.integers(0, 41, 90)], dtype=object).astype(dtype)
        levels, index = design._levels_and_index(pd.Series(v))
        ref_levels, ref_codes = _factorize(v)
        assert levels.dtype == ref_levels.dtype
        np.testing.assert_array_equal(levels, ref_levels)
        np.testing.assert_array_equal(index, ref_codes)
        assert index.dtype == np.int64
        np.testing.assert_array_equal(levels[index], v)


@pytest.mark.parametrize(
    "v",
    [
        np.array([-128, 127, 0, 5, 127], np.int8),  # span 255 overflows int8 arithmetic
        np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max, 0]),  # wide: factorize
        np.array([2**64 - 1, 2**64 - 3, 2**64 - 1], np.uint64),
        np.array([3.5, -1.0, 3.5, 0.0]),
        np.array(["b", "a", "b"], dtype=object),
    ],
)
def test_levels_edge_cases_match_factorize(v: np.ndarray) -> None:
    levels, index = design._levels_and_index(pd.Series(v))
    ref_levels, ref_codes = _factorize(v)
    np.testing.assert_array_equal(levels, ref_levels)
    np.testing.assert_array_equal(index, ref_codes)


def _independent_by_loop(X: np.ndarray, tol: float = 1e-7) -> list[int]:
    """The column-by-column rule without the fast path."""
    keep: list[int] = []
    Q = np.zeros((X.shape[0], 0))
    for j in range(X.shape[1]):
        col = X[:, j]
        norm = np.linalg.norm(col)
        if norm == 0:
            continue
        resid = col - Q @ (Q.T @ col)
        resid = resid - Q @ (Q.T @ resid)
        rnorm = np.linalg.norm(resid)
        if rnorm > tol * norm:
            keep.append(j)
            Q = np.column_stack([Q, resid / rnorm])
    return keep


def test_column_dropping_fast_path_agrees_with_the_rule() -> None:
    rng = np.random.default_rng(8)
    X = rng.normal(size=(60, 4))
    cases = [
        X,
        X * np.array([1.0, 1e8, 1e-8, 1.0]),  # wildly different scales
        np.column_stack([X, X[:, 0] + X[:, 1]]),  # exact dependence
        np.column_stack([X, np.zeros(60)]),  # zero column
        np.column_stack([X[:, 0], X[:, 0] * (1 + 1e-9)]),  # below the tolerance
        np.column_stack([X, X[:, 0] + 1e-6 * X[:, 1]]),  # near the tolerance, above it
        np.column_stack([X, X[:, 0] + 1e-8 * X[:, 1]]),  # near the tolerance, below it
        np.ones((60, 1)),
        np.zeros((60, 0)),
    ]
    for A in cases:
        assert design._independent_columns(A) == _independent_by_loop(A)

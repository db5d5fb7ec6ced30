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


_independent_by_loop = design.independent_by_loop  # the rule without the fast path


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


@pytest.mark.parametrize("storage", ["python", "pyarrow"])
def test_text_levels_match_factorize(storage: str) -> None:
    if storage == "pyarrow":
        pytest.importorskip("pyarrow")
    v = pd.Series(["b10", "b2", "Zeta", "a", "é", "b2", "a", "ß"], dtype=pd.StringDtype(storage))
    levels, index = design._levels_and_index(v)
    codes, uniques = pd.factorize(v, sort=True)
    np.testing.assert_array_equal(levels, np.asarray(uniques))
    np.testing.assert_array_equal(index, codes)
    assert list(levels) == sorted(set(v))


def test_fit_is_the_same_whatever_the_row_labels(lme4_data) -> None:
    """The design reads rows by position: custom, shuffled or duplicated row labels give the
    fit of the default index, bit for bit."""
    import lmmkit

    sleep = lme4_data("sleepstudy")
    formula = "Reaction ~ Days + offset(0.5 * Days) + (Days | Subject)"
    base = lmmkit.lmm(formula, sleep)
    rng = np.random.default_rng(0)
    for index in (
        pd.Index([f"r{i}" for i in rng.permutation(len(sleep))]),
        pd.Index(np.repeat(np.arange(len(sleep) // 2), 2)),  # duplicated labels
    ):
        res = lmmkit.lmm(formula, sleep.set_axis(index))
        assert res.objective == base.objective
        np.testing.assert_array_equal(res.fixef, base.fixef)
        np.testing.assert_array_equal(res.fitted, base.fitted)


@pytest.mark.parametrize(
    "fixed", ["Days", "0 + Days", "C(g) * Days", "center(Days) + g", "poly(Days, 2)", "g"]
)
def test_fixed_part_and_intercept_from_one_call_equal_separate_calls(lme4_data, fixed) -> None:
    """(1 | g) terms take their column from the fixed part's formulaic call: the matrices and
    the fixed part's spec are those of separate calls, and the intercept's spec rebuilds the
    same column on other data."""
    sleep = lme4_data("sleepstudy").assign(g=lambda d: (d["Days"] % 3).astype(str))
    fx, icpt = design._with_intercept(fixed, sleep)
    alone = design.model_matrix(fixed, sleep, output="numpy", na_action="ignore")
    one = design.model_matrix("1", sleep, output="numpy", na_action="ignore")
    np.testing.assert_array_equal(np.asarray(fx), np.asarray(alone))
    assert fx.model_spec == alone.model_spec
    np.testing.assert_array_equal(np.asarray(icpt), np.asarray(one))
    assert icpt.model_spec.column_names == one.model_spec.column_names == ("Intercept",)
    new = sleep.iloc[:7]
    np.testing.assert_array_equal(
        np.asarray(icpt.model_spec.get_model_matrix(new)), np.ones((7, 1))
    )

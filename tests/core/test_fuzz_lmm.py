"""Property-based fuzzing of lmm() (issue 13): on random small designs (crossed, nested,
unbalanced, missing cells, single-level and all-unique factors, NaN and inf at random,
constant columns) every outcome is a fit or an LmmkitError whose message names a column or a
term of the formula, never another exception type. Seeded, a bounded number of examples."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import lmmkit
from lmmkit.errors import LmmkitError
from lmmkit.results.lmm_result import LMMResult

FORMULAS = [
    "y ~ x + (1 | g1)",
    "y ~ x + (x | g1)",
    "y ~ f + (1 | g1) + (1 | g2)",
    "y ~ f * x + (1 | g1/g2)",
    "y ~ 1 + (1 | g1:g2)",
    "y ~ x + c + (1 | g1)",
    "y ~ x + (1 | g1) + (0 + f | g2)",
    "y ~ x + (x || g2)",
    "log(z) ~ I(x^2) + factor(g2) + (1 | g1)",
    "y ~ poly(x, 2) + (1 | g1)",
    "y ~ scale(x) + (1 | g2) + offset(x)",
]
COLUMNS = ["y", "x", "z", "c", "f", "g1", "g2"]


@st.composite
def designs(draw: st.DrawFn) -> tuple[str, pd.DataFrame, bool]:
    n = draw(st.integers(3, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    k1 = draw(st.sampled_from([1, 2, 3, 5, n]))  # single-level .. all-unique
    k2 = draw(st.sampled_from([1, 2, 4, n]))
    nested = draw(st.booleans())
    g1 = rng.integers(0, k1, n)
    g2 = g1 * 10 + rng.integers(0, k2, n) if nested else rng.integers(0, k2, n)
    d = pd.DataFrame(
        {
            "y": rng.normal(size=n) * draw(st.sampled_from([1.0, 1e-8, 1e8])) + g1,
            "x": rng.normal(size=n),
            "z": rng.gamma(2.0, size=n),
            "c": np.full(n, draw(st.sampled_from([0.0, 1.0]))),  # a constant column
            "f": rng.choice(draw(st.sampled_from([["a"], ["a", "b"], ["a", "b", "c"]])), n),
            "g1": [f"s{v}" for v in g1],
            "g2": g2,
        }
    )
    if draw(st.booleans()):  # drop cells: unbalanced, some combinations missing
        d = d.iloc[rng.permutation(n)[: max(2, n - draw(st.integers(0, n // 2)))]]
    for _ in range(draw(st.integers(0, 3))):  # NaN / inf / -inf at random places
        col = draw(st.sampled_from(["y", "x", "z"]))
        d.iloc[int(rng.integers(0, len(d))), d.columns.get_loc(col)] = draw(
            st.sampled_from([np.nan, np.inf, -np.inf])
        )
    if draw(st.integers(0, 4)) == 0:  # a missing grouping label
        d.iloc[int(rng.integers(0, len(d))), d.columns.get_loc("g1")] = None
    if draw(st.integers(0, 6)) == 0:  # a column missing everywhere
        d[draw(st.sampled_from(["x", "z"]))] = np.nan
    if draw(st.booleans()):
        d["y"] = draw(st.sampled_from([0.0, 2.5]))  # a constant response
    return draw(st.sampled_from(FORMULAS)), d.reset_index(drop=True), draw(st.booleans())


def _names_a_column_or_term(message: str, formula: str) -> bool:
    """The message quotes a column of the formula ('x', 'g1:g2') or shows a term as written."""
    from lmmkit.formula.parse import parse_formula

    parsed = parse_formula(formula)
    columns = [c for c in COLUMNS if re.search(rf"\b{c}\b", formula)]
    quoted = re.findall(r"'([^']*)'", message)  # a model column such as 'poly(x, 2)1' counts
    if any(re.search(rf"\b{c}\b", q) for q in quoted for c in columns):
        return True
    return any(t.text in message for t in parsed.random)


@seed(20240611)
@settings(
    max_examples=50,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(designs())
def test_every_outcome_is_a_fit_or_a_named_error(case: tuple[str, pd.DataFrame, bool]) -> None:
    formula, data, reml = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            res = lmmkit.lmm(formula, data, reml=reml)
        except LmmkitError as exc:
            assert _names_a_column_or_term(str(exc), formula), str(exc)
            return
    assert isinstance(res, LMMResult)
    assert np.isfinite(res.objective) or not res.optimization.converged
    assert np.all(np.isfinite(res.fixef.to_numpy()))

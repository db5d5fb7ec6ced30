"""Formula evaluation: formulaic's model matrices with R's formula functions in scope.

The one place that calls formulaic for the design (and for new data at prediction time):
the evaluation context, the cached parses, lme4's column names.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError

__all__ = ["FORMULA_CONTEXT", "model_matrix", "parsed_formula", "lme4_name"]

_FORMULA_HELPERS = {
    "np",
    "numpy",
    "log",
    "log2",
    "log10",
    "exp",
    "sqrt",
    "abs",
    "C",
    "I",
    "center",
    "scale",
    "standardize",
    "poly",
    "bs",
    "Q",
    "lag",
    "T",
    "S",
    "Treatment",
    "Sum",
    "Poly",
}


FORMULA_CONTEXT: dict[str, Any] = {
    "np": np,
    "numpy": np,
    "sqrt": np.sqrt,
    "log": np.log,
    "log2": np.log2,
    "log10": np.log10,
    "log1p": np.log1p,
    "exp": np.exp,
    "abs": np.abs,
    "sin": np.sin,
    "cos": np.cos,
}


@functools.lru_cache(maxsize=256)
def parsed_formula(expr: str) -> Any:
    """formulaic's parse of a right-hand side, once per string (parsing dominates small fits)."""
    import formulaic

    return formulaic.Formula(expr)


def model_matrix(
    expr: str, data: pd.DataFrame, output: str = "pandas", na_action: str = "raise"
) -> Any:
    """formulaic's model matrix with R's common math functions in scope. ``output="numpy"``
    skips building a pandas frame (the column names are in ``.model_spec.column_names``);
    ``na_action="ignore"`` skips formulaic's null scan, for callers that check the matrix
    themselves (:func:`_check_finite`)."""
    import formulaic

    return formulaic.model_matrix(
        parsed_formula(expr), data, na_action=na_action, context=FORMULA_CONTEXT, output=output
    )


@functools.lru_cache(maxsize=256)
def _with_intercept_formula(expr: str) -> Any:
    """formulaic's structured formula of a right-hand side and of ``1`` (the random
    intercept's columns), each part parsed as on its own."""
    import formulaic

    return formulaic.Formula({"fixed": parsed_formula(expr), "intercept": parsed_formula("1")})


def _with_intercept(expr: str, data: pd.DataFrame) -> tuple[Any, Any]:
    """The model matrices of ``expr`` and of ``1`` from one formulaic call (a second call costs
    a small fit several percent). Each part's matrix and spec are those of a call of its own:
    the intercept part has no state to share. (None, None) if formulaic fails, so that the
    separate calls raise their specific errors."""
    import formulaic

    try:
        both = formulaic.model_matrix(
            _with_intercept_formula(expr),
            data,
            na_action="ignore",
            context=FORMULA_CONTEXT,
            output="numpy",
        )
        return both["fixed"], both["intercept"]
    except Exception:
        return None, None


def _is_intercept(expr: str) -> bool:
    return expr.replace(" ", "") == "1"


def _check_finite(M: np.ndarray, names: list[str], what: str, rows_used: np.ndarray | None) -> None:
    """Every entry of a model matrix is finite, else a DataError naming column and row (the
    data's own position when ``rows_used`` maps the rows used back to it)."""
    if np.isfinite(M).all():
        return
    i, j = (int(k) for k in np.argwhere(~np.isfinite(M))[0])
    where = f"row {int(rows_used[i])} of the data" if rows_used is not None else f"row {i}"
    raise DataError(
        f"{what} column {names[j]!r} has the non-finite value {float(M[i, j])!r} at {where} "
        "(first of "
        f"{int((~np.isfinite(M)).any(axis=1).sum())} such row(s)). A transformation outside "
        "its domain (log of a value <= 0, sqrt of a negative value) or an infinite value in "
        "the data gives this; correct or drop those rows."
    )


@functools.lru_cache(maxsize=1024)
def lme4_name(name: str) -> str:
    """formulaic column names in lme4's spelling: Intercept -> (Intercept), f[T.b] -> fb."""
    if name == "Intercept":
        return "(Intercept)"
    return re.sub(r"\[(?:T\.)?([^\]]*)\]", r"\1", name)


@functools.lru_cache(maxsize=256)
def _required_variables(expr: str) -> frozenset[str]:
    try:
        return frozenset(str(v) for v in parsed_formula(expr).required_variables)
    except Exception:
        return frozenset()

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
from formulaic.transforms import TRANSFORMS

from lmmkit.design.rfunctions import R_FUNCTIONS
from lmmkit.errors import DataError
from lmmkit.formula.rsyntax import r_spelling

__all__ = ["FORMULA_CONTEXT", "model_matrix", "parsed_formula", "lme4_name"]

FORMULA_CONTEXT: dict[str, Any] = {
    "np": np,
    "numpy": np,
    "sqrt": np.sqrt,
    "log": np.log,
    "log2": np.log2,
    "log10": np.log10,
    "exp": np.exp,
    "abs": np.abs,
    "sin": np.sin,
    "cos": np.cos,
    **R_FUNCTIONS,
}

# names a formula may use that are not data columns: the context and formulaic's own
_FORMULA_HELPERS = frozenset(FORMULA_CONTEXT) | frozenset(TRANSFORMS) | {"Q", "T", "S"}


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
    """formulaic column names in lme4's spelling: Intercept -> (Intercept), f[T.b] -> fb,
    I(x ** 2) -> I(x^2)."""
    if name == "Intercept":
        return "(Intercept)"
    return r_spelling(re.sub(r"\[(?:T\.)?([^\]]*)\]", r"\1", name))


@functools.lru_cache(maxsize=256)
def _required_variables(expr: str) -> frozenset[str]:
    """The data columns (and unknown names) that ``expr`` reads: variables used as values,
    including those inside stateful transforms such as ``poly(x, 2)`` and ``scale(x)``
    (formulaic's own ``required_variables`` misses these); function names not included."""
    return _variables(expr)[0]


@functools.lru_cache(maxsize=256)
def _called_functions(expr: str) -> frozenset[str]:
    """Names that ``expr`` calls as functions (``log``, ``factor``, ``np.log`` -> ``np``)."""
    return _variables(expr)[1]


@functools.lru_cache(maxsize=256)
def _variables(expr: str) -> tuple[frozenset[str], frozenset[str]]:
    from formulaic.utils.variables import get_required_variables

    values: set[str] = set()
    calls: set[str] = set()
    try:
        terms = list(parsed_formula(expr))
    except Exception:
        return frozenset(), frozenset()
    for term in terms:
        for fac in term.factors:
            method = str(fac.eval_method.value)
            if method == "lookup":
                values.add(str(fac.expr))
            elif method == "python":
                try:
                    found = get_required_variables(fac.expr, {})
                except Exception:
                    continue
                for v in found:
                    roles = {str(getattr(r, "value", r)) for r in getattr(v, "roles", ())}
                    (calls if "callable" in roles else values).add(str(v))
    return frozenset(values), frozenset(c.split(".")[0] for c in calls)

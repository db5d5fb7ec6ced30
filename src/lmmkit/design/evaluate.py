"""Formula evaluation: formulaic's model matrices with R's formula functions in scope.

The one place that calls formulaic for the design (and for new data at prediction time):
the evaluation context, the cached parses, lme4's column names.
"""

from __future__ import annotations

import functools
import re
import warnings
from typing import Any

import numpy as np
import pandas as pd
from formulaic.transforms import TRANSFORMS

from lmmkit.design.rfunctions import R_FUNCTIONS
from lmmkit.errors import DataError
from lmmkit.formula.rsyntax import r_spelling

__all__ = ["FORMULA_CONTEXT", "model_matrix", "parsed_formula", "lme4_name", "new_data_matrix"]

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


def new_data_matrix(spec: Any, newdata: pd.DataFrame, what: str) -> np.ndarray:
    """The model matrix of a fitted formulaic ``spec`` on new rows (``what`` names the part,
    e.g. "fixed-effects", for messages). A level of a factor that the fit did not see has no
    column: it is a DataError naming the column, the level(s) and the known levels (formulaic
    itself would code it as the reference level, with a warning)."""
    from formulaic.errors import DataMismatchWarning

    if not isinstance(newdata, pd.DataFrame):
        raise DataError(f"newdata must be a pandas DataFrame; got {type(newdata).__name__}.")
    _check_new_levels(spec, newdata, what)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DataMismatchWarning)
            mm = spec.get_model_matrix(newdata, context=FORMULA_CONTEXT, na_action="raise")
    except DataMismatchWarning as exc:  # a factor expression _check_new_levels cannot read
        raise DataError(
            f"newdata does not match the {what} columns of the fit: {exc} Predictions for "
            "levels the fit did not see cannot be made; remove those rows or refit."
        ) from exc
    except Exception as exc:
        raise DataError(f"Cannot build the {what} columns for newdata: {exc}") from exc
    return np.asarray(mm, dtype=float)


def _check_new_levels(spec: Any, newdata: pd.DataFrame, what: str) -> None:
    """Every level in ``newdata`` of each categorical factor of ``spec`` was seen in the fit."""
    for expr, (kind, state) in getattr(spec, "encoder_state", {}).items():
        if str(getattr(kind, "value", kind)) != "categorical":
            continue
        known = list(state.get("categories") or ())
        if expr in newdata.columns:
            column = expr
        else:
            found = [v for v in _required_variables(expr) if v in newdata.columns]
            if len(found) != 1:
                continue  # left to formulaic's own check (caught in new_data_matrix)
            column = found[0]
        values = pd.unique(newdata[column].dropna())
        known_set = set(known)
        unseen = [v for v in values if v not in known_set]
        if unseen:
            rows = int(newdata[column].isin(unseen).sum())
            shown = ", ".join(repr(_plain(v)) for v in unseen[:10])
            levels = ", ".join(repr(_plain(v)) for v in known[:30])
            more = f" (+{len(known) - 30} more)" if len(known) > 30 else ""
            where = f"column {column!r}" + (f" (in {expr})" if expr != column else "")
            raise DataError(
                f"newdata has {rows} row(s) with level(s) {shown} of {where} that the fit did "
                f"not see; the fit's levels are {levels}{more}. A fixed effect has no "
                f"coefficient for an unseen level (it is not a grouping factor, which "
                f"allow_new_levels covers): remove those rows, map them to a known level, or "
                f"refit with them. ({what} columns)"
            )


def _plain(v: Any) -> Any:
    """A NumPy scalar as the Python value (for messages)."""
    return v.item() if isinstance(v, np.generic) else v

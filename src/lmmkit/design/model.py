"""Design stage: data + parsed formula -> fixed-effects matrix and random-effects terms.

Every input check lives here, is named, and fails with a message that says what, where and
what to do. Dropped rows and dropped fixed-effect columns are recorded, never silent. The
pieces: :mod:`~lmmkit.design.evaluate` (formulaic and R's formula functions),
:mod:`~lmmkit.design.fixed` (X and the rank rule), :mod:`~lmmkit.design.terms` (random-effects
terms).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from lmmkit.design.evaluate import (  # noqa: F401  (re-exported: the design layer's names)
    _FORMULA_HELPERS,
    FORMULA_CONTEXT,
    _called_functions,
    _is_intercept,
    _required_variables,
    _with_intercept,
    lme4_name,
    model_matrix,
    parsed_formula,
)
from lmmkit.design.fixed import (  # noqa: F401
    RankDeficiencyWarning,
    _independent_columns,
    fixed_effects_matrix,
    independent_by_loop,
)
from lmmkit.design.terms import (  # noqa: F401
    ReTerm,
    _levels_and_index,
    build_terms,
    group_codes,
)
from lmmkit.errors import DataError, FormulaError, close_matches
from lmmkit.formula.parse import ParsedFormula, pointer
from lmmkit.formula.rsyntax import R_FUNCTION_NAMES

__all__ = ["ReTerm", "Design", "build_design", "lme4_name", "group_codes"]


@dataclass(frozen=True)
class Design:
    """Everything the objective needs, plus what the result reports about the data."""

    y: np.ndarray
    X: np.ndarray
    fixef_names: tuple[str, ...]
    terms: tuple[ReTerm, ...]
    weights: np.ndarray | None
    offset: np.ndarray | None
    rows_used: np.ndarray  # positions (0-based) in the input data
    n_dropped: int
    dropped_columns: tuple[str, ...]
    fixed_spec: Any = field(repr=False)
    response: str = ""


def _check_columns(parsed: ParsedFormula, data: pd.DataFrame) -> set[str]:
    """The data columns the formula reads; a FormulaError for a name that is neither a column
    nor a known function or constant."""
    used: set[str] = set()
    exprs = [parsed.fixed, *[t.expr for t in parsed.random], *parsed.offsets]
    names = set().union(*[_required_variables(e) for e in exprs])
    names |= {g for t in parsed.random for g in t.group}
    response = parsed.response
    if response not in data.columns:  # an expression such as log(y) or cbind(a, n - a)
        _check_functions(parsed, (response,))
        names |= _required_variables(response) or {response}
    else:
        names.add(response)
    _check_functions(parsed, tuple(exprs))
    for name in sorted(names):
        if name in data.columns:
            used.add(name)
        elif "." in name and name.split(".")[0] in data.columns:
            used.add(name.split(".")[0])  # a column's attribute, e.g. x.values
        elif name not in _FORMULA_HELPERS:
            columns = [str(c) for c in data.columns]
            at = _token_position(parsed.formula, name)
            raise FormulaError(
                f"Column {name!r} is not in the data.{close_matches(name, columns)}\n"
                f"{pointer(parsed.formula, at, at + len(name))}\n"
                f"The data have columns: {', '.join(columns[:20])}"
                f"{' ...' if len(columns) > 20 else ''}."
            )
    return used


def _check_functions(parsed: ParsedFormula, exprs: tuple[str, ...]) -> None:
    """Every function a formula calls is one lmmkit knows (docs/formulas.md lists them)."""
    unknown = _unknown_functions(exprs)
    if unknown:
        _refuse_function(parsed, unknown[0])


@functools.lru_cache(maxsize=256)
def _unknown_functions(exprs: tuple[str, ...]) -> tuple[str, ...]:
    """The functions the expressions call that are not in the formula context."""
    called = set().union(*(_called_functions(e) for e in exprs)) if exprs else set()
    return tuple(sorted(called - _FORMULA_HELPERS))


def _refuse_function(parsed: ParsedFormula, name: str) -> None:
    """A FormulaError for an unknown function, with the formula and a caret under it."""
    r_name = {v: k for k, v in R_FUNCTION_NAMES.items() if "::" not in k}
    shown = r_name.get(name, name)
    at = _token_position(parsed.formula, shown)
    known = sorted(
        {r_name.get(n, n) for n in _FORMULA_HELPERS if n[:1].islower() and len(n) > 1}
        - {"np", "numpy", "contr", "hashed"}
    )
    raise FormulaError(
        f"Function {shown!r} is not available in formulas.\n"
        f"{pointer(parsed.formula, at, at + len(shown))}\n"
        f"Known functions: {', '.join(known)} (R's names: see docs/formulas.md). "
        "Compute the column in the data first, then use it in the formula."
    )


def _token_position(formula: str, name: str) -> int:
    m = re.search(rf"(?<![A-Za-z0-9_.]){re.escape(name)}(?![A-Za-z0-9_.])", formula)
    return m.start() if m else 0


def _vector_arg(value: Any, data: pd.DataFrame, what: str) -> tuple[np.ndarray | None, str | None]:
    if value is None:
        return None, None
    if isinstance(value, str):
        if value not in data.columns:
            raise DataError(
                f"{what}={value!r} is not a column of the data."
                f"{close_matches(value, [str(c) for c in data.columns])}"
            )
        return pd.to_numeric(data[value], errors="coerce").to_numpy(dtype=float), value
    arr = np.asarray(value, dtype=float).ravel()
    if arr.shape[0] != len(data):
        raise DataError(
            f"{what} has {arr.shape[0]} values but the data have {len(data)} rows; "
            "give one value per row (or a column name)."
        )
    return arr, None


def _missing(
    data: pd.DataFrame, columns: list[str], fetched: dict[str, pd.Series], response: str = ""
) -> np.ndarray:
    """(rows x columns) missingness of the used columns, column by column (a sub-frame costs
    more than the whole check); integer and boolean columns cannot hold a missing value.
    An infinite value in a float column other than the response is a DataError (it is not
    missing, and no model column can be built from it; the response's own check names it).
    The columns read are left in ``fetched`` for the later stages."""
    if not data.columns.is_unique:
        return data[columns].isna().to_numpy()
    out = np.zeros((len(data), len(columns)), dtype=bool)
    for j, c in enumerate(columns):
        col = fetched[c] = data[c]
        if isinstance(col.dtype, np.dtype) and col.dtype.kind in "iub":
            continue
        if isinstance(col.dtype, np.dtype) and col.dtype.kind == "f":
            v = col.to_numpy()
            finite = np.isfinite(v)
            if finite.all():
                continue
            out[:, j] = np.isnan(v)
            infinite = ~finite & ~out[:, j]
            if c != response and infinite.any():
                i = int(np.flatnonzero(infinite)[0])
                raise DataError(
                    f"Data column {c!r} has the non-finite value {float(v[i])!r} at row {i} of "
                    f"the data ({int(infinite.sum())} such value(s)); an infinite value is not "
                    "missing and no model column can be built from it. Correct those rows, "
                    "or set them to NaN to drop them."
                )
        else:
            out[:, j] = pd.isna(col.array)
    return out


def _response(
    parsed: ParsedFormula, data: pd.DataFrame, fetched: dict[str, pd.Series] | None = None
) -> np.ndarray:
    name = parsed.response
    if name in data.columns:
        col = fetched[name] if fetched and name in fetched else data[name]
        if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
            bad = col.iloc[0] if len(col) else None
            raise DataError(
                f"The response {name!r} is not numeric (dtype {col.dtype}, e.g. {bad!r}). "
                "A linear mixed model needs a numeric response; convert the column, or use "
                "glmm() for a binary outcome."
            )
        return col.to_numpy(dtype=float)

    try:
        mm = model_matrix(f"0 + {{{name}}}", data)
    except Exception as exc:
        raise FormulaError(f"Cannot evaluate the response {name!r}: {exc}") from exc
    return np.asarray(mm, dtype=float)[:, 0]


def build_design(
    parsed: ParsedFormula,
    data: pd.DataFrame,
    *,
    weights: Any = None,
    offset: Any = None,
    na_action: Literal["drop", "raise"] = "drop",
    kernels: dict[str, Any] | None = None,
) -> Design:
    """Check the data against the formula and build X, y and the random-effects terms.
    ``kernels`` maps grouping factors to prepared :class:`~lmmkit.design.kernels.Kernel`s."""

    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame; got {type(data).__name__}.")
    if na_action not in ("drop", "raise"):
        raise DataError(f"na_action must be 'drop' or 'raise'; got {na_action!r}.")
    used = _check_columns(parsed, data)
    w, w_col = _vector_arg(weights, data, "weights")
    off, off_col = _vector_arg(offset, data, "offset")

    # Missing values in any used column (and weights / offset).
    fetched: dict[str, pd.Series] = {}
    missing = _missing(data, sorted(used), fetched, parsed.response)
    if w is not None:
        if np.any(np.isnan(w)):
            raise DataError(
                f"weights contain {int(np.isnan(w).sum())} missing value(s) (first at row "
                f"{int(np.flatnonzero(np.isnan(w))[0])}{f' of column {w_col!r}' if w_col else ''}); "
                "give a weight for every row, or drop those rows first."
            )
    if off is not None:
        missing = np.column_stack([missing, np.isnan(off)])
    bad_rows = missing.any(axis=1) if missing.size else np.zeros(len(data), bool)
    n_dropped = int(bad_rows.sum())
    if n_dropped and na_action == "raise":
        frame = data[sorted(used)]
        per_col = {c: int(frame[c].isna().sum()) for c in frame.columns if frame[c].isna().any()}
        raise DataError(
            f"{n_dropped} row(s) have missing values in model columns {per_col}; "
            "use na_action='drop' to drop them, or impute them first."
        )
    rows_used = np.flatnonzero(~bad_rows)
    if rows_used.size == 0:
        names = sorted(used) + (["offset"] if off is not None else [])
        counts = {c: int(k) for c, k in zip(names, missing.sum(axis=0)) if k}
        raise DataError(
            f"No rows are left after dropping rows with missing values: every one of the "
            f"{len(data)} rows misses a value in a column the formula uses (missing per "
            f"column: {counts}). Impute or drop those columns first."
        )
    if n_dropped == 0 and data.index.is_unique:
        # nothing to drop: no copy (the stages read rows by position; a unique index keeps
        # formulaic's own column alignment trivial)
        clean = data
    else:
        clean = data.iloc[rows_used].reset_index(drop=True)
        fetched = {}
    if w is not None:
        w = w[rows_used]
        if np.any(w < 0) or not np.all(np.isfinite(w)):
            i = int(np.flatnonzero((w < 0) | ~np.isfinite(w))[0])
            raise DataError(
                f"weights must be finite and non-negative; got {float(w[i])!r} at row "
                f"{int(rows_used[i])}{f' of column {w_col!r}' if w_col else ''}."
            )
        if np.any(w == 0):
            i = int(np.flatnonzero(w == 0)[0])
            raise DataError(
                f"weights contain {int((w == 0).sum())} zero(s) (first at row {int(rows_used[i])}); "
                "drop those rows instead of giving them zero weight."
            )
    if off is not None:
        off = off[rows_used]
    for expr in parsed.offsets:
        mm = model_matrix(f"0 + {{{expr}}}", clean)
        add = np.asarray(mm, dtype=float)[:, 0]
        off = add if off is None else off + add

    y = _response(parsed, clean, fetched)
    if not np.all(np.isfinite(y)):
        i = int(np.flatnonzero(~np.isfinite(y))[0])
        raise DataError(
            f"The response {parsed.response!r} has a non-finite value {float(y[i])!r} at row "
            f"{int(rows_used[i])}; remove or correct it."
        )

    fixed_mm = intercept_mm = None
    if not _is_intercept(parsed.fixed) and any(_is_intercept(t.expr) for t in parsed.random):
        fixed_mm, intercept_mm = _with_intercept(parsed.fixed, clean)
    X, names, dropped, mm = fixed_effects_matrix(parsed, clean, rows_used, mm=fixed_mm)

    terms = build_terms(
        parsed,
        clean,
        len(y),
        kernels or {},
        fixed_mm=mm,
        fetched=fetched,
        rows_used=rows_used,
        intercept_mm=intercept_mm,
    )
    return Design(
        y=y,
        X=X,
        fixef_names=tuple(names),
        terms=terms,
        weights=w,
        offset=off,
        rows_used=rows_used,
        n_dropped=n_dropped,
        dropped_columns=dropped,
        fixed_spec=mm.model_spec,
        response=parsed.response,
    )

"""The response of a GLMM: read it from the data and check it against the family.

Two steps around the design: :func:`response_columns` evaluates the left-hand side (a column,
an expression, ``cbind(successes, failures)`` or successes with ``trials=``) before the rows
with missing values are known; :func:`check_response` validates the values on the rows the
design kept and returns the arrays the objective works with, in R's conventions: ``y`` (a
proportion for the binomial), the prior weights ``wt`` (times the trials for the binomial) and
``nvec``, R's ``n`` argument of ``family$aic``.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError, FormulaError, LmmkitWarning, close_matches
from lmmkit.formula.parse import ParsedFormula
from lmmkit.glmm.family import Family

__all__ = ["GLMMResponse", "response_columns", "check_response"]


@dataclass(frozen=True)
class GLMMResponse:
    """The checked response on the rows used.

    ``kind`` is how it was given: 'bernoulli' (0/1), 'proportion' (proportions with
    ``weights=`` as the numbers of trials, as glmer), 'cbind', 'trials' or 'count'
    (Poisson, negative binomial; positive values for Gamma and inverse Gaussian).
    """

    y: np.ndarray  # proportion (binomial) or the value
    ntrials: np.ndarray  # trials per row (binomial; the weights for proportions), else 1
    nvec: np.ndarray  # R's `n` of family$aic
    wt: np.ndarray  # prior weights (binomial: times the trials)
    kind: str


# ----------------------------------------------------------------------------- reading
def _split_args(text: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [s.strip() for s in out]


def _eval_column(expr: str, data: pd.DataFrame, formula: str) -> pd.Series:
    if expr in data.columns:
        return data[expr]
    try:
        return pd.Series(data.eval(expr, engine="python"), index=data.index)
    except Exception as exc:  # undefined names, syntax
        names = re.findall(r"[A-Za-z_.][A-Za-z0-9_.]*", expr)
        missing = [n for n in names if n not in data.columns]
        hint = close_matches(missing[0], [str(c) for c in data.columns]) if missing else ""
        raise FormulaError(
            f"Cannot evaluate {expr!r} in the response of {formula!r}: {exc}.{hint}"
        ) from exc


def _numeric(values: pd.Series, what: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(values):
        return values.astype(float).to_numpy()
    if not pd.api.types.is_numeric_dtype(values):
        bad = values.dropna().iloc[0] if values.notna().any() else None
        raise DataError(
            f"{what} is not numeric (dtype {values.dtype}, e.g. {bad!r}); give counts as numbers."
        )
    return values.to_numpy(dtype=float)


def _binary(values: pd.Series, what: str) -> np.ndarray:
    """0/1 from a numeric, boolean or two-level categorical column (first level = 0, as R)."""
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return _numeric(values, what)
    if isinstance(values.dtype, pd.CategoricalDtype):
        levels = list(values.cat.remove_unused_categories().cat.categories)
    else:
        levels = sorted(values.dropna().unique().tolist(), key=str)
    if len(levels) != 2:
        raise DataError(
            f"{what} has {len(levels)} distinct non-numeric values {levels[:5]}; a binomial "
            "response needs 0/1, True/False or exactly two levels."
        )
    out = np.where(values.isna(), np.nan, (values == levels[1]).astype(float))
    return out.astype(float)


def response_columns(
    parsed: ParsedFormula, data: pd.DataFrame, family: Family, trials: Any
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(successes or values, trials or None, kind) over all rows of ``data``."""
    lhs = parsed.response
    m = re.fullmatch(r"\s*cbind\s*\((.*)\)\s*", lhs)
    if m:
        if family.name != "binomial":
            raise FormulaError(
                f"cbind(successes, failures) is a binomial response; family is "
                f"{family.name!r}. Use a count column for Poisson."
            )
        parts = _split_args(m.group(1))
        if len(parts) != 2 or not all(parts):
            raise FormulaError(
                f"cbind() in {parsed.formula!r} needs two arguments: successes, failures."
            )
        s = _numeric(_eval_column(parts[0], data, parsed.formula), f"successes {parts[0]!r}")
        f = _numeric(_eval_column(parts[1], data, parsed.formula), f"failures {parts[1]!r}")
        if trials is not None:
            raise DataError("Give either cbind(successes, failures) or trials=, not both.")
        bad = np.flatnonzero(f < 0)
        if bad.size:
            i = int(bad[0])
            raise DataError(
                f"failures {parts[1]!r} is negative ({f[i]:g}) at row {i}: successes exceed "
                "the number of trials there."
            )
        return s, s + f, "cbind"
    if trials is not None:
        if family.name != "binomial":
            raise DataError("trials= is only meaningful for the binomial family.")
        if isinstance(trials, str):
            if trials not in data.columns:
                raise DataError(f"trials={trials!r} is not a column of the data.")
            ntr = _numeric(data[trials], f"trials column {trials!r}")
        else:
            ntr = np.asarray(trials, dtype=float).ravel()
            if ntr.shape[0] != len(data):
                raise DataError(
                    f"trials has {ntr.shape[0]} values but the data have {len(data)} rows."
                )
        s = _numeric(_eval_column(lhs, data, parsed.formula), f"successes {lhs!r}")
        return s, ntr, "trials"
    col = _eval_column(lhs, data, parsed.formula)
    if family.name == "binomial":
        return _binary(col, f"The response {lhs!r}"), None, "bernoulli"
    return _numeric(col, f"The response {lhs!r}"), None, "count"


# ----------------------------------------------------------------------------- checking
def _integer_check(v: np.ndarray, rows: np.ndarray, what: str, todo: str) -> None:
    bad = np.flatnonzero((v < 0) | (np.abs(v - np.round(v)) > 1e-7))
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{what} must be non-negative whole numbers; got {float(v[i])!r} at row "
            f"{int(rows[i])} ({bad.size} such value(s)). {todo}"
        )


def check_response(
    family: Family,
    name: str,
    yv: np.ndarray,
    rows: np.ndarray,
    ntr: np.ndarray | None,
    prior: np.ndarray | None,
    weights_given: bool,
) -> GLMMResponse:
    """Validate the response values ``yv`` on the rows used (``rows``: their positions in
    the data, for messages) and return the objective's arrays.

    ``ntr``: trials over all rows (cbind / trials=) or None; ``prior``: the prior weights on
    the rows used or None. A binomial response without trials may hold proportions when
    ``weights=`` gives the numbers of trials (glmer's convention)."""
    ones = np.ones_like(yv)
    kind = "count"
    if family.name in ("gamma", "inverse_gaussian"):
        bad = np.flatnonzero(~(yv > 0))
        if bad.size:
            i = int(bad[0])
            what = "A Gamma" if family.name == "gamma" else "An inverse-Gaussian"
            raise DataError(
                f"{what} response {name!r} must be positive; got {float(yv[i])!r} at "
                f"row {int(rows[i])} ({bad.size} such value(s))."
            )
        y, n = yv, ones
    elif family.name in ("poisson", "negbin"):
        what = "Poisson" if family.name == "poisson" else "Negative binomial"
        _integer_check(yv, rows, f"{what} counts in {name!r}", "Use a count response.")
        y, n = yv, ones
    elif ntr is None:
        y, n, kind = yv, ones, "bernoulli"
        if weights_given and np.any((yv != 0) & (yv != 1)):
            kind = "proportion"
            _proportion_check(yv, rows, name, prior)
        else:
            bad = np.flatnonzero((yv != 0) & (yv != 1))
            if bad.size:
                i = int(bad[0])
                raise DataError(
                    f"A Bernoulli response {name!r} must be 0 or 1; got {float(yv[i])!r} at "
                    f"row {int(rows[i])} ({bad.size} such value(s)). For counts of "
                    "successes use 'cbind(successes, failures) ~ ...' or trials=; for "
                    "proportions give the numbers of trials as weights=."
                )
    else:
        kind = "trials"
        n = ntr[rows]
        _integer_check(yv, rows, "Binomial successes", "")
        _integer_check(n, rows, "Binomial trials", "")
        over = np.flatnonzero(yv > n)
        if over.size:
            i = int(over[0])
            raise DataError(
                f"Binomial successes exceed the number of trials: {yv[i]:g} successes of "
                f"{n[i]:g} trials at row {int(rows[i])} ({over.size} such row(s)). Check "
                "the response (cbind(successes, failures) takes failures, not trials)."
            )
        zero = np.flatnonzero(n == 0)
        if zero.size:
            raise DataError(
                f"{zero.size} row(s) have zero trials (first at row {int(rows[zero[0]])}); "
                "drop them before fitting."
            )
        y = yv / n
    wt = prior if prior is not None else ones
    if family.name == "binomial":
        wt = wt * n
    ntrials = prior if kind == "proportion" and prior is not None else n
    return GLMMResponse(y=y, ntrials=ntrials, nvec=n, wt=wt, kind=kind)


def _proportion_check(y: np.ndarray, rows: np.ndarray, name: str, prior: np.ndarray | None) -> None:
    """Proportions in [0, 1]; successes weight x proportion should be whole numbers (R's
    binomial family warns 'non-integer #successes' otherwise)."""
    bad = np.flatnonzero((y < 0) | (y > 1))
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"A binomial proportion {name!r} must lie in [0, 1]; got {float(y[i])!r} at row "
            f"{int(rows[i])} ({bad.size} such value(s))."
        )
    m = y * (prior if prior is not None else 1.0)
    off = np.flatnonzero(np.abs(m - np.round(m)) > 1e-3)
    if off.size:
        i = int(off[0])
        warnings.warn(
            f"non-integer numbers of successes (proportion x weight) in {name!r}, e.g. "
            f"{float(m[i]):g} at row {int(rows[i])} ({off.size} row(s)); with proportions, "
            "weights= should be the numbers of trials (glm/glmer give the same warning).",
            LmmkitWarning,
            stacklevel=5,
        )

"""Random-effects terms: grouping factors, their levels, each term's model columns and
covariance structure, with the identifiability checks on each term."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.design.evaluate import (
    _check_finite,
    _is_intercept,
    _plain,
    _required_variables,
    lme4_name,
    model_matrix,
)
from lmmkit.errors import FormulaError, LmmkitWarning, ModelError
from lmmkit.formula.parse import ParsedFormula, RandomTermSpec, pointer
from lmmkit.linalg.covstruct import CovStructure

__all__ = ["ReTerm", "group_codes", "build_terms"]


@dataclass(frozen=True)
class ReTerm:
    """A random-effects term: a grouping factor and the per-level model columns.

    ``index`` maps observations to levels; ``Zx`` holds the term's model columns (n x p).
    Z for the term is the row-wise Khatri-Rao product of indicator(index) and Zx; it is
    never formed.
    """

    name: str  # lme4's VarCorr group name, made unique (Subject, Subject.1)
    group: tuple[str, ...]
    levels: np.ndarray
    index: np.ndarray
    columns: tuple[str, ...]
    Zx: np.ndarray
    expr: str
    spec: Any = field(repr=False)  # formulaic ModelSpec, to rebuild columns on new data
    # covariance structure (cs, homcs, ar1, diag over several columns); None: unstructured
    structure: CovStructure | None = None
    text: str = ""  # the term as written in the formula, for messages

    @property
    def nlevels(self) -> int:
        return len(self.levels)

    @property
    def p(self) -> int:
        return self.Zx.shape[1]

    @property
    def ntheta(self) -> int:
        """Number of covariance parameters: lme4's p(p+1)/2, or the structure's."""
        if self.structure is not None:
            return self.structure.npar
        return self.p * (self.p + 1) // 2


def group_codes(data: pd.DataFrame, group: tuple[str, ...]) -> pd.Series:
    """The grouping factor's values: a column, or the ':'-joined interaction of several."""
    if len(group) == 1:
        return data[group[0]]
    parts = [data[g].astype(str) for g in group]
    out = parts[0]
    for p in parts[1:]:
        out = out + ":" + p
    return out


def _levels_and_index(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(values.dtype, pd.CategoricalDtype):
        cat = values.cat.remove_unused_categories()
        return np.asarray(cat.cat.categories), np.asarray(cat.cat.codes, dtype=np.int64)
    if isinstance(values.dtype, np.dtype):  # the plain array: same codes, less overhead
        v = values.to_numpy()
        if v.dtype.kind in "iu" and len(v):
            lo, hi = v.min(), v.max()
            span = int(hi) - int(lo)
            if span <= 4 * len(v):  # integer labels in a short range: a lookup table
                present = np.zeros(span + 1, dtype=bool)
                # exact differences: signed types widened first (int8 -128..127 spans 255)
                diff = v.astype(np.int64) - np.int64(lo) if v.dtype.kind == "i" else v - lo
                offset = diff.astype(np.intp)
                present[offset] = True
                at = np.flatnonzero(present)
                if v.dtype.kind == "i":
                    uniques = (at + np.int64(lo)).astype(v.dtype)
                else:  # the offsets fit the unsigned type: they are at most hi - lo
                    uniques = at.astype(v.dtype) + lo
                codes = (np.cumsum(present) - 1)[offset]
                return uniques, codes.astype(np.int64)
        codes, uniques = pd.factorize(v, sort=True)
        return uniques, codes.astype(np.int64)
    if isinstance(values.dtype, pd.StringDtype):  # text only: the same order as objects
        codes, uniques = pd.factorize(values.to_numpy(dtype=object), sort=True)
        return uniques, codes.astype(np.int64)
    codes, uniques = pd.factorize(values, sort=True)
    return np.asarray(uniques), codes.astype(np.int64)


def build_terms(
    parsed: ParsedFormula,
    data: pd.DataFrame,
    n: int,
    kernels: dict[str, Any],
    fixed_mm: Any = None,
    fetched: dict[str, pd.Series] | None = None,
    rows_used: np.ndarray | None = None,
    intercept_mm: Any = None,
) -> tuple[ReTerm, ...]:

    if not parsed.random:
        raise ModelError(
            f"The formula {parsed.formula!r} has no random-effects term. Add one such as "
            "(1 | group), or use an ordinary linear model for fixed effects only."
        )
    built: list[tuple[RandomTermSpec, np.ndarray, np.ndarray, np.ndarray, Any, list[str]]] = []
    for spec in parsed.random:
        g = spec.group[0]
        one = len(spec.group) == 1 and fetched and g in fetched
        values = fetched[g] if one else group_codes(data, spec.group)  # type: ignore[index]
        kernel = kernels.get(spec.group_name)
        if kernel is not None:
            from lmmkit.design.kernels import kernel_index

            levels, index = (
                np.asarray(kernel.labels, dtype=object),
                kernel_index(spec.group_name, kernel, values),
            )
        else:
            levels, index = _levels_and_index(values)
        try:
            same = fixed_mm is not None and spec.expr.replace(" ", "") == parsed.fixed.replace(
                " ", ""
            )
            # (x | g) next to a fixed part x: the same columns, materialized once
            if same:
                mm = fixed_mm
            elif intercept_mm is not None and _is_intercept(spec.expr):
                mm = intercept_mm  # (1 | g): built with the fixed part
            else:
                mm = model_matrix(spec.expr, data, output="numpy", na_action="ignore")
        except Exception as exc:
            raise FormulaError(
                f"Cannot build the columns of random term {spec.text} from {spec.expr!r}: {exc}\n"
                f"{pointer(parsed.formula, *spec.span)}"
            ) from exc
        Zx = np.asfortranarray(mm, dtype=float)  # column-major, as X
        raw_cols = list(mm.model_spec.column_names)
        cols = [lme4_name(c) for c in raw_cols]
        _check_finite(Zx, cols, f"Random term {spec.text}:", rows_used)
        if kernel is not None:
            if spec.expr.strip() != "1" or Zx.shape[1] != 1:
                raise ModelError(
                    f"A kernel for {spec.group_name!r} needs a random intercept (1 | "
                    f"{spec.group_name}); term {spec.text} has columns {cols}.\n"
                    f"{pointer(parsed.formula, *spec.span)}"
                )
        else:
            _check_term(parsed, spec, len(levels), Zx.shape[1], n)
        structure = _structure(parsed, spec, data, levels, index, Zx, cols, raw_cols)
        built.append((spec, levels, index, Zx, mm.model_spec, cols, structure))

    # lme4 (mkReTrms): when the numbers of levels are not non-increasing, order terms by
    # decreasing number of levels, ties in reverse formula order (rev(order(nl))).
    nl = [len(b[1]) for b in built]
    if any(b > a for a, b in zip(nl, nl[1:])):
        order = list(reversed(np.argsort(nl, kind="stable")))
        built = [built[i] for i in order]
    seen: dict[str, int] = {}
    terms = []
    for spec, levels, index, Zx, mspec, cols, structure in built:
        base = spec.group_name
        k = seen.get(base, 0)
        seen[base] = k + 1
        name = base if k == 0 else f"{base}.{k}"
        terms.append(
            ReTerm(
                name,
                spec.group,
                levels,
                index,
                tuple(cols),
                Zx,
                spec.expr,
                mspec,
                structure=structure,
                text=spec.text,
            )
        )
    return tuple(terms)


def _structure(
    parsed: ParsedFormula,
    spec: RandomTermSpec,
    data: pd.DataFrame,
    levels: np.ndarray,
    index: np.ndarray,
    Zx: np.ndarray,
    cols: list[str],
    raw_cols: list[str],
) -> CovStructure | None:
    """The term's covariance structure, checked against its columns (None: unstructured)."""
    kind, p = spec.structure, Zx.shape[1]
    if kind == "us" or (kind == "diag" and p == 1):  # diag of one column is (x || g)'s piece
        return None
    where = pointer(parsed.formula, *spec.span)
    if kind == "diag":
        return CovStructure("diag", p)
    name = {"cs": "compound symmetry", "homcs": "compound symmetry", "ar1": "AR(1)"}[kind]
    if p < 2:
        raise ModelError(
            f"Term {spec.text} has a single column ({cols[0]}); a {name} structure correlates "
            f"two or more columns.\n{where}\nGive it a factor with two or more levels, e.g. "
            f"{kind}(0 + time | {spec.group_name}), or use ({spec.expr} | {spec.group_name})."
        )
    if kind == "ar1":
        _check_ar1(parsed, spec, data, levels, index, Zx, cols, raw_cols, where)
    return CovStructure(kind, p)


def _check_ar1(
    parsed: ParsedFormula,
    spec: RandomTermSpec,
    data: pd.DataFrame,
    levels: np.ndarray,
    index: np.ndarray,
    Zx: np.ndarray,
    cols: list[str],
    raw_cols: list[str],
    where: str,
) -> None:
    """ar1 needs the indicator columns of one time factor, in time order, and at most one\n    observation per time point and group level."""
    indicator = np.all((Zx == 0) | (Zx == 1), axis=1) & (Zx.sum(axis=1) == 1)
    if not indicator.all():
        i = int(np.flatnonzero(~indicator)[0])
        raise ModelError(
            f"Term {spec.text}: AR(1) correlates the levels of one time factor, so each "
            f"observation must fall in exactly one of its columns {cols}; row {i} of the data "
            f"used has {Zx[i].tolist()}.\n{where}\nWrite the term as "
            f"ar1(0 + time | {spec.group_name}) with time a factor (categorical column)."
        )
    time = np.argmax(Zx, axis=1)
    key = index.astype(np.int64) * Zx.shape[1] + time
    uniq, first, counts = np.unique(key, return_index=True, return_counts=True)
    if np.any(counts > 1):
        j = int(np.argmax(counts > 1))
        i = int(first[j])
        variables = sorted(_required_variables(spec.expr) & {str(c) for c in data.columns})
        if len(variables) == 1:
            v = data[variables[0]].iloc[i]
            value = f"{variables[0]} = {_plain(v)!r}"
        else:
            value = f"column {cols[time[i]]!r}"
        n_dup = int(np.sum(counts > 1))
        raise ModelError(
            f"Term {spec.text}: group {spec.group_name} = {_plain(levels[index[i]])!r} has "
            f"{int(counts[j])} observations at the same time point ({value}); AR(1) over the "
            f"columns needs at most one observation per time point and group "
            f"({n_dup} group/time pair(s) are repeated).\n{where}\nCheck for duplicated rows, "
            f"or use a finer grouping factor (e.g. subject:replicate)."
        )
    labels = []
    for raw in raw_cols:
        m = re.search(r"\[(?:T\.)?([^\]]*)\]$", raw)
        labels.append(m.group(1) if m else raw)
    try:
        times = np.array([float(x) for x in labels])
    except ValueError:
        return
    if np.any(np.diff(times) <= 0):
        raise ModelError(
            f"Term {spec.text}: AR(1) correlates the columns in their order, which here is "
            f"{', '.join(labels)}: not increasing in time (text levels sort as strings).\n"
            f"{where}\nMake the time column numeric categorical, e.g. "
            "data['time'] = pd.Categorical(data['time'].astype(float)), so its levels sort by "
            "value."
        )
    steps = np.diff(times)
    if len(steps) > 1 and not np.allclose(steps, steps[0], rtol=1e-8):
        warnings.warn(
            f"Term {spec.text}: the time points {', '.join(labels)} are not equally spaced; "
            "AR(1) here treats consecutive columns as one step apart (as glmmTMB's ar1 does).",
            LmmkitWarning,
            stacklevel=5,
        )


def _check_term(parsed: ParsedFormula, spec: RandomTermSpec, nlev: int, p: int, n: int) -> None:
    where = pointer(parsed.formula, *spec.span)
    if nlev < 2:
        raise ModelError(
            f"Grouping factor {spec.group_name!r} of term {spec.text} has {nlev} level; "
            f"a random effect needs at least 2 sampled levels.\n{where}\n"
            "Remove the term, or check the data (was it filtered to one group?)."
        )
    if nlev >= n:
        raise ModelError(
            f"Grouping factor {spec.group_name!r} of term {spec.text} has {nlev} levels for "
            f"{n} observations; the number of levels must be smaller than the number of "
            f"observations, or the random effect is confounded with the residual.\n{where}\n"
            "Remove the term, or group at a coarser level."
        )
    if nlev * p >= n and not (spec.structure in ("cs", "ar1") and p >= 3):
        # cs and ar1 over 3+ columns have few parameters, identifiable beside the residual
        # variance with one observation per column and level; homcs and diag are not
        raise ModelError(
            f"Term {spec.text} has {nlev * p} random effects ({nlev} levels x {p} columns) for "
            f"{n} observations; its variance parameters and the residual variance are "
            f"probably unidentifiable.\n{where}\nSimplify the term, e.g. (1 | {spec.group_name})."
        )

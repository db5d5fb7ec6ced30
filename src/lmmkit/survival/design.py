"""Design stage of a Cox model: formula + data -> response, X, strata, weights, groups.

The formula is ``Surv(...) ~ fixed + strata(a, b) + cluster(id) + offset(x) + (1 | g)``:
``lmmkit.formula`` splits off the random terms and offsets (read only), this module takes
``strata()`` and ``cluster()`` out of the fixed part, and formulaic builds X from what is
left with an intercept that is then dropped (R's coding of factors in ``coxph``). Rows with
a missing value in any used column are dropped and counted per column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.design.model import FORMULA_CONTEXT, group_codes, lme4_name, parsed_formula
from lmmkit.design.model import _vector_arg as _vector
from lmmkit.errors import DataError, FormulaError, ModelError, close_matches
from lmmkit.formula.parse import RandomTermSpec, parse_formula, pointer

from .surv import SurvData, SurvSpec, parse_surv, surv_data

__all__ = ["CoxFormula", "GroupFactor", "CoxDesign", "parse_cox_formula", "cox_design"]

_SPECIAL = re.compile(r"^(strata|cluster)\s*\((.*)\)$", re.S)
_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")


@dataclass(frozen=True)
class CoxFormula:
    """A parsed Cox formula: the Surv() columns, the formulaic fixed part (``"0"`` when
    there are no covariates), strata and cluster columns, offsets and random terms."""

    formula: str
    surv: SurvSpec
    fixed: str
    strata: tuple[str, ...]
    cluster: str | None
    offsets: tuple[str, ...]
    random: tuple[RandomTermSpec, ...]


@dataclass(frozen=True, eq=False)
class GroupFactor:
    """One ``(1 | g)`` term: integer codes per row and the level labels."""

    name: str
    codes: np.ndarray
    levels: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class CoxDesign:
    """Everything the partial likelihood needs, rows in the data's order (complete cases)."""

    y: SurvData
    X: np.ndarray
    columns: tuple[str, ...]
    strata: np.ndarray  # int codes, 0 when unstratified
    strata_levels: tuple[str, ...]
    weights: np.ndarray
    offset: np.ndarray
    cluster: np.ndarray | None
    groups: tuple[GroupFactor, ...]
    rows: pd.Index  # the data's index labels of the rows used
    dropped: dict[str, int]  # rows dropped for a missing value, per column (first seen)
    n_dropped: int
    model_spec: Any = field(repr=False, default=None)  # formulaic spec, for new data

    @property
    def n(self) -> int:
        return int(self.X.shape[0])


def _special_args(formula: str, piece: str, name: str, inner: str) -> tuple[str, ...]:
    args = tuple(a.strip() for a in inner.split(",") if a.strip())
    for a in args:
        if not _NAME.match(a):
            at = max(formula.find(piece), 0)
            raise FormulaError(
                f"{name}() takes column names; got {a!r}.\n"
                f"{pointer(formula, at, at + len(piece))}\n"
                "Create a column for a computed grouping first."
            )
    if not args or (name == "cluster" and len(args) != 1):
        at = max(formula.find(piece), 0)
        raise FormulaError(
            f"{piece} needs {'one column' if name == 'cluster' else 'at least one column'}.\n"
            f"{pointer(formula, at, at + len(piece))}"
        )
    return args


def parse_cox_formula(formula: str) -> CoxFormula:
    """Split a Cox formula into its parts.

    Parameters
    ----------
    formula : str
        ``"Surv(time, status) ~ x1 + x2 + strata(sex) + (1 | site)"``.

    Returns
    -------
    CoxFormula

    Raises
    ------
    FormulaError
        A response that is not ``Surv(...)``, a malformed ``strata()``/``cluster()`` or
        random term, more than one ``cluster()``.

    Examples
    --------
    >>> f = parse_cox_formula("Surv(time, status) ~ age + strata(sex)")
    >>> f.fixed, f.strata
    ('age', ('sex',))
    """
    parsed = parse_formula(formula)
    surv = parse_surv(parsed.response, formula)
    strata: list[str] = []
    clusters: list[str] = []
    kept: list[str] = []
    depth, start, text = 0, 0, parsed.fixed
    pieces = []
    for i, ch in enumerate(text + "+"):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "+" and depth == 0:
            pieces.append(text[start:i].strip())
            start = i + 1
    for piece in pieces:
        m = _SPECIAL.match(piece)
        if m is None:
            if piece:
                kept.append(piece)
            continue
        args = _special_args(formula, piece, m.group(1), m.group(2))
        (strata if m.group(1) == "strata" else clusters).extend(args)
    if len(clusters) > 1:
        raise FormulaError(
            f"The formula {formula!r} has more than one cluster() term; use one cluster "
            "column (make an interaction column for combined clusters)."
        )
    fixed = " + ".join(kept)
    if fixed in ("", "1", "0", "-1", "0 + 1"):
        fixed = "0"
    for term in parsed.random:
        if term.expr.replace(" ", "") != "1" or term.structure != "us":
            at, end = term.span
            raise FormulaError(
                f"Random term {term.text} is not a random intercept.\n"
                f"{pointer(formula, at, end)}\n"
                "Cox models here take random intercepts (frailties) only: (1 | g), "
                "(1 | a/b) for nesting, (1 | a) + (1 | b) for crossed factors."
            )
    return CoxFormula(
        formula=formula,
        surv=surv,
        fixed=fixed,
        strata=tuple(strata),
        cluster=clusters[0] if clusters else None,
        offsets=parsed.offsets,
        random=parsed.random,
    )


def quote_dotted(expr: str, columns) -> str:
    """Backquote column names with dots (R's ``ph.ecog``) so formulaic reads them as names,
    not attribute access."""
    for name in sorted((str(c) for c in columns if "." in str(c)), key=len, reverse=True):
        expr = re.sub(rf"(?<![A-Za-z0-9_.`]){re.escape(name)}(?![A-Za-z0-9_.`])", f"`{name}`", expr)
    return expr


def _required(expr: str) -> set[str]:
    try:
        found = {str(v) for v in parsed_formula(expr).required_variables}
    except Exception as exc:
        raise FormulaError(f"Cannot parse the covariates {expr!r}: {exc}") from exc
    quoted = set(re.findall(r"`([^`]+)`", expr))
    # formulaic lists `ph.ecog` as 'ph' (attribute access): use the quoted name instead
    found = {v for v in found if not any(q.startswith(v + ".") for q in quoted)}
    return found | quoted


def _labels(frame: pd.DataFrame, cols: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Codes and R-style labels ('sex=1, ph.ecog=2') of the combinations of ``cols``."""
    if not cols:
        return np.zeros(len(frame), dtype=np.int64), ()
    keys = frame[list(cols)]
    codes, uniques = pd.MultiIndex.from_frame(keys).factorize(sort=True)
    labels = tuple(
        ", ".join(f"{c}={v}" for c, v in zip(cols, u if isinstance(u, tuple) else (u,)))
        for u in uniques
    )
    return codes.astype(np.int64), labels


def cox_design(
    spec: CoxFormula,
    data: pd.DataFrame,
    *,
    weights: Any = None,
    offset: Any = None,
    cluster: Any = None,
) -> CoxDesign:
    """Build the design of a Cox model (complete cases; dropped rows counted).

    Parameters
    ----------
    spec : CoxFormula
        From :func:`parse_cox_formula`.
    data : pandas.DataFrame
    weights, offset : str or array-like, optional
        Case weights (> 0) and an offset on the linear predictor (column name or values).
    cluster : str or array-like, optional
        Cluster labels for the robust variance (instead of ``cluster()`` in the formula).

    Returns
    -------
    CoxDesign

    Raises
    ------
    DataError
        Missing columns, bad times or status, non-positive weights, no complete rows,
        a stratum with a single row, a random-effect factor with one level.

    Examples
    --------
    >>> import pandas as pd
    >>> d = pd.DataFrame({"t": [1, 2, 3, 4], "s": [1, 0, 1, 1], "x": [0.5, 1.0, 1.5, 0.0]})
    >>> cox_design(parse_cox_formula("Surv(t, s) ~ x"), d).X.shape
    (4, 1)
    """
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame; got {type(data).__name__}.")
    if spec.cluster is not None and cluster is not None:
        raise DataError("Give the cluster either as cluster() in the formula or as cluster=.")
    names = set(spec.surv.columns) | set(spec.strata)
    fixed = quote_dotted(spec.fixed, data.columns)
    offsets = [quote_dotted(e, data.columns) for e in spec.offsets]
    names |= _required(fixed) if fixed != "0" else set()
    for expr in offsets:
        names |= _required(f"{{{expr}}}")
    names |= {g for t in spec.random for g in t.group}
    if spec.cluster is not None:
        names.add(spec.cluster)
    columns = [str(c) for c in data.columns]
    for name in sorted(names):
        if name not in data.columns and name not in FORMULA_CONTEXT:
            at = max(spec.formula.find(name), 0)
            raise FormulaError(
                f"Column {name!r} is not in the data.{close_matches(name, columns)}\n"
                f"{pointer(spec.formula, at, at + len(name))}"
            )
    # a missing time or status is an error (surv_data), not a silently dropped row
    used = sorted(n for n in names if n in data.columns and n not in spec.surv.columns)
    w, w_col = _vector(weights, data, "weights")
    off, _ = _vector(offset, data, "offset")
    cl_values = None
    if cluster is not None:
        cl_values = (
            data[cluster]
            if isinstance(cluster, str) and cluster in data.columns
            else pd.Series(np.asarray(cluster), index=data.index)
        )
        if isinstance(cluster, str) and cluster not in data.columns:
            raise DataError(f"cluster={cluster!r} is not a column of the data.")
    # missing values: rows dropped, counted per column (the first missing column of a row)
    miss = data[used].isna().to_numpy() if used else np.zeros((len(data), 0), bool)
    extra = {"weights": w, "offset": off}
    for key, arr in extra.items():
        if arr is not None:
            miss = np.column_stack([miss, np.isnan(arr)])
            used = [*used, key]
    if cl_values is not None:
        miss = np.column_stack([miss, pd.isna(cl_values).to_numpy()])
        used = [*used, "cluster"]
    bad = miss.any(axis=1) if miss.size else np.zeros(len(data), bool)
    dropped: dict[str, int] = {}
    if bad.any():
        first = np.argmax(miss[bad], axis=1)
        for j, count in zip(*np.unique(first, return_counts=True)):
            dropped[used[int(j)]] = int(count)
    keep = ~bad
    if not keep.any():
        raise DataError(f"No complete rows: every row has a missing value in {sorted(dropped)}.")
    frame = data.loc[keep] if bad.any() else data
    y = surv_data(spec.surv, frame)
    if fixed == "0":
        X = np.zeros((len(frame), 0))
        cols: tuple[str, ...] = ()
        model_spec = None
    else:
        try:
            mm = parsed_formula("1 + " + fixed)
            import formulaic

            mm = formulaic.model_matrix(
                mm, frame, na_action="ignore", context=FORMULA_CONTEXT, output="pandas"
            )
        except Exception as exc:
            raise FormulaError(f"Cannot build the covariates {spec.fixed!r}: {exc}") from exc
        model_spec = mm.model_spec
        keep_cols = [c for c in mm.columns if c != "Intercept"]
        X = np.ascontiguousarray(mm[keep_cols].to_numpy(dtype=float))
        cols = tuple(lme4_name(c) for c in keep_cols)
        if not np.isfinite(X).all():
            i, j = np.argwhere(~np.isfinite(X))[0]
            raise DataError(
                f"Covariate column {cols[j]!r} is not finite ({X[i, j]!r}) at row "
                f"{frame.index[i]!r}; fix the value or the transformation."
            )
    if w is None:
        wv = np.ones(len(frame))
    else:
        wv = w[keep]
        if np.any(~np.isfinite(wv)) or np.any(wv <= 0):
            i = int(np.flatnonzero(~np.isfinite(wv) | (wv <= 0))[0])
            raise DataError(
                f"Case weights must be finite and > 0 (survival: 'Invalid weights, must be "
                f">0'); got {wv[i]!r} at row {frame.index[i]!r}"
                f"{f' of column {w_col!r}' if w_col else ''}. Drop rows of zero weight."
            )
    ov = np.zeros(len(frame)) if off is None else off[keep].copy()
    for expr in offsets:
        ov = ov + formulaic_vector(expr, frame)
    codes, labels = _labels(frame, spec.strata)
    if spec.strata:
        counts = np.bincount(codes, minlength=len(labels))
        if (counts == 1).any():
            lone = [labels[k] for k in np.flatnonzero(counts == 1)]
            raise DataError(
                f"Stratum {lone[0]!r} of strata({', '.join(spec.strata)}) has a single row "
                f"({len(lone)} such strata). A one-row stratum adds nothing to the partial "
                "likelihood; merge it with another level or drop it."
            )
    groups = []
    for term in spec.random:
        values = group_codes(frame, term.group)
        g_codes, g_levels = pd.factorize(values, sort=True)
        if len(g_levels) < 2:
            at, end = term.span
            raise ModelError(
                f"The random term {term.text} has a grouping factor "
                f"{term.group_name!r} with only {len(g_levels)} level "
                f"({list(g_levels)!r}) in the data used.\n{pointer(spec.formula, at, end)}\n"
                "A frailty variance needs at least two groups; drop the term."
            )
        groups.append(
            GroupFactor(term.group_name, g_codes.astype(np.int64), tuple(map(str, g_levels)))
        )
    cl = None
    if spec.cluster is not None:
        cl = pd.factorize(frame[spec.cluster], sort=True)[0].astype(np.int64)
    elif cl_values is not None:
        cl = pd.factorize(cl_values[keep], sort=True)[0].astype(np.int64)
    return CoxDesign(
        y=y,
        X=X,
        columns=cols,
        strata=codes,
        strata_levels=labels,
        weights=wv.astype(float),
        offset=ov.astype(float),
        cluster=cl,
        groups=tuple(groups),
        rows=frame.index,
        dropped=dropped,
        n_dropped=int(bad.sum()),
        model_spec=model_spec,
    )


def formulaic_vector(expr: str, frame: pd.DataFrame) -> np.ndarray:
    """The values of one formulaic expression (an offset) as a vector."""
    from lmmkit.design.model import model_matrix

    return np.asarray(model_matrix(f"0 + {{{expr}}}", frame), dtype=float)[:, 0]


def new_data_matrix(design_spec: Any, columns: tuple[str, ...], data: pd.DataFrame) -> np.ndarray:
    """X for new data from the fit's formulaic spec (same columns, same coding)."""
    if not columns:
        return np.zeros((len(data), 0))
    try:
        mm = design_spec.get_model_matrix(data, na_action="ignore")
    except Exception as exc:
        raise DataError(f"Cannot build the covariates for the new data: {exc}") from exc
    keep = [c for c in mm.columns if c != "Intercept"]
    return np.ascontiguousarray(mm[keep].to_numpy(dtype=float))

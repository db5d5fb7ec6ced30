"""Design stage: data + parsed formula -> fixed-effects matrix and random-effects terms.

Every input check lives here, is named, and fails with a message that says what, where and
what to do. Dropped rows and dropped fixed-effect columns are recorded, never silent.
"""

from __future__ import annotations

import functools
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from lmmkit.errors import DataError, FormulaError, LmmkitWarning, ModelError, close_matches
from lmmkit.formula.parse import ParsedFormula, RandomTermSpec, pointer
from lmmkit.linalg.covstruct import CovStructure

__all__ = ["ReTerm", "Design", "build_design", "lme4_name", "group_codes"]

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


class RankDeficiencyWarning(LmmkitWarning):
    """Fixed-effect columns were dropped because X is rank deficient."""


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


@functools.lru_cache(maxsize=256)
def _required_variables(expr: str) -> frozenset[str]:
    try:
        return frozenset(str(v) for v in parsed_formula(expr).required_variables)
    except Exception:
        return frozenset()


def _check_columns(parsed: ParsedFormula, data: pd.DataFrame) -> set[str]:
    used: set[str] = set()
    exprs = [parsed.fixed, *[t.expr for t in parsed.random], *parsed.offsets]
    names = set().union(*[_required_variables(e) for e in exprs])
    names |= {g for t in parsed.random for g in t.group}
    names |= _required_variables(parsed.response) or {parsed.response}
    for name in sorted(names):
        if name in data.columns:
            used.add(name)
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


def _missing(data: pd.DataFrame, columns: list[str], fetched: dict[str, pd.Series]) -> np.ndarray:
    """(rows x columns) missingness of the used columns, column by column (a sub-frame costs
    more than the whole check); integer and boolean columns cannot hold a missing value.
    The columns read are left in ``fetched`` for the later stages."""
    if not data.columns.is_unique:
        return data[columns].isna().to_numpy()
    out = np.zeros((len(data), len(columns)), dtype=bool)
    for j, c in enumerate(columns):
        col = fetched[c] = data[c]
        if isinstance(col.dtype, np.dtype) and col.dtype.kind in "iub":
            continue
        if isinstance(col.dtype, np.dtype) and col.dtype.kind == "f":
            out[:, j] = np.isnan(col.to_numpy())
        else:
            out[:, j] = pd.isna(col.array)
    return out


def _clearly_independent(X: np.ndarray, tol: float) -> bool:
    """Whether every column is far (100 x tol) from the span of the others, so that the rule
    of :func:`_independent_columns` keeps them all: the Cholesky factor of the Gram matrix of
    the unit-scaled columns has diagonal R_jj = |residual of column j| / |column j|, accurate
    to ~p eps, which the margin covers. False only means "check column by column"."""
    norms = np.sqrt(np.einsum("ij,ij->j", X, X))
    if not (norms.min() > 0 and np.isfinite(norms.max())):
        return False
    Xs = X / norms
    try:
        L = np.linalg.cholesky(Xs.T @ Xs)
    except np.linalg.LinAlgError:
        return False
    d = L.diagonal()
    return bool((d * d).min() > (100.0 * tol) ** 2)


def _independent_columns(X: np.ndarray, tol: float = 1e-7) -> list[int]:
    """Columns kept in order, dropping each one that is (numerically) a combination of
    earlier kept columns; the rule of R's qr() with LINPACK's limited pivoting."""
    if X.shape[1] == 0 or _clearly_independent(X, tol):
        return list(range(X.shape[1]))
    return independent_by_loop(X, tol)


def independent_by_loop(X: np.ndarray, tol: float = 1e-7) -> list[int]:
    """The column-by-column rule (Gram-Schmidt twice per column) without the fast path."""
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
    missing = _missing(data, sorted(used), fetched)
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
        raise DataError("No rows are left after dropping rows with missing values.")
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

    terms = _build_terms(
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


def fixed_effects_matrix(
    parsed: ParsedFormula,
    data: pd.DataFrame,
    rows_used: np.ndarray | None = None,
    mm: Any = None,
) -> tuple[np.ndarray, list[str], tuple[str, ...], Any]:
    """X for the fixed part (formulaic; ``mm``: its model matrix when already built), with
    numerically dependent columns dropped and named in a warning (R's qr rule). Returns X,
    column names, dropped names, the model matrix. A non-finite entry is a DataError
    (``rows_used``: data positions of ``data``'s rows, for the message)."""
    if mm is None:
        try:
            mm = model_matrix(parsed.fixed, data, output="numpy", na_action="ignore")
        except Exception as exc:
            raise FormulaError(
                f"Cannot build the fixed-effects part {parsed.fixed!r}: {exc}"
            ) from exc
    # column-major, as a pandas frame's values are: the layout steers BLAS rounding, and fits
    # (glmm's especially) are kept bit for bit
    X = np.asfortranarray(mm, dtype=float)
    names = [lme4_name(c) for c in mm.model_spec.column_names]
    _check_finite(X, names, "Fixed-effects", rows_used)
    keep = _independent_columns(X)
    dropped = tuple(n for j, n in enumerate(names) if j not in keep)
    if dropped:
        warnings.warn(
            f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} "
            f"column(s): {', '.join(dropped)}. They are linear combinations of the other "
            "columns; remove them from the formula to silence this.",
            RankDeficiencyWarning,
            stacklevel=4,
        )
        X = X[:, keep]
        names = [names[j] for j in keep]
    return X, names, dropped, mm


def _build_terms(
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


def _plain(v: Any) -> Any:
    """A NumPy scalar as the Python value (for messages)."""
    return v.item() if isinstance(v, np.generic) else v


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

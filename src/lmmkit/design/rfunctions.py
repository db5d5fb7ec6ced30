"""R's formula functions, evaluated by formulaic.

Where formulaic has the function under R's name with R's meaning (``log``, ``exp``,
``scale``, ``poly`` orthogonal, ``I``, ``C``) it is used as is. Here are the ones it has
under another name or not at all, each giving the numbers of R's ``model.matrix`` (the tests
compare them with frozen R output, ``tests/reference/crosscheck/model_matrix.json``):

* ``factor(x)``, ``as.factor(x)``: formulaic's ``C(x)`` (treatment contrasts, levels sorted
  as R sorts them);
* ``relevel(x, ref)``: treatment contrasts with ``ref`` as the reference level;
* ``ordered(x)``: orthogonal polynomial contrasts (R's ``contr.poly``);
* ``poly(x, k, raw = TRUE)``: formulaic's ``poly`` with R's column names (1..k);
* ``ns(x, df, knots, intercept, Boundary.knots)``: R's natural cubic spline basis
  (``splines::ns``), which formulaic lacks: B-splines of order 4 (SciPy's ``BSpline``) with
  the second derivative zero at the boundary knots, linear beyond them, knots kept for new
  data;
* ``bs(x, df, knots, degree, intercept, Boundary.knots)``: formulaic's basis spline with R's
  argument names;
* ``as.numeric(x)``, ``log1p``, ``expm1``, ``TRUE``/``FALSE``, ``c(...)``, ``pi``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from formulaic.materializers.types import FactorValues
from formulaic.transforms import C
from formulaic.transforms.basis_spline import basis_spline
from formulaic.transforms.contrasts import PolyContrasts, TreatmentContrasts
from formulaic.transforms.poly import poly as _formulaic_poly
from formulaic.utils.stateful_transforms import stateful_transform

from lmmkit.errors import DataError, FormulaError

__all__ = ["R_FUNCTIONS"]


def _values(x: Any) -> Any:
    """The data behind formulaic's wrapper (``factor(factor(x))``, ``relevel(factor(x))``)."""
    return x.__wrapped__ if isinstance(x, FactorValues) else x


def factor(x: Any, levels: Any = None) -> FactorValues:
    """R's ``factor()``: a categorical with treatment contrasts."""
    return C(_values(x), levels=list(levels) if levels is not None else None)


def ordered(x: Any, levels: Any = None) -> FactorValues:
    """R's ``ordered()``: a categorical with orthogonal polynomial contrasts (contr.poly)."""
    return C(_values(x), PolyContrasts(), levels=list(levels) if levels is not None else None)


def relevel(x: Any, ref: Any) -> FactorValues:
    """R's ``relevel(x, ref)``: treatment contrasts with ``ref`` as the reference level."""
    values = _values(x)
    present = pd.unique(pd.Series(np.asarray(values, dtype=object)).dropna())
    if ref not in set(present):
        as_text = {str(v): v for v in present}
        if str(ref) not in as_text:
            shown = ", ".join(repr(v) for v in sorted(present, key=str)[:20])
            raise FormulaError(
                f"relevel(): the reference level {ref!r} is not a level of the factor "
                f"(levels: {shown}). Give one of these as ref."
            )
        ref = as_text[str(ref)]
    return C(values, TreatmentContrasts(base=ref))


def as_numeric(x: Any) -> np.ndarray:
    """R's ``as.numeric()``: numbers as floats, a factor as its level codes 1, 2, ..."""
    values = _values(x)
    if isinstance(getattr(values, "dtype", None), pd.CategoricalDtype):
        codes = np.asarray(values.cat.codes, dtype=float) + 1.0
        codes[codes == 0.0] = np.nan
        return codes
    try:
        return np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise FormulaError(
            f"as.numeric(): the values are not numbers ({exc}); convert the column first."
        ) from exc


def as_logical(x: Any) -> np.ndarray:
    """R's ``as.logical()`` on numbers or booleans: 0/1 as a numeric column."""
    return np.asarray(_values(x), dtype=bool).astype(float)


@stateful_transform
def poly(x: Any, degree: int = 1, raw: bool = False, _state: dict | None = None) -> Any:
    """R's ``poly(x, degree, raw)``: orthogonal polynomials (formulaic's, kept for new data),
    or the raw powers x, x^2, ... named 1..degree as R names them."""
    v = np.asarray(_values(x), dtype=float)
    if raw:
        cols = np.stack([np.power(v, k) for k in range(1, int(degree) + 1)], axis=1)
        return FactorValues(cols, column_names=tuple(str(k) for k in range(1, int(degree) + 1)))
    if not (_state or {}).get("alpha"):  # fitting: R's rule for orthogonal polynomials
        distinct = len(np.unique(v[np.isfinite(v)]))
        if distinct <= int(degree):
            raise FormulaError(
                f"poly(): degree {degree} needs more than {degree} distinct values; the rows "
                f"used have {distinct}. Lower the degree or check the data."
            )
    return _formulaic_poly.__wrapped__(x, degree=degree, raw=False, _state=_state)


@stateful_transform
def bs(
    x: Any,
    df: int | None = None,
    knots: Any = None,
    degree: int = 3,
    intercept: bool = False,
    Boundary_knots: Any = None,  # noqa: N803 (R's argument name)
    _state: dict | None = None,
) -> Any:
    """R's ``splines::bs``: formulaic's basis spline with R's argument names."""
    lo, hi = (None, None) if Boundary_knots is None else sorted(map(float, Boundary_knots))
    return basis_spline.__wrapped__(
        x,
        df=df,
        knots=None if knots is None else list(knots),
        degree=degree,
        include_intercept=intercept,
        lower_bound=lo,
        upper_bound=hi,
        extrapolation="extend",
        _state=_state,
    )


def _bspline_basis(t: np.ndarray, x: np.ndarray, nu: int = 0) -> np.ndarray:
    """Cubic B-spline basis (order 4) on knot vector ``t`` at ``x`` (derivative ``nu``): R's
    ``splineDesign(t, x, 4, derivs = nu)``, the right boundary included."""
    from scipy.interpolate import BSpline

    nb = len(t) - 4
    return BSpline(t, np.eye(nb), 3, extrapolate=True)(x, nu=nu)


@stateful_transform
def ns(
    x: Any,
    df: int | None = None,
    knots: Any = None,
    intercept: bool = False,
    Boundary_knots: Any = None,  # noqa: N803 (R's argument name)
    _state: dict | None = None,
) -> Any:
    """R's ``splines::ns``: natural cubic spline basis (linear beyond the boundary knots).

    Interior knots at quantiles of ``x`` (R's type 7) when ``df`` is given; the knots found on
    the fitted data are kept for new data, as R's ``makepredictcall`` does."""
    state = _state if _state is not None else {}
    v = np.asarray(_values(x), dtype=float)
    ok = np.isfinite(v)
    if "knots" not in state:
        if not ok.any():
            raise DataError("ns(): no finite values to place the spline's knots.")
        if Boundary_knots is None:
            bk = [float(v[ok].min()), float(v[ok].max())]
        else:
            bk = sorted(float(b) for b in Boundary_knots)
        if knots is None:
            n_inner = 0 if df is None else int(df) - 1 - int(bool(intercept))
            if n_inner < 0:
                raise FormulaError(
                    f"ns(): df = {df} is too small (at least {1 + int(bool(intercept))})."
                )
            inside = v[ok & (v >= bk[0]) & (v <= bk[1])]
            probs = np.linspace(0.0, 1.0, n_inner + 2)[1:-1]
            inner = [float(q) for q in np.quantile(inside, probs)] if n_inner else []
        else:
            inner = sorted(float(k) for k in np.atleast_1d(knots))
        state.update(knots=inner, boundary=bk)
    inner, bk = state["knots"], state["boundary"]
    t = np.array([bk[0]] * 4 + list(inner) + [bk[1]] * 4)
    basis = np.full((len(v), len(t) - 4), np.nan)
    lo, hi = ok & (v < bk[0]), ok & (v > bk[1])
    mid = ok & ~lo & ~hi
    if mid.any():
        basis[mid] = _bspline_basis(t, v[mid])
    for side, pivot in ((lo, bk[0]), (hi, bk[1])):  # linear beyond the boundary (R's rule)
        if side.any():
            at = np.array([pivot])
            basis[side] = _bspline_basis(t, at)[0] + np.outer(
                v[side] - pivot, _bspline_basis(t, at, nu=1)[0]
            )
    const = _bspline_basis(t, np.array(bk, dtype=float), nu=2)
    if not intercept:
        basis, const = basis[:, 1:], const[:, 1:]
    q, _ = np.linalg.qr(const.T, mode="complete")
    out = basis @ q[:, 2:]
    return FactorValues(out, column_names=tuple(str(k) for k in range(1, out.shape[1] + 1)))


def c(*values: Any) -> list[Any]:
    """R's ``c(...)``: the values as a list (for ``levels = c("a", "b")``, ``knots = c(...)``)."""
    out: list[Any] = []
    for v in values:
        out.extend(v if isinstance(v, list | tuple | np.ndarray) else [v])
    return out


# name -> value in formulaic's evaluation context (besides formulaic's own transforms)
R_FUNCTIONS: dict[str, Any] = {
    "factor": factor,
    "as_factor": factor,
    "ordered": ordered,
    "relevel": relevel,
    "as_numeric": as_numeric,
    "as_integer": as_numeric,
    "as_logical": as_logical,
    "poly": poly,
    "bs": bs,
    "ns": ns,
    "c": c,
    "TRUE": True,
    "FALSE": False,
    "pi": np.pi,
    "log1p": np.log1p,
    "expm1": np.expm1,
}

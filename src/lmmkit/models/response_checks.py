"""Degenerate responses: the checks that tell a fit from a response with no estimate.

A linear mixed model's likelihood is unbounded as the residual SD sigma -> 0 when the
response is reproduced exactly by the fixed effects and one random-effects term (e.g. it is
constant within every level of the grouping factor): no (RE)ML estimate exists, and an
optimizer stops wherever its arithmetic gives out (lme4, lmmkit and lmmkit's batch path each
at another point). The checks, by name:

* ``constant_response``: every value equal (no estimate: an error);
* ``response_scale``: the largest absolute value outside [1e-100, 1e100], where its sums of
  squares under- or overflow in double precision (an error; rescale the response);
* ``perfect_fit``: the response lies in the span of the fixed-effects columns and one
  term's columns within its levels, e.g. constant within every level of ``g`` (an error);
* ``sigma_lower_bound``: sigma below 1e-4 of the response's SD without an exact fit (a
  warning and a named check on the result: the fit is nearly perfect).

The first two cost one pass over the response when it is set; the exact check runs only
when sigma comes out below the bound, so ordinary fits pay nothing more.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from lmmkit.errors import DataError, LmmkitWarning, ModelError
from lmmkit.results.common import FitCheck

__all__ = [
    "SCALE_RANGE",
    "SIGMA_RATIO",
    "DegenerateFitWarning",
    "response_problem",
    "check_response",
    "sigma_checks",
    "perfect_fit",
]

SCALE_RANGE = (1e-100, 1e100)  # largest |response| allowed
SIGMA_RATIO = 1e-4  # sigma below this fraction of the response SD: a (nearly) perfect fit


class DegenerateFitWarning(LmmkitWarning):
    """sigma is at its lower boundary: the response is (nearly) fitted exactly."""


def response_problem(z: np.ndarray, name: str) -> tuple[str, str] | None:
    """(check name, message) when the response ``z`` (offset removed) is constant or its
    scale is out of range; None otherwise."""
    return _range_and_problem(z, name)[1]


def check_response(z: np.ndarray, name: str) -> float:
    """Raise a DataError for a constant or out-of-range response; return its range (max -
    min: one pass, cheaper than its SD)."""
    spread, problem = _range_and_problem(z, name)
    if problem is not None:
        raise DataError(problem[1])
    return spread


def _range_and_problem(z: np.ndarray, name: str) -> tuple[float, tuple[str, str] | None]:
    if z.size == 0:
        return 0.0, None
    lo, hi = float(z.min()), float(z.max())
    if lo == hi:
        return 0.0, (
            "constant_response",
            f"The response {name!r} is constant (every value is {lo!r}): there is no variation "
            "to attribute to fixed or random effects, and the likelihood is unbounded as the "
            "residual SD goes to 0, so no estimate exists (lme4 reports a singular fit with "
            "residual SD 0). Check the column, or drop the response.",
        )
    scale = max(abs(lo), abs(hi))
    if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
        return hi - lo, (
            "response_scale",
            f"The response {name!r} has values of magnitude {scale:.3g} (largest |value|), "
            f"outside [{SCALE_RANGE[0]:g}, {SCALE_RANGE[1]:g}] where its sums of squares are "
            "representable in double precision. Rescale it (e.g. multiply by a power of 10); "
            "the fixed effects and SDs scale with it, the likelihood shifts by n log(factor).",
        )
    return hi - lo, None


def sigma_checks(
    sigma: float,
    response_range: float,
    z: np.ndarray,
    X: np.ndarray,
    terms: Sequence[Any],
    name: str,
    *,
    working: np.ndarray | None = None,
    raise_errors: bool = True,
    stacklevel: int = 4,
) -> tuple[FitCheck, ...]:
    """The checks of a fit whose residual SD is ``sigma``: ``response_range`` is the range of
    the working response ``working`` (weights applied; default ``z``), ``z`` the response
    less any offset, ``X`` and ``terms`` the model's columns.

    Nothing to do (an empty tuple; the range bounds the SD) unless sigma is below
    ``SIGMA_RATIO`` of the response's SD; then an exact fit (:func:`perfect_fit`) is a
    ModelError (``raise_errors``) or an "error" check, and a near-exact one a
    DegenerateFitWarning and a "warning" check."""
    if math.isfinite(sigma) and sigma >= SIGMA_RATIO * response_range:
        return ()
    response_sd = float(np.std(z if working is None else working))
    if math.isfinite(sigma) and sigma >= SIGMA_RATIO * response_sd:
        return ()
    how = perfect_fit(z, X, terms)
    if how is not None:
        msg = (
            f"The response {name!r} is {how}: the residual SD goes to 0 and the likelihood is "
            f"unbounded, so no maximum-likelihood or REML estimate exists (the optimizer stopped "
            f"at sigma = {sigma:.3g}). Check the response (a copy of a grouping or fixed-effect "
            "variable?), or drop the term that reproduces it."
        )
        if raise_errors:
            raise ModelError(msg)
        return (FitCheck("perfect_fit", "error", sigma, msg),)
    ratio = sigma / response_sd if response_sd > 0 else math.nan
    msg = (
        f"sigma_lower_bound: the residual SD {sigma:.3g} is {ratio:.2g} of the response's SD: "
        "the fit is nearly exact and the likelihood nearly unbounded as sigma -> 0; estimates "
        "of the variance components may be arbitrary. Check whether the response is (up to "
        "rounding) constant within groups or a function of the predictors."
    )
    warnings.warn(msg, DegenerateFitWarning, stacklevel=stacklevel)
    return (FitCheck("sigma_lower_bound", "warning", sigma, msg),)


def perfect_fit(z: np.ndarray, X: np.ndarray, terms: Sequence[Any]) -> str | None:
    """How the response ``z`` is reproduced exactly, or None: by the fixed-effects columns
    ``X`` alone, or by ``X`` and one random-effects term's columns within each of its levels
    (``terms``: objects with ``index``, ``Zx``, ``nlevels``, ``name``). Relative tolerance
    1e-8 on the residual norm."""
    zc = z - z.mean()
    tol = 1e-8 * float(np.linalg.norm(zc))
    if tol == 0.0:
        return "constant"
    if _residual_norm(X, z) <= tol:
        return "an exact linear function of the fixed-effects columns"
    for t in terms:
        zr = _within_levels(z, t.index, t.Zx, t.nlevels)
        Xr = np.empty_like(X, dtype=float)
        for j in range(X.shape[1]):
            Xr[:, j] = _within_levels(X[:, j], t.index, t.Zx, t.nlevels)
        if _residual_norm(Xr, zr) <= tol:
            if t.Zx.shape[1] == 1 and np.all(t.Zx == 1.0):
                return f"constant within every level of {t.name!r} (up to the fixed effects)"
            return (
                f"fitted exactly within every level of {t.name!r} by the term's columns "
                "and the fixed effects"
            )
    if len(terms) > 1 and _joint_residual_norm(z, X, terms) <= tol:
        names = ", ".join(repr(t.name) for t in terms)
        return f"fitted exactly by the fixed effects and the terms {names} together"
    return None


def _joint_residual_norm(z: np.ndarray, X: np.ndarray, terms: Sequence[Any]) -> float:
    """Residual norm of ``z`` on the fixed-effects and all random-effects columns (no
    penalty): dense least squares when small, sparse LSQR otherwise."""
    from scipy import sparse
    from scipy.sparse.linalg import lsqr

    n = len(z)
    blocks = [sparse.csr_matrix(X)]
    for t in terms:
        cols = np.asarray(t.index)[:, None] * t.Zx.shape[1] + np.arange(t.Zx.shape[1])
        blocks.append(
            sparse.csr_matrix(
                (
                    np.asarray(t.Zx, dtype=float).ravel(),
                    (np.repeat(np.arange(n), t.Zx.shape[1]), cols.ravel()),
                ),
                shape=(n, t.nlevels * t.Zx.shape[1]),
            )
        )
    A = sparse.hstack(blocks, format="csr")
    if A.shape[1] <= 2000 and n * A.shape[1] <= 20_000_000:
        return _residual_norm(A.toarray(), z)
    sol = lsqr(A, z, atol=1e-15, btol=1e-15, iter_lim=20 * A.shape[1])
    return float(sol[3])


def _residual_norm(A: np.ndarray, b: np.ndarray) -> float:
    if A.shape[1] == 0:
        return float(np.linalg.norm(b))
    coef, *_ = np.linalg.lstsq(A, b, rcond=None)
    return float(np.linalg.norm(b - A @ coef))


def _within_levels(v: np.ndarray, index: np.ndarray, Zx: np.ndarray, nlevels: int) -> np.ndarray:
    """``v`` minus its least-squares fit on the term's columns within each level."""
    if Zx.shape[1] == 1 and np.all(Zx == 1.0):  # an intercept: subtract the level means
        sums = np.bincount(index, weights=v, minlength=nlevels)
        counts = np.bincount(index, minlength=nlevels)
        return v - (sums / np.maximum(counts, 1))[index]
    out = v.astype(float).copy()
    order = np.argsort(index, kind="stable")
    bounds = np.flatnonzero(np.diff(index[order])) + 1
    for rows in np.split(order, bounds):
        Z = Zx[rows]
        coef, *_ = np.linalg.lstsq(Z, v[rows], rcond=None)
        out[rows] = v[rows] - Z @ coef
    return out

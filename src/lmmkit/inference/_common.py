"""Shared pieces of the inference modules: model/result handling, the (RE)ML deviance as a
function of the variance parameters, and Richardson-extrapolated finite differences.

The finite-difference routines follow R's numDeriv (``jacobian(method="Richardson")`` and
``genD``/``hessian``) step for step -- same initial steps, same four halvings and the same
Richardson table -- so that quantities derived from them (lmerTest's Satterthwaite df) agree
with R to many digits rather than only to the derivative's truncation error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import ModelError
from lmmkit.linalg.blocked import factor
from lmmkit.linalg.solve import fixed_effects
from lmmkit.results.source import model_for

__all__ = [
    "is_lmm_result",
    "is_model",
    "resolve",
    "varpar_deviance",
    "covbeta_at",
    "richardson_jacobian",
    "richardson_hessian",
]

_ZERO_TOL = math.sqrt(np.finfo(float).eps / 7e-7)  # numDeriv's zero.tol


def is_model(obj: Any) -> bool:
    """A linear mixed model bound to its data (a LinearMixedModel), told by what the tests use:
    its cross-products, design and layout. (Duck-typed so that the result types, which call
    the tests, and the tests do not import each other.)"""
    return all(hasattr(obj, a) for a in ("cp", "design", "layout", "fit", "set_response"))


def is_lmm_result(obj: Any) -> bool:
    """A fitted LMMResult (or subclass): variance parameters, fixed effects, random terms."""
    return all(hasattr(obj, a) for a in ("theta", "fixed_spec", "terms", "reml", "optimization"))


def resolve(model: Any, result: Any = None, *, reml: bool | None = None) -> tuple[Any, Any]:
    """(model, result) for a test that needs the model.

    ``model`` is a LinearMixedModel (fitted here when ``result`` is None) or an LMMResult from
    :func:`~lmmkit.lmm` / ``fit()``, whose model is rebuilt from the data it references
    (:mod:`lmmkit.results.source`). With ``reml`` given, a fit by the other criterion is
    refitted.
    """
    if is_lmm_result(model) and not is_model(model):
        if result is not None:
            raise ModelError(
                "Pass either a result alone, or a model and its result; got two results."
            )
        result = model
        model = model_for(result, "This test")
    elif not is_model(model):
        raise ModelError(
            f"Expected a LinearMixedModel or the LMMResult of lmmkit.lmm(); got "
            f"{type(model).__name__}."
        )
    if result is None:
        result = model.fit(reml=True if reml is None else reml)
    elif not is_lmm_result(result):
        raise ModelError(f"result must be an LMMResult; got {type(result).__name__}.")
    elif reml is not None and result.reml != reml:
        result = model.fit(reml=reml)
    if result.nobs != model.n or len(result.theta) != len(model.layout.theta0):
        raise ModelError(
            f"The result ({result.nobs} observations, {len(result.theta)} theta) does not belong "
            f"to this model ({model.n} observations, {len(model.layout.theta0)} theta)."
        )
    return model, result


def varpar_deviance(model: Any, varpar: np.ndarray, reml: bool) -> float:
    """-2 (RE)ML log-likelihood at varpar = (theta, sigma), beta profiled out.

    lmerTest's ``devfun_vp``: log|L|^2 + r^2(theta)/sigma^2 + n log(2 pi sigma^2), plus
    log|R_X|^2 - p log(2 pi sigma^2) for REML (the sum of log weights is left out, a
    constant).
    """
    theta, sigma = np.asarray(varpar[:-1], float), float(varpar[-1])
    f = factor(model.cp, theta)
    if not f.ok:
        return math.inf
    s2 = sigma * sigma
    dev = f.logdet_L + f.pwrss / s2 + model.n * math.log(2.0 * math.pi * s2)
    if reml:
        dev += f.logdet_RX - model.p * math.log(2.0 * math.pi * s2)
    return dev


def covbeta_at(model: Any, varpar: np.ndarray) -> np.ndarray:
    """vcov(beta) = sigma^2 (R_X'R_X)^-1 at varpar = (theta, sigma) (lmerTest's get_covbeta)."""
    f = factor(model.cp, np.asarray(varpar[:-1], float), full=True)
    _, unscaled = fixed_effects(model.cp, f)
    return float(varpar[-1]) ** 2 * unscaled


def _steps(x: np.ndarray, d: float, eps: float) -> np.ndarray:
    return np.abs(d * x) + eps * (np.abs(x) < _ZERO_TOL)


def _richardson(a: list[np.ndarray], r: int) -> np.ndarray:
    """Collapse the r successive estimates (step h, h/2, ...) by Richardson extrapolation."""
    a = list(a)
    for m in range(1, r):
        a = [(a[k + 1] * 4.0**m - a[k]) / (4.0**m - 1.0) for k in range(r - m)]
    return a[0]


def richardson_jacobian(
    f: Callable[[np.ndarray], Any],
    x: np.ndarray,
    *,
    d: float = 1e-4,
    eps: float = 1e-4,
    r: int = 4,
    v: float = 2.0,
) -> np.ndarray:
    """Jacobian of an array-valued f at x: shape f(x).shape + (len(x),) (numDeriv::jacobian)."""
    x = np.asarray(x, float)
    h0 = _steps(x, d, eps)
    cols = []
    for i in range(len(x)):
        ests, h = [], h0.copy()
        for _ in range(r):
            e = np.zeros_like(x)
            e[i] = h[i]
            ests.append((np.asarray(f(x + e), float) - np.asarray(f(x - e), float)) / (2 * h[i]))
            h = h / v
        cols.append(_richardson(ests, r))
    return np.stack(cols, axis=-1)


def richardson_hessian(
    f: Callable[[np.ndarray], float],
    x: np.ndarray,
    *,
    d: float = 0.1,
    eps: float = 1e-4,
    r: int = 4,
    v: float = 2.0,
) -> np.ndarray:
    """Hessian of a scalar f at x by numDeriv's ``genD`` (central differences, Richardson)."""
    x = np.asarray(x, float)
    n = len(x)
    f0 = float(f(x))
    h0 = _steps(x, d, eps)
    hdiag = np.empty(n)
    for i in range(n):
        ests, h = [], h0.copy()
        for _ in range(r):
            e = np.zeros(n)
            e[i] = h[i]
            ests.append((float(f(x + e)) - 2 * f0 + float(f(x - e))) / h[i] ** 2)
            h = h / v
        hdiag[i] = _richardson(ests, r)
    H = np.diag(hdiag)
    for i in range(n):
        for j in range(i):
            ests, h = [], h0.copy()
            for _ in range(r):
                e = np.zeros(n)
                e[i], e[j] = h[i], h[j]
                num = float(f(x + e)) - 2 * f0 + float(f(x - e))
                num -= hdiag[i] * h[i] ** 2 + hdiag[j] * h[j] ** 2
                ests.append(num / (2 * h[i] * h[j]))
                h = h / v
            H[i, j] = H[j, i] = _richardson(ests, r)
    return H


def t_table(
    beta: np.ndarray, vcov: np.ndarray, df_of: Callable[[np.ndarray], float], names: Any
) -> pd.DataFrame:
    """Estimate, SE, df, t and two-sided p per coefficient, ``df_of(contrast)`` giving the
    denominator degrees of freedom (Satterthwaite or Kenward-Roger)."""
    from scipy import stats

    p = len(beta)
    se = np.sqrt(np.diag(vcov))
    df = np.array([df_of(np.eye(p)[j]) for j in range(p)])
    t = beta / se
    return pd.DataFrame(
        {
            "Estimate": beta,
            "Std. Error": se,
            "df": df,
            "t value": t,
            "Pr(>|t|)": 2.0 * stats.t.sf(np.abs(t), df),
        },
        index=pd.Index(names),
    )

"""Negative binomial GLMMs with the size parameter estimated, as lme4's ``glmer.nb``.

1. fit the Poisson GLMM;
2. start theta at MASS's ``theta.ml`` on the conditional fitted means;
3. minimize -2 log-likelihood of the negative binomial GLMM (each a full glmer-style fit at
   fixed theta) over log(theta) in log(theta0) +- 3 with Brent's method (glmer.nb's
   ``optTheta``, tolerance 5e-5 on log theta), and refit at the optimum.

The result counts theta among the parameters (AIC/BIC), as ``logLik(glmer.nb(...))`` does.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import optimize, special

from lmmkit.errors import ModelError
from lmmkit.glmm.family import negative_binomial
from lmmkit.glmm.model import GeneralizedLinearMixedModel
from lmmkit.glmm.result import GLMMResult
from lmmkit.optim.bobyqa import OptControl

__all__ = ["glmm_nb", "theta_ml"]


def theta_ml(
    y: np.ndarray, mu: np.ndarray, weights: np.ndarray | None = None, limit: int = 10
) -> float:
    """MASS::theta.ml: Newton iterations for the negative binomial size at fixed means."""
    w = np.ones_like(y) if weights is None else weights
    n = w.sum()
    t0 = n / np.sum(w * (y / mu - 1.0) ** 2)
    eps = np.finfo(float).eps ** 0.25
    delta, it = 1.0, 0
    while it < limit and abs(delta) > eps:
        it += 1
        t0 = abs(t0)
        score = np.sum(
            w
            * (
                special.digamma(t0 + y)
                - special.digamma(t0)
                + np.log(t0)
                + 1.0
                - np.log(t0 + mu)
                - (y + t0) / (mu + t0)
            )
        )
        info = np.sum(
            w
            * (
                -special.polygamma(1, t0 + y)
                + special.polygamma(1, t0)
                - 1.0 / t0
                + 2.0 / (mu + t0)
                - (y + t0) / (mu + t0) ** 2
            )
        )
        delta = score / info
        t0 = t0 + delta
    if not np.isfinite(t0) or t0 <= 0:
        raise ModelError(
            "the negative binomial size could not be estimated (theta.ml gave "
            f"{t0!r}); the counts show no overdispersion: use family='poisson'."
        )
    return float(t0)


def _set_theta(model: GeneralizedLinearMixedModel, theta: float) -> None:
    model.set_family(negative_binomial(theta))


def glmm_nb(
    formula: str,
    data: pd.DataFrame,
    *,
    offset: Any = None,
    weights: Any = None,
    nagq: int = 1,
    control: OptControl | dict[str, Any] | None = None,
    tol: float = 5e-5,
    na_action: Literal["drop", "raise"] = "drop",
    kernels: dict[str, Any] | None = None,
) -> GLMMResult:
    """Negative binomial GLMM (log link) with its size theta estimated, as ``glmer.nb``.

    The returned result has ``family == 'negbin'`` and ``nb_theta`` (R's
    ``getME(fit, 'glmer.nb.theta')``). ``kernels``: a known-covariance term, as in
    :func:`lmmkit.glmm`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Poisson start repeats the data warnings
        model = GeneralizedLinearMixedModel(
            formula,
            data,
            family="poisson",
            offset=offset,
            weights=weights,
            na_action=na_action,
            kernels=kernels,
        )
        start = model.fit(nagq=nagq, control=control)
    prior = model.design.weights
    th0 = theta_ml(model.y, start.fitted, prior)
    fits: dict[float, GLMMResult] = {}

    def objective(log_theta: float) -> float:
        th = math.exp(log_theta)
        _set_theta(model, th)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = model.fit(nagq=nagq, control=control)
        fits[log_theta] = res
        return -2.0 * res.loglik

    lo, hi = math.log(th0) - 3.0, math.log(th0) + 3.0
    opt = optimize.minimize_scalar(
        objective, bounds=(lo, hi), method="bounded", options={"xatol": tol}
    )
    best = float(opt.x)
    _set_theta(model, math.exp(best))
    res = fits.get(best) or model.fit(nagq=nagq, control=control)
    notes = list(res.warnings) + list(model.notes)
    if min(abs(best - lo), abs(best - hi)) < 10 * tol:
        msg = (
            f"the negative binomial theta ({math.exp(best):.4g}) is at the edge of its search "
            "interval; the profile likelihood may be flat (near-Poisson data for a large theta)"
        )
        warnings.warn(msg + ".", RuntimeWarning, stacklevel=2)
        notes.append(msg)
    return replace(res, warnings=tuple(dict.fromkeys(notes)))

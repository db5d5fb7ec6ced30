"""Nakagawa's R^2 and the intraclass correlation of a linear mixed model.

Nakagawa & Schielzeth (2013, Methods Ecol Evol 4:133) with Johnson's (2014, Methods Ecol
Evol 5:944) extension to random slopes, as computed by R's performance::r2_nakagawa and
performance::icc for Gaussian LMMs:

* var_fixed = var(X beta) (n - 1 denominator);
* var_random = sum over random terms of mean_i z_i' Sigma_term z_i, z_i the term's model
  columns for observation i (for a random intercept this is its variance);
* var_residual = sigma^2.

R2 marginal = var_fixed / total, R2 conditional = (var_fixed + var_random) / total,
adjusted ICC = var_random / (var_random + var_residual), unadjusted ICC = var_random / total,
total = var_fixed + var_random + var_residual.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lmmkit.errors import ModelError
from lmmkit.inference._common import resolve
from lmmkit.linalg.blocked import term_factors

__all__ = ["VarianceComponents", "variance_components", "r2_nakagawa", "icc", "icc_model"]


@dataclass(frozen=True)
class VarianceComponents:
    var_fixed: float
    var_random: float
    var_residual: float

    @property
    def total(self) -> float:
        return self.var_fixed + self.var_random + self.var_residual


def variance_components(model: Any, result: Any = None) -> VarianceComponents:
    """The three variance components of Nakagawa's R^2 (REML fit unless ``result`` given)."""
    model, result = resolve(model, result)
    if model.design.weights is not None:
        raise ModelError("Nakagawa's R2 is not defined here for models with prior weights.")
    X = model.design.X
    eta = X @ result.fixef.to_numpy()
    var_fixed = float(np.var(eta, ddof=1))
    var_random = 0.0
    for term, T in zip(model.design.terms, term_factors(result.theta, model.design.terms)):
        S = result.sigma**2 * T @ T.T
        var_random += float(np.mean(np.einsum("ia,ab,ib->i", term.Zx, S, term.Zx)))
    return VarianceComponents(var_fixed, var_random, result.sigma**2)


def r2_nakagawa(model: Any, result: Any = None) -> dict[str, float]:
    """Marginal and conditional R^2 (performance::r2_nakagawa for an LMM)."""
    vc = variance_components(model, result)
    return {
        "R2_marginal": vc.var_fixed / vc.total,
        "R2_conditional": (vc.var_fixed + vc.var_random) / vc.total,
    }


def icc_model(model: Any, result: Any = None) -> dict[str, float]:
    """Intraclass correlation of a fitted linear mixed model (R ``performance::icc``).

    Not the rater-agreement ICC of a ratings table: that is :func:`lmmkit.icc`.

    Parameters
    ----------
    model
        A :class:`~lmmkit.LinearMixedModel`.
    result
        Its fit (REML fit made here when omitted).

    Returns
    -------
    dict
        ``ICC_adjusted`` = var_random / (var_random + var_residual) and ``ICC_unadjusted``
        = var_random / (var_fixed + var_random + var_residual) (see the module docstring).

    Examples
    --------
    >>> import lmmkit
    >>> from lmmkit.datasets import load_dataset
    >>> model = lmmkit.LinearMixedModel("Reaction ~ Days + (1 | Subject)", load_dataset("sleepstudy"))
    >>> round(lmmkit.icc_model(model)["ICC_adjusted"], 4)
    0.5893
    """
    vc = variance_components(model, result)
    return {
        "ICC_adjusted": vc.var_random / (vc.var_random + vc.var_residual),
        "ICC_unadjusted": vc.var_random / vc.total,
    }


icc = icc_model  # the name this module has always had

"""Profiled (RE)ML deviance of a linear mixed model as a function of theta alone.

Bates et al. (2015, JSS 67(1)), eq. 34 and 41: with L the Cholesky factor of the penalized
system at theta, r^2 the penalized residual sum of squares and ldW = sum(log weights),

    ML:   d(theta)  = log|L_theta|^2 + n (1 + log(2 pi r^2 / n)) - ldW
    REML: dR(theta) = log|L_theta|^2 + log|R_X|^2 + (n - p)(1 + log(2 pi r^2 / (n - p))) - ldW

These are lme4's scale: `deviance()` for ML fits and the REML criterion for REML fits.
"""

from __future__ import annotations

import math

from lmmkit.linalg.blocked import Factor

__all__ = ["profiled_deviance", "deviance_from_parts"]


def profiled_deviance(f: Factor, n: int, p: int, reml: bool, log_weights: float = 0.0) -> float:
    return deviance_from_parts(f.ok, f.logdet_L, f.logdet_RX, f.pwrss, n, p, reml, log_weights)


def deviance_from_parts(
    ok: bool,
    logdet_L: float,
    logdet_RX: float,
    pwrss: float,
    n: int,
    p: int,
    reml: bool,
    log_weights: float = 0.0,
) -> float:
    """The deviance from its pieces (log-determinants and r^2); inf when not factorable."""
    if not ok or pwrss <= 0.0:
        return math.inf
    if reml:
        dof = n - p
        return (
            logdet_L + logdet_RX + dof * (1.0 + math.log(2.0 * math.pi * pwrss / dof)) - log_weights
        )
    return logdet_L + n * (1.0 + math.log(2.0 * math.pi * pwrss / n)) - log_weights

"""Fused per-observation loops of PIRLS (numba): inverse link, working weights and residuals,
and the log-likelihood sum, in one pass each. Same clamping as :mod:`lmmkit.glmm.family`.

Family codes: 0 binomial, 1 Poisson, 2 negative binomial (size ``k``; unused otherwise). Link codes: 0 logit, 1 probit, 2 cloglog, 3 log.
"""

from __future__ import annotations

import math

import numpy as np

from lmmkit._jit import cached_njit

__all__ = [
    "FAMILY_CODE",
    "LINK_CODE",
    "working",
    "loglik_sum",
    "loglik_by_level",
    "eta_loglik_scalar",
]

FAMILY_CODE = {"binomial": 0, "poisson": 1, "negbin": 2, "gamma": 3, "inverse_gaussian": 4}
LINK_CODE = {
    "logit": 0,
    "probit": 1,
    "cloglog": 2,
    "log": 3,
    "inverse": 4,
    "identity": 5,
    "1/mu^2": 6,
}

_EPS = float(np.finfo(float).eps)
_PROBIT_T = 8.125890664701906  # -qnorm(.Machine$double.eps)
_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)


@cached_njit(inline="always")
def _inv(link: int, eta: float) -> tuple[float, float]:
    """(mu, dmu/deta) for one linear predictor value."""
    if link == 0:
        e = min(max(eta, -30.0), 30.0)
        if e >= 0:
            t = math.exp(-e)
            mu = 1.0 / (1.0 + t)
        else:
            t = math.exp(e)
            mu = t / (1.0 + t)
        me = mu * (1.0 - mu)
        if eta > 30.0 or eta < -30.0 or me < _EPS:
            me = _EPS
        return mu, me
    if link == 1:
        e = min(max(eta, -_PROBIT_T), _PROBIT_T)
        mu = 0.5 * math.erfc(-e / _SQRT2)
        me = max(math.exp(-0.5 * eta * eta) / _SQRT2PI, _EPS)
        return mu, me
    if link == 2:
        e = min(eta, 700.0)
        mu = -math.expm1(-math.exp(e))
        mu = min(max(mu, _EPS), 1.0 - _EPS)
        me = max(math.exp(e) * math.exp(-math.exp(e)), _EPS)
        return mu, me
    if link == 4:
        return 1.0 / eta, -1.0 / (eta * eta)
    if link == 5:
        return eta, 1.0
    if link == 6:  # 1/mu^2 (inverse Gaussian's canonical link)
        mu = 1.0 / math.sqrt(eta)
        return mu, -0.5 / (eta * math.sqrt(eta))
    mu = max(math.exp(min(eta, 700.0)), _EPS)
    return mu, mu


@cached_njit()
def working(
    fam: int, link: int, y: np.ndarray, wt: np.ndarray, eta: np.ndarray, k: float
) -> tuple[np.ndarray, np.ndarray]:
    """Working weights wt * mu_eta^2 / V(mu) and working residuals (y - mu) / mu_eta."""
    n = y.shape[0]
    w = np.empty(n)
    r = np.empty(n)
    for i in range(n):
        mu, me = _inv(link, eta[i])
        if fam == 0:
            var = mu * (1.0 - mu)
        elif fam == 1:
            var = mu
        elif fam == 2:
            var = mu + mu * mu / k
        elif fam == 4:
            var = mu * mu * mu
        else:
            var = mu * mu
        w[i] = wt[i] * me * me / var
        r[i] = (y[i] - mu) / me
    return w, r


@cached_njit(inline="always")
def _ll(fam: int, link: int, y: float, eta: float, k: float) -> float:
    if fam == 1 and link == 3 and -700.0 < eta < 700.0:  # Poisson, log link
        mu = math.exp(eta)
        if mu > _EPS:  # log(mu) is eta itself
            return (y * eta if y > 0.0 else 0.0) - mu
    mu, _ = _inv(link, eta)
    if fam == 0:
        out = 0.0
        if y > 0.0:
            out += y * math.log(mu)
        if y < 1.0:
            out += (1.0 - y) * math.log(1.0 - mu)
        return out
    if fam == 3:  # Gamma: -(log mu + y / mu)
        if mu <= 0.0:
            return -math.inf
        return -(math.log(mu) + y / mu)
    if fam == 4:  # inverse Gaussian: -(y - mu)^2 / (2 y mu^2), so that deviance = -2 sum
        if mu <= 0.0:
            return -math.inf
        d = y - mu
        return -0.5 * d * d / (y * mu * mu)
    lm = math.log(mu)
    if fam == 2:  # the mu-dependent part of the negative binomial log-density
        return (y * lm if y > 0.0 else 0.0) - (y + k) * math.log(mu + k)
    return (y * lm if y > 0.0 else 0.0) - mu


@cached_njit()
def loglik_sum(
    fam: int, link: int, y: np.ndarray, wt: np.ndarray, eta: np.ndarray, k: float
) -> float:
    """sum wt * (y log mu + (1 - y) log(1 - mu)) (binomial) or wt * (y log mu - mu) (Poisson)."""
    s = 0.0
    for i in range(y.shape[0]):
        s += wt[i] * _ll(fam, link, y[i], eta[i], k)
    return s


@cached_njit()
def loglik_by_level(
    fam: int,
    link: int,
    y: np.ndarray,
    wt: np.ndarray,
    eta: np.ndarray,
    index: np.ndarray,
    nlev: int,
    k: float,
) -> np.ndarray:
    out = np.zeros(nlev)
    for i in range(y.shape[0]):
        out[index[i]] += wt[i] * _ll(fam, link, y[i], eta[i], k)
    return out


@cached_njit()
def eta_loglik_scalar(
    fam: int,
    link: int,
    y: np.ndarray,
    wt: np.ndarray,
    base: np.ndarray,
    zx: np.ndarray,
    b: np.ndarray,
    index: np.ndarray,
    k: float,
) -> tuple[np.ndarray, float]:
    """eta = base + zx * b[index] (one scalar term) and the log-likelihood sum, in one pass."""
    n = y.shape[0]
    eta = np.empty(n)
    s = 0.0
    for i in range(n):
        e = base[i] + zx[i] * b[index[i]]
        eta[i] = e
        s += wt[i] * _ll(fam, link, y[i], e, k)
    return eta, s

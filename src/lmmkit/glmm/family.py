"""Response families and links of generalized linear mixed models, in R's conventions.

Each family gives the variance function, the deviance residuals and the ``aic`` term
(-2 log-likelihood of the observations, R's ``family$aic`` without the ``2 * rank``), so that
a Laplace fit reports the same log-likelihood as ``glmer``. Links clamp their inverse the
way R's ``make.link`` does, so that the linear predictor never gives mu exactly 0 or 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from lmmkit.errors import DataError

__all__ = [
    "Link",
    "Family",
    "LINKS",
    "make_family",
    "binomial",
    "poisson",
    "negative_binomial",
]

_EPS = np.finfo(float).eps
_THRESH = 30.0
_PROBIT_THRESH = -stats.norm.ppf(_EPS)


@dataclass(frozen=True)
class Link:
    name: str
    linkfun: Callable[[np.ndarray], np.ndarray]
    linkinv: Callable[[np.ndarray], np.ndarray]
    mu_eta: Callable[[np.ndarray], np.ndarray]  # d mu / d eta


def _logit_inv(eta: np.ndarray) -> np.ndarray:
    e = np.clip(eta, -_THRESH, _THRESH)
    return special.expit(e)


def _logit_mu_eta(eta: np.ndarray) -> np.ndarray:
    e = np.clip(eta, -_THRESH, _THRESH)
    p = special.expit(e)
    out = p * (1.0 - p)
    return np.where(np.abs(eta) > _THRESH, _EPS, np.maximum(out, _EPS))


def _probit_inv(eta: np.ndarray) -> np.ndarray:
    return special.ndtr(np.clip(eta, -_PROBIT_THRESH, _PROBIT_THRESH))


def _probit_mu_eta(eta: np.ndarray) -> np.ndarray:
    return np.maximum(np.exp(-0.5 * eta * eta) / np.sqrt(2.0 * np.pi), _EPS)


def _cloglog_inv(eta: np.ndarray) -> np.ndarray:
    return np.clip(-np.expm1(-np.exp(np.minimum(eta, 700.0))), _EPS, 1.0 - _EPS)


def _cloglog_mu_eta(eta: np.ndarray) -> np.ndarray:
    e = np.minimum(eta, 700.0)
    return np.maximum(np.exp(e) * np.exp(-np.exp(e)), _EPS)


def _log_inv(eta: np.ndarray) -> np.ndarray:
    return np.maximum(np.exp(np.minimum(eta, 700.0)), _EPS)


LINKS: dict[str, Link] = {
    "logit": Link("logit", special.logit, _logit_inv, _logit_mu_eta),
    "probit": Link("probit", special.ndtri, _probit_inv, _probit_mu_eta),
    "cloglog": Link("cloglog", lambda mu: np.log(-np.log1p(-mu)), _cloglog_inv, _cloglog_mu_eta),
    "log": Link("log", np.log, _log_inv, _log_inv),
    "inverse": Link(
        "inverse", lambda mu: 1.0 / mu, lambda eta: 1.0 / eta, lambda eta: -1.0 / eta**2
    ),
    "identity": Link("identity", lambda mu: mu, lambda eta: eta, lambda eta: np.ones_like(eta)),
    "1/mu^2": Link(
        "1/mu^2",
        lambda mu: 1.0 / mu**2,
        lambda eta: 1.0 / np.sqrt(eta),
        lambda eta: -1.0 / (2.0 * eta**1.5),
    ),
}


@dataclass(frozen=True)
class Family:
    """A response distribution with its link. ``wt`` below are the binomial trials times the
    prior weights (binomial) or the prior weights (Poisson); binomial ``y`` is a proportion."""

    name: str
    link: Link
    theta: float = float("nan")  # negative binomial size (R's theta); unused otherwise

    def variance(self, mu: np.ndarray) -> np.ndarray:
        if self.name == "binomial":
            return mu * (1.0 - mu)
        if self.name == "negbin":
            return mu + mu * mu / self.theta
        if self.name == "gamma":
            return mu * mu
        if self.name == "inverse_gaussian":
            return mu * mu * mu
        return mu

    def dev_resids(self, y: np.ndarray, mu: np.ndarray, wt: np.ndarray) -> np.ndarray:
        if self.name == "binomial":
            return (
                2.0
                * wt
                * (special.xlogy(y, y / mu) + special.xlogy(1.0 - y, (1.0 - y) / (1.0 - mu)))
            )
        if self.name == "gamma":
            return -2.0 * wt * (np.log(np.where(y == 0, 1.0, y / mu)) - (y - mu) / mu)
        if self.name == "inverse_gaussian":
            return wt * (y - mu) ** 2 / (y * mu * mu)
        if self.name == "negbin":
            k = self.theta
            return (
                2.0
                * wt
                * (special.xlogy(y, np.maximum(y, 1.0) / mu) - (y + k) * np.log((y + k) / (mu + k)))
            )
        return 2.0 * wt * (special.xlogy(y, y / mu) - (y - mu))

    def aic(self, y: np.ndarray, n: np.ndarray, mu: np.ndarray, wt: np.ndarray) -> float:
        """R's ``family$aic(y, n, mu, wt, dev)``: -2 log-likelihood of the observations."""
        if self.name == "binomial":
            m = n if np.any(n > 1) else wt
            k = np.round(m * y)
            ll = stats.binom.logpmf(k, np.round(m), mu)
            return float(-2.0 * np.sum(np.where(m > 0, wt / np.where(m > 0, m, 1.0), 0.0) * ll))
        if self.name == "gamma":
            n_w = np.sum(wt)
            disp = float(np.sum(self.dev_resids(y, mu, wt))) / n_w
            ll = stats.gamma.logpdf(y, 1.0 / disp, scale=mu * disp)
            return float(-2.0 * np.sum(ll * wt) + 2.0)
        if self.name == "inverse_gaussian":  # R's inverse.gaussian()$aic
            n_w = float(np.sum(wt))
            disp = float(np.sum(self.dev_resids(y, mu, wt))) / n_w
            return float(
                n_w * (np.log(disp * 2.0 * np.pi) + 1.0) + 3.0 * np.sum(np.log(y) * wt) + 2.0
            )
        if self.name == "negbin":
            k = self.theta
            ll = (
                special.gammaln(k + y)
                - special.gammaln(k)
                - special.gammaln(y + 1.0)
                + k * np.log(k)
                + special.xlogy(y, mu)
                - (k + y) * np.log(k + mu)
            )
            return float(-2.0 * np.sum(wt * ll))
        return float(-2.0 * np.sum(stats.poisson.logpmf(y, mu) * wt))

    def mustart(self, y: np.ndarray, wt: np.ndarray) -> np.ndarray:
        if self.name == "binomial":
            return (wt * y + 0.5) / (wt + 1.0)
        if self.name == "negbin":
            return y + (y == 0) / 6.0
        if self.name in ("gamma", "inverse_gaussian"):
            return y.copy()
        return y + 0.1

    @property
    def label(self) -> str:
        if self.name == "negbin":
            return f"Negative Binomial({self.theta:.4g})({self.link.name})"
        return f"{self.name}({self.link.name})"


_DEFAULT_LINK = {
    "binomial": "logit",
    "poisson": "log",
    "gamma": "inverse",
    "inverse_gaussian": "1/mu^2",
}
_ALLOWED = {
    "binomial": {"logit", "probit", "cloglog", "log"},
    "poisson": {"log"},
    "gamma": {"log", "inverse", "identity"},
    "inverse_gaussian": {"1/mu^2", "log", "inverse", "identity"},
}


def make_family(family: str | Family, link: str | None = None) -> Family:
    """``'binomial'``, ``'poisson'``, ``'binomial(probit)'`` or a :class:`Family`."""
    if isinstance(family, Family):
        return family
    if not isinstance(family, str):
        raise DataError(f"family must be a string such as 'binomial'; got {family!r}.")
    text = family.strip().lower().replace(" ", "").replace("inverse.gaussian", "inverse_gaussian")
    if "(" in text and text.endswith(")"):
        text, inner = text[:-1].split("(", 1)
        inner = inner.removeprefix("link=").strip("'\"")
        link = link or inner
    if text not in _DEFAULT_LINK:
        raise DataError(
            f"family {family!r} is not supported; use 'binomial', 'poisson', 'gamma' or 'inverse_gaussian' "
            "(optionally with a link, e.g. 'binomial(probit)', 'gamma(log)'); for negative "
            "binomial counts use glmm_nb()."
        )
    link = link or _DEFAULT_LINK[text]
    if link not in _ALLOWED[text]:
        raise DataError(
            f"link {link!r} is not available for family {text!r}; choose one of "
            f"{sorted(_ALLOWED[text])}."
        )
    return Family(text, LINKS[link])


def binomial(link: str = "logit") -> Family:
    return make_family("binomial", link)


def poisson(link: str = "log") -> Family:
    return make_family("poisson", link)


def negative_binomial(theta: float, link: str = "log") -> Family:
    """Negative binomial with known size ``theta`` (variance mu + mu^2 / theta), as MASS's
    ``negative.binomial(theta)``; :func:`lmmkit.glmm.nb.glmm_nb` estimates theta."""
    if not (isinstance(theta, int | float) and np.isfinite(theta) and theta > 0):
        raise DataError(f"the negative binomial theta must be a positive number; got {theta!r}.")
    if link != "log":
        raise DataError(f"link {link!r} is not available for the negative binomial; use 'log'.")
    return Family("negbin", LINKS["log"], float(theta))

"""Observed-scale <-> liability-scale heritability for case-control traits.

Lee, Wray, Goddard & Visscher (2011), Am J Hum Genet 88:294-305, eq. 23: with population
prevalence K, proportion of cases in the sample P, liability threshold t = Phi^-1(1 - K)
and z = phi(t) the standard normal density at t,

    h2_liability = h2_observed * K^2 (1 - K)^2 / (z^2 P (1 - P)).

The same factor converts the SE (it is a constant).  With P = K (a population sample)
this is Dempster & Lerner's (1950) transformation K(1 - K)/z^2.  LDSC's ``--samp-prev``
and ``--pop-prev`` and GCTA's ``--prevalence`` apply this formula.

:func:`h2_latent` is the other route: the heritability on the latent scale of a binomial
GLMM with a kinship term (``lmmkit.glmm(..., kernels={"id": K})``), which needs no
transformation from the observed scale (see its docstring).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from lmmkit.errors import DataError, ModelError

__all__ = [
    "liability_factor",
    "h2_observed_to_liability",
    "h2_liability_to_observed",
    "h2_latent",
    "LatentH2",
]


def _check(name: str, v) -> np.ndarray:
    a = np.asarray(v, dtype=float)
    if np.any(~np.isfinite(a)) or np.any(a <= 0) or np.any(a >= 1):
        raise DataError(f"{name} must lie strictly between 0 and 1, got {v!r}.")
    return a


def liability_factor(prevalence, sample_prevalence=None):
    """K^2 (1-K)^2 / (z^2 P (1-P)); ``sample_prevalence`` P defaults to K."""
    k = _check("population prevalence K", prevalence)
    p = k if sample_prevalence is None else _check("sample case proportion P", sample_prevalence)
    t = stats.norm.isf(k)
    z = stats.norm.pdf(t)
    f = k**2 * (1 - k) ** 2 / (z**2 * p * (1 - p))
    return float(f) if np.ndim(f) == 0 else f


def h2_observed_to_liability(h2_observed, prevalence, sample_prevalence=None, se=None):
    """Liability-scale h2 (and SE when ``se`` is given) from observed-scale (0/1) h2.

    A result outside [0, 1] is returned as computed, with a warning: the transformation
    (Lee et al. 2011) only rescales, so such a value means the observed-scale estimate is
    inconsistent with the prevalence and ascertainment given (or is itself out of range).
    """
    import warnings

    from lmmkit.errors import LmmkitWarning

    f = liability_factor(prevalence, sample_prevalence)
    h = np.asarray(h2_observed, dtype=float) * f
    bad = np.flatnonzero(np.ravel((h < 0) | (h > 1)))
    if bad.size:
        i = bad[0]
        first, obs, fac = (
            float(np.ravel(np.broadcast_to(v, h.shape))[i]) for v in (h, h2_observed, f)
        )
        p_txt = "P = K" if sample_prevalence is None else f"P = {sample_prevalence!r}"
        warnings.warn(
            f"liability-scale h2 = {first:.4g} lies outside [0, 1] ({bad.size} value(s)): "
            f"observed-scale h2 {obs:.4g} times the factor {fac:.4g} for "
            f"population prevalence K = {prevalence!r} and sample case proportion {p_txt}. "
            "The transformation only rescales, so the observed-scale estimate is inconsistent "
            "with that prevalence and ascertainment: check that K is the population prevalence "
            "and P the case fraction of the analysed sample, and the observed estimate's "
            "standard error (an estimate at its boundary or with a large SE can leave [0, 1]).",
            LmmkitWarning,
            stacklevel=2,
        )
    h = float(h) if np.ndim(h) == 0 else h
    if se is None:
        return h
    s = np.asarray(se, dtype=float) * f
    return h, (float(s) if np.ndim(s) == 0 else s)


def h2_liability_to_observed(h2_liability, prevalence, sample_prevalence=None):
    """Inverse transformation: observed-scale h2 for a sample with case proportion P."""
    f = liability_factor(prevalence, sample_prevalence)
    h = np.asarray(h2_liability, dtype=float) / f
    return float(h) if np.ndim(h) == 0 else h


# variance of the standard latent residual of each binomial link (Nakagawa & Schielzeth 2010,
# Nakagawa, Johnson & Schielzeth 2017): logistic pi^2/3, normal 1, Gumbel pi^2/6
LINK_VARIANCE = {"logit": math.pi**2 / 3.0, "probit": 1.0, "cloglog": math.pi**2 / 6.0}


@dataclass(frozen=True)
class LatentH2:
    """Latent-scale heritability of a binomial GLMM with a kinship term.

    ``h2 = sigma2_g * c / (sigma2_g * c + other_variance + link_variance)``."""

    h2: float
    se: float  # delta method from the GLMM's Hessian of the deviance; nan when unavailable
    term: str
    link: str
    sigma2_g: float  # the term's variance parameter (b ~ N(0, sigma2_g K))
    kernel_scale: float  # c
    centered: bool  # c = mean diag K - mean K (GEMMA's tr of the centered K / n) or mean diag
    other_variance: float  # the other random-effects terms, averaged over the observations
    link_variance: float  # pi^2/3 (logit), 1 (probit), pi^2/6 (cloglog)
    note: str

    def __str__(self) -> str:
        se = f" (se {self.se:.4g})" if math.isfinite(self.se) else ""
        return (
            f"latent-scale h2 ({self.link} link, term {self.term!r}) = {self.h2:.4g}{se}; "
            f"sigma2_g = {self.sigma2_g:.4g}, c = {self.kernel_scale:.4g}, other variance "
            f"{self.other_variance:.4g}, link variance {self.link_variance:.4g}. {self.note}"
        )


def h2_latent(result: Any, term: str | None = None, *, center: bool = True) -> LatentH2:
    """Heritability on the latent scale of a binomial GLMM fitted with a kinship kernel.

    For ``lmmkit.glmm("y ~ x + (1 | id)", data, family="binomial", kernels={"id": K})``:

        h2 = sigma2_g c / (sigma2_g c + sum of the other random-effect variances + v_link)

    with v_link = pi^2/3 (logit), 1 (probit) or pi^2/6 (cloglog), the variance of the latent
    residual. The other terms' variances are averaged over the observations (z_i' Sigma z_i,
    so random slopes count at the observed covariate values); the fixed effects' variance is
    not in the denominator (h2 conditional on the covariates, as GEMMA and GCTA report it).

    ``c`` puts sigma2_g on the scale of the sample's genetic variance. With ``center=True``
    (default) c = mean(diag K) - mean(K) over the individuals with records = tr(P K P)/n,
    P = I - 11'/n: GEMMA's pve convention, which centers K over the analyzed samples and
    uses tr(K)/n; for a K already centered over them (GEMMA's -gk 1 on exactly these
    samples) it is mean(diag K). ``center=False``: c = mean(diag K) as given (e.g. a
    pedigree A on a population, where K's scale is the reference population's).

    The SE is the delta method on the covariance of the variance parameters (theta), twice
    the inverse of the GLMM's finite-difference Hessian of the deviance (the same Hessian as
    glmer's vcov); nan with a note when the fit has none (nagq=0) or the variance is at the
    boundary (the delta method does not hold there; use a likelihood-ratio test).

    Bias. The Laplace approximation underestimates the variance of a binary trait with one
    record per individual: on 600 HS1940 mice (benchmarks/sim_glmm_h2.py) true h2 0.3 and 0.6
    gave mean estimates 0.23 and 0.44; with three records per mouse 0.27 and 0.56. The note
    says so when the fit has fewer than two Bernoulli records per individual; the
    observed-scale REML with :func:`h2_observed_to_liability` was less biased there.

    Scales. The observed (0/1) scale h2 of a linear model on a binary trait depends on the
    prevalence; Lee et al. (2011) convert it to the liability scale with
    :func:`h2_observed_to_liability`. The GLMM's latent scale needs no such conversion: with
    the probit link it *is* the liability (threshold) scale of the sampled population; with
    the logit link it is the logistic-liability scale, which is close to it (the logistic and
    normal liabilities differ in their tails). Both refer to the population sampled: for a
    case-control sample with a case fraction far from the prevalence the latent estimate is
    distorted by the ascertainment, and the observed-scale route with
    :func:`h2_observed_to_liability` (prevalence and sample case fraction) is the standard one.
    """
    from lmmkit.linalg.blocked import theta_to_T

    fam = getattr(result, "family", None)
    link = getattr(result, "link", None)
    if fam is None or not hasattr(result, "theta") or not hasattr(result, "term_Zx"):
        raise DataError(
            f"h2_latent needs a GLMM result from lmmkit.glmm(...); got {type(result).__name__}."
        )
    if fam != "binomial" or link not in LINK_VARIANCE:
        raise ModelError(
            f"latent-scale heritability is defined here for binomial GLMMs with a logit, "
            f"probit or cloglog link; this fit is {fam} with a {link} link."
        )
    kernels: dict[str, dict[str, float]] = dict(getattr(result, "kernels", {}) or {})
    groups = [":".join(t.group) for t in result.terms]
    if term is None:
        if len(kernels) != 1:
            raise DataError(
                "this fit has no kinship term (fit with kernels={'id': K}); name the term "
                f"with term= (one of {groups}) for a latent-scale variance ratio instead."
                if not kernels
                else f"name the genetic term with term= (one of {sorted(kernels)})."
            )
        term = next(iter(kernels))
    if term not in groups:
        raise DataError(f"term {term!r} is not a random-effects term of the fit: {groups}.")
    k = groups.index(term)
    if len(result.terms[k].columns) != 1:
        raise ModelError(
            f"term {term!r} has columns {list(result.terms[k].columns)}; the genetic term must "
            "be a random intercept (1 | id)."
        )
    notes = []
    if term in kernels:
        info = kernels[term]
        c = info["mean_diag"] - info["mean"] if center else info["mean_diag"]
    else:
        c = 1.0
        notes.append("no kernel on this term: c = 1, the ratio is a latent-scale ICC")
    sizes = [len(t.columns) * (len(t.columns) + 1) // 2 for t in result.terms]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    v_link = LINK_VARIANCE[link]

    def parts(theta: np.ndarray) -> tuple[float, float, float]:
        sg = float(theta[starts[k]] ** 2)
        other = 0.0
        for j, (t, Zx) in enumerate(zip(result.terms, result.term_Zx)):
            if j == k:
                continue
            T = theta_to_T(theta[starts[j] : starts[j + 1]], len(t.columns))
            other += float(np.mean(np.sum((Zx @ T) ** 2, axis=1)))
        return sg * c / (sg * c + other + v_link), sg, other

    theta = np.asarray(result.theta, dtype=float)
    h2, sg, other = parts(theta)
    se = math.nan
    hess = getattr(result, "hessian", None)
    if hess is None:
        notes.append("no SE: the fit has no Hessian of the deviance (nagq=0)")
    elif result.is_singular:
        notes.append("no SE: a variance is at the boundary (singular fit)")
    else:
        nth = len(theta)
        try:
            inv = np.linalg.inv(np.asarray(hess, float))
        except np.linalg.LinAlgError:
            inv = None
        cov = None if inv is None else (inv + inv.T)[:nth, :nth]
        if cov is None or not np.all(np.isfinite(cov)) or np.any(np.diag(cov) <= 0):
            notes.append("no SE: the Hessian of the deviance is not positive definite")
        else:
            grad = np.empty(nth)
            for i in range(nth):
                step = 1e-6 * max(1.0, abs(theta[i]))
                up, down = theta.copy(), theta.copy()
                up[i] += step
                down[i] -= step
                grad[i] = (parts(up)[0] - parts(down)[0]) / (2.0 * step)
            se = float(math.sqrt(max(float(grad @ cov @ grad), 0.0)))
    if term in kernels:
        per = result.nobs / max(kernels[term]["n_levels_with_records"], 1)
        if per < 2 and np.all(np.asarray(result.trials) == 1):
            notes.append(
                f"{per:.2g} Bernoulli record(s) per individual: the Laplace fit underestimates "
                "h2 here (see the docstring), consider the observed-scale route"
            )
    scale = "the liability scale" if link == "probit" else "the logistic latent scale"
    notes.append(
        f"h2 on {scale}, conditional on the fixed effects; an observed-scale (0/1) estimate "
        "converts with h2_observed_to_liability (Lee et al. 2011)"
    )
    return LatentH2(
        h2=float(h2),
        se=se,
        term=term,
        link=link,
        sigma2_g=sg,
        kernel_scale=float(c),
        centered=bool(center and term in kernels),
        other_variance=other,
        link_variance=v_link,
        note="; ".join(notes) + ".",
    )

"""Inputs of a biomarker cost-effectiveness model: per-outcome costs and QALYs, the test's
cost and the prevalence, each a number or a distribution for the probabilistic analysis.

A patient ends in one of four outcomes: diseased and treated (TP), diseased and untreated
(FN), not diseased and treated (FP), not diseased and untreated (TN). Each outcome has an
expected cost and an expected effect (QALYs) per patient; testing adds ``cost_test``.

Allowed ranges (checked, with the offending input named):

* ``prevalence`` (and every sensitivity/specificity) in [0, 1]; a distribution's support
  must lie in [0, 1] (e.g. beta).
* ``cost_test`` >= 0 (a distribution's support must be >= 0: gamma or lognormal).
* outcome costs: any finite number. A negative cost is allowed: it is a saving relative to
  the reference the costs are counted from (e.g. costs avoided by early treatment).
  Distributions of any support are accepted for them.
* QALYs: any finite number (states worse than death give negative utilities).

Distributions are frozen ``scipy.stats`` distributions; :func:`beta_from_moments`,
:func:`gamma_from_moments` and :func:`lognormal_from_moments` build the usual ones from a
mean and standard deviation by the method of moments (Briggs, Claxton & Sculpher 2006, ch. 4).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from scipy import stats

from lmmkit.errors import DataError

__all__ = [
    "CEAInputs",
    "beta_from_moments",
    "gamma_from_moments",
    "lognormal_from_moments",
]

OUTCOMES = ("tp", "fn", "fp", "tn")


def _is_distribution(value: Any) -> bool:
    return hasattr(value, "rvs") and hasattr(value, "mean") and hasattr(value, "support")


def beta_from_moments(mean: float, sd: float):
    """Beta distribution with the given mean and standard deviation (for probabilities).

    Parameters
    ----------
    mean : float
        In (0, 1).
    sd : float
        Positive, with sd^2 < mean (1 - mean).

    Returns
    -------
    scipy.stats frozen beta distribution

    Examples
    --------
    >>> from lmmkit import beta_from_moments
    >>> d = beta_from_moments(0.2, 0.05)
    >>> round(float(d.mean()), 6), round(float(d.std()), 6)
    (0.2, 0.05)
    """
    if not (0.0 < mean < 1.0) or not (0.0 < sd) or sd**2 >= mean * (1.0 - mean):
        raise DataError(
            f"beta_from_moments: mean={mean!r} must be in (0, 1) and sd={sd!r} positive with "
            f"sd^2 < mean (1 - mean) = {mean * (1 - mean) if 0 < mean < 1 else float('nan'):.4g}."
        )
    common = mean * (1.0 - mean) / sd**2 - 1.0
    return stats.beta(mean * common, (1.0 - mean) * common)


def gamma_from_moments(mean: float, sd: float):
    """Gamma distribution with the given mean and standard deviation (for costs).

    Parameters
    ----------
    mean, sd : float
        Positive mean and standard deviation.

    Returns
    -------
    scipy.stats frozen gamma distribution (shape mean^2/sd^2, scale sd^2/mean)

    Examples
    --------
    >>> from lmmkit import gamma_from_moments
    >>> d = gamma_from_moments(1000.0, 250.0)
    >>> round(float(d.mean()), 6), round(float(d.std()), 6)
    (1000.0, 250.0)
    """
    if not (mean > 0 and sd > 0):
        raise DataError(f"gamma_from_moments: mean={mean!r} and sd={sd!r} must be positive.")
    return stats.gamma(mean**2 / sd**2, scale=sd**2 / mean)


def lognormal_from_moments(mean: float, sd: float):
    """Lognormal distribution with the given mean and standard deviation (for costs or
    relative risks).

    Parameters
    ----------
    mean, sd : float
        Positive mean and standard deviation (of the variable, not of its logarithm).

    Returns
    -------
    scipy.stats frozen lognormal distribution

    Examples
    --------
    >>> from lmmkit import lognormal_from_moments
    >>> d = lognormal_from_moments(500.0, 100.0)
    >>> round(float(d.mean()), 6), round(float(d.std()), 6)
    (500.0, 100.0)
    """
    if not (mean > 0 and sd > 0):
        raise DataError(f"lognormal_from_moments: mean={mean!r} and sd={sd!r} must be positive.")
    s2 = np.log1p(sd**2 / mean**2)
    return stats.lognorm(np.sqrt(s2), scale=mean * np.exp(-s2 / 2.0))


@dataclass(frozen=True)
class CEAInputs:
    """Costs and effects (QALYs) per outcome, the test's cost and the prevalence.

    Each value is a number or a frozen ``scipy.stats`` distribution (its mean is the base
    case; its draws feed the probabilistic sensitivity analysis). ``prevalence=None`` takes
    the prevalence of the validation data. See the module docstring for the allowed ranges.

    Parameters
    ----------
    cost_tp, cost_fn, cost_fp, cost_tn : float or distribution
        Expected cost per patient of each outcome (diseased treated, diseased untreated, not
        diseased treated, not diseased untreated). Negative values are savings.
    qaly_tp, qaly_fn, qaly_fp, qaly_tn : float or distribution
        Expected QALYs per patient of each outcome.
    cost_test : float or distribution
        Cost of the test per patient tested (>= 0).
    prevalence : float or distribution, optional
        Probability of the condition in the target population, in [0, 1].

    Raises
    ------
    DataError
        A value out of range, not finite, or a distribution with the wrong support.

    Examples
    --------
    >>> from lmmkit import CEAInputs, gamma_from_moments
    >>> inputs = CEAInputs(cost_tp=gamma_from_moments(8000, 1500), cost_fn=12000, cost_fp=6000,
    ...                    cost_tn=0, qaly_tp=9.0, qaly_fn=7.5, qaly_fp=9.8, qaly_tn=10.0,
    ...                    cost_test=150, prevalence=0.3)
    >>> inputs.base_case()["cost_tp"]
    8000.0
    """

    cost_tp: Any
    cost_fn: Any
    cost_fp: Any
    cost_tn: Any
    qaly_tp: Any
    qaly_fn: Any
    qaly_fp: Any
    qaly_tn: Any
    cost_test: Any = 0.0
    prevalence: Any = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name == "prevalence":
                continue
            if _is_distribution(value):
                lo, hi = (float(v) for v in value.support())
                if f.name == "prevalence" and (lo < 0 or hi > 1):
                    raise DataError(
                        f"CEAInputs: prevalence's distribution has support [{lo:g}, {hi:g}]; a "
                        "probability needs support within [0, 1] (use beta_from_moments)."
                    )
                if f.name == "cost_test" and lo < 0:
                    raise DataError(
                        f"CEAInputs: cost_test's distribution has support [{lo:g}, {hi:g}]; the "
                        "test's cost cannot be negative (use gamma_ or lognormal_from_moments)."
                    )
                continue
            try:
                x = float(value)
            except (TypeError, ValueError):
                raise DataError(
                    f"CEAInputs: {f.name}={value!r} must be a number or a scipy.stats frozen "
                    "distribution."
                ) from None
            if not np.isfinite(x):
                raise DataError(f"CEAInputs: {f.name}={value!r} must be finite.")
            if f.name == "prevalence" and not (0.0 <= x <= 1.0):
                raise DataError(
                    f"CEAInputs: prevalence={x!r} is a probability and must lie in [0, 1]."
                )
            if f.name == "cost_test" and x < 0:
                raise DataError(
                    f"CEAInputs: cost_test={x!r} is negative; a test's cost must be >= 0 "
                    "(outcome costs may be negative: savings against the reference)."
                )

    def base_case(self, prevalence: float | None = None) -> dict[str, float]:
        """Every input at its value (a distribution at its mean); ``prevalence`` fills a None."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = (
                float(v.mean()) if _is_distribution(v) else (None if v is None else float(v))
            )
        if out["prevalence"] is None:
            out["prevalence"] = prevalence
        return out

    def draw(self, n: int, rng: np.random.Generator, prevalence: float | None = None) -> dict:
        """``n`` draws of every input (constants repeated)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if _is_distribution(v):
                out[f.name] = np.asarray(v.rvs(size=n, random_state=rng), dtype=float)
            else:
                fill = prevalence if v is None else v
                out[f.name] = np.full(n, np.nan if fill is None else float(fill))
        return out

"""Observed-scale <-> liability-scale heritability for case-control traits.

Lee, Wray, Goddard & Visscher (2011), Am J Hum Genet 88:294-305, eq. 23: with population
prevalence K, proportion of cases in the sample P, liability threshold t = Phi^-1(1 - K)
and z = phi(t) the standard normal density at t,

    h2_liability = h2_observed * K^2 (1 - K)^2 / (z^2 P (1 - P)).

The same factor converts the SE (it is a constant).  With P = K (a population sample)
this is Dempster & Lerner's (1950) transformation K(1 - K)/z^2.  LDSC's ``--samp-prev``
and ``--pop-prev`` and GCTA's ``--prevalence`` apply this formula.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from lmmkit.errors import DataError

__all__ = ["liability_factor", "h2_observed_to_liability", "h2_liability_to_observed"]


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
    """Liability-scale h2 (and SE when ``se`` is given) from observed-scale (0/1) h2."""
    f = liability_factor(prevalence, sample_prevalence)
    h = np.asarray(h2_observed, dtype=float) * f
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

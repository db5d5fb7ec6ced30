"""Lin's concordance correlation coefficient with its CI (as ``epiR::epi.ccc``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from lmmkit.errors import DataError
from lmmkit.validation.agreement._common import _check_level, _column, _paired

__all__ = ["Concordance", "concordance_correlation"]


@dataclass(frozen=True)
class Concordance:
    """Lin's concordance correlation coefficient with its CI and decomposition
    (``ccc = pearson * accuracy``; ``scale_shift`` = sd_y / sd_x, ``location_shift`` =
    (mean_y - mean_x) / sqrt(sd_x sd_y) as epiR reports them).

    Examples
    --------
    >>> from lmmkit import concordance_correlation
    >>> c = concordance_correlation([1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 3.0, 4.0, 5.0, 6.0])
    >>> round(c.pearson, 3), round(c.ccc, 3)  # a constant shift: r = 1, CCC < 1
    (1.0, 0.8)
    >>> round(c.ccc, 12) == round(c.pearson * c.accuracy, 12)
    True
    """

    ccc: float
    ci_low: float
    ci_high: float
    se: float
    pearson: float
    accuracy: float
    scale_shift: float
    location_shift: float
    n: int
    level: float
    ci_method: str


def concordance_correlation(
    x,
    y,
    *,
    data: pd.DataFrame | None = None,
    level: float = 0.95,
    ci: Literal["z-transform", "asymptotic"] = "z-transform",
) -> Concordance:
    """Lin's concordance correlation coefficient of paired measurements, with a CI.

    Parameters
    ----------
    x, y : array-like or str
        Paired measurements (or column names of ``data``).
    data : DataFrame, optional
        Table holding the named columns.
    level : float
        Confidence level.
    ci : {"z-transform", "asymptotic"}
        Interval on Fisher's z scale (Lin 1989; default) or on the original scale.

    Returns
    -------
    Concordance

    Raises
    ------
    DataError
        Unpaired rows, fewer than 3 pairs, constant measurements.

    Examples
    --------
    >>> from lmmkit import concordance_correlation
    >>> c = concordance_correlation([1.0, 2.0, 3.0, 4.0, 5.0], [1.1, 2.3, 2.8, 4.2, 5.1])
    >>> round(c.ccc, 4)
    0.9905
    """
    where = "concordance_correlation: "
    _check_level(level, "level", where)
    if ci not in ("z-transform", "asymptotic"):
        raise DataError(f"{where}ci={ci!r} is not one of 'z-transform', 'asymptotic'.")
    xv, yv = _paired(_column(data, x, "x", where), _column(data, y, "y", where), where)
    n = len(xv)
    if n < 3:
        raise DataError(f"{where}{n} pair(s); the CCC's standard error needs at least 3.")
    sx2, sy2 = xv.var(), yv.var()
    if sx2 == 0 or sy2 == 0:
        which = "x" if sx2 == 0 else "y"
        raise DataError(f"{where}{which} is constant; the concordance correlation is undefined.")
    sxy = float(((xv - xv.mean()) * (yv - yv.mean())).mean())
    r = sxy / np.sqrt(sx2 * sy2)
    cb = 2.0 * np.sqrt(sx2 * sy2) / (sx2 + sy2 + (yv.mean() - xv.mean()) ** 2)  # accuracy
    p = r * cb
    u = (yv.mean() - xv.mean()) / (sx2 * sy2) ** 0.25
    # Lin's (1989) variance with p / r written as cb: defined at r = 0 too
    var = (
        (1 - r**2) * cb**2 * (1 - p**2) + 2 * p**2 * cb * (1 - p) * u**2 - 0.5 * p**2 * cb**2 * u**4
    ) / (n - 2)
    se = float(np.sqrt(max(var, 0.0)))  # exact agreement: 0 up to rounding
    z = stats.norm.ppf(0.5 + level / 2.0)
    if ci == "asymptotic":
        lo, hi = p - z * se, p + z * se
    elif abs(p) >= 1.0 - 1e-15:  # perfect (dis)agreement: zero variance, Fisher's z infinite
        lo = hi = p
    else:
        t = np.arctanh(p)
        se_t = se / (1 - p**2)
        lo, hi = np.tanh(t - z * se_t), np.tanh(t + z * se_t)
    return Concordance(
        ccc=float(p),
        ci_low=float(lo),
        ci_high=float(hi),
        se=se,
        pearson=float(r),
        accuracy=float(cb),
        scale_shift=float(np.sqrt(yv.var(ddof=1) / xv.var(ddof=1))),
        location_shift=float(u),
        n=n,
        level=level,
        ci_method=ci,
    )


# --- bias and linearity against a known truth ----------------------------------------------

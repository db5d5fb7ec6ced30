"""QIBA's bias and linearity against a known truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from lmmkit.errors import DataError
from lmmkit.validation.agreement._common import _check_level, _column, _paired

__all__ = ["Linearity", "bias_linearity"]


@dataclass(frozen=True)
class Linearity:
    """Bias and linearity of measurements against known true values (QIBA metrology).

    ``coefficients`` has rows ``intercept``, ``slope`` (and ``quadratic`` from the quadratic
    fit) with columns ``estimate, se, ci_low, ci_high``; ``by_level`` the mean bias at each
    distinct true value with its count.

    Examples
    --------
    >>> from lmmkit import bias_linearity
    >>> res = bias_linearity([1.1, 2.2, 3.1, 4.3, 5.2, 6.1], [1, 2, 3, 4, 5, 6])
    >>> round(res.bias, 3), res.n
    (0.167, 6)
    >>> list(res.coefficients.index)
    ['intercept', 'slope', 'quadratic']
    """

    bias: float
    bias_ci: tuple[float, float]
    percent_bias: float
    coefficients: pd.DataFrame
    r_squared: float
    residual_sd: float
    quadratic_t: float
    quadratic_p: float
    by_level: pd.DataFrame
    n: int
    level: float


def bias_linearity(
    measured, truth, *, data: pd.DataFrame | None = None, level: float = 0.95
) -> Linearity:
    """Bias and linearity of a quantitative biomarker against a known truth (phantom values).

    Parameters
    ----------
    measured, truth : array-like or str
        Measured and true values, one row per measurement (or column names of ``data``).
    data : DataFrame, optional
        Table holding the named columns.
    level : float
        Confidence level.

    Returns
    -------
    Linearity
        Bias (mean of measured - truth) with CI, percent bias (100 bias / mean truth), the
        line measured = intercept + slope truth with CIs and R^2, the t test of a quadratic
        term in truth (a significant one means the response is not linear), bias per level.

    Raises
    ------
    DataError
        Unpaired rows, fewer than 4 measurements or fewer than 3 distinct true values.

    Examples
    --------
    >>> from lmmkit import bias_linearity
    >>> res = bias_linearity([1.1, 2.0, 3.2, 3.9, 5.1, 6.0], [1, 2, 3, 4, 5, 6])
    >>> round(float(res.coefficients.loc["slope", "estimate"]), 3)
    0.986
    """
    where = "bias_linearity: "
    _check_level(level, "level", where)
    yv, xv = _paired(
        _column(data, measured, "measured", where),
        _column(data, truth, "truth", where),
        where,
        ("measured", "truth"),
    )
    n = len(yv)
    levels = np.unique(xv)
    if n < 4 or len(levels) < 3:
        raise DataError(
            f"{where}{n} measurements at {len(levels)} distinct true value(s); linearity needs "
            "at least 3 true values (and 4 measurements) to test a quadratic term."
        )
    bias_i = yv - xv
    bias = float(bias_i.mean())
    tq = stats.t.ppf(0.5 + level / 2.0, n - 1)
    half = tq * bias_i.std(ddof=1) / np.sqrt(n)
    rows = {}
    design = np.column_stack([np.ones(n), xv])
    beta, se, resid_sd = _ols(design, yv)
    t2 = stats.t.ppf(0.5 + level / 2.0, n - 2)
    for name, b, s in zip(("intercept", "slope"), beta, se):
        rows[name] = (b, s, b - t2 * s, b + t2 * s)
    r2 = 1.0 - resid_sd**2 * (n - 2) / float(((yv - yv.mean()) ** 2).sum())
    beta_q, se_q, _ = _ols(np.column_stack([design, xv**2]), yv)
    t3 = stats.t.ppf(0.5 + level / 2.0, n - 3)
    rows["quadratic"] = (beta_q[2], se_q[2], beta_q[2] - t3 * se_q[2], beta_q[2] + t3 * se_q[2])
    tq2 = float(beta_q[2] / se_q[2])
    frame = pd.DataFrame(bias_i, columns=["bias"]).assign(truth=xv)
    by_level = frame.groupby("truth")["bias"].agg(["mean", "std", "count"])
    return Linearity(
        bias=bias,
        bias_ci=(bias - half, bias + half),
        percent_bias=float(100.0 * bias / xv.mean()) if xv.mean() != 0 else np.nan,
        coefficients=pd.DataFrame(rows, index=["estimate", "se", "ci_low", "ci_high"]).T,
        r_squared=float(r2),
        residual_sd=resid_sd,
        quadratic_t=tq2,
        quadratic_p=float(2 * stats.t.sf(abs(tq2), n - 3)),
        by_level=by_level,
        n=n,
        level=level,
    )


def _ols(design: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ beta
    dof = len(y) - design.shape[1]
    s2 = float(resid @ resid) / dof
    cov = s2 * np.linalg.inv(design.T @ design)
    return beta, np.sqrt(np.diag(cov)), float(np.sqrt(s2))


# --- reproducibility across scanners or sites ----------------------------------------------

"""Bland-Altman limits of agreement (1986), repeated measures (2007), the plot."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from lmmkit.errors import DataError
from lmmkit.validation.agreement._common import SHOW, _check_level, _column, _paired

__all__ = ["BlandAltman", "bland_altman", "plot_bland_altman"]


@dataclass(frozen=True, eq=False)
class BlandAltman:
    """Bland-Altman limits of agreement of ``x - y``.

    ``lower_ci``/``upper_ci`` are the CIs of the limits by ``ci_method`` (NaN for the
    repeated-measures version); ``proportional`` holds the regression of the differences on
    the pair means (``slope``, ``intercept``, ``slope_low``, ``slope_high``, ``p``);
    ``variance_components`` the between- and within-subject variances of the differences
    (repeated-measures version). ``mean`` and ``difference`` are the plotted points.

    Examples
    --------
    >>> from lmmkit import bland_altman
    >>> ba = bland_altman([10.2, 11.8, 9.9, 12.5, 10.7], [10.0, 12.1, 9.5, 12.0, 10.9])
    >>> float(ba.table().round(3).loc["bias", "estimate"])
    0.12
    >>> ba.n, ba.ci_method
    (5, 'exact')
    """

    n: int
    n_subjects: int
    bias: float
    bias_ci: tuple[float, float]
    sd: float
    lower: float
    upper: float
    lower_ci: tuple[float, float]
    upper_ci: tuple[float, float]
    multiplier: float
    level: float
    ci_method: str
    proportional: dict
    variance_components: dict | None
    mean: np.ndarray = field(repr=False)
    difference: np.ndarray = field(repr=False)
    labels: tuple[str, str] = ("x", "y")

    def table(self) -> pd.DataFrame:
        """One row per estimate (bias, lower and upper limit) with its CI."""
        return pd.DataFrame(
            {
                "estimate": [self.bias, self.lower, self.upper, self.sd],
                "ci_low": [self.bias_ci[0], self.lower_ci[0], self.upper_ci[0], np.nan],
                "ci_high": [self.bias_ci[1], self.lower_ci[1], self.upper_ci[1], np.nan],
            },
            index=pd.Index(["bias", "lower_limit", "upper_limit", "sd_difference"]),
        )


def _limit_cis(bias, sd, n, k, level, method):
    a = (1.0 - level) / 2.0
    if method == "exact":
        out = []
        for kk in (-k, k):
            q = stats.nct.ppf([a, 1.0 - a], n - 1, kk * np.sqrt(n))
            out.append(tuple(float(v) for v in bias + sd / np.sqrt(n) * q))
        return out[0], out[1]
    half = float(stats.t.ppf(1.0 - a, n - 1) * np.sqrt(3.0 * sd**2 / n))
    return (bias - k * sd - half, bias - k * sd + half), (
        bias + k * sd - half,
        bias + k * sd + half,
    )


def _proportional(mean: np.ndarray, d: np.ndarray, level: float) -> dict:
    n = len(d)
    if n < 3 or np.ptp(mean) == 0:
        return {k: np.nan for k in ("slope", "intercept", "slope_low", "slope_high", "p")}
    fit = stats.linregress(mean, d)
    half = stats.t.ppf(0.5 + level / 2.0, n - 2) * fit.stderr
    return {
        "slope": float(fit.slope),
        "intercept": float(fit.intercept),
        "slope_low": float(fit.slope - half),
        "slope_high": float(fit.slope + half),
        "p": float(fit.pvalue),
    }


def _repeated_sd(d: np.ndarray, subject: np.ndarray, where: str) -> tuple[float, dict, int]:
    codes, uniques = pd.factorize(pd.Series(subject), sort=False)
    if (codes < 0).any():
        raise DataError(
            f"{where}subject has missing values at rows {np.flatnonzero(codes < 0)[:SHOW].tolist()}."
        )
    m = np.bincount(codes)
    once = np.flatnonzero(m == 1)
    if len(once):
        raise DataError(
            f"{where}{len(once)} subject(s) have a single pair of measurements "
            f"({list(map(str, uniques[once][:SHOW]))}); the repeated-measures limits "
            "(Bland & Altman 2007) need at least 2 pairs per subject to separate within- from "
            "between-subject variation. Drop them, or omit subject= for one pair per subject."
        )
    n_sub, total = len(m), len(d)
    if n_sub < 2:
        raise DataError(f"{where}only one subject; the between-subject variance needs at least 2.")
    sums = np.bincount(codes, weights=d)
    means = sums / m
    ssw = float(((d - means[codes]) ** 2).sum())
    ssb = float((m * (means - d.mean()) ** 2).sum())
    msw, msb = ssw / (total - n_sub), ssb / (n_sub - 1)
    divisor = (total**2 - float((m**2).sum())) / ((n_sub - 1) * total)
    between = (msb - msw) / divisor
    comps = {"between": between, "within": msw, "MSB": msb, "MSW": msw, "divisor": divisor}
    return float(np.sqrt(max(between, 0.0) + msw)), comps, n_sub


def bland_altman(
    x,
    y,
    *,
    data: pd.DataFrame | None = None,
    subject=None,
    level: float = 0.95,
    coverage: float = 0.95,
    multiplier: float | None = None,
    ci: Literal["exact", "approximate"] = "exact",
) -> BlandAltman:
    """Bland-Altman bias and limits of agreement of ``x - y``, with CIs.

    Parameters
    ----------
    x, y : array-like or str
        Paired measurements by the two methods (one row per pair), or column names of ``data``.
    data : DataFrame, optional
        Table holding the named columns.
    subject : array-like or str, optional
        Subject of each pair: the repeated-measures limits of Bland & Altman (2007) for
        several pairs per subject (module docstring). Every subject needs >= 2 pairs.
    level : float
        Confidence level of the CIs.
    coverage : float
        Proportion of differences the limits should contain (0.95 gives k = 1.96).
    multiplier : float, optional
        Use this k instead (Bland & Altman 1986 used 2).
    ci : {"exact", "approximate"}
        CIs of the limits: non-central t (exact under normality) or Bland & Altman's
        sqrt(3 sd^2 / n) approximation.

    Returns
    -------
    BlandAltman

    Raises
    ------
    DataError
        Unpaired rows (different lengths, or only one of x, y present), non-numeric values,
        a subject with a single pair (repeated version), fewer than 2 pairs.

    Examples
    --------
    >>> from lmmkit import bland_altman
    >>> wright = [494, 395, 516, 434, 476, 557, 413, 442, 650, 433, 417, 656, 267, 478, 178, 423, 427]
    >>> mini = [512, 430, 520, 428, 500, 600, 364, 380, 658, 445, 432, 626, 260, 477, 259, 350, 451]
    >>> ba = bland_altman(wright, mini)
    >>> round(ba.bias, 1), round(ba.lower, 1), round(ba.upper, 1)
    (-2.1, -78.1, 73.9)
    """
    where = "bland_altman: "
    _check_level(level, "level", where)
    _check_level(coverage, "coverage", where)
    if ci not in ("exact", "approximate"):
        raise DataError(f"{where}ci={ci!r} is not one of 'exact', 'approximate'.")
    labels = (x if isinstance(x, str) else "x", y if isinstance(y, str) else "y")
    xv, yv = _paired(_column(data, x, "x", where), _column(data, y, "y", where), where, labels)
    n = len(xv)
    if n < 2:
        raise DataError(f"{where}{n} pair(s); limits of agreement need at least 2 pairs.")
    d = xv - yv
    mean = (xv + yv) / 2.0
    k = float(stats.norm.ppf(0.5 + coverage / 2.0)) if multiplier is None else float(multiplier)
    bias = float(d.mean())
    nan2 = (np.nan, np.nan)
    if subject is None:
        sd = float(d.std(ddof=1))
        half = float(stats.t.ppf(0.5 + level / 2.0, n - 1) * sd / np.sqrt(n))
        bias_ci = (bias - half, bias + half)
        lower_ci, upper_ci = _limit_cis(bias, sd, n, k, level, ci)
        comps, n_sub, method = None, n, ci
        prop_x, prop_d = mean, d
    else:
        subj = _column(data, subject, "subject", where)
        if len(subj) != n:
            raise DataError(f"{where}subject has {len(subj)} entries for {n} pairs.")
        sd, comps, n_sub = _repeated_sd(d, subj, where)
        bias_ci, lower_ci, upper_ci, method = nan2, nan2, nan2, "not available (repeated)"
        codes = pd.factorize(pd.Series(subj), sort=False)[0]
        m = np.bincount(codes)
        prop_x, prop_d = np.bincount(codes, mean) / m, np.bincount(codes, d) / m
    return BlandAltman(
        n=n,
        n_subjects=n_sub,
        bias=bias,
        bias_ci=tuple(float(v) for v in bias_ci),
        sd=sd,
        lower=bias - k * sd,
        upper=bias + k * sd,
        lower_ci=lower_ci,
        upper_ci=upper_ci,
        multiplier=k,
        level=level,
        ci_method=method,
        proportional=_proportional(prop_x, prop_d, level),
        variance_components=comps,
        mean=mean,
        difference=d,
        labels=labels,
    )


def plot_bland_altman(result: BlandAltman, *, ax=None, title: str | None = None):
    """Bland-Altman plot: differences against pair means, bias and limits with their CIs,
    and the proportional-bias line.

    Parameters
    ----------
    result : BlandAltman
        The result of :func:`bland_altman`.
    ax : matplotlib Axes, optional
        Axes to draw on (default: a new figure).
    title : str, optional
        Title (default names the methods and the number of pairs).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from lmmkit import bland_altman, plot_bland_altman
    >>> fig = plot_bland_altman(bland_altman([1.0, 2.1, 2.9, 4.2], [1.1, 2.0, 3.1, 4.0]))
    >>> fig.axes[0].get_title()
    'Bland-Altman: x - y (n = 4)'
    """
    import matplotlib.pyplot as plt

    if not isinstance(result, BlandAltman):
        raise DataError(
            f"plot_bland_altman: expected the result of bland_altman(), got {type(result).__name__}."
        )
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
    else:
        fig = ax.figure
    ax.scatter(result.mean, result.difference, s=18, color="C0", alpha=0.8, label="pairs")
    x0, x1 = float(result.mean.min()), float(result.mean.max())
    pad = 0.04 * (x1 - x0 or 1.0)
    for value, ci, name, style in (
        (result.bias, result.bias_ci, "bias", "-"),
        (result.lower, result.lower_ci, "limits of agreement", "--"),
        (result.upper, result.upper_ci, None, "--"),
    ):
        ax.axhline(
            value,
            color="C3" if name != "bias" else "black",
            ls=style,
            lw=1.2,
            label=None if name is None else f"{name}",
        )
        if np.all(np.isfinite(ci)):
            ax.axhspan(ci[0], ci[1], color="grey", alpha=0.15, lw=0)
        ax.text(
            x1 + 1.5 * pad,
            value,
            f"{value:.3g}",
            va="bottom",
            fontsize="small",
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1, "alpha": 0.8},
        )
    p = result.proportional
    if np.isfinite(p["slope"]):
        xs = np.array([x0, x1])
        ax.plot(
            xs,
            p["intercept"] + p["slope"] * xs,
            color="C2",
            lw=1,
            label=f"proportional bias (slope {p['slope']:.3g}, p = {p['p']:.2g})",
        )
    ax.axhline(0.0, color="grey", lw=0.6)
    ax.set_xlim(x0 - pad, x1 + 6 * pad)
    ax.set_xlabel(f"Mean of {result.labels[0]} and {result.labels[1]}")
    ax.set_ylabel(f"Difference {result.labels[0]} - {result.labels[1]}")
    kind = f", {result.n_subjects} subjects" if result.variance_components else ""
    ax.set_title(
        title or f"Bland-Altman: {result.labels[0]} - {result.labels[1]} (n = {result.n}{kind})"
    )
    ax.legend(
        fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False
    )
    return fig


# --- Lin's concordance correlation ---------------------------------------------------------

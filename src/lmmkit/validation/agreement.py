"""Measurement agreement (analytical validity): Bland-Altman, Lin's CCC, bias and linearity,
reproducibility across scanners or sites.

* :func:`bland_altman`: differences ``d = x - y`` of paired measurements. Bias = mean(d),
  limits = bias -+ k sd(d) with k = Phi^-1((1 + coverage) / 2) (1.96; Bland & Altman 1986
  used 2). CIs of the bias by t; of each limit either exact (``ci="exact"``: the limit is the
  normal quantile mu + k sigma, and sqrt(n) (limit - mean(d)) / sd(d) follows a non-central t
  with n - 1 df and non-centrality k sqrt(n); Carkeet 2015) or Bland & Altman's approximation
  (``ci="approximate"``: se = sqrt(3 sd^2 / n), t quantile). Proportional bias: ordinary
  least squares of d on the pair means (slope, CI, p; with ``subject=``, of the subject mean
  differences on the subject means, one point per subject). With ``subject=`` (several pairs per
  subject, the true value free to change between pairs): Bland & Altman (2007): bias = mean
  of all differences, sd^2 = s2_between + s2_within from the one-way ANOVA of the differences
  by subject, s2_between = (MSB - MSW) / ((N^2 - sum m_i^2) / ((n - 1) N)).
* :func:`concordance_correlation`: Lin (1989, 2000) rho_c = 2 s_xy / (s_x^2 + s_y^2 +
  (mean_x - mean_y)^2) with moments of denominator n, its asymptotic standard error, and a CI
  on Fisher's z scale (default) or the original scale, as ``epiR::epi.ccc``.
* :func:`bias_linearity`: QIBA's bias and linearity against a known truth: bias =
  mean(measured - truth) with its t CI, the line measured = a + b truth (CIs, R^2, residual
  sd) and the t test of a quadratic term.
* :func:`reproducibility`: the crossed mixed model ``value ~ 1 + (1 | subject) + (1 | site)``
  fitted by lmmkit (REML); repeatability sd = sigma_e, reproducibility sd =
  sqrt(sigma_site^2 + sigma_e^2), the repeatability and reproducibility coefficients
  (1.96 sqrt(2) sd). CIs of the standard deviations by lmmkit's profile likelihood
  (:func:`lmmkit.confint`), of the coefficients by lmmkit's parametric bootstrap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from lmmkit.errors import DataError

from ._checks import as_finite_scores

__all__ = [
    "BlandAltman",
    "bland_altman",
    "plot_bland_altman",
    "Concordance",
    "concordance_correlation",
    "Linearity",
    "bias_linearity",
    "Reproducibility",
    "reproducibility",
]

SHOW = 6


def _check_level(level: float, name: str, where: str) -> None:
    if not (0.0 < float(level) < 1.0):
        raise DataError(f"{where}{name}={level!r} must be strictly between 0 and 1, e.g. 0.95.")


def _column(data: pd.DataFrame | None, value, name: str, where: str) -> np.ndarray:
    if isinstance(value, str) and data is not None:
        if value not in data.columns:
            from lmmkit.errors import close_matches

            raise DataError(
                f"{where}{name}={value!r} is not a column of the data."
                f"{close_matches(value, list(data.columns))}"
            )
        return data[value].to_numpy()
    return np.asarray(value)


def _paired(x, y, where: str, names=("x", "y")) -> tuple[np.ndarray, np.ndarray]:
    """Two numeric arrays of equal length with no row where only one side is present."""
    xa, ya = np.asarray(x), np.asarray(y)
    if xa.ndim != 1 or ya.ndim != 1:
        raise DataError(f"{where}{names[0]} and {names[1]} must be one-dimensional.")
    if len(xa) != len(ya):
        raise DataError(
            f"{where}unpaired rows: {names[0]} has {len(xa)} values and {names[1]} has "
            f"{len(ya)}; pass one row per pair of measurements of the same subject/sample."
        )
    try:
        xf, yf = xa.astype(float), ya.astype(float)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}{names[0]} and {names[1]} must be numeric.") from exc
    miss_x, miss_y = np.isnan(xf), np.isnan(yf)
    lone = miss_x ^ miss_y
    if lone.any():
        rows = np.flatnonzero(lone)
        raise DataError(
            f"{where}unpaired rows: {len(rows)} row(s) have only one of {names[0]}, {names[1]} "
            f"(rows {rows[:SHOW].tolist()}); agreement needs both measurements of each pair. "
            "Drop those rows explicitly."
        )
    if (miss_x & miss_y).any():
        rows = np.flatnonzero(miss_x & miss_y)
        raise DataError(
            f"{where}{len(rows)} row(s) have neither measurement (rows {rows[:SHOW].tolist()}); "
            "drop them first."
        )
    as_finite_scores(xf, name=names[0], where=where)
    as_finite_scores(yf, name=names[1], where=where)
    return xf, yf


# --- Bland-Altman --------------------------------------------------------------------------


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


@dataclass(frozen=True, eq=False)
class Reproducibility:
    """Variance components of ``value ~ 1 + (1 | subject) + (1 | site)`` and the derived
    repeatability and reproducibility standard deviations and coefficients, with CIs.

    ``components`` rows: ``subject``, ``site``, ``residual`` (columns ``variance, sd,
    sd_low, sd_high``: profile CIs); ``summary`` rows ``repeatability_sd``,
    ``reproducibility_sd``, ``repeatability_coefficient``, ``reproducibility_coefficient``,
    ``icc_subject`` (columns ``estimate, ci_low, ci_high``: bootstrap CIs, NaN when
    ``n_boot=0``).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from lmmkit import reproducibility
    >>> rng = np.random.default_rng(2)
    >>> d = pd.DataFrame([(f"s{i}", f"scanner{j}") for i in range(10) for j in range(3)],
    ...                  columns=["subject", "scanner"])
    >>> d["value"] = (rng.normal(0, 3, 10)[d.index // 3] + rng.normal(0, 1, 3)[d.index % 3]
    ...               + rng.normal(0, 0.5, len(d)))
    >>> res = reproducibility(d, value="value", subject="subject", site="scanner", n_boot=0)
    >>> (res.n, res.n_subjects, res.n_sites)
    (30, 10, 3)
    >>> s = res.summary["estimate"]
    >>> bool(s["repeatability_sd"] <= s["reproducibility_sd"])
    True
    """

    components: pd.DataFrame
    summary: pd.DataFrame
    n: int
    n_subjects: int
    n_sites: int
    level: float
    n_boot: int
    fit: Any = field(repr=False)


def _coefficients(s_subject, s_site, s_e):
    s_subject, s_site, s_e = (np.asarray(v, dtype=float) for v in (s_subject, s_site, s_e))
    k = stats.norm.ppf(0.975) * np.sqrt(2.0)
    repro = np.sqrt(s_site**2 + s_e**2)
    total = s_subject**2 + s_site**2 + s_e**2
    return {
        "repeatability_sd": s_e,
        "reproducibility_sd": repro,
        "repeatability_coefficient": k * s_e,
        "reproducibility_coefficient": k * repro,
        "icc_subject": s_subject**2 / total,
    }


def reproducibility(
    data: pd.DataFrame,
    *,
    value: str,
    subject: str,
    site: str,
    level: float = 0.95,
    n_boot: int = 200,
    seed: int = 0,
) -> Reproducibility:
    """Reproducibility of a quantitative biomarker across scanners or sites (QIBA).

    Fits ``value ~ 1 + (1 | subject) + (1 | site)`` (crossed) by REML with lmmkit.

    Parameters
    ----------
    data : DataFrame
        Long table, one row per measurement (replicates allowed).
    value, subject, site : str
        Columns of the measurement, the subject (or phantom) and the scanner/site.
    level : float
        Confidence level.
    n_boot : int
        Parametric-bootstrap replicates for the CIs of the coefficients (0: none).
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    Reproducibility

    Raises
    ------
    DataError
        Missing columns, fewer than 2 subjects or sites, no subject measured on 2 sites.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from lmmkit import reproducibility
    >>> rng = np.random.default_rng(1)
    >>> d = pd.DataFrame([(f"s{i}", f"site{j}") for i in range(12) for j in range(3)],
    ...                  columns=["subject", "site"])
    >>> d["value"] = (rng.normal(0, 3, 12)[d.index // 3] + rng.normal(0, 1, 3)[d.index % 3]
    ...               + rng.normal(0, 0.5, len(d)))
    >>> res = reproducibility(d, value="value", subject="subject", site="site", n_boot=0)
    >>> list(res.components.index)
    ['subject', 'site', 'residual']
    """
    from lmmkit.inference.bootstrap import parametric_bootstrap
    from lmmkit.inference.profile import confint
    from lmmkit.models.lmm import LinearMixedModel

    where = "reproducibility: "
    _check_level(level, "level", where)
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"{where}data must be a DataFrame, got {type(data).__name__}.")
    for name, col in (("value", value), ("subject", subject), ("site", site)):
        _column(data, col, name, where)
    frame = pd.DataFrame(
        {
            "value": as_finite_scores(data[value].to_numpy(), name=value, where=where),
            "subject": data[subject].astype(str).to_numpy(),
            "site": data[site].astype(str).to_numpy(),
        }
    )
    n_sub, n_site = frame["subject"].nunique(), frame["site"].nunique()
    if n_sub < 2 or n_site < 2:
        raise DataError(
            f"{where}{n_sub} subject(s) and {n_site} site(s); the crossed model needs at least "
            "2 of each."
        )
    if frame.groupby("subject")["site"].nunique().max() < 2:
        raise DataError(
            f"{where}no subject was measured at 2 or more sites ({site!r}); between-site "
            "variation cannot be separated from between-subject variation."
        )
    model = LinearMixedModel("value ~ 1 + (1 | subject) + (1 | site)", frame)
    fit = model.fit()
    vc = fit.varcorr.set_index("group")
    sds = {g: float(vc.loc[g, "sdcor"]) for g in ("subject", "site", "Residual")}
    ci = confint(model, fit, level=level)
    names = {g: f".sig{i + 1:02d}" for i, g in enumerate(fit.varcorr["group"][:-1])}
    names["Residual"] = ".sigma"
    comp = pd.DataFrame(
        {
            "variance": [sds[g] ** 2 for g in ("subject", "site", "Residual")],
            "sd": [sds[g] for g in ("subject", "site", "Residual")],
            "sd_low": [float(ci.loc[names[g]].iloc[0]) for g in ("subject", "site", "Residual")],
            "sd_high": [float(ci.loc[names[g]].iloc[1]) for g in ("subject", "site", "Residual")],
        },
        index=pd.Index(["subject", "site", "residual"]),
    )
    est = _coefficients(sds["subject"], sds["site"], sds["Residual"])
    lo = dict.fromkeys(est, np.nan)
    hi = dict.fromkeys(est, np.nan)
    n_boot = int(n_boot)
    if n_boot < 0:
        raise DataError(f"{where}n_boot={n_boot} must be >= 0.")
    if n_boot > 0:
        boot = parametric_bootstrap(model, fit, nsim=n_boot, seed=seed).replicates
        reps = _coefficients(
            boot["sd_subject_(Intercept)"], boot["sd_site_(Intercept)"], boot["sd_Residual_sigma"]
        )
        a = (1.0 - level) / 2.0
        for key, vals in reps.items():
            lo[key], hi[key] = (float(v) for v in np.nanquantile(vals, [a, 1.0 - a]))
    summary = pd.DataFrame(
        {"estimate": {k: float(v) for k, v in est.items()}, "ci_low": lo, "ci_high": hi}
    )
    return Reproducibility(
        components=comp,
        summary=summary,
        n=len(frame),
        n_subjects=n_sub,
        n_sites=n_site,
        level=level,
        n_boot=n_boot,
        fit=fit,
    )

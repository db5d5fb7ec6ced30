"""Plots of survival results (matplotlib; no computation beyond grouping).

* :func:`plot_km` -- Kaplan-Meier curves (with log-log bands and censoring ticks), one per
  group; :func:`plot_km_by_risk_group` groups rows by quantiles of a risk score first.
* :func:`plot_time_auc` -- time-dependent AUC against time.
* :func:`plot_survival_calibration` -- observed (Kaplan-Meier) against predicted risk at a
  horizon, with the observed CIs and the diagonal.
* :func:`plot_zph` -- scaled Schoenfeld residuals against transformed time for one
  covariate, with a lowess-free moving average.

Each returns the Figure; titles and axis labels are set.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lmmkit.errors import DataError

__all__ = [
    "plot_km",
    "plot_km_by_risk_group",
    "plot_time_auc",
    "plot_survival_calibration",
    "plot_survival_decision_curve",
    "plot_zph",
]


def _axes(ax, size=(6.4, 4.6)):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=size)
        return fig, ax
    return ax.figure, ax


def plot_km(
    curve,
    *,
    ax=None,
    title: str = "Kaplan-Meier survival",
    ci: bool = True,
    xlabel: str = "Time",
    censor_marks: bool = True,
):
    """Step plot of a :class:`~lmmkit.survival.nonparametric.SurvivalCurve`.

    Parameters
    ----------
    curve : SurvivalCurve
        From :func:`lmmkit.kaplan_meier` (Nelson-Aalen curves are plotted as H(t)).
    ax : matplotlib Axes, optional
    title, xlabel : str
    ci : bool
        Draw the confidence band.
    censor_marks : bool
        '+' at times with censored rows.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from lmmkit.survival import kaplan_meier
    >>> fig = plot_km(kaplan_meier([1, 2, 3, 4], [1, 0, 1, 1]))
    """
    fig, ax = _axes(ax)
    km = curve.kind == "kaplan-meier"
    start = 1.0 if km else 0.0
    for k, (g, tab) in enumerate(curve.table.groupby("group", sort=False)):
        t = np.concatenate([[0.0], tab["time"].to_numpy()])
        s = np.concatenate([[start], tab["estimate"].to_numpy()])
        label = None if (len(curve.table["group"].unique()) == 1 and g == 0) else str(g)
        ax.step(t, s, where="post", color=f"C{k}", label=label)
        if ci:
            lo = np.concatenate([[start], tab["lower"].to_numpy()])
            hi = np.concatenate([[start], tab["upper"].to_numpy()])
            ax.fill_between(
                t,
                np.nan_to_num(lo, nan=start),
                np.nan_to_num(hi, nan=start),
                step="post",
                color=f"C{k}",
                alpha=0.15,
                lw=0,
            )
        if censor_marks:
            cens = tab["n_censor"].to_numpy() > 0
            ax.plot(
                tab["time"].to_numpy()[cens],
                tab["estimate"].to_numpy()[cens],
                "+",
                color=f"C{k}",
                ms=5,
            )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Survival probability" if km else "Cumulative hazard")
    if km:
        ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(title="group", fontsize="small")
    return fig


def plot_km_by_risk_group(
    time,
    event,
    risk,
    *,
    groups: int = 3,
    ax=None,
    title: str = "Kaplan-Meier by predicted risk group",
    xlabel: str = "Time",
):
    """Kaplan-Meier curves of the rows grouped by quantiles of a risk score (low to high),
    with the log-rank test in the legend title.

    Parameters
    ----------
    time, event, risk : array-like (n,)
    groups : int
        Number of quantile groups.
    ax : matplotlib Axes, optional
    title, xlabel : str

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> r = np.arange(30.0)
    >>> fig = plot_km_by_risk_group(30 - r, np.ones(30), r, groups=3)
    """
    from .nonparametric import kaplan_meier, logrank_test

    risk = np.asarray(risk, dtype=float)
    if groups < 2 or risk.size < 2 * groups:
        raise DataError(
            f"{risk.size} rows cannot make {groups} risk groups (need >= 2 "
            "rows per group and >= 2 groups)."
        )
    order = np.argsort(risk, kind="stable")
    g = np.empty(risk.size, int)
    g[order] = np.arange(risk.size) * groups // risk.size
    names = np.array(
        ["low", "high"]
        if groups == 2
        else ["low", "middle", "high"]
        if groups == 3
        else [f"Q{k + 1}" for k in range(groups)],
        dtype=object,
    )
    o = np.argsort(g, kind="stable")  # curves listed low to high
    km = kaplan_meier(np.asarray(time)[o], np.asarray(event)[o], group=names[g][o])
    fig = plot_km(km, ax=ax, title=title, xlabel=xlabel)
    lr = logrank_test(time, event, g)
    ax = fig.axes[0]
    ax.legend(title=f"risk group (log-rank p = {lr.p_value:.2g})", fontsize="small")
    return fig


def plot_time_auc(
    result,
    *,
    ax=None,
    title: str = "Time-dependent AUC (cumulative/dynamic)",
    xlabel: str = "Time",
    label: str = "model",
):
    """AUC(t) from :func:`lmmkit.time_dependent_auc` with its bootstrap band if present.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from lmmkit.survival.metrics import time_dependent_auc
    >>> r = time_dependent_auc([1, 2, 3, 4, 5, 6], [1, 1, 0, 1, 0, 1], [6, 5, 4, 3, 2, 1],
    ...                        [2.5, 4.5])
    >>> fig = plot_time_auc(r)
    """
    fig, ax = _axes(ax)
    ax.plot(result.times, result.auc, "o-", label=label)
    if np.isfinite(result.ci_low).any():
        ax.fill_between(
            result.times, result.ci_low, result.ci_high, alpha=0.2, label="bootstrap CI"
        )
    ax.axhline(0.5, color="grey", lw=1, ls="--", label="chance")
    ax.set_ylim(0.4, 1.0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("AUC(t)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return fig


def plot_survival_calibration(cal, *, ax=None, title: str | None = None):
    """Observed against predicted risk at the horizon from
    :func:`lmmkit.survival_calibration`.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> from lmmkit.survival.metrics import survival_calibration
    >>> rng = np.random.default_rng(0); r = rng.uniform(0.1, 0.9, 200)
    >>> t = rng.exponential(1 / -np.log(1 - r))
    >>> fig = plot_survival_calibration(survival_calibration(t, np.ones(200), r, 1.0))
    """
    fig, ax = _axes(ax, size=(5.2, 5.0))
    tab: pd.DataFrame = cal.table
    err = np.vstack([tab["observed"] - tab["observed_low"], tab["observed_high"] - tab["observed"]])
    ax.errorbar(
        tab["predicted"],
        tab["observed"],
        yerr=np.clip(err, 0, None),
        fmt="o",
        capsize=3,
        label="groups (Kaplan-Meier, 95% CI)",
    )
    top = float(np.nanmax([tab["predicted"].max(), tab["observed_high"].max(), 0.05])) * 1.05
    ax.plot([0, top], [0, top], color="grey", ls="--", lw=1, label="ideal")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel(f"Predicted risk by t = {cal.horizon:g}")
    ax.set_ylabel(f"Observed risk by t = {cal.horizon:g}")
    ax.set_title(
        title
        or f"Calibration at t = {cal.horizon:g} (slope {cal.slope:.2f}, "
        f"O/E {cal.observed_expected:.2f})"
    )
    ax.legend(fontsize="small", loc="upper left")
    return fig


def plot_survival_decision_curve(curve, horizon: float, *, ax=None, label: str = "model"):
    """Net benefit at a horizon (from :func:`lmmkit.survival_decision_curve`), drawn by
    :func:`lmmkit.validation.decision_curve.plot_decision_curve` with a title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from lmmkit.validation.decision_curve import plot_decision_curve

    fig = plot_decision_curve(curve, ax=ax, label=label)
    fig.axes[0].set_title(f"Decision curve at t = {horizon:g} (Kaplan-Meier risk)")
    return fig


def plot_zph(zph, covariate: str, *, ax=None, window: int = 25):
    """Scaled Schoenfeld residuals of one covariate against transformed time (the picture
    behind :func:`lmmkit.cox_zph`), with a moving average; a flat line means
    proportional hazards.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if covariate not in zph.y.columns:
        raise DataError(
            f"{covariate!r} is not a covariate of the test; choose from {list(zph.y.columns)}."
        )
    fig, ax = _axes(ax)
    x = zph.x
    y = zph.y[covariate].to_numpy()
    o = np.argsort(x, kind="stable")
    ax.plot(x, y, ".", alpha=0.4, ms=4, label="scaled Schoenfeld residuals")
    k = max(3, min(window, x.size // 3))
    smooth = np.convolve(y[o], np.ones(k) / k, mode="valid")
    ax.plot(
        x[o][k // 2 : k // 2 + smooth.size], smooth, color="C3", lw=2, label=f"moving average ({k})"
    )
    p = zph.table.loc[covariate, "p"]
    ax.set_xlabel(f"Time ({zph.transform} transform)")
    ax.set_ylabel(f"Beta(t) for {covariate}")
    ax.set_title(f"Proportional hazards check: {covariate} (p = {p:.3g})")
    ax.legend(fontsize="small")
    return fig

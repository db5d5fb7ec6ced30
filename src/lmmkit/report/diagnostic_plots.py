"""Diagnostic figures of fitted linear mixed models (matplotlib). The numbers come from
:mod:`lmmkit.inference.diagnostics`; these functions only draw them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from lmmkit.results.lmm_result import LMMResult

__all__ = [
    "cluster_influence_plot",
    "qq_ranef_plot",
    "qq_residuals_plot",
    "residuals_fitted_plot",
]

_POINT = "#1f4e79"
_LINE = "#c0392b"
_GUIDE = {"color": "grey", "lw": 0.8, "ls": "--"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _residuals(
    result: LMMResult, table: pd.DataFrame | None, kind: str
) -> tuple[np.ndarray, np.ndarray, str]:
    """(fitted, residual, label) from a residual_table or, failing that, the result."""
    labels = {
        "resid": "Residual",
        "pearson": "Pearson residual",
        "standardized": "Standardized residual",
        "marginal_resid": "Marginal residual",
        "marginal_pearson": "Marginal Pearson residual",
    }
    if kind not in labels:
        raise ValueError(f"kind must be one of {sorted(labels)}; got {kind!r}.")
    marginal = kind.startswith("marginal")
    if table is not None:
        fitted = table["fitted_marginal" if marginal else "fitted"].to_numpy()
        return fitted, table[kind].to_numpy(), labels[kind]
    if kind == "resid":
        return result.fitted, result.residuals, labels[kind]
    if kind == "pearson":  # unweighted: residual / sigma
        return result.fitted, result.residuals / result.sigma, "Scaled residual"
    raise ValueError(
        f"kind={kind!r} needs a residual table: pass table=residual_table(result, data)."
    )


def _density(n: int) -> dict[str, float]:
    """Marker size and transparency for a scatter of ``n`` points: opaque up to a few
    hundred, lighter and smaller beyond so that thousands of points show their density."""
    scale = min(1.0, (500.0 / max(n, 1)) ** 0.5)
    return {"s": 6.0 + 8.0 * scale, "alpha": max(0.12, 0.7 * scale)}


def _binned_mean(x: np.ndarray, y: np.ndarray, bins: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """A smoother without extra dependencies: means of y in quantile bins of x."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 2 * bins:
        bins = max(2, len(x) // 5)
    edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)))
    if len(edges) < 3:
        return np.zeros(0), np.zeros(0)
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    cx = np.array([x[idx == b].mean() for b in range(len(edges) - 1) if np.any(idx == b)])
    cy = np.array([y[idx == b].mean() for b in range(len(edges) - 1) if np.any(idx == b)])
    return cx, cy


def residuals_fitted_plot(
    result: LMMResult,
    table: pd.DataFrame | None = None,
    *,
    kind: str = "pearson",
    label_top: int = 3,
) -> Figure:
    """Residuals against fitted values with a binned-mean trend line (flat at zero when the
    mean structure fits) and the ``label_top`` largest absolute residuals labelled by row.

    ``table`` is a :func:`~lmmkit.inference.diagnostics.residual_table`; without it only
    ``kind="resid"`` or ``"pearson"`` (unweighted) are available."""
    plt = _pyplot()
    fitted, resid, ylabel = _residuals(result, table, kind)
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    ax.scatter(fitted, resid, edgecolor="none", color=_POINT, **_density(len(resid)))
    ax.axhline(0.0, **_GUIDE)
    cx, cy = _binned_mean(fitted, resid)
    if len(cx):
        ax.plot(cx, cy, color=_LINE, lw=1.5, label="binned mean")
        ax.legend(loc="best", fontsize=8, frameon=False)
    if label_top > 0:
        rows = table.index.to_numpy() if table is not None else np.arange(len(resid))
        finite = np.where(np.isfinite(resid), np.abs(resid), -np.inf)
        for i in np.argsort(finite)[::-1][:label_top]:
            ax.annotate(str(rows[i]), (fitted[i], resid[i]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")  # fmt: skip
    ax.set_xlabel("Marginal fitted value" if kind.startswith("marginal") else "Fitted value")
    ax.set_ylabel(ylabel)
    ax.set_title(f"Residuals vs fitted: {result.formula}", fontsize=9)
    fig.tight_layout()
    return fig


def _qq_axis(ax: Axes, values: np.ndarray, title: str, labels: Any = None) -> None:
    from lmmkit.inference.diagnostics import qq_table

    qq = qq_table(values, labels=labels)
    ax.scatter(qq["theoretical"], qq["sample"], s=14, color=_POINT, edgecolor="none")
    if "line" in qq.attrs:
        a, b = qq.attrs["line"]
        xs = np.array([qq["theoretical"].min(), qq["theoretical"].max()])
        ax.plot(xs, a + b * xs, color=_LINE, lw=1.2)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("Normal quantile")


def qq_residuals_plot(
    result: LMMResult, table: pd.DataFrame | None = None, *, kind: str = "pearson"
) -> Figure:
    """Normal QQ plot of the residuals with R's ``qqline`` (through the quartiles)."""
    plt = _pyplot()
    _, resid, ylabel = _residuals(result, table, kind)
    fig, ax = plt.subplots(figsize=(5.2, 4.8))
    _qq_axis(ax, resid, f"Normal QQ plot: {ylabel}s")
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    return fig


def qq_ranef_plot(result: LMMResult, term: str | None = None) -> Figure:
    """Normal QQ plots of the conditional modes, one panel per column of each random-effects
    term (or of ``term`` only)."""
    plt = _pyplot()
    panels = [(t, c) for t in result.terms if term in (None, t.name) for c in range(len(t.columns))]
    if not panels:
        names = [t.name for t in result.terms]
        raise ValueError(f"No random-effects term {term!r}; the model has {names}.")
    ncol = min(3, len(panels))
    nrow = -(-len(panels) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol + 0.6, 3.3 * nrow), squeeze=False)
    for ax, (t, c) in zip(axes.flat, panels):
        _qq_axis(ax, t.modes[:, c], f"{t.name}: {t.columns[c]}", labels=t.levels)
        ax.set_ylabel("Conditional mode")
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle("Normal QQ of conditional modes", fontsize=10)
    fig.tight_layout()
    return fig


def cluster_influence_plot(
    table: pd.DataFrame, *, top: int = 20, coefficients: list[str] | None = None
) -> Figure:
    """Leave-one-cluster-out influence from
    :func:`~lmmkit.inference.diagnostics.cluster_influence`, levels sorted by Cook's
    distance.

    The panels show the ``top`` most influential levels: their Cook's distance (with the
    4 / n_levels cutoff) and the change in each fixed effect (beta - beta without the
    level). With more levels than ``top``, a first row shows every level's Cook's distance
    against its rank, so the tail the top levels stand out from is visible too.

    Parameters
    ----------
    table
        The influence table.
    top
        How many levels to draw one by one.
    coefficients
        The fixed effects whose change is drawn (default: all, at most 4; the table has
        every one).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import lmmkit
    >>> from lmmkit.datasets import load_dataset
    >>> ss = load_dataset("sleepstudy")
    >>> f = "Reaction ~ Days + (1 | Subject)"
    >>> infl = lmmkit.cluster_influence(f, ss, "Subject", full_fit=lmmkit.lmm(f, ss))
    >>> len(cluster_influence_plot(infl).axes)
    3
    """
    plt = _pyplot()
    dcols = [c for c in table.columns if c.startswith("dfbeta:")]
    if coefficients is not None:
        wanted = [f"dfbeta:{c}" for c in coefficients]
        missing = [c for c, w in zip(coefficients, wanted) if w not in dcols]
        if missing:
            raise ValueError(f"no fixed effect(s) {missing}; the table has {dcols}.")
        dcols = wanted
    dcols = dcols[:4]
    n = len(table)
    ranked = table.sort_values("cooks", ascending=False, kind="stable")
    t = ranked.iloc[:top].iloc[::-1]  # most influential at the top of the panels
    truncated = n > top
    cutoff = table.attrs.get("cutoff", 4.0 / n)
    npan = 1 + len(dcols)
    fig = plt.figure(figsize=(2.9 * npan + 1.2, 0.24 * len(t) + 2.0 + 2.2 * truncated),
                     layout="constrained")  # fmt: skip
    grid = fig.add_gridspec(1 + truncated, npan, height_ratios=[2.2, 0.24 * len(t) + 0.8]
                            if truncated else None)  # fmt: skip
    if truncated:
        over = fig.add_subplot(grid[0, :])
        rank = np.arange(1, n + 1)
        over.plot(rank, ranked["cooks"].to_numpy(), ".", ms=3, color=_POINT)
        over.axvspan(
            0.5, top + 0.5, color="#f2f2f2", zorder=-1, label=f"the top {top}, drawn below"
        )
        over.axhline(cutoff, color=_LINE, lw=0.9, ls=":", label=f"4/n = {cutoff:.2g}")
        over.set_xlim(0.5, n + 0.5)
        over.set_xlabel(f"rank of the {n:,} levels by Cook's distance")
        over.set_ylabel("Cook's distance")
        n_over = int((table["cooks"] > cutoff).sum())
        over.set_title(f"All levels: {n_over} of {n:,} above the 4/n cutoff", fontsize=9)
        over.legend(loc="upper right", fontsize=7, frameon=False)
    row = 1 if truncated else 0
    ax0 = fig.add_subplot(grid[row, 0])
    axes = [ax0] + [fig.add_subplot(grid[row, j], sharey=ax0) for j in range(1, npan)]
    ypos = np.arange(len(t))
    ax0.hlines(ypos, 0, t["cooks"], color="#8fb3d9")
    ax0.plot(t["cooks"], ypos, "o", ms=4, color=_POINT)
    ax0.axvline(cutoff, color=_LINE, lw=0.9, ls=":", label=f"4/n = {cutoff:.2g}")
    ax0.legend(loc="lower right", fontsize=7, frameon=False)
    ax0.set_title("Cook's distance", fontsize=9)
    ax0.set_yticks(ypos, [str(x) for x in t.index], fontsize=7)
    ax0.set_ylabel(table.index.name or "cluster")
    ax0.set_xlabel("Cook's distance")
    from matplotlib.ticker import MaxNLocator

    for ax, col in zip(axes[1:], dcols):
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.plot(t[col], ypos, "o", ms=4, color=_POINT)
        ax.axvline(0.0, **_GUIDE)
        ax.set_title(f"change in {col.split(':', 1)[1]}", fontsize=9)
        ax.set_xlabel("beta - beta without the level")
        ax.tick_params(labelleft=False)
    shown = f"the {len(t)} most influential of {n:,} levels" if truncated else f"{n} levels"
    fig.suptitle(f"Leave-one-{table.index.name or 'cluster'}-out influence: {shown}",
                 fontsize=10)  # fmt: skip
    return fig

"""Plots: the efficiency frontier, the cost-effectiveness plane of the PSA draws and the
cost-effectiveness acceptability curves. Each returns its matplotlib Figure."""

from __future__ import annotations

import numpy as np

from lmmkit.errors import DataError

from .analysis import CostEffectiveness, PSAResult

__all__ = ["plot_frontier", "plot_ce_plane", "plot_ceac"]


def _axes(ax, size=(6.5, 4.8)):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=size)
        return fig, ax
    return ax.figure, ax


def plot_frontier(result: CostEffectiveness, *, ax=None, title: str | None = None):
    """Expected cost against effect of every strategy, the frontier joined by a line.

    Parameters
    ----------
    result : CostEffectiveness
        The result of :func:`~lmmkit.cost_effectiveness`.
    ax : matplotlib Axes, optional
        Axes to draw on (default: a new figure).
    title : str, optional
        Title (default counts the frontier's strategies).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import numpy as np
    >>> from lmmkit import CEAInputs, cost_effectiveness, plot_frontier
    >>> rng = np.random.default_rng(0); y = rng.integers(0, 2, 100); s = y + rng.normal(0, 1, 100)
    >>> inp = CEAInputs(5000, 9000, 5000, 0, 8.0, 6.5, 9.9, 10.0, cost_test=100)
    >>> fig = plot_frontier(cost_effectiveness(inp, y, s))
    >>> fig.axes[0].get_xlabel()
    'Expected effect per patient (QALYs)'
    """
    if not isinstance(result, CostEffectiveness):
        raise DataError(
            f"plot_frontier: expected cost_effectiveness()'s result, got {type(result).__name__}."
        )
    fig, ax = _axes(ax)
    s = result.strategies
    styles = {
        "dominated": ("lightgrey", "strictly dominated"),
        "identical": ("lightgrey", None),
        "extendedly dominated": ("C1", "extendedly dominated"),
    }
    for status, (color, label) in styles.items():
        part = s[s["status"] == status]
        if len(part):
            ax.scatter(part["effect"], part["cost"], s=14, color=color, label=label, zorder=2)
    f = result.frontier
    ax.plot(f["effect"], f["cost"], "-o", color="C0", ms=5, label="efficiency frontier", zorder=3)
    for name in ("treat none", "treat all"):
        ax.annotate(
            name,
            (s.loc[name, "effect"], s.loc[name, "cost"]),
            fontsize="small",
            xytext=(4, -10),
            textcoords="offset points",
        )
    ax.set_xlabel("Expected effect per patient (QALYs)")
    ax.set_ylabel("Expected cost per patient")
    ax.set_title(title or f"Efficiency frontier ({len(f)} of {len(s)} strategies)")
    ax.legend(fontsize="small", loc="best")
    return fig


def plot_ce_plane(
    psa: PSAResult,
    *,
    comparator: str = "treat none",
    strategies: list[str] | None = None,
    wtp: float | None = None,
    ax=None,
    title: str | None = None,
):
    """Incremental cost against incremental effect of each PSA draw, against ``comparator``.

    Parameters
    ----------
    psa : PSAResult
        The result of :func:`~lmmkit.probabilistic_sensitivity`.
    comparator : str
        The strategy the increments are taken against.
    strategies : list of str, optional
        Strategies to show (default: the base-case frontier, at most 5, comparator left out).
    wtp : float, optional
        Draw the willingness-to-pay line through the origin.
    ax : matplotlib Axes, optional
        Axes to draw on.
    title : str, optional
        Title.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import numpy as np
    >>> from lmmkit import CEAInputs, gamma_from_moments, probabilistic_sensitivity, plot_ce_plane
    >>> rng = np.random.default_rng(0); y = rng.integers(0, 2, 100); s = y + rng.normal(0, 1, 100)
    >>> inp = CEAInputs(gamma_from_moments(5000, 900), 9000, 5000, 0, 8.0, 6.5, 9.9, 10.0)
    >>> fig = plot_ce_plane(probabilistic_sensitivity(inp, y, s, n_draws=50), wtp=20_000)
    >>> fig.axes[0].get_title()
    'Cost-effectiveness plane (50 PSA draws)'
    """
    if not isinstance(psa, PSAResult):
        raise DataError(
            f"plot_ce_plane: expected probabilistic_sensitivity()'s result, got {type(psa).__name__}."
        )
    if comparator not in psa.cost.columns:
        raise DataError(f"plot_ce_plane: comparator {comparator!r} is not a strategy.")
    if strategies is None:
        strategies = [n for n in psa.base.frontier.index if n != comparator][:5]
    missing = [n for n in strategies if n not in psa.cost.columns]
    if missing:
        raise DataError(f"plot_ce_plane: unknown strategies {missing}.")
    fig, ax = _axes(ax)
    for k, name in enumerate(strategies):
        dc = psa.cost[name] - psa.cost[comparator]
        de = psa.effect[name] - psa.effect[comparator]
        ax.scatter(de, dc, s=5, alpha=0.35, color=f"C{k}", label=name)
        ax.scatter([de.mean()], [dc.mean()], s=60, color=f"C{k}", edgecolor="black", zorder=3)
    ax.axhline(0, color="grey", lw=0.7)
    ax.axvline(0, color="grey", lw=0.7)
    if wtp is not None:
        xs = np.array(ax.get_xlim())
        ax.plot(xs, wtp * xs, color="black", ls="--", lw=1, label=f"WTP {wtp:,.0f} per QALY")
        ax.set_xlim(*xs)
    ax.set_xlabel(f"Incremental effect vs {comparator} (QALYs per patient)")
    ax.set_ylabel(f"Incremental cost vs {comparator} (per patient)")
    ax.set_title(title or f"Cost-effectiveness plane ({psa.n_draws} PSA draws)")
    ax.legend(fontsize="small", loc="best", markerscale=2)
    return fig


def plot_ceac(psa: PSAResult, *, max_strategies: int = 6, ax=None, title: str | None = None):
    """Probability that each strategy has the largest net monetary benefit, against
    willingness to pay, for the ``max_strategies`` strategies with the highest peak
    probability (the others are counted in a note). The acceptability frontier (the
    strategy of largest expected NMB) is drawn as a thick grey line.

    Parameters
    ----------
    psa : PSAResult
        The result of :func:`~lmmkit.probabilistic_sensitivity`.
    max_strategies : int
        Number of curves drawn.
    ax : matplotlib Axes, optional
        Axes to draw on.
    title : str, optional
        Title.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import numpy as np
    >>> from lmmkit import CEAInputs, gamma_from_moments, probabilistic_sensitivity, plot_ceac
    >>> rng = np.random.default_rng(0); y = rng.integers(0, 2, 100); s = y + rng.normal(0, 1, 100)
    >>> inp = CEAInputs(gamma_from_moments(5000, 900), 9000, 5000, 0, 8.0, 6.5, 9.9, 10.0)
    >>> fig = plot_ceac(probabilistic_sensitivity(inp, y, s, n_draws=50))
    >>> fig.axes[0].get_title()
    'Cost-effectiveness acceptability curves (50 PSA draws)'
    """
    if not isinstance(psa, PSAResult):
        raise DataError(
            f"plot_ceac: expected probabilistic_sensitivity()'s result, got {type(psa).__name__}."
        )
    fig, ax = _axes(ax)
    peak = psa.ceac.max().sort_values(ascending=False, kind="stable")
    shown = list(peak.index[: int(max_strategies)])
    lam = psa.ceac.index.to_numpy()
    best_prob = np.array([psa.ceac.loc[w, b] for w, b in psa.best.items()])
    ax.plot(lam, best_prob, color="grey", lw=5, alpha=0.4, label="acceptability frontier")
    for k, name in enumerate(shown):
        ax.plot(lam, psa.ceac[name], color=f"C{k}", lw=1.4, label=name)
    hidden = len(peak) - len(shown)
    if hidden:
        ax.text(
            0.01,
            0.98,
            f"{hidden} other strategies, each at most {peak.iloc[len(shown)]:.2f}",
            transform=ax.transAxes,
            ha="left",
            va="top",
            fontsize="small",
            color="dimgrey",
        )
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("Willingness to pay per QALY")
    ax.set_ylabel("Probability of the largest net monetary benefit")
    ax.set_title(title or f"Cost-effectiveness acceptability curves ({psa.n_draws} PSA draws)")
    ax.legend(fontsize="small", loc="upper right")
    return fig

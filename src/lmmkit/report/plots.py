"""Figures of fitted models (matplotlib, no computation beyond arranging results)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from lmmkit.results.lmm_result import LMMResult

__all__ = ["caterpillar"]

_POINT = "#1f4e79"
_BAR = "#8fb3d9"
_RED = "#c0392b"


def _strip(ax: Axes, values: np.ndarray, y: float, n_rest: int) -> None:
    """The levels not drawn one by one, as a density strip on row ``y``: a tick per level
    (transparent, so dense regions are dark), their interquartile box and median."""
    from matplotlib.patches import Rectangle

    alpha = float(np.clip(8.0 / max(n_rest, 1), 0.04, 0.6))
    ax.plot(values, np.full_like(values, y), "|", ms=14, color=_POINT, alpha=alpha)
    q1, med, q3 = np.quantile(values, [0.25, 0.5, 0.75])
    ax.add_patch(Rectangle((q1, y - 0.3), q3 - q1, 0.6, fill=False, ec=_RED, lw=1.0))
    ax.plot([med, med], [y - 0.3, y + 0.3], color=_RED, lw=1.4)
    ax.axhspan(y - 0.5, y + 0.5, color="#f2f2f2", zorder=-1)


def caterpillar(
    result: LMMResult,
    term: str | None = None,
    level: float = 0.95,
    *,
    max_levels: int = 40,
    k: int = 12,
) -> Figure:
    """Conditional modes of one random-effects term with intervals from their conditional
    variances (lme4's dotplot), one panel per column, levels sorted by the first column.

    With more than ``max_levels`` levels the figure keeps a readable size: the ``k``
    lowest and ``k`` highest levels (by the first column) are drawn one by one and the
    others as a density strip between them (a tick per level, with their quartile box).

    Parameters
    ----------
    result
        A fitted linear mixed model.
    term
        The random-effects term's name (default: the first term).
    level
        Coverage of the intervals.
    max_levels
        Up to this many levels, every level is drawn.
    k
        Levels drawn at each end beyond ``max_levels``.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        No such term, or ``k`` too large for ``max_levels``.

    Examples
    --------
    >>> import lmmkit
    >>> from lmmkit.datasets import load_dataset
    >>> res = lmmkit.lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
    >>> fig = caterpillar(res)
    >>> len(fig.axes)
    2
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    info = next((t for t in result.terms if term in (None, t.name)), None)
    if info is None:
        names = [t.name for t in result.terms]
        raise ValueError(f"No random-effects term {term!r}; the model has {names}.")
    if not 1 <= 2 * k <= max_levels:
        raise ValueError(f"need 1 <= 2 * k <= max_levels; got k={k}, max_levels={max_levels}.")
    z = norm.ppf(0.5 + level / 2)
    se = np.sqrt(np.maximum(np.diagonal(info.condvar, axis1=1, axis2=2), 0.0))
    order = np.argsort(info.modes[:, 0], kind="stable")
    n = len(order)
    truncated = n > max_levels
    shown = np.concatenate([order[:k], order[-k:]]) if truncated else order
    ypos = np.arange(len(shown), dtype=float)
    if truncated:
        ypos[k:] += 1.0  # row k holds the strip of the other levels
    labels = [str(info.levels[i]) for i in shown]
    p = info.modes.shape[1]
    rows = len(shown) + truncated
    fig, axes = plt.subplots(
        1, p, figsize=(3.2 * p + 1.4, 0.24 * rows + 1.7), sharey=True, squeeze=False,
        layout="constrained",
    )  # fmt: skip
    for c, ax in enumerate(axes[0]):
        ax.errorbar(info.modes[shown, c], ypos, xerr=z * se[shown, c], fmt="o", ms=3,
                    color=_POINT, ecolor=_BAR)  # fmt: skip
        if truncated:
            _strip(ax, info.modes[order[k:-k], c], float(k), n - 2 * k)
        ax.axvline(0.0, color="grey", lw=0.8, ls="--")
        ax.set_title(info.columns[c], fontsize=10)
        ax.set_xlabel("conditional mode")
    ticks = list(ypos) + ([float(k)] if truncated else [])
    names = labels + ([f"{n - 2 * k:,} others (strip)"] if truncated else [])
    axes[0][0].set_yticks(ticks, names, fontsize=7)
    axes[0][0].set_ylim(-0.7, rows - 0.3)
    axes[0][0].set_ylabel(info.name)
    what = (
        f"{n:,} levels; the {k} lowest and {k} highest by {info.columns[0]} shown, the other "
        f"{n - 2 * k:,} as a density strip"
        if truncated
        else f"{n:,} levels"
    )
    fig.suptitle(
        f"Conditional modes of {info.name} with {level:.0%} intervals\n{what}", fontsize=10
    )
    return fig

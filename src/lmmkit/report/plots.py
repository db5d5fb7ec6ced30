"""Figures of fitted models (matplotlib, no computation beyond arranging results)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lmmkit.results.lmm_result import LMMResult

__all__ = ["caterpillar"]


def caterpillar(result: LMMResult, term: str | None = None, level: float = 0.95) -> Figure:
    """Conditional modes of one random-effects term with intervals from their conditional
    variances, one panel per column, levels sorted by the first column (lme4's dotplot)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    info = next((t for t in result.terms if term in (None, t.name)), None)
    if info is None:
        names = [t.name for t in result.terms]
        raise ValueError(f"No random-effects term {term!r}; the model has {names}.")
    z = norm.ppf(0.5 + level / 2)
    se = np.sqrt(np.maximum(np.diagonal(info.condvar, axis1=1, axis2=2), 0.0))
    order = np.argsort(info.modes[:, 0])
    labels = [str(info.levels[i]) for i in order]
    p = info.modes.shape[1]
    fig, axes = plt.subplots(
        1, p, figsize=(3.2 * p + 1, 0.22 * len(labels) + 1.5), sharey=True, squeeze=False
    )
    ypos = np.arange(len(labels))
    for c, ax in enumerate(axes[0]):
        ax.errorbar(
            info.modes[order, c],
            ypos,
            xerr=z * se[order, c],
            fmt="o",
            ms=3,
            color="#1f4e79",
            ecolor="#8fb3d9",
        )
        ax.axvline(0.0, color="grey", lw=0.8, ls="--")
        ax.set_title(info.columns[c])
        ax.set_yticks(ypos, labels, fontsize=7)
    axes[0][0].set_ylabel(info.name)
    fig.suptitle(f"Conditional modes of {info.name} with {int(level * 100)}% intervals")
    fig.tight_layout()
    return fig

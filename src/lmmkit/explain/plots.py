"""Plots of Shapley values: a beeswarm (one dot per row and feature, coloured by the feature's
value) and a bar chart of mean |phi|. matplotlib only; no computation beyond ordering."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from lmmkit.errors import DataError

from .shapley import ShapleyResult

__all__ = ["plot_shapley"]


def _swarm_offsets(x: np.ndarray, width: float = 0.38, bins: int = 60) -> np.ndarray:
    """Vertical offsets that spread dots with similar x (a histogram-based swarm)."""
    if len(x) < 2 or np.ptp(x) == 0:
        return np.zeros(len(x))
    edges = np.linspace(x.min(), x.max(), bins + 1)
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, bins - 1)
    off = np.zeros(len(x))
    counts = np.bincount(idx, minlength=bins)
    peak = counts.max()
    for b in np.flatnonzero(counts):
        members = np.flatnonzero(idx == b)
        k = len(members)
        # alternate above/below the line, scaled to the fullest bin
        ranks = np.arange(k)
        sign = np.where(ranks % 2 == 0, 1.0, -1.0)
        off[members] = sign * np.ceil(ranks / 2) / max(peak / 2, 1) * width
    return off


def plot_shapley(
    result: ShapleyResult,
    *,
    kind: Literal["beeswarm", "bar"] = "beeswarm",
    max_display: int = 15,
    ax: Any = None,
    title: str | None = None,
):
    """Beeswarm or bar plot of Shapley values.

    Parameters
    ----------
    result : ShapleyResult
        From :func:`lmmkit.shapley_values`.
    kind : {"beeswarm", "bar"}
        One dot per (row, feature) coloured by the feature value (low blue, high red), or
        the mean absolute Shapley value per feature.
    max_display : int
        Features shown, most important first (the rest are summed into one row).
    ax : matplotlib Axes, optional
    title : str, optional

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    lmmkit.errors.DataError
        Unknown ``kind`` or a non-positive ``max_display``.

    Examples
    --------
    >>> import numpy as np, pandas as pd, lmmkit
    >>> X = pd.DataFrame(np.random.default_rng(0).standard_normal((50, 3)), columns=list("abc"))
    >>> res = lmmkit.shapley_values((pd.Series({"a": 1.0, "b": -0.5, "c": 0.1}), 0.0), X)
    >>> ax = lmmkit.plot_shapley(res, kind="bar")
    >>> ax.get_xlabel().startswith("mean |Shapley value|")
    True
    """
    import matplotlib.pyplot as plt

    if kind not in ("beeswarm", "bar"):
        raise DataError(f"plot_shapley: kind={kind!r} is not 'beeswarm' or 'bar'.")
    if int(max_display) < 1:
        raise DataError(f"plot_shapley: max_display={max_display!r} must be at least 1.")
    values = result.values
    order = values.abs().mean().sort_values(ascending=False).index.tolist()
    shown = order[: int(max_display)]
    rest = order[int(max_display) :]
    if ax is None:
        _, ax = plt.subplots(figsize=(7.0, 0.45 * (len(shown) + bool(rest)) + 1.6))
    labels = shown + ([f"{len(rest)} other features"] if rest else [])
    pos = np.arange(len(labels))[::-1]
    scale = result.scale
    mode = "observational" if result.mode == "observational" else "interventional"
    if kind == "bar":
        heights = [values[c].abs().mean() for c in shown]
        if rest:
            heights.append(values[rest].sum(axis=1).abs().mean())
        ax.barh(pos, heights, color="#1f77b4")
        ax.set_xlabel(f"mean |Shapley value| ({scale})")
    else:
        cmap = plt.get_cmap("coolwarm")
        for y0, col in zip(pos, labels):
            phi = values[rest].sum(axis=1).to_numpy() if col not in values else values[col].to_numpy()
            if col in result.data:
                v = result.data[col].to_numpy(dtype=float)
                lo, hi = np.nanpercentile(v, [5, 95])
                c = np.clip((v - lo) / (hi - lo), 0, 1) if hi > lo else np.full(len(v), 0.5)
            else:
                c = np.full(len(phi), 0.5)
            ax.scatter(phi, y0 + _swarm_offsets(phi), c=cmap(c), s=12, linewidths=0, alpha=0.85)
        ax.axvline(0.0, color="0.5", lw=0.8)
        sm = plt.cm.ScalarMappable(cmap=cmap)
        cb = plt.colorbar(sm, ax=ax, ticks=[0, 1], fraction=0.04, pad=0.02)
        cb.ax.set_yticklabels(["low", "high"])
        cb.set_label("feature value")
        ax.set_xlabel(f"Shapley value (impact on {scale})")
    ax.set_yticks(pos)
    ax.set_yticklabels(labels)
    ax.set_ylabel("feature")
    ax.set_title(title or f"Shapley values ({mode}, {result.method})")
    return ax

"""Figures of the imaging lifecycle (matplotlib; no computation): learning curves, segmentation
overlays, Grad-CAM overlays with the layer's grid drawn (the resolution limit), client drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["plot_learning_curves", "plot_segmentation_overlay", "plot_gradcam_overlay",
           "plot_drift"]  # fmt: skip


def _plt() -> Any:
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(histories: dict[str, pd.DataFrame], *, metrics: Sequence[str] = ()) -> Any:
    """Training loss (left) and validation metrics (right) per epoch for several runs.

    Parameters
    ----------
    histories : dict of name -> DataFrame
        Each with ``epoch``, ``train_loss`` and optional validation columns.
    metrics : sequence of str
        Validation columns to draw (default every column starting with ``val_``).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> h = pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.5], "val_dice": [0.2, 0.6]})
    >>> fig = plot_learning_curves({"U-Net": h})
    """
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, h in histories.items():
        loss_col = "train_loss" if "train_loss" in h else [c for c in h if c.startswith("train_")][0]
        a1.plot(h["epoch"], h[loss_col], marker="o", ms=3, label=name)
        cols = list(metrics) or [c for c in h.columns if c.startswith("val_") and "loss" not in c]
        for col in cols:
            if col in h:
                a2.plot(h["epoch"], h[col], marker="o", ms=3, label=f"{name}: {col[4:]}")
    a1.set(title="Training loss", xlabel="epoch", ylabel="loss")
    a2.set(title="Held-out site", xlabel="epoch", ylabel="metric", ylim=(0, 1))
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _lesion_slice(mask: np.ndarray) -> int:
    return int(np.argmax(mask.reshape(mask.shape[0], -1).sum(1)))


def plot_segmentation_overlay(
    images: Any, true: Any, pred: Any, *, ids: Sequence[str] | None = None,
    dice: Sequence[float] | None = None, channel: int = 0, max_images: int = 6,
) -> Any:  # fmt: skip
    """Axial slice through each lesion's largest cross-section with the true (green) and
    predicted (red) mask outlines.

    Examples
    --------
    >>> m = np.zeros((1, 8, 8, 8), bool); m[0, 3:5, 3:5, 3:5] = True
    >>> fig = plot_segmentation_overlay(np.zeros((1, 1, 8, 8, 8)), m, m)
    """
    plt = _plt()
    n = min(len(true), max_images)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 3), squeeze=False)
    for i, ax in enumerate(axes[0]):
        z = _lesion_slice(np.asarray(true[i]))
        ax.imshow(np.asarray(images[i, channel, z]), cmap="gray")
        ax.contour(np.asarray(true[i][z], float), levels=[0.5], colors="lime", linewidths=1.2)
        if np.asarray(pred[i][z]).any():
            ax.contour(np.asarray(pred[i][z], float), levels=[0.5], colors="red", linewidths=1.0)
        title = ids[i] if ids is not None else f"image {i}"
        if dice is not None:
            title += f"\nDice {dice[i]:.2f}"
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("x (voxel)", fontsize=7)
        ax.set_ylabel(f"y (voxel), z={z}", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle("Segmentation on the held-out site: true (green) vs U-Net (red)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_gradcam_overlay(
    images: Any, cam: Any, masks: Any, *, ids: Sequence[str] | None = None, channel: int = 0,
    max_images: int = 6,
) -> Any:  # fmt: skip
    """Top row: image slice with the lesion outline and the upsampled Grad-CAM map; bottom row:
    the map on the layer's own grid (the resolution limit) with the map's maximum marked.

    ``cam`` is a :class:`lmmkit.imaging.saliency.CamResult`.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> m = np.zeros((1, 8, 8, 8), bool); m[0, 3:5, 3:5, 3:5] = True
    >>> cam = SimpleNamespace(maps=m.astype(float), coarse=np.ones((1, 4, 4, 4)), cell=(2., 2., 2.),
    ...                       layer="x", grid=(4, 4, 4))
    >>> fig = plot_gradcam_overlay(np.zeros((1, 1, 8, 8, 8)), cam, m)
    """
    plt = _plt()
    n = min(len(masks), max_images)
    fig, axes = plt.subplots(2, n, figsize=(2.6 * n, 5.4), squeeze=False)
    for i in range(n):
        mk = np.asarray(masks[i]).astype(bool)
        peak = np.unravel_index(int(np.argmax(cam.maps[i])), cam.maps[i].shape)
        z = int(peak[0])
        ax = axes[0, i]
        ax.imshow(np.asarray(images[i, channel, z]), cmap="gray")
        ax.imshow(cam.maps[i][z], cmap="jet", alpha=0.4, vmin=0, vmax=1)
        if mk[z].any():
            ax.contour(mk[z].astype(float), levels=[0.5], colors="white", linewidths=1.0)
        ax.plot(peak[2], peak[1], "w+", ms=10, mew=2)
        hit = bool(mk[peak])
        ax.set_title(f"{ids[i] if ids is not None else i}: peak {'in' if hit else 'outside'} lesion",
                     fontsize=8)  # fmt: skip
        ax.set_xlabel("x (voxel)", fontsize=7)
        ax.set_ylabel(f"y, slice z={z}", fontsize=7)
        ax.tick_params(labelsize=6)
        cz = min(int(z // cam.cell[0]), cam.coarse.shape[1] - 1)
        ax2 = axes[1, i]
        ax2.imshow(cam.coarse[i][cz], cmap="jet", interpolation="nearest")
        ax2.set_title(f"{cam.layer} grid {cam.grid[1]}x{cam.grid[2]}\n(cell {cam.cell[1]:g} voxels)",
                      fontsize=7)  # fmt: skip
        ax2.set_xlabel("x (cell)", fontsize=7)
        ax2.set_ylabel("y (cell)", fontsize=7)
        ax2.tick_params(labelsize=6)
    fig.suptitle("Grad-CAM (captum) on the held-out site; bottom: the layer's grid, the "
                 "resolution limit", fontsize=10)  # fmt: skip
    fig.tight_layout()
    return fig


def plot_drift(table: pd.DataFrame) -> Any:
    """Client drift (distance of FedAvg from the pooled optimum) against local epochs, one line
    per split (:func:`lmmkit.imaging.federated.drift_study`).

    Examples
    --------
    >>> t = pd.DataFrame({"scheme": ["iid", "iid"], "local_epochs": [1, 5], "distance": [0, .1]})
    >>> fig = plot_drift(t)
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for scheme, g in table.groupby("scheme"):
        label = "by site (non-IID)" if scheme == "site" else "IID"
        ax.plot(g["local_epochs"], g["distance"], marker="o", label=label)
    ax.set(title="FedAvg client drift", xlabel="local epochs per round",
           ylabel="|w_FedAvg - w_pooled|")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig

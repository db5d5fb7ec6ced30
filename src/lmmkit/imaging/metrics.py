"""Evaluation of network outputs with lmmkit's validation metrics.

* :func:`segmentation_table` -- Dice and HD95 per image (``lmmkit.validation.segmentation``),
  with an empty true or predicted mask reported by image id (Dice is undefined when both are
  empty; HD95 when either is).
* :func:`auc` -- ROC AUC (``lmmkit.validation.discrimination.roc_auc``), higher score = case.
* :func:`concordance_index` -- Harrell's C for a risk score (pairs ordered by an observed
  event; tied risks count 1/2; a subject censored at an event's time counts as later, two tied
  events are not comparable: R survival's ``concordance`` convention). To be replaced by
  ``lmmkit.harrell_c`` when the survival module lands.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError

__all__ = ["segmentation_table", "mean_dice", "auc", "concordance_index"]


def segmentation_table(
    pred: Any,
    true: Any,
    *,
    ids: Any = None,
    spacing: Any = None,
    empty: str = "raise",
) -> pd.DataFrame:
    """Dice and HD95 (MedPy's pooled convention) per image.

    Parameters
    ----------
    pred, true : ndarray, shape (n, *spatial)
        Binary masks.
    ids : sequence of str, optional
        Image identifiers for the rows and for error messages (default ``image0``, ...).
    spacing : sequence of float, optional
        Voxel size; HD95 is then in physical units.
    empty : {"raise", "nan"}
        What to do with an image whose true or predicted mask is empty: raise a
        :class:`DataError` naming the image, or report NaN for the undefined metric.

    Returns
    -------
    DataFrame
        Index ``image``; columns ``dice``, ``hd95``, ``true_voxels``, ``pred_voxels``.

    Raises
    ------
    DataError
        Shapes differ, or an empty mask with ``empty="raise"``.

    Examples
    --------
    >>> m = np.zeros((1, 8, 8, 8), bool); m[0, 2:5, 2:5, 2:5] = True
    >>> float(segmentation_table(m, m)["dice"].iloc[0])
    1.0
    """
    from lmmkit.validation.segmentation import dice, hausdorff

    p, t = np.asarray(pred).astype(bool), np.asarray(true).astype(bool)
    if p.shape != t.shape:
        raise DataError(
            f"segmentation_table: predicted masks {p.shape} and true masks {t.shape} differ "
            "in shape; resample the prediction onto the image grid."
        )
    names = [f"image{i}" for i in range(len(p))] if ids is None else [str(v) for v in ids]
    if len(names) != len(p):
        raise DataError(f"segmentation_table: {len(names)} ids for {len(p)} masks.")
    if empty not in ("raise", "nan"):
        raise DataError(f"segmentation_table: empty={empty!r} is not 'raise' or 'nan'.")
    rows = []
    for name, pi, ti in zip(names, p, t):
        if empty == "raise" and not (pi.any() and ti.any()):
            which = "true" if not ti.any() else "predicted"
            raise DataError(
                f"segmentation_table: image {name!r}: the {which} mask is empty, so Dice "
                f"{'is undefined if both are empty' if which == 'true' else 'is 0'} and HD95 is "
                "undefined. Pass empty='nan' to report NaN for it, or exclude the image."
            )
        rows.append(
            {
                "image": name,
                "dice": dice(pi, ti, empty="nan"),
                "hd95": hausdorff(pi, ti, spacing=spacing, percentile=95, empty="nan"),
                "true_voxels": int(ti.sum()),
                "pred_voxels": int(pi.sum()),
            }
        )
    return pd.DataFrame(rows).set_index("image")


def mean_dice(pred: Any, true: Any) -> float:
    """Mean Dice over images (n, *spatial) for monitoring training; an image whose true and
    predicted masks are both empty counts 1 (use :func:`segmentation_table` to evaluate).

    Examples
    --------
    >>> mean_dice(np.ones((2, 3)), np.array([[1, 1, 1], [0, 0, 0]]))
    0.5
    """
    p = np.asarray(pred).astype(bool).reshape(len(pred), -1)
    t = np.asarray(true).astype(bool).reshape(len(true), -1)
    inter, tot = (p & t).sum(1), p.sum(1) + t.sum(1)
    return float(np.mean(np.where(tot > 0, 2 * inter / np.maximum(tot, 1), 1.0)))


def auc(y: Any, score: Any) -> float:
    """ROC AUC of ``score`` for 0/1 labels ``y`` (NaN if only one class is present).

    Examples
    --------
    >>> auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    from lmmkit.validation.discrimination import roc_auc

    yy = np.asarray(y).astype(int)
    if len(np.unique(yy)) < 2:
        return float("nan")
    return float(roc_auc(yy, np.asarray(score, dtype=float), ci=None, direction="<").auc)


def concordance_index(time: Any, event: Any, risk: Any) -> float:
    """Harrell's concordance index of a risk score (higher risk = earlier event).

    Parameters
    ----------
    time, event, risk : array, shape (n,)

    Returns
    -------
    float
        Concordant pairs (+ 1/2 per tied risk) over comparable pairs; NaN if none.

    Examples
    --------
    >>> concordance_index([1, 2, 3], [1, 1, 0], [3.0, 2.0, 1.0])
    1.0
    """
    t = np.asarray(time, dtype=float)
    e = np.asarray(event, dtype=float) > 0
    r = np.asarray(risk, dtype=float)
    if not (len(t) == len(e) == len(r)):
        raise DataError("concordance_index: time, event and risk differ in length.")
    if not np.all(np.isfinite(r)):
        raise DataError("concordance_index: the risk score has NaN or infinite values.")
    # pair (i, j) comparable when i has an event and j is still at risk after it: t_i < t_j,
    # or t_i == t_j with j censored (R survival's convention; two tied events are not ordered)
    later = (t[:, None] < t[None, :]) | ((t[:, None] == t[None, :]) & ~e[None, :])
    comparable = e[:, None] & later
    conc = (r[:, None] > r[None, :]) & comparable
    tied = (r[:, None] == r[None, :]) & comparable
    n = comparable.sum()
    return float((conc.sum() + 0.5 * tied.sum()) / n) if n else float("nan")

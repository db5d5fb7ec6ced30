"""The hand-off: deep features of a trained network as a tidy frame for lmmkit's statistics.

:func:`extract_features` returns one row per (image, feature): the image's identifiers
(``image_id``, ``subject``, ``rescan``, ``site``, ``scanner`` when known), ``feature`` and
``value``. That frame goes straight into

* :func:`feature_reliability` -- per-feature test-retest ICC (:func:`lmmkit.icc`, subjects as
  targets, rescans as raters);
* :func:`lmmkit.combat` -- through :func:`features_wide` transposed to features x images;
* :func:`lmmkit.cross_validate_sites`, :func:`lmmkit.decision_curve` and the locked analysis
  plan (:func:`lmmkit.run_plan`) -- through :func:`features_wide` joined to the subject table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError, LmmkitError
from lmmkit.imaging.device import require_torch

__all__ = [
    "ID_COLUMNS",
    "deep_features",
    "extract_features",
    "features_wide",
    "feature_reliability",
]

ID_COLUMNS = ("image_id", "subject", "rescan", "site", "scanner")


def _as_images_and_table(images: Any, table: pd.DataFrame | None) -> tuple[np.ndarray, pd.DataFrame]:
    from lmmkit.imaging.synthetic import SyntheticCohort

    if isinstance(images, SyntheticCohort):
        return images.images, images.table if table is None else table
    if hasattr(images, "images") and hasattr(images, "table"):  # CohortArrays from read_cohort
        return images.images, images.table if table is None else table
    if isinstance(images, list | tuple) and images and hasattr(images[0], "array"):
        # lmmkit.imaging.io.Image objects (one per acquisition; one channel each)
        arrs = [np.asarray(im.array, dtype=np.float32) for im in images]
        arrs = [a[None] if a.ndim == 3 else a for a in arrs]
        shapes = {a.shape for a in arrs}
        if len(shapes) > 1:
            raise DataError(
                f"extract_features: images have different shapes {sorted(shapes)}; resample "
                "them onto one grid first."
            )
        meta = pd.DataFrame(
            {"image_id": [str(getattr(im, "source", None) or f"image{i}") for i, im in enumerate(images)]}
        )
        return np.stack(arrs), meta if table is None else table
    arr = np.asarray(images)
    if table is None:
        table = pd.DataFrame({"image_id": [f"image{i}" for i in range(len(arr))]})
    return arr, table


def deep_features(
    model: Any,
    images: Any,
    *,
    ids: Sequence[Any] | None = None,
    layer: str | None = None,
    batch_size: int = 16,
) -> pd.DataFrame:
    """Deep features as a wide frame (images x features, columns ``f000``, ``f001``, ...).

    The model's ``features(x)`` (or ``pooled(x)``) gives the vector; with ``layer`` the output
    of that submodule, global-average-pooled over space, is taken instead (forward hook).

    Parameters
    ----------
    model : torch.nn.Module
    images : ndarray (n, C, D, H, W)
    ids : sequence, optional
        Row index (default ``image0``, ...).
    layer : str, optional
    batch_size : int

    Returns
    -------
    DataFrame

    Raises
    ------
    LmmkitError
        The model has no ``features``/``pooled`` method and no ``layer`` was given, or the
        layer does not exist.

    Examples
    --------
    >>> from lmmkit.imaging.nets.encoders import ConvEncoder, ImageClassifier
    >>> net = ImageClassifier(ConvEncoder(3, 1, widths=(2, 3)))
    >>> deep_features(net, np.zeros((2, 1, 8, 8, 8), np.float32)).shape
    (2, 3)
    """
    torch = require_torch()
    from lmmkit.imaging.train import check_images, predict

    x = check_images(images)
    names = [f"image{i}" for i in range(len(x))] if ids is None else [str(v) for v in ids]
    if len(names) != len(x):
        raise DataError(f"deep_features: {len(names)} ids for {len(x)} images.")
    if layer is not None:
        from lmmkit.imaging.saliency import _find_layer

        mod = _find_layer(model, layer)
        store: list[Any] = []
        handle = mod.register_forward_hook(lambda _m, _i, o: store.append(o))

        def fn(net: Any, xb: Any) -> Any:
            store.clear()
            net(xb)
            out = store[-1]
            return out.flatten(2).mean(2) if out.ndim > 2 else out

        try:
            f = predict(model, x, batch_size=batch_size, fn=fn)
        finally:
            handle.remove()
    else:
        method = getattr(model, "features", None) or getattr(model, "pooled", None)
        if method is None:
            raise LmmkitError(
                f"deep_features: {type(model).__name__} has no features() or pooled() method; "
                "name the layer whose output to pool with layer=..."
            )
        f = predict(model, x, batch_size=batch_size, fn=lambda net, xb: method(xb))
    f = np.asarray(f).reshape(len(x), -1)
    del torch
    return pd.DataFrame(f, index=pd.Index(names, name="image_id"),
                        columns=[f"f{j:03d}" for j in range(f.shape[1])])  # fmt: skip


def extract_features(
    model: Any,
    images: Any,
    *,
    table: pd.DataFrame | None = None,
    layer: str | None = None,
    keep: Sequence[str] = ID_COLUMNS,
    batch_size: int = 16,
) -> pd.DataFrame:
    """Deep features per image as a tidy frame: identifiers, ``feature``, ``value``.

    Parameters
    ----------
    model : torch.nn.Module
        A trained network with ``features(x)`` or ``pooled(x)`` (every network of
        :mod:`lmmkit.imaging.nets`), or any module with ``layer`` named.
    images : ndarray (n, C, D, H, W), SyntheticCohort, CohortArrays, or a list of Image
        (``read_cohort`` gives CohortArrays; ``lmmkit.imaging.io.Image``)
    table : DataFrame, optional
        One row per image (same order) with identifier columns; a cohort brings its own.
    layer : str, optional
        Take this submodule's output (global-average-pooled) instead of ``features``.
    keep : sequence of str
        Identifier columns carried from ``table`` when present (``image_id`` is created
        when missing).
    batch_size : int

    Returns
    -------
    DataFrame
        Columns: the identifiers present, ``feature``, ``value``; ``n_images x n_features``
        rows, images in input order.

    Raises
    ------
    DataError
        The table and the images differ in length, or NaN voxels (naming the image).

    Examples
    --------
    >>> from lmmkit.imaging.synthetic import make_multisite
    >>> from lmmkit.imaging.nets.encoders import ConvEncoder, ImageClassifier
    >>> c = make_multisite(2, shape=(16, 16, 16), n_rescans=2)
    >>> net = ImageClassifier(ConvEncoder(3, 2, widths=(2, 3)))
    >>> tidy = extract_features(net, c)
    >>> list(tidy.columns)
    ['image_id', 'subject', 'rescan', 'site', 'scanner', 'feature', 'value']
    >>> len(tidy) == len(c) * 3
    True
    """
    arr, meta = _as_images_and_table(images, table)
    if len(meta) != len(arr):
        raise DataError(
            f"extract_features: the table has {len(meta)} rows for {len(arr)} images; give one "
            "row per image in the same order."
        )
    meta = meta.reset_index(drop=True)
    if "image_id" not in meta.columns:
        meta = meta.assign(image_id=[f"image{i}" for i in range(len(meta))])
    ids = meta["image_id"].astype(str).tolist()
    if len(set(ids)) != len(ids):
        dup = pd.Series(ids)[pd.Series(ids).duplicated()].iloc[0]
        raise DataError(f"extract_features: image_id {dup!r} is not unique.")
    wide = deep_features(model, arr, ids=ids, layer=layer, batch_size=batch_size)
    cols = [c for c in keep if c in meta.columns]
    long = wide.reset_index().melt(id_vars="image_id", var_name="feature", value_name="value")
    out = meta[cols].astype({"image_id": str}).merge(long, on="image_id", how="right")
    order = {k: i for i, k in enumerate(ids)}
    out = out.sort_values(["image_id", "feature"], key=lambda s: s.map(order) if s.name == "image_id" else s)
    return out[[*cols, "feature", "value"]].reset_index(drop=True)


def features_wide(tidy: pd.DataFrame, *, index: str = "image_id") -> pd.DataFrame:
    """The tidy frame back to one row per ``index`` value and one column per feature.

    Examples
    --------
    >>> t = pd.DataFrame({"image_id": ["a", "a"], "feature": ["f0", "f1"], "value": [1.0, 2.0]})
    >>> features_wide(t).loc["a", "f1"]
    2.0
    """
    for col in (index, "feature", "value"):
        if col not in tidy.columns:
            raise DataError(f"features_wide: the frame has no column {col!r}.")
    return tidy.pivot_table(index=index, columns="feature", values="value", aggfunc="first")


def feature_reliability(
    tidy: pd.DataFrame,
    *,
    targets: str = "subject",
    raters: str = "rescan",
    form: str = "ICC3",
) -> pd.DataFrame:
    """Test-retest ICC of every feature with :func:`lmmkit.icc` (subjects x rescans).

    Parameters
    ----------
    tidy : DataFrame
        From :func:`extract_features` with at least two rescans per subject.
    targets, raters : str
        Columns naming the subject and the repeated acquisition.
    form : str
        ICC form reported (``ICC1`` ... ``ICC3k``; ``ICC3`` = single-measure consistency).

    Returns
    -------
    DataFrame
        Index ``feature``; columns ``icc``, ``lower``, ``upper``, ``n_subjects``.

    Examples
    --------
    >>> t = pd.DataFrame({"subject": list("aabbcc"), "rescan": [0, 1] * 3,
    ...                   "feature": "f0", "value": [1.0, 1.1, 2.0, 2.1, 3.0, 2.9]})
    >>> round(float(feature_reliability(t)["icc"].iloc[0]), 3)
    0.99
    """
    from lmmkit.validation.reliability import icc

    for col in (targets, raters, "feature", "value"):
        if col not in tidy.columns:
            raise DataError(f"feature_reliability: the frame has no column {col!r}.")
    if tidy[raters].nunique() < 2:
        raise DataError(
            f"feature_reliability: one value of {raters!r}; test-retest ICC needs >= 2 rescans "
            "per subject (make_multisite(n_rescans=2))."
        )
    rows = []
    for feat, g in tidy.groupby("feature", sort=True):
        res = icc(g, targets=targets, raters=raters, ratings="value")
        r = res[form]
        rows.append({"feature": feat, "icc": float(r["icc"]), "lower": float(r["lower"]),
                     "upper": float(r["upper"]), "n_subjects": res.n_targets})  # fmt: skip
    return pd.DataFrame(rows).set_index("feature")

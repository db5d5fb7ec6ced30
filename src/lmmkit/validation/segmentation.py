"""Segmentation overlap and boundary-distance metrics for binary masks (2-D or 3-D).

Conventions
-----------
* **Surface**: the voxels of a mask that have at least one background neighbour under
  *face* connectivity (4-neighbours in 2-D, 6 in 3-D; ``scipy.ndimage`` structure of
  connectivity 1), i.e. ``mask & ~binary_erosion(mask)``. Outside the array counts as
  background, so mask voxels on the array border are surface voxels.
* **Distances** are Euclidean between voxel centres, in physical units when ``spacing`` is
  given (one value per axis, as ``scipy.ndimage.distance_transform_edt(sampling=...)``).
* The **directed** distances from A to B are, for every surface voxel of A, the distance to
  the nearest surface voxel of B.
* **Hausdorff** (``percentile=100``) is the maximum over both directions; both conventions
  below give the same value.
* **HD95** comes in two conventions in common use:

  - ``convention="pooled"`` (MedPy ``hd95``): the 95th percentile of the union of both
    directed distance sets.
  - ``convention="max_directed"`` (MONAI ``compute_hausdorff_distance(percentile=95)``):
    the larger of the two directed 95th percentiles.

  Percentiles use NumPy's default linear interpolation.
* **Empty masks**: Dice and Jaccard are undefined only when both masks are empty;
  Hausdorff distances are undefined when either mask is empty. ``empty="raise"`` (the
  default) raises DataError, ``empty="nan"`` returns NaN and a number returns that number.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy import ndimage

from lmmkit.errors import DataError

__all__ = ["otsu_mask", "dice", "jaccard", "hausdorff", "surface_distances"]


def otsu_mask(image) -> np.ndarray:
    """Boolean foreground mask ``image > threshold_otsu(image)`` (scikit-image).

    The image is thresholded in its own dtype: for integer images scikit-image's histogram
    has one bin per integer value, for float images 256 bins, so converting an integer image
    to float first would move the threshold (``data.coins()``: 107 against 106.4, 504 pixels
    flipped). A boolean image is thresholded as uint8, as scikit-image converts it.

    Parameters
    ----------
    image
        2-D or 3-D numeric array (integer, unsigned, float or boolean).

    Returns
    -------
    numpy.ndarray
        Boolean array of the image's shape: True above Otsu's threshold.

    Raises
    ------
    DataError
        Non-numeric, empty or constant image, or NaN/infinite pixels.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.array([[10, 10, 200], [10, 200, 200]], dtype=np.uint8)
    >>> otsu_mask(image).astype(int).tolist()
    [[0, 0, 1], [0, 1, 1]]
    """
    from skimage.filters import threshold_otsu

    arr = np.asarray(image)
    if arr.dtype.kind not in "biuf":
        raise DataError(f"otsu_mask: image must be numeric, got dtype {arr.dtype}.")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            idx = tuple(int(v) for v in np.argwhere(bad)[0])
            raise DataError(
                f"otsu_mask: image has {int(bad.sum())} NaN/infinite pixel(s), first at index "
                f"{idx}; fill or mask them before thresholding."
            )
    if arr.size == 0 or arr.min() == arr.max():
        raise DataError(
            f"otsu_mask: image of shape {arr.shape} is constant (or empty), so Otsu's "
            f"threshold is undefined; check the input."
        )
    return arr > threshold_otsu(arr)


def _masks(a, b, where: str) -> tuple[np.ndarray, np.ndarray]:
    aa, bb = np.asarray(a), np.asarray(b)
    if aa.shape != bb.shape:
        raise DataError(
            f"{where}masks have different shapes {aa.shape} (a) and {bb.shape} (b); resample "
            f"them onto the same grid first."
        )
    out = []
    for name, m in (("a", aa), ("b", bb)):
        if m.dtype == bool:
            out.append(m)
            continue
        if m.dtype.kind not in "iuf":
            raise DataError(f"{where}mask {name} must be boolean or 0/1, got dtype {m.dtype}.")
        bad = ~np.isin(m, (0, 1))
        if bad.any():
            vals = np.unique(m[bad])[:6].tolist()
            raise DataError(
                f"{where}mask {name} must be binary but contains {vals}; threshold it "
                f"(e.g. mask > 0) or select one label (e.g. labels == 3)."
            )
        out.append(m.astype(bool))
    if out[0].ndim == 0:
        raise DataError(f"{where}masks must be arrays with at least one dimension, got scalars.")
    return out[0], out[1]


def _empty_value(empty, where: str, what: str) -> float:
    if isinstance(empty, str):
        if empty == "raise":
            raise DataError(
                f"{where}{what}; the metric is undefined. Pass empty='nan' or a number "
                f"(e.g. empty=0.0) to choose a value, or exclude the case."
            )
        if empty == "nan":
            return float("nan")
        raise DataError(f"{where}empty={empty!r} is not 'raise', 'nan' or a number.")
    if isinstance(empty, numbers.Real):
        return float(empty)
    raise DataError(f"{where}empty={empty!r} is not 'raise', 'nan' or a number.")


def dice(a, b, *, empty="raise") -> float:
    """Dice coefficient ``2 |A and B| / (|A| + |B|)``; ``empty`` applies when both masks are empty."""
    where = "dice: "
    aa, bb = _masks(a, b, where)
    total = int(aa.sum()) + int(bb.sum())
    if total == 0:
        return _empty_value(empty, where, "both masks are empty")
    return 2.0 * int(np.logical_and(aa, bb).sum()) / total


def jaccard(a, b, *, empty="raise") -> float:
    """Jaccard index ``|A and B| / |A or B|``; ``empty`` applies when both masks are empty."""
    where = "jaccard: "
    aa, bb = _masks(a, b, where)
    union = int(np.logical_or(aa, bb).sum())
    if union == 0:
        return _empty_value(empty, where, "both masks are empty")
    return int(np.logical_and(aa, bb).sum()) / union


def _spacing(spacing, ndim: int, where: str):
    if spacing is None:
        return None
    sp = np.atleast_1d(np.asarray(spacing, dtype=float))
    if sp.size == 1:
        sp = np.repeat(sp, ndim)
    if sp.shape != (ndim,) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise DataError(
            f"{where}spacing={spacing!r} must be one positive number or {ndim} (one per axis)."
        )
    return tuple(sp.tolist())


def _surface(mask: np.ndarray) -> np.ndarray:
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def surface_distances(a, b, *, spacing=None) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances (A to B, B to A) as 1-D arrays; masks must be non-empty."""
    where = "surface_distances: "
    aa, bb = _masks(a, b, where)
    if not aa.any() or not bb.any():
        raise DataError(f"{where}mask {'a' if not aa.any() else 'b'} is empty; no surface exists.")
    sp = _spacing(spacing, aa.ndim, where)
    return _directed(aa, bb, sp)


def _directed(aa, bb, sp):
    sa, sb = _surface(aa), _surface(bb)
    dist_to_b = ndimage.distance_transform_edt(~sb, sampling=sp)
    dist_to_a = ndimage.distance_transform_edt(~sa, sampling=sp)
    return dist_to_b[sa], dist_to_a[sb]


def hausdorff(
    a,
    b,
    *,
    spacing=None,
    percentile: float = 100,
    convention: str = "pooled",
    empty="raise",
) -> float:
    """(Percentile) Hausdorff distance between the surfaces of two binary masks.

    Parameters
    ----------
    a, b : boolean or 0/1 arrays of the same shape (2-D or 3-D).
    spacing : voxel size per axis (or one number for all); distances are in those units.
    percentile : 100 for the Hausdorff distance, 95 for HD95 (any value in (0, 100]).
    convention : ``"pooled"`` (MedPy: percentile of the union of both directed distance
        sets) or ``"max_directed"`` (MONAI: maximum of the two directed percentiles). Both
        agree at ``percentile=100``.
    empty : what to return when either mask is empty: ``"raise"``, ``"nan"`` or a number.

    The surface is each mask's voxels with a face-connected background neighbour (see the
    module docstring).
    """
    where = "hausdorff: "
    aa, bb = _masks(a, b, where)
    if not (0 < float(percentile) <= 100):
        raise DataError(f"{where}percentile={percentile!r} must be in (0, 100], e.g. 95 or 100.")
    if convention not in ("pooled", "max_directed"):
        raise DataError(
            f"{where}convention={convention!r} is not 'pooled' (MedPy) or 'max_directed' (MONAI)."
        )
    sp = _spacing(spacing, aa.ndim, where)
    if not aa.any() or not bb.any():
        which = (
            "both masks are"
            if not (aa.any() or bb.any())
            else (f"mask {'a' if not aa.any() else 'b'} is")
        )
        return _empty_value(empty, where, f"{which} empty")
    d_ab, d_ba = _directed(aa, bb, sp)
    q = float(percentile)
    if q == 100:
        return float(max(d_ab.max(), d_ba.max()))
    if convention == "pooled":
        return float(np.percentile(np.concatenate([d_ab, d_ba]), q))
    return float(max(np.percentile(d_ab, q), np.percentile(d_ba, q)))

"""Input checks shared by the validation metrics.

Every failure raises :class:`lmmkit.errors.DataError` naming the offending value, the
argument it came from and what to do about it.
"""

from __future__ import annotations

import numpy as np

from lmmkit.errors import DataError


def _preview(values: np.ndarray, n: int = 6) -> str:
    vals = np.asarray(values)[:n].tolist()
    more = "" if len(values) <= n else f" ... ({len(values)} distinct values)"
    return f"{vals}{more}"


def as_binary_labels(y, *, name: str = "y", where: str = "") -> np.ndarray:
    """Return ``y`` as an int8 array of 0/1, or raise DataError.

    Accepts booleans and numbers equal to 0 or 1. Anything else (strings, 2, -1, NaN)
    is rejected with the distinct offending values listed.
    """
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise DataError(
            f"{where}{name} must be one-dimensional, got shape {arr.shape}; pass a single column."
        )
    if arr.dtype == bool:
        return arr.astype(np.int8)
    if arr.dtype.kind in "iuf":
        bad_mask = ~np.isin(arr, (0, 1))
        if arr.dtype.kind == "f":
            bad_mask |= np.isnan(arr)
        if not bad_mask.any():
            return arr.astype(np.int8)
        bad = np.unique(arr[bad_mask])
        raise DataError(
            f"{where}{name} must be binary (0 = control, 1 = case) but contains "
            f"{_preview(bad)} at {int(bad_mask.sum())} position(s), first at index "
            f"{int(np.flatnonzero(bad_mask)[0])}; recode the outcome to 0/1."
        )
    values = np.unique(arr.astype(str))
    raise DataError(
        f"{where}{name} must be binary 0/1 or boolean but has values {_preview(values)} "
        f"(dtype {arr.dtype}); encode cases as 1 and controls as 0, e.g. "
        f"(y == {values[-1].item()!r}).astype(int)."
    )


def as_finite_scores(x, *, name: str = "score", where: str = "") -> np.ndarray:
    """Return ``x`` as a 1-D float array without NaN/inf, or raise DataError."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise DataError(
            f"{where}{name} must be one-dimensional, got shape {arr.shape}; pass a single column."
        )
    try:
        arr = arr.astype(float)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"{where}{name} must be numeric but has dtype {arr.dtype}; convert it to numbers."
        ) from exc
    bad = ~np.isfinite(arr)
    if bad.any():
        n_nan = int(np.isnan(arr).sum())
        kind = "NaN" if n_nan == int(bad.sum()) else "NaN or infinite"
        raise DataError(
            f"{where}{name} has {int(bad.sum())} {kind} value(s), first at index "
            f"{int(np.flatnonzero(bad)[0])}; drop those rows (from the labels too) or impute them."
        )
    return arr


def check_same_length(*pairs: tuple[str, np.ndarray], where: str = "") -> None:
    """Raise DataError unless all named arrays have the same length."""
    lengths = {name: len(a) for name, a in pairs}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{k} has {v}" for k, v in lengths.items())
        raise DataError(
            f"{where}mismatched lengths: {desc}; pass arrays with one entry per subject, "
            f"aligned row by row."
        )


def check_both_classes(y: np.ndarray, *, name: str = "y", where: str = "") -> None:
    """Raise DataError unless ``y`` contains both 0 and 1."""
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        only = "controls (0)" if n1 == 0 else "cases (1)"
        raise DataError(
            f"{where}{name} contains only {only}: {n0} controls and {n1} cases among "
            f"{len(y)} rows; discrimination needs at least one of each class."
        )


def labels_and_scores(y, score, *, score_name: str = "score", where: str = ""):
    """Validate a (labels, scores) pair; returns (y int8, score float)."""
    yy = as_binary_labels(y, where=where)
    ss = as_finite_scores(score, name=score_name, where=where)
    check_same_length(("y", yy), (score_name, ss), where=where)
    return yy, ss

"""What the agreement statistics share: argument checks and paired columns."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lmmkit.errors import DataError
from lmmkit.validation._checks import as_finite_scores

SHOW = 6  # how many offending values an error message lists


def _check_level(level: float, name: str, where: str) -> None:
    if not (0.0 < float(level) < 1.0):
        raise DataError(f"{where}{name}={level!r} must be strictly between 0 and 1, e.g. 0.95.")


def _column(data: pd.DataFrame | None, value, name: str, where: str) -> np.ndarray:
    if isinstance(value, str) and data is not None:
        if value not in data.columns:
            from lmmkit.errors import close_matches

            raise DataError(
                f"{where}{name}={value!r} is not a column of the data."
                f"{close_matches(value, list(data.columns))}"
            )
        return data[value].to_numpy()
    return np.asarray(value)


def _paired(x, y, where: str, names=("x", "y")) -> tuple[np.ndarray, np.ndarray]:
    """Two numeric arrays of equal length with no row where only one side is present."""
    xa, ya = np.asarray(x), np.asarray(y)
    if xa.ndim != 1 or ya.ndim != 1:
        raise DataError(f"{where}{names[0]} and {names[1]} must be one-dimensional.")
    if len(xa) != len(ya):
        raise DataError(
            f"{where}unpaired rows: {names[0]} has {len(xa)} values and {names[1]} has "
            f"{len(ya)}; pass one row per pair of measurements of the same subject/sample."
        )
    try:
        xf, yf = xa.astype(float), ya.astype(float)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}{names[0]} and {names[1]} must be numeric.") from exc
    miss_x, miss_y = np.isnan(xf), np.isnan(yf)
    lone = miss_x ^ miss_y
    if lone.any():
        rows = np.flatnonzero(lone)
        raise DataError(
            f"{where}unpaired rows: {len(rows)} row(s) have only one of {names[0]}, {names[1]} "
            f"(rows {rows[:SHOW].tolist()}); agreement needs both measurements of each pair. "
            "Drop those rows explicitly."
        )
    if (miss_x & miss_y).any():
        rows = np.flatnonzero(miss_x & miss_y)
        raise DataError(
            f"{where}{len(rows)} row(s) have neither measurement (rows {rows[:SHOW].tolist()}); "
            "drop them first."
        )
    as_finite_scores(xf, name=names[0], where=where)
    as_finite_scores(yf, name=names[1], where=where)
    return xf, yf


# --- Bland-Altman --------------------------------------------------------------------------

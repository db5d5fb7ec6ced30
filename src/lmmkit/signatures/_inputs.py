"""Input checks shared by the penalized paths, cross-validation and the signature pipeline.

Every failure is a :class:`lmmkit.errors.DataError` that names the offending value, where it
is (column, row) and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError

FAMILIES = ("gaussian", "binomial", "cox")


@dataclass(frozen=True)
class Response:
    """A checked response: ``y`` (gaussian/binomial) or ``time`` and ``status`` (cox)."""

    family: str
    y: np.ndarray | None = None
    time: np.ndarray | None = None
    status: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y) if self.y is not None else len(self.time)

    def take(self, idx: np.ndarray) -> Response:
        if self.family == "cox":
            return Response(self.family, time=self.time[idx], status=self.status[idx])
        return Response(self.family, y=self.y[idx])

    @property
    def n_events(self) -> int | None:
        if self.family == "cox":
            return int(self.status.sum())
        if self.family == "binomial":
            return int(self.y.sum())
        return None


def check_family(family: str, where: str) -> str:
    if family not in FAMILIES:
        raise DataError(f"{where}family={family!r} is not one of {', '.join(map(repr, FAMILIES))}.")
    return family


def as_matrix(X: Any, where: str, names: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Features as a finite float matrix and their names."""
    if isinstance(X, pd.DataFrame):
        cols = [str(c) for c in X.columns]
        bad = [c for c, dt in zip(cols, X.dtypes) if not pd.api.types.is_numeric_dtype(dt)]
        if bad:
            raise DataError(
                f"{where}feature column(s) {bad[:5]} are not numeric; one-hot code categorical "
                "features (e.g. pandas.get_dummies(..., drop_first=True)) first."
            )
        arr = X.to_numpy(dtype=float)
    else:
        arr = np.asarray(X, dtype=float)
        if arr.ndim != 2:
            raise DataError(
                f"{where}X must be a 2-D array or DataFrame (samples x features); got shape "
                f"{arr.shape}."
            )
        cols = list(names) if names is not None else [f"x{j + 1}" for j in range(arr.shape[1])]
    if arr.shape[1] == 0:
        raise DataError(f"{where}X has no feature columns.")
    bad_mask = ~np.isfinite(arr)
    if bad_mask.any():
        i, j = (int(v[0]) for v in np.nonzero(bad_mask))
        raise DataError(
            f"{where}feature {cols[j]!r} has a missing or infinite value at row {i} "
            f"({int(bad_mask.sum())} such cells in all); impute or drop them first."
        )
    return arr, cols


def as_response(y: Any, family: str, n: int, where: str) -> Response:
    """Check the response for the family; cox takes (time, status) as two columns or a tuple."""
    if family == "cox":
        if isinstance(y, tuple) and len(y) == 2:
            time, status = (np.asarray(v) for v in y)
        else:
            arr = y.to_numpy() if isinstance(y, pd.DataFrame) else np.asarray(y)
            if arr.ndim != 2 or arr.shape[1] != 2:
                raise DataError(
                    f"{where}a cox response is (time, status): a tuple of two arrays or a "
                    f"two-column array/DataFrame; got shape {np.shape(arr)}."
                )
            time, status = arr[:, 0], arr[:, 1]
        time = _finite(time, "time", where)
        status = _finite(status, "status", where)
        if len(time) != n:
            raise DataError(f"{where}the response has {len(time)} rows but X has {n}.")
        bad = time <= 0
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{where}time must be positive (as glmnet requires); row {i} has {time[i]!r} "
                f"({int(bad.sum())} such rows)."
            )
        if not np.isin(status, (0, 1)).all():
            vals = np.unique(status[~np.isin(status, (0, 1))])[:5].tolist()
            raise DataError(
                f"{where}status must be 0 (censored) or 1 (event); found {vals}. Recode R's "
                "1/2 coding with status - 1."
            )
        if status.sum() < 2:
            raise DataError(
                f"{where}the data have {int(status.sum())} event(s); a Cox path needs at least 2."
            )
        return Response(family, time=time.astype(float), status=status.astype(float))
    arr = np.asarray(y.to_numpy() if isinstance(y, pd.Series | pd.DataFrame) else y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(f"{where}y must be one column; got shape {arr.shape}.")
    if arr.dtype == bool:
        arr = arr.astype(float)
    yy = _finite(arr, "y", where)
    if len(yy) != n:
        raise DataError(f"{where}y has {len(yy)} rows but X has {n}.")
    if family == "binomial":
        if not np.isin(yy, (0, 1)).all():
            vals = np.unique(yy[~np.isin(yy, (0, 1))])[:5].tolist()
            raise DataError(
                f"{where}a binomial outcome must be 0/1; found {vals}. Code cases as 1."
            )
        if yy.min() == yy.max():
            raise DataError(
                f"{where}the binomial outcome has only the value {int(yy[0])}; both classes "
                "are needed."
            )
    return Response(family, y=yy)


def _finite(v: Any, name: str, where: str) -> np.ndarray:
    try:
        arr = np.asarray(v, dtype=float)
    except (TypeError, ValueError):
        raise DataError(
            f"{where}{name} must be numeric; got dtype {np.asarray(v).dtype}."
        ) from None
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{where}{name} has a missing or infinite value at row {i} ({int(bad.sum())} in "
            "all); drop those rows first."
        )
    return arr


def check_penalty_factor(pf: Any, p: int, names: list[str], where: str) -> np.ndarray:
    if pf is None:
        return np.ones(p)
    if isinstance(pf, dict):
        unknown = [k for k in pf if k not in names]
        if unknown:
            raise DataError(f"{where}penalty_factor names unknown features {unknown[:5]}.")
        return np.array([float(pf.get(c, 1.0)) for c in names])
    arr = np.asarray(pf, dtype=float).ravel()
    if len(arr) != p:
        raise DataError(
            f"{where}penalty_factor has {len(arr)} entries but there are {p} features; give one "
            "per feature or a dict {feature: factor}."
        )
    if (arr < 0).any() or not np.isfinite(arr).all():
        raise DataError(f"{where}penalty_factor must be finite and >= 0; got {arr[arr < 0][:5]}.")
    if arr.max() <= 0:
        raise DataError(f"{where}at least one penalty_factor must be positive.")
    return arr

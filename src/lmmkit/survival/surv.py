"""The survival response: ``Surv(time, status)`` and ``Surv(start, stop, status)``.

Parsing the left-hand side of a formula and checking the values, with R survival's status
coding: 0/1 (1 = event), 1/2 (2 = event, used when every status is 1 or 2) or logical.
Every bad value is reported with its column and the first offending rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lmmkit.errors import DataError, FormulaError, close_matches
from lmmkit.formula.parse import pointer

__all__ = ["SurvSpec", "SurvData", "parse_surv", "surv_data"]

_SURV = re.compile(r"^\s*Surv\s*\((.*)\)\s*$", re.S)


@dataclass(frozen=True)
class SurvSpec:
    """The columns named in ``Surv(...)``: ``start`` is None for right-censored data."""

    time: str
    status: str
    start: str | None = None

    @property
    def counting(self) -> bool:
        return self.start is not None

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c for c in (self.start, self.time, self.status) if c is not None)


@dataclass(frozen=True, eq=False)
class SurvData:
    """Checked response arrays: ``stop`` (the event/censoring time), ``start`` (-inf for
    right-censored data) and ``event`` (0/1 int8)."""

    stop: np.ndarray
    start: np.ndarray
    event: np.ndarray
    counting: bool

    @property
    def n(self) -> int:
        return int(self.stop.shape[0])


def parse_surv(lhs: str, formula: str | None = None) -> SurvSpec:
    """Parse ``Surv(time, status)`` or ``Surv(start, stop, status)`` (column names).

    Parameters
    ----------
    lhs : str
        The left-hand side of the formula.
    formula : str, optional
        The whole formula, for the caret in error messages.

    Returns
    -------
    SurvSpec

    Raises
    ------
    FormulaError
        When the response is not a ``Surv`` call of two or three column names.

    Examples
    --------
    >>> parse_surv("Surv(time, status)")
    SurvSpec(time='time', status='status', start=None)
    """
    formula = formula if formula is not None else lhs
    m = _SURV.match(lhs)
    at = max(formula.find(lhs.strip()), 0)
    if m is None:
        raise FormulaError(
            f"The response {lhs.strip()!r} is not a Surv(...) term.\n"
            f"{pointer(formula, at, at + len(lhs.strip()))}\n"
            "Write 'Surv(time, status) ~ ...' or 'Surv(start, stop, status) ~ ...'."
        )
    args = [a.strip() for a in m.group(1).split(",")]
    bad = [a for a in args if not re.match(r"^[A-Za-z_.][A-Za-z0-9_.]*$", a)]
    if len(args) not in (2, 3) or bad:
        what = (
            f"argument {bad[0]!r} is not a column name" if bad else f"it has {len(args)} arguments"
        )
        raise FormulaError(
            f"Cannot read {lhs.strip()}: {what}.\n{pointer(formula, at, at + len(lhs.strip()))}\n"
            "Surv() takes column names: Surv(time, status) or Surv(start, stop, status); "
            "compute derived columns (e.g. status == 2) in the data first."
        )
    if len(args) == 2:
        return SurvSpec(time=args[0], status=args[1])
    return SurvSpec(time=args[1], status=args[2], start=args[0])


def _rows(index: pd.Index, mask: np.ndarray, n: int = 5) -> str:
    rows = list(index[mask][:n])
    more = int(mask.sum()) - len(rows)
    return ", ".join(str(r) for r in rows) + (f" and {more} more" if more > 0 else "")


def _numeric(frame: pd.DataFrame, col: str, what: str) -> np.ndarray:
    if col not in frame.columns:
        raise DataError(
            f"Surv() names {what} column {col!r}, which is not in the data."
            f"{close_matches(col, list(frame.columns))}"
        )
    values = frame[col]
    if values.dtype == bool:
        return values.to_numpy(dtype=float)
    try:
        return pd.to_numeric(values, errors="raise").to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"Surv() {what} column {col!r} is not numeric ({exc}); convert it first."
        ) from None


def _event(frame: pd.DataFrame, col: str) -> np.ndarray:
    raw = _numeric(frame, col, "status")
    bad = ~np.isfinite(raw)
    if bad.any():
        raise DataError(
            f"Status column {col!r} is missing (NaN) in {int(bad.sum())} row(s): "
            f"{_rows(frame.index, bad)}. Drop these rows first "
            f"(data.dropna(subset=[{col!r}])) or record them as censored (0)."
        )
    values = set(np.unique(raw).tolist())
    if values <= {0.0, 1.0}:
        return raw.astype(np.int8)
    if values <= {1.0, 2.0}:  # R's 1 = censored, 2 = event coding
        return (raw - 1.0).astype(np.int8)
    if values <= {0.0, 1.0, 2.0}:
        bad = raw == 2.0
        msg = "mixes the 0/1 and 1/2 codings (it has 0, 1 and 2)"
    else:
        bad = ~np.isin(raw, [0.0, 1.0, 2.0])
        msg = f"has values outside {{0, 1}} and {{1, 2}}: {sorted(set(raw[bad].tolist()))[:5]}"
    raise DataError(
        f"Status column {col!r} {msg}, in row(s) {_rows(frame.index, bad)}. Code it as 0 = "
        "censored / 1 = event, or 1 = censored / 2 = event (R's coding); a competing or "
        "multi-state status must be turned into one event type first (e.g. status == 1)."
    )


def surv_data(spec: SurvSpec, frame: pd.DataFrame) -> SurvData:
    """Read and check the response columns of ``frame``.

    Parameters
    ----------
    spec : SurvSpec
        From :func:`parse_surv`.
    frame : pandas.DataFrame
        The data (rows already restricted to complete cases of the covariates).

    Returns
    -------
    SurvData

    Raises
    ------
    DataError
        Missing, infinite or negative times, ``stop <= start``, a status outside {0, 1} or
        {1, 2}; the message names the column and rows.

    Examples
    --------
    >>> import pandas as pd
    >>> d = surv_data(parse_surv("Surv(t, s)"), pd.DataFrame({"t": [1.0, 2.0], "s": [1, 0]}))
    >>> d.event.tolist()
    [1, 0]
    """
    stop = _numeric(frame, spec.time, "time" if spec.start is None else "stop")
    cols = [(spec.time, stop)]
    start = np.full(stop.shape, -np.inf)
    if spec.start is not None:
        start = _numeric(frame, spec.start, "start")
        cols.insert(0, (spec.start, start))
    for col, values in cols:
        bad = ~np.isfinite(values)
        if bad.any():
            raise DataError(
                f"Time column {col!r} is missing or infinite in {int(bad.sum())} row(s): "
                f"{_rows(frame.index, bad)}. Drop these rows first "
                f"(data.dropna(subset=[{col!r}])); a time must be a finite number."
            )
    if spec.start is None:
        bad = stop < 0
        if bad.any():
            raise DataError(
                f"Time column {spec.time!r} is negative in {int(bad.sum())} row(s): "
                f"{_rows(frame.index, bad)}. Survival times are durations (>= 0); for "
                "calendar times use Surv(start, stop, status) with start < stop."
            )
    else:
        bad = stop <= start
        if bad.any():
            raise DataError(
                f"Stop time {spec.time!r} is not after start time {spec.start!r} in "
                f"{int(bad.sum())} row(s): {_rows(frame.index, bad)}. Each interval "
                "(start, stop] must have start < stop; remove or fix these rows."
            )
    event = _event(frame, spec.status)
    return SurvData(stop=stop, start=start, event=event, counting=spec.start is not None)

"""Strategies and their expected cost and effect per patient.

Treat none (nobody treated), treat all (everybody, no test) and test-and-treat at each
threshold of a score (treated when the test is positive: ``score >= threshold`` for a score
higher in cases, ``<=`` otherwise), with sensitivity and specificity read off lmmkit's ROC
curve (:func:`lmmkit.roc_auc`):

    E[cost]   = cost_test + p (se c_TP + (1 - se) c_FN) + (1 - p) ((1 - sp) c_FP + sp c_TN)
    E[effect] =             p (se q_TP + (1 - se) q_FN) + (1 - p) ((1 - sp) q_FP + sp q_TN)

Treat all is se = 1, sp = 0 and treat none se = 0, sp = 1, both without the test's cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lmmkit.errors import DataError

__all__ = ["OperatingPoints", "operating_points", "expected_outcomes"]


@dataclass(frozen=True, eq=False)
class OperatingPoints:
    """Thresholds with their sensitivity and specificity; ``cases``/``controls`` keep the
    oriented scores (higher = more likely a case) for bootstrapping, when known.

    Examples
    --------
    >>> from lmmkit import operating_points
    >>> pts = operating_points([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], thresholds=[0.3])
    >>> float(pts.sensitivity[0]), float(pts.specificity[0]), pts.prevalence
    (1.0, 0.5, 0.5)
    """

    thresholds: np.ndarray
    sensitivity: np.ndarray
    specificity: np.ndarray
    direction: str
    cases: np.ndarray | None = None
    controls: np.ndarray | None = None

    @property
    def prevalence(self) -> float | None:
        if self.cases is None or self.controls is None:
            return None
        return len(self.cases) / (len(self.cases) + len(self.controls))


def _check_rates(sens: np.ndarray, spec: np.ndarray, thresholds: np.ndarray) -> None:
    for name, arr in (("sensitivity", sens), ("specificity", spec)):
        bad = ~np.isfinite(arr) | (arr < 0) | (arr > 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{name} must be a probability in [0, 1]; got {float(arr[i])!r} at threshold "
                f"{float(thresholds[i])!r} (row {i})."
            )
    both = (sens == 0) & (spec == 0)
    if both.any():
        i = int(np.flatnonzero(both)[0])
        raise DataError(
            f"sensitivity and specificity are both 0 at threshold {float(thresholds[i])!r} (row {i}): "
            "the test calls every case negative and every non-case positive. Check the "
            "score's direction (or swap the labels); inverting the test would make it perfect."
        )


def operating_points(
    y=None,
    score=None,
    *,
    thresholds=None,
    table: pd.DataFrame | None = None,
    direction: str = "auto",
) -> OperatingPoints:
    """Sensitivity and specificity at each threshold, from validation data or a table.

    Pass ``y`` (0/1) and ``score``: the thresholds default to every distinct score value
    (lmmkit's ROC curve); or pass ``table`` with columns ``threshold``, ``sensitivity``,
    ``specificity``. (:func:`lmmkit.operating_point` gives one threshold with CIs; this gives
    the whole set a cost-effectiveness analysis compares.)

    Parameters
    ----------
    y : array-like of 0/1, optional
        Outcomes of the validation data.
    score : array-like, optional
        The biomarker's scores, one per row of ``y``.
    thresholds : array-like, optional
        Thresholds to keep (default: every distinct score).
    table : DataFrame, optional
        Published sensitivity/specificity per threshold instead of ``y``/``score``.
    direction : {"auto", "<", ">"}
        As in :func:`lmmkit.roc_auc` (``"<"``: higher scores in cases).

    Returns
    -------
    OperatingPoints

    Raises
    ------
    DataError
        Both or neither of data and table given, missing table columns, rates outside [0, 1],
        non-finite thresholds.

    Examples
    --------
    >>> import pandas as pd
    >>> from lmmkit import operating_points
    >>> pts = operating_points(table=pd.DataFrame({"threshold": [1.0, 2.0],
    ...                        "sensitivity": [0.9, 0.7], "specificity": [0.6, 0.85]}))
    >>> pts.direction, pts.prevalence
    ('given', None)
    """
    from lmmkit.validation.discrimination import roc_auc

    if table is not None:
        if y is not None or score is not None:
            raise DataError("operating_points: pass either y and score, or table, not both.")
        missing = {"threshold", "sensitivity", "specificity"} - set(table.columns)
        if missing:
            raise DataError(f"operating_points: table lacks column(s) {sorted(missing)}.")
        t = table["threshold"].to_numpy(dtype=float)
        se = table["sensitivity"].to_numpy(dtype=float)
        sp = table["specificity"].to_numpy(dtype=float)
        _check_rates(se, sp, t)
        return OperatingPoints(t, se, sp, direction="given")
    if y is None or score is None:
        raise DataError("operating_points: pass y and score (validation data) or a table.")
    roc = roc_auc(y, score, ci=None, direction=direction)
    yy = np.asarray(y).astype(int)
    ss = np.asarray(score, dtype=float)
    oriented = ss if roc.direction == "<" else -ss
    cases, controls = np.sort(oriented[yy == 1]), np.sort(oriented[yy == 0])
    if thresholds is None:
        t = roc.thresholds[np.isfinite(roc.thresholds)]
    else:
        t = np.atleast_1d(np.asarray(thresholds, dtype=float))
        if t.ndim != 1 or not np.isfinite(t).all():
            raise DataError(f"operating_points: thresholds must be finite numbers, got {t!r}.")
    to = t if roc.direction == "<" else -t
    se, sp = rates(cases, controls, to)
    _check_rates(se, sp, t)
    return OperatingPoints(t, se, sp, roc.direction, cases, controls)


def rates(cases: np.ndarray, controls: np.ndarray, oriented_t: np.ndarray):
    """Sensitivity P(case >= t) and specificity P(control < t) from sorted oriented scores."""
    se = 1.0 - np.searchsorted(cases, oriented_t, side="left") / len(cases)
    sp = np.searchsorted(controls, oriented_t, side="left") / len(controls)
    return se, sp


def expected_outcomes(values: dict, sens, spec, with_test) -> tuple[np.ndarray, np.ndarray]:
    """Expected cost and effect per patient. ``values`` maps input names to scalars or
    arrays of draws (shape (B,)); ``sens``/``spec``/``with_test`` have one entry per
    strategy (shape (S,) or (B, S)). Returns arrays broadcast to (..., S)."""
    p = np.asarray(values["prevalence"], dtype=float)[..., None]
    v = {k: np.asarray(values[k], dtype=float)[..., None] for k in values if k != "prevalence"}
    se, sp = np.asarray(sens, dtype=float), np.asarray(spec, dtype=float)
    test = np.asarray(with_test, dtype=float)
    cost = (
        test * v["cost_test"]
        + p * (se * v["cost_tp"] + (1 - se) * v["cost_fn"])
        + (1 - p) * ((1 - sp) * v["cost_fp"] + sp * v["cost_tn"])
    )
    effect = p * (se * v["qaly_tp"] + (1 - se) * v["qaly_fn"]) + (1 - p) * (
        (1 - sp) * v["qaly_fp"] + sp * v["qaly_tn"]
    )
    return cost, effect

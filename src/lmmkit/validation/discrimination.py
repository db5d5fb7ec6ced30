"""Discrimination of a binary outcome by a continuous score: ROC AUC with CIs.

Follows pROC's conventions so the numbers agree with ``pROC::roc``/``ci.auc``/``roc.test``:

* ``y`` is 0 for controls and 1 for cases.
* ``direction="<"`` means controls tend to score lower than cases (a subject is called
  positive when ``score >= threshold``); ``">"`` the reverse (positive when
  ``score <= threshold``). ``"auto"`` picks ``"<"`` when the median of the controls is
  ``<=`` the median of the cases and ``">"`` otherwise, exactly as pROC does; note this is
  *not* guaranteed to give AUC >= 0.5 when the medians disagree with the ranks.
* The AUC is the Mann-Whitney probability P(case beats control) with ties counting 1/2.
* DeLong's variance uses placement values (DeLong, DeLong & Clarke-Pearson 1988); the CI is
  normal on the AUC scale and clipped to [0, 1], as pROC's ``ci.auc(method="delong")``.
* The bootstrap CI is stratified (cases and controls resampled separately, pROC's default)
  with percentile limits; it is seeded but cannot reproduce R's random numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats
from scipy.stats import rankdata
from sklearn.metrics import roc_curve

from lmmkit.errors import DataError

from ._checks import check_both_classes, labels_and_scores

__all__ = [
    "RocResult",
    "DelongTest",
    "OperatingPoint",
    "roc_auc",
    "delong_test",
    "operating_point",
]

Direction = Literal["auto", "<", ">"]


@dataclass(frozen=True, eq=False)
class RocResult:
    """ROC curve and AUC of one score.

    ``fpr``, ``tpr`` and ``thresholds`` come from :func:`sklearn.metrics.roc_curve` (all
    thresholds kept); the first threshold is +inf for ``"<"`` (-inf for ``">"``), where
    nobody is called positive. ``ci_low``/``ci_high`` are NaN when ``ci=None``.
    ``variance`` is DeLong's variance of the AUC (always computed).
    """

    auc: float
    ci_low: float
    ci_high: float
    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    direction: str
    ci_method: str | None
    level: float
    variance: float
    n_cases: int
    n_controls: int

    @property
    def sensitivity(self) -> np.ndarray:
        return self.tpr

    @property
    def specificity(self) -> np.ndarray:
        return 1.0 - self.fpr


@dataclass(frozen=True)
class DelongTest:
    """DeLong's paired test of two correlated AUCs (pROC ``roc.test(method="delong")``)."""

    z: float
    p: float
    auc1: float
    auc2: float
    directions: tuple[str, str]


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold on the ROC curve with its sensitivity and specificity."""

    threshold: float
    sensitivity: float
    specificity: float
    youden: float
    method: str
    direction: str


def _resolve_direction(y: np.ndarray, score: np.ndarray, direction: str, where: str) -> str:
    if direction == "auto":
        return "<" if np.median(score[y == 0]) <= np.median(score[y == 1]) else ">"
    if direction not in ("<", ">"):
        raise DataError(
            f"{where}direction={direction!r} is not one of 'auto', '<', '>'; use '<' when "
            f"cases score higher than controls, '>' when lower."
        )
    return direction


def _placements(cases: np.ndarray, controls: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and DeLong placement values V10 (per case) and V01 (per control).

    Scores are oriented so that cases are expected to be higher.
    """
    n1, n0 = len(cases), len(controls)
    c_sorted = np.sort(controls)
    below = np.searchsorted(c_sorted, cases, side="left")
    below_eq = np.searchsorted(c_sorted, cases, side="right")
    v10 = (below + 0.5 * (below_eq - below)) / n0
    x_sorted = np.sort(cases)
    left = np.searchsorted(x_sorted, controls, side="left")
    right = np.searchsorted(x_sorted, controls, side="right")
    v01 = ((n1 - right) + 0.5 * (right - left)) / n1
    return float(v10.mean()), v10, v01


def _delong_var(v10: np.ndarray, v01: np.ndarray) -> float:
    n1, n0 = len(v10), len(v01)
    s10 = v10.var(ddof=1) if n1 > 1 else 0.0
    s01 = v01.var(ddof=1) if n0 > 1 else 0.0
    return float(s10 / n1 + s01 / n0)


def _bootstrap_aucs(
    cases: np.ndarray, controls: np.ndarray, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """Stratified bootstrap AUCs, vectorised over replicates in chunks."""
    n1, n0 = len(cases), len(controls)
    out = np.empty(n_boot)
    chunk = max(1, min(n_boot, 2_000_000 // (n1 + n0)))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        xc = cases[rng.integers(0, n1, size=(b, n1))]
        xo = controls[rng.integers(0, n0, size=(b, n0))]
        ranks = rankdata(np.concatenate([xc, xo], axis=1), axis=1)
        rsum = ranks[:, :n1].sum(axis=1)
        out[start : start + b] = (rsum - n1 * (n1 + 1) / 2.0) / (n1 * n0)
    return out


def _check_level(level: float, where: str) -> None:
    if not (0.0 < level < 1.0):
        raise DataError(f"{where}level={level!r} must be strictly between 0 and 1, e.g. 0.95.")


def roc_auc(
    y,
    score,
    *,
    ci: Literal["delong", "bootstrap"] | None = "delong",
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int | np.random.Generator | None = None,
    direction: Direction = "auto",
) -> RocResult:
    """ROC curve, AUC and a confidence interval for the AUC.

    Parameters
    ----------
    y : array of 0/1 (or bool); 1 marks a case.
    score : array of finite numbers, same length as ``y``.
    ci : ``"delong"`` (pROC's default), ``"bootstrap"`` (stratified percentile bootstrap with
        ``n_boot`` replicates drawn from ``seed``) or None.
    level : confidence level of the interval.
    direction : ``"auto"``, ``"<"`` or ``">"`` (see module docstring).
    """
    where = "roc_auc: "
    yy, ss = labels_and_scores(y, score, where=where)
    check_both_classes(yy, where=where)
    _check_level(level, where)
    d = _resolve_direction(yy, ss, direction, where)
    oriented = ss if d == "<" else -ss
    cases, controls = oriented[yy == 1], oriented[yy == 0]
    auc, v10, v01 = _placements(cases, controls)
    var = _delong_var(v10, v01)

    alpha = 1.0 - level
    if ci is None:
        lo = hi = float("nan")
    elif ci == "delong":
        z = stats.norm.ppf(1.0 - alpha / 2.0)
        sd = np.sqrt(var)
        lo, hi = float(np.clip(auc - z * sd, 0, 1)), float(np.clip(auc + z * sd, 0, 1))
    elif ci == "bootstrap":
        if int(n_boot) < 2:
            raise DataError(
                f"{where}n_boot={n_boot!r} is too small; use at least 100 (2000 is pROC's default)."
            )
        rng = np.random.default_rng(seed)
        aucs = _bootstrap_aucs(cases, controls, int(n_boot), rng)
        lo, hi = (float(v) for v in np.quantile(aucs, [alpha / 2.0, 1.0 - alpha / 2.0]))
    else:
        raise DataError(f"{where}ci={ci!r} is not one of 'delong', 'bootstrap', None.")

    fpr, tpr, thr = roc_curve(yy, oriented, drop_intermediate=False)
    thresholds = thr if d == "<" else -thr
    return RocResult(
        auc=auc,
        ci_low=lo,
        ci_high=hi,
        fpr=fpr,
        tpr=tpr,
        thresholds=thresholds,
        direction=d,
        ci_method=ci,
        level=level,
        variance=var,
        n_cases=len(cases),
        n_controls=len(controls),
    )


def delong_test(
    y,
    score1,
    score2,
    *,
    direction: Direction | tuple[Direction, Direction] = "auto",
) -> DelongTest:
    """DeLong's test that two scores measured on the same subjects have equal AUCs.

    Equivalent to pROC ``roc.test(roc(y, score1), roc(y, score2), method="delong",
    paired=TRUE)``: z = (AUC1 - AUC2) / sqrt(var1 + var2 - 2 cov), with the covariance
    matrix built from both scores' placement values; p is two-sided. Each score's direction
    is resolved separately (pass a pair to fix them).
    """
    where = "delong_test: "
    yy, s1 = labels_and_scores(y, score1, score_name="score1", where=where)
    _, s2 = labels_and_scores(y, score2, score_name="score2", where=where)
    check_both_classes(yy, where=where)
    dirs = (direction, direction) if isinstance(direction, str) else tuple(direction)
    if len(dirs) != 2:
        raise DataError(f"{where}direction={direction!r} must be one string or a pair of strings.")
    d1 = _resolve_direction(yy, s1, dirs[0], where)
    d2 = _resolve_direction(yy, s2, dirs[1], where)
    o1 = s1 if d1 == "<" else -s1
    o2 = s2 if d2 == "<" else -s2
    auc1, v10a, v01a = _placements(o1[yy == 1], o1[yy == 0])
    auc2, v10b, v01b = _placements(o2[yy == 1], o2[yy == 0])
    n1, n0 = len(v10a), len(v01a)
    if n1 < 2 or n0 < 2:
        raise DataError(
            f"{where}{n1} cases and {n0} controls; DeLong's test needs at least two of each."
        )
    s10 = np.cov(np.vstack([v10a, v10b]))
    s01 = np.cov(np.vstack([v01a, v01b]))
    s = s10 / n1 + s01 / n0
    var_diff = s[0, 0] + s[1, 1] - 2.0 * s[0, 1]
    diff = auc1 - auc2
    if var_diff <= 0:
        z = 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
    else:
        z = float(diff / np.sqrt(var_diff))
    p = float(2.0 * stats.norm.sf(abs(z)))
    return DelongTest(z=z, p=p, auc1=auc1, auc2=auc2, directions=(d1, d2))


def operating_point(
    roc_or_y,
    score=None,
    *,
    method: Literal["youden", "sensitivity", "specificity"] = "youden",
    target: float | None = None,
    direction: Direction = "auto",
) -> OperatingPoint:
    """Choose a threshold on the ROC curve.

    Pass a :class:`RocResult`, or ``y`` and ``score`` (then ``direction`` applies).

    * ``method="youden"``: maximise sensitivity + specificity - 1 (the highest-threshold
      point among ties for ``"<"``).
    * ``method="sensitivity"``: the point with the highest specificity among those with
      sensitivity >= ``target``.
    * ``method="specificity"``: the point with the highest sensitivity among those with
      specificity >= ``target``.

    Thresholds are observed score values: positive means ``score >= threshold`` for
    direction ``"<"`` and ``score <= threshold`` for ``">"`` (pROC reports midpoints between
    adjacent values instead; sensitivity and specificity are the same).
    """
    where = "operating_point: "
    if isinstance(roc_or_y, RocResult):
        if score is not None:
            raise DataError(f"{where}score given together with a RocResult; pass one or the other.")
        roc = roc_or_y
    else:
        if score is None:
            raise DataError(f"{where}pass a RocResult, or both y and score.")
        roc = roc_auc(roc_or_y, score, ci=None, direction=direction)
    sens, spec = roc.tpr, 1.0 - roc.fpr
    finite = np.isfinite(roc.thresholds)
    if method == "youden":
        if target is not None:
            raise DataError(f"{where}target={target!r} is not used with method='youden'; drop it.")
        j = np.where(finite, sens + spec - 1.0, -np.inf)
        i = int(np.argmax(j))
    elif method in ("sensitivity", "specificity"):
        if target is None or not (0.0 <= float(target) <= 1.0):
            raise DataError(
                f"{where}method={method!r} needs target in [0, 1], got {target!r}; e.g. target=0.9."
            )
        primary, secondary = (sens, spec) if method == "sensitivity" else (spec, sens)
        ok = (primary >= float(target) - 1e-12) & finite
        if not ok.any():
            raise DataError(
                f"{where}no finite threshold reaches {method} >= {target}; the best available "
                f"is {primary[finite].max():.4g}. Lower the target."
            )
        key = np.where(ok, secondary + 1e-9 * primary, -np.inf)
        i = int(np.argmax(key))
    else:
        raise DataError(
            f"{where}method={method!r} is not one of 'youden', 'sensitivity', 'specificity'."
        )
    return OperatingPoint(
        threshold=float(roc.thresholds[i]),
        sensitivity=float(sens[i]),
        specificity=float(spec[i]),
        youden=float(sens[i] + spec[i] - 1.0),
        method=method,
        direction=roc.direction,
    )

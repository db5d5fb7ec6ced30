"""Reliability of repeated ratings: Shrout-Fleiss ICCs, within-subject CV, repeatability.

The six intraclass correlations and their F tests and confidence limits follow
Shrout & Fleiss (1979) / McGraw & Wong (1996) exactly as ``psych::ICC`` reports them
(rows ICC1, ICC2, ICC3, ICC1k, ICC2k, ICC3k; columns ICC, F, df1, df2, p, lower bound,
upper bound), computed from the two-way ANOVA mean squares of a complete
targets x raters table:

* MSB between targets, MSJ between raters, MSE residual, MSW = within targets (one-way).
* ICC1  = (MSB - MSW) / (MSB + (k-1) MSW)       single rater, one-way random
* ICC2  = (MSB - MSE) / (MSB + (k-1) MSE + k (MSJ - MSE) / n)   single, two-way random
* ICC3  = (MSB - MSE) / (MSB + (k-1) MSE)        single, two-way mixed (consistency)
* ICC1k, ICC2k, ICC3k: the same for the mean of the k raters.

ICC2's limits use Satterthwaite's approximate degrees of freedom, as psych does.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from lmmkit.errors import DataError, LmmkitWarning

__all__ = [
    "IccResult",
    "icc",
    "icc_wide",
    "within_subject_cv",
    "repeatability_coefficient",
]

_FORMS = ("ICC1", "ICC2", "ICC3", "ICC1k", "ICC2k", "ICC3k")
_TYPES = (
    "Single_raters_absolute",
    "Single_random_raters",
    "Single_fixed_raters",
    "Average_raters_absolute",
    "Average_random_raters",
    "Average_fixed_raters",
)


@dataclass(frozen=True, eq=False)
class IccResult:
    """The six Shrout-Fleiss ICCs.

    ``table`` is a DataFrame indexed by form (ICC1 ... ICC3k) with columns
    ``type, icc, F, df1, df2, p, lower, upper``. ``mean_squares`` holds MSB, MSW, MSJ, MSE.
    """

    table: pd.DataFrame
    n_targets: int
    n_raters: int
    level: float
    mean_squares: dict

    def __getitem__(self, form: str) -> pd.Series:
        if form not in self.table.index:
            raise KeyError(f"{form!r} is not one of {list(self.table.index)}")
        return self.table.loc[form]


def _as_matrix(matrix, where: str) -> np.ndarray:
    arr = np.asarray(matrix)
    if arr.ndim != 2:
        raise DataError(
            f"{where}ratings must be a 2-D targets x raters table, got shape {arr.shape}."
        )
    try:
        arr = arr.astype(float)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}ratings must be numeric, got dtype {arr.dtype}.") from exc
    if np.isinf(arr).any():
        i, j = np.argwhere(np.isinf(arr))[0]
        raise DataError(f"{where}rating at row {i}, column {j} is infinite; fix or drop it.")
    return arr


def _drop_incomplete(arr: np.ndarray, missing: str, where: str) -> np.ndarray:
    bad_rows = np.isnan(arr).any(axis=1)
    if bad_rows.any():
        rows = np.flatnonzero(bad_rows)
        msg = (
            f"{where}{len(rows)} target(s) have missing ratings (rows {rows[:6].tolist()}"
            f"{' ...' if len(rows) > 6 else ''})"
        )
        if missing == "raise":
            raise DataError(
                msg + "; fill them in or pass missing='drop' to use complete targets only."
            )
        if missing != "drop":
            raise DataError(f"{where}missing={missing!r} is not one of 'drop', 'raise'.")
        warnings.warn(msg + " and were dropped, as psych::ICC does.", LmmkitWarning, stacklevel=3)
        arr = arr[~bad_rows]
    n, k = arr.shape
    if n < 2 or k < 2:
        raise DataError(
            f"{where}need at least 2 complete targets and 2 raters, got {n} x {k}; "
            f"check the table orientation (rows = targets, columns = raters)."
        )
    return arr


def icc_wide(
    matrix, *, level: float = 0.95, missing: Literal["drop", "raise"] = "drop"
) -> IccResult:
    """Six Shrout-Fleiss ICCs from a targets (rows) x raters (columns) table.

    Rows with any missing rating are dropped with a warning (``missing="drop"``, as
    psych) or rejected (``missing="raise"``).
    """
    where = "icc: "
    if not (0.0 < level < 1.0):
        raise DataError(f"{where}level={level!r} must be strictly between 0 and 1, e.g. 0.95.")
    x = _drop_incomplete(_as_matrix(matrix, where), missing, where)
    n, k = x.shape
    grand = x.mean()
    row_means = x.mean(axis=1)
    col_means = x.mean(axis=0)
    ss_total = ((x - grand) ** 2).sum()
    ss_rows = k * ((row_means - grand) ** 2).sum()
    ss_cols = n * ((col_means - grand) ** 2).sum()
    ss_err = ss_total - ss_rows - ss_cols
    msb = ss_rows / (n - 1)
    msj = ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    msw = (ss_cols + ss_err) / (n * (k - 1))

    icc1 = (msb - msw) / (msb + (k - 1) * msw)
    icc2 = (msb - mse) / (msb + (k - 1) * mse + k * (msj - mse) / n)
    icc3 = (msb - mse) / (msb + (k - 1) * mse)
    icc1k = (msb - msw) / msb
    icc2k = (msb - mse) / (msb + (msj - mse) / n)
    icc3k = (msb - mse) / msb

    df1 = n - 1.0
    df_w = n * (k - 1.0)
    df_e = (n - 1.0) * (k - 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = msb / msw
        f3 = msb / mse
        fj = msj / mse
    p1 = stats.f.sf(f1, df1, df_w)
    p3 = stats.f.sf(f3, df1, df_e)

    q = 1.0 - (1.0 - level) / 2.0
    fl1 = f1 / stats.f.ppf(q, df1, df_w)
    fu1 = f1 * stats.f.ppf(q, df_w, df1)
    fl3 = f3 / stats.f.ppf(q, df1, df_e)
    fu3 = f3 * stats.f.ppf(q, df_e, df1)
    l1, u1 = (fl1 - 1) / (fl1 + k - 1), (fu1 - 1) / (fu1 + k - 1)
    l3, u3 = (fl3 - 1) / (fl3 + k - 1), (fu3 - 1) / (fu3 + k - 1)
    # Satterthwaite df for ICC2 (psych / McGraw & Wong)
    vn = (k - 1) * (n - 1) * (k * icc2 * fj + n * (1 + (k - 1) * icc2) - k * icc2) ** 2
    vd = (n - 1) * k**2 * icc2**2 * fj**2 + (n * (1 + (k - 1) * icc2) - k * icc2) ** 2
    v = vn / vd
    f3u = stats.f.ppf(q, n - 1, v)
    f3l = stats.f.ppf(q, v, n - 1)
    denom_core = k * msj + (k * n - k - n) * mse
    l2 = n * (msb - f3u * mse) / (f3u * denom_core + n * msb)
    u2 = n * (f3l * msb - mse) / (denom_core + n * f3l * msb)
    l1k, u1k = 1 - 1 / fl1, 1 - 1 / fu1
    l3k, u3k = 1 - 1 / fl3, 1 - 1 / fu3
    l2k = l2 * k / (1 + l2 * (k - 1))
    u2k = u2 * k / (1 + u2 * (k - 1))

    table = pd.DataFrame(
        {
            "type": list(_TYPES),
            "icc": [icc1, icc2, icc3, icc1k, icc2k, icc3k],
            "F": [f1, f3, f3, f1, f3, f3],
            "df1": [df1] * 6,
            "df2": [df_w, df_e, df_e, df_w, df_e, df_e],
            "p": [p1, p3, p3, p1, p3, p3],
            "lower": [l1, l2, l3, l1k, l2k, l3k],
            "upper": [u1, u2, u3, u1k, u2k, u3k],
        },
        index=pd.Index(_FORMS, name="form"),
    )
    return IccResult(
        table=table,
        n_targets=n,
        n_raters=k,
        level=level,
        mean_squares={"MSB": msb, "MSW": msw, "MSJ": msj, "MSE": mse},
    )


def _long_to_wide(data, targets: str, raters: str, ratings: str, where: str) -> pd.DataFrame:
    if not isinstance(data, pd.DataFrame):
        raise DataError(
            f"{where}data must be a pandas DataFrame in long format, got {type(data).__name__}."
        )
    from lmmkit.errors import close_matches

    for role, col in (("targets", targets), ("raters", raters), ("ratings", ratings)):
        if col not in data.columns:
            raise DataError(
                f"{where}{role}={col!r} is not a column of data (columns: {list(data.columns)})."
                + close_matches(str(col), list(data.columns))
            )
    dup = data.duplicated(subset=[targets, raters])
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        t, r = (
            v.item() if isinstance(v, np.generic) else v for v in data.iloc[i][[targets, raters]]
        )
        raise DataError(
            f"{where}target {t!r} has more than one rating by rater {r!r} "
            f"(first duplicate at row {i}); average or remove the replicates first."
        )
    return data.pivot(index=targets, columns=raters, values=ratings)


def icc(
    data,
    *,
    targets: str,
    raters: str,
    ratings: str,
    level: float = 0.95,
    missing: Literal["drop", "raise"] = "drop",
) -> IccResult:
    """Six Shrout-Fleiss ICCs from a long table with one row per (target, rater) rating."""
    wide = _long_to_wide(data, targets, raters, ratings, "icc: ")
    return icc_wide(wide.to_numpy(), level=level, missing=missing)


def _replicates(matrix, where: str) -> np.ndarray:
    x = _drop_incomplete(_as_matrix(matrix, where), "raise", where)
    return x


def within_subject_cv(matrix) -> float:
    """Within-subject coefficient of variation of replicate measurements.

    ``matrix`` is subjects (rows) x replicates (columns). Root-mean-square method:
    wCV = sqrt(mean_i(s_i^2 / m_i^2)), with s_i the SD (ddof=1) and m_i the mean of
    subject i's replicates. Returned as a fraction (multiply by 100 for percent).
    """
    where = "within_subject_cv: "
    x = _replicates(matrix, where)
    m = x.mean(axis=1)
    if np.any(m == 0):
        i = int(np.flatnonzero(m == 0)[0])
        raise DataError(
            f"{where}subject at row {i} has mean 0, so its CV is undefined; "
            f"the CV needs measurements on a ratio scale."
        )
    s2 = x.var(axis=1, ddof=1)
    return float(np.sqrt(np.mean(s2 / m**2)))


def repeatability_coefficient(matrix, *, level: float = 0.95) -> float:
    """Bland-Altman repeatability coefficient: z_{1-a/2} * sqrt(2) * s_w.

    ``s_w`` is the within-subject SD, sqrt of the pooled within-subject variance (the
    one-way ANOVA MSW) of a subjects x replicates table; at 95% this is about 2.77 s_w,
    the limit below which the difference of two replicates lies with that probability.
    """
    where = "repeatability_coefficient: "
    if not (0.0 < level < 1.0):
        raise DataError(f"{where}level={level!r} must be strictly between 0 and 1, e.g. 0.95.")
    x = _replicates(matrix, where)
    sw = np.sqrt(x.var(axis=1, ddof=1).mean())
    return float(stats.norm.ppf(1 - (1 - level) / 2) * np.sqrt(2.0) * sw)

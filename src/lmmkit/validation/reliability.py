"""Reliability of repeated ratings: Shrout-Fleiss ICCs, within-subject CV, repeatability.

The six intraclass correlations and their F tests and confidence limits follow
Shrout & Fleiss (1979) / McGraw & Wong (1996) exactly as ``psych::ICC`` reports them
(rows ICC1, ICC2, ICC3, ICC1k, ICC2k, ICC3k; columns ICC, F, df1, df2, p, lower bound,
upper bound), from the mean squares of a targets x raters table:

* MSB between targets, MSJ between raters, MSE residual, MSW = within targets (one-way).
* ICC1  = (MSB - MSW) / (MSB + (k-1) MSW)       single rater, one-way random
* ICC2  = (MSB - MSE) / (MSB + (k-1) MSE + k (MSJ - MSE) / n)   single, two-way random
* ICC3  = (MSB - MSE) / (MSB + (k-1) MSE)        single, two-way mixed (consistency)
* ICC1k, ICC2k, ICC3k: the same for the mean of the k raters.

ICC2's limits use Satterthwaite's approximate degrees of freedom, as psych does.

Two conventions for the mean squares, as psych offers them (``method=``):

* ``"anova"`` (the default; psych ``ICC(lmer=FALSE)``): the two-way ANOVA mean squares of
  the complete targets. The Shrout-Fleiss definition, for which the F tests and bounds are
  derived. A target with a missing rating cannot enter: it is dropped (``missing="drop"``,
  with a warning counting it) or refused (``missing="raise"``); psych's ANOVA path stops.
* ``"reml"`` (psych's default, ``ICC(lmer=TRUE)``): the variance components of the crossed
  model ``rating ~ 1 + (1 | target) + (1 | rater)`` by REML, a variance whose ANOVA estimate
  is negative thereby estimated as 0 (the boundary), and the mean squares rebuilt from them:
  MSB = k s2_target + s2_e, MSJ = n s2_rater + s2_e, MSE = s2_e, MSW = s2_e + s2_rater.
  Every target is kept with its observed ratings (missing cells are left out of the fit);
  F tests and bounds then use the complete table's degrees of freedom, as psych does. With
  complete data and positive ANOVA estimates both conventions give the same numbers; with
  complete data the REML components are computed exactly (the boundary solution pools the
  mean squares), with missing cells by lmmkit's REML fit.

The intraclass correlation of a fitted mixed model (``performance::icc``) is
:func:`lmmkit.icc_model`, not :func:`icc`.
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
    ``type, icc, F, df1, df2, p, lower, upper``. ``mean_squares`` holds MSB, MSW, MSJ, MSE;
    ``method`` the convention (``"anova"`` or ``"reml"``, see the module docstring);
    ``variance_components`` the target, rater and residual variances (for ``"anova"`` the
    ANOVA estimates, which may be negative); ``dropped_targets`` the positions of targets
    left out for missing ratings and ``n_missing`` the number of missing cells.
    """

    table: pd.DataFrame
    n_targets: int
    n_raters: int
    level: float
    mean_squares: dict
    method: str = "anova"
    variance_components: dict | None = None
    dropped_targets: tuple[int, ...] = ()
    n_missing: int = 0

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


def _incomplete_rows(arr: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.isnan(arr).any(axis=1))


def _describe_rows(rows: np.ndarray, what: str) -> str:
    shown = f"{rows[:6].tolist()}{' ...' if len(rows) > 6 else ''}"
    values = "ratings" if what == "target" else "replicates"
    return f"{len(rows)} {what}(s) with missing {values} (rows {shown})"


def _drop_incomplete(
    arr: np.ndarray, missing: str, where: str, *, what: str = "target", advice: str
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``arr`` without missing values, and the positions dropped."""
    if missing not in ("drop", "raise"):
        raise DataError(f"{where}missing={missing!r} is not one of 'drop', 'raise'.")
    rows = _incomplete_rows(arr)
    if len(rows):
        msg = f"{where}{_describe_rows(rows, what)}"
        if missing == "raise":
            raise DataError(f"{msg}; {advice}")
        warnings.warn(f"{msg} were dropped: {advice.split(';')[0]}.", LmmkitWarning, stacklevel=4)
        arr = np.delete(arr, rows, axis=0)
    return arr, rows


def _check_size(n: int, k: int, where: str) -> None:
    if n < 2 or k < 2:
        raise DataError(
            f"{where}need at least 2 complete targets and 2 raters, got {n} x {k}; "
            f"check the table orientation (rows = targets, columns = raters)."
        )


def _anova_mean_squares(x: np.ndarray) -> dict:
    n, k = x.shape
    grand = x.mean()
    ss_rows = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_err = ((x - grand) ** 2).sum() - ss_rows - ss_cols
    msj = ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    return {
        "MSB": ss_rows / (n - 1),
        "MSW": (ss_cols + ss_err) / (n * (k - 1)),
        "MSJ": msj,
        "MSE": mse,
    }


def _reml_components_complete(ms: dict, n: int, k: int) -> dict:
    """REML variance components of the balanced crossed model, negative ones at 0.

    The REML likelihood of a complete table factors into the target, rater and residual
    contrasts, with expected mean squares s2_e + k s2_t, s2_e + n s2_r and s2_e; its maximum
    under s2_t, s2_r >= 0 pools a mean square below the residual one into it (in increasing
    order, with its degrees of freedom), i.e. the ANOVA estimates truncated at 0 with the
    residual variance re-estimated.
    """
    parts = {"target": (ms["MSB"], n - 1.0), "rater": (ms["MSJ"], k - 1.0)}
    ss_e, df_e = ms["MSE"] * (n - 1.0) * (k - 1.0), (n - 1.0) * (k - 1.0)
    pooled = set()
    for name, (msx, dfx) in sorted(parts.items(), key=lambda kv: kv[1][0]):
        if msx < ss_e / df_e:
            ss_e, df_e = ss_e + msx * dfx, df_e + dfx
            pooled.add(name)
    s2_e = ss_e / df_e
    comps = {
        "target": 0.0 if "target" in pooled else (ms["MSB"] - s2_e) / k,
        "rater": 0.0 if "rater" in pooled else (ms["MSJ"] - s2_e) / n,
        "residual": s2_e,
    }
    return comps


def _reml_components_incomplete(x: np.ndarray) -> dict:
    """REML variance components of ``rating ~ 1 + (1 | target) + (1 | rater)`` fitted by
    lmmkit to the observed cells (psych's lmer=TRUE path)."""
    from lmmkit.models.lmm import lmm

    n, k = x.shape
    obs = ~np.isnan(x)
    long = pd.DataFrame(
        {
            "rating": x[obs],
            "target": np.repeat(np.arange(n), k).reshape(n, k)[obs].astype(str),
            "rater": np.tile(np.arange(k), n).reshape(n, k)[obs].astype(str),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a zero variance is this convention's answer
        res = lmm("rating ~ 1 + (1 | target) + (1 | rater)", long, reml=True)
    vc = res.varcorr.set_index("group")["vcov"]
    return {
        "target": float(vc["target"]),
        "rater": float(vc["rater"]),
        "residual": float(res.sigma**2),
    }


def _mean_squares_from_components(comps: dict, n: int, k: int) -> dict:
    s2_e = comps["residual"]
    return {
        "MSB": k * comps["target"] + s2_e,
        "MSW": s2_e + comps["rater"],
        "MSJ": n * comps["rater"] + s2_e,
        "MSE": s2_e,
    }


def icc_wide(
    matrix,
    *,
    level: float = 0.95,
    method: Literal["anova", "reml"] = "anova",
    missing: Literal["drop", "raise"] = "drop",
) -> IccResult:
    """Six Shrout-Fleiss ICCs from a targets (rows) x raters (columns) table.

    Parameters
    ----------
    matrix
        Targets x raters ratings; NaN marks a missing rating.
    level
        Confidence level of the bounds.
    method
        ``"anova"`` (default; psych ``ICC(lmer=FALSE)``) or ``"reml"`` (psych's default
        ``ICC(lmer=TRUE)``: REML variance components, a negative one at 0, every target
        kept with its observed ratings). See the module docstring.
    missing
        ``"drop"``: with ``"anova"``, targets with a missing rating are dropped, with a
        warning naming them; with ``"reml"``, missing cells are left out of the fit (a
        warning counts them). ``"raise"``: a missing rating is an error.

    Returns
    -------
    IccResult

    Raises
    ------
    DataError
        Not a 2-D numeric table, infinite ratings, fewer than 2 targets or raters, missing
        ratings with ``missing="raise"``.

    Examples
    --------
    >>> ratings = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9],
    ...            [6, 2, 4, 7]]
    >>> round(float(icc_wide(ratings)["ICC3"]["icc"]), 4)
    0.7148
    """
    where = "icc: "
    if not (0.0 < level < 1.0):
        raise DataError(f"{where}level={level!r} must be strictly between 0 and 1, e.g. 0.95.")
    if method not in ("anova", "reml"):
        raise DataError(
            f"{where}method={method!r} is not 'anova' (psych ICC(lmer=FALSE), the default) or "
            "'reml' (psych's default ICC(lmer=TRUE))."
        )
    if missing not in ("drop", "raise"):
        raise DataError(f"{where}missing={missing!r} is not one of 'drop', 'raise'.")
    x = _as_matrix(matrix, where)
    n_missing = int(np.isnan(x).sum())
    dropped: np.ndarray = np.zeros(0, dtype=int)
    if method == "anova":
        x, dropped = _drop_incomplete(
            x,
            missing,
            where,
            advice=(
                "the ANOVA convention needs complete targets (psych::ICC(lmer=FALSE) stops "
                "on them); fill them in, or use method='reml' to keep every target with its "
                "observed ratings as psych's default lmer=TRUE does"
            ),
        )
        n, k = x.shape
        _check_size(n, k, where)
        ms = _anova_mean_squares(x)
        comps = {
            "target": (ms["MSB"] - ms["MSE"]) / k,
            "rater": (ms["MSJ"] - ms["MSE"]) / n,
            "residual": ms["MSE"],
        }
    else:
        empty = np.flatnonzero(np.isnan(x).all(axis=1))
        if len(empty):
            raise DataError(
                f"{where}{len(empty)} target(s) have no rating at all (rows "
                f"{empty[:6].tolist()}); remove them."
            )
        rows = _incomplete_rows(x)
        if len(rows):
            if missing == "raise":
                raise DataError(
                    f"{where}{_describe_rows(rows, 'target')}; fill them in, or pass "
                    "missing='drop' to fit the observed ratings of every target."
                )
            warnings.warn(
                f"{where}{n_missing} missing rating(s) in {len(rows)} target(s) (rows "
                f"{rows[:6].tolist()}{' ...' if len(rows) > 6 else ''}) are left out of the REML "
                "fit; every target is kept, as psych::ICC(lmer=TRUE) does. The F tests and "
                "bounds use the complete table's degrees of freedom (approximate here).",
                LmmkitWarning,
                stacklevel=3,
            )
        n, k = x.shape
        _check_size(n, k, where)
        if len(rows):
            comps = _reml_components_incomplete(x)
        else:
            comps = _reml_components_complete(_anova_mean_squares(x), n, k)
        ms = _mean_squares_from_components(comps, n, k)
    msb, msw, msj, mse = ms["MSB"], ms["MSW"], ms["MSJ"], ms["MSE"]

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
        method=method,
        variance_components=comps,
        dropped_targets=tuple(int(r) for r in dropped),
        n_missing=n_missing,
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


def _is_fitted_model(obj) -> bool:
    from lmmkit.models.lmm import LinearMixedModel
    from lmmkit.results.lmm_result import LMMResult

    if isinstance(obj, LinearMixedModel | LMMResult):
        return True
    return type(obj).__module__.startswith("lmmkit.glmm") or type(obj).__name__ in (
        "GLMMResult",
        "GeneralizedLinearMixedModel",
    )


def icc(
    data,
    *,
    targets: str | None = None,
    raters: str | None = None,
    ratings: str | None = None,
    level: float = 0.95,
    method: Literal["anova", "reml"] = "anova",
    missing: Literal["drop", "raise"] = "drop",
) -> IccResult:
    """Six Shrout-Fleiss ICCs (rater agreement) from a long table, one row per rating.

    Parameters
    ----------
    data
        DataFrame with one row per (target, rater) rating.
    targets, raters, ratings
        Column names of the rated subject, the rater and the rating.
    level, method, missing
        As :func:`icc_wide` (``method="anova"`` is the default; ``"reml"`` is psych's
        default ``lmer=TRUE``). A (target, rater) pair without a row is a missing rating.

    Returns
    -------
    IccResult

    Raises
    ------
    DataError
        A fitted model instead of rating data (use :func:`lmmkit.icc_model`), a column not
        in ``data``, a repeated (target, rater) pair, or the errors of :func:`icc_wide`.

    Examples
    --------
    >>> import pandas as pd
    >>> long = pd.DataFrame({"patient": [1, 1, 2, 2, 3, 3, 4, 4],
    ...                      "reader": ["a", "b"] * 4, "size": [10, 11, 20, 19, 15, 17, 30, 29]})
    >>> res = icc(long, targets="patient", raters="reader", ratings="size")
    >>> round(float(res["ICC2"]["icc"]), 3)
    0.986
    """
    where = "icc: "
    if _is_fitted_model(data):
        raise DataError(
            f"{where}got a fitted {type(data).__name__}: icc() is the rater-agreement ICC of "
            "a table of ratings (Shrout-Fleiss, psych::ICC). For the intraclass correlation "
            "of a mixed model (performance::icc) use lmmkit.icc_model(model)."
        )
    if targets is None or raters is None or ratings is None:
        raise DataError(
            f"{where}name the columns of data: icc(data, targets=..., raters=..., ratings=...); "
            "for a targets x raters table use icc_wide(table)."
        )
    wide = _long_to_wide(data, targets, raters, ratings, where)
    return icc_wide(wide.to_numpy(), level=level, method=method, missing=missing)


def _replicates(matrix, missing: str, where: str) -> np.ndarray:
    x, _ = _drop_incomplete(
        _as_matrix(matrix, where),
        missing,
        where,
        what="subject",
        advice=(
            "subjects need every replicate here; fill them in, or pass missing='drop' to use "
            "the complete subjects only"
        ),
    )
    if x.shape[0] < 1 or x.shape[1] < 2:
        raise DataError(
            f"{where}need at least 1 complete subject and 2 replicates, got {x.shape[0]} x "
            f"{x.shape[1]}; check the table orientation (rows = subjects, columns = replicates)."
        )
    return x


def within_subject_cv(matrix, *, missing: Literal["raise", "drop"] = "raise") -> float:
    """Within-subject coefficient of variation of replicate measurements.

    ``matrix`` is subjects (rows) x replicates (columns). Root-mean-square method:
    wCV = sqrt(mean_i(s_i^2 / m_i^2)), with s_i the SD (ddof=1) and m_i the mean of
    subject i's replicates. Returned as a fraction (multiply by 100 for percent).

    Parameters
    ----------
    matrix
        Subjects x replicates, on a ratio scale.
    missing
        ``"raise"`` (default): a missing replicate is an error; ``"drop"``: subjects with a
        missing replicate are left out, with a warning naming them.

    Returns
    -------
    float

    Raises
    ------
    DataError
        Missing values with ``missing="raise"``, a subject with mean 0, a bad table.

    Examples
    --------
    >>> round(within_subject_cv([[9.0, 11.0], [19.0, 21.0]]), 4)
    0.1118
    """
    where = "within_subject_cv: "
    x = _replicates(matrix, missing, where)
    m = x.mean(axis=1)
    if np.any(m == 0):
        i = int(np.flatnonzero(m == 0)[0])
        raise DataError(
            f"{where}subject at row {i} has mean 0, so its CV is undefined; "
            f"the CV needs measurements on a ratio scale."
        )
    s2 = x.var(axis=1, ddof=1)
    return float(np.sqrt(np.mean(s2 / m**2)))


def repeatability_coefficient(
    matrix, *, level: float = 0.95, missing: Literal["raise", "drop"] = "raise"
) -> float:
    """Bland-Altman repeatability coefficient: z_{1-a/2} * sqrt(2) * s_w.

    ``s_w`` is the within-subject SD, sqrt of the pooled within-subject variance (the
    one-way ANOVA MSW) of a subjects x replicates table; at 95% this is about 2.77 s_w,
    the limit below which the difference of two replicates lies with that probability.

    Parameters
    ----------
    matrix
        Subjects x replicates.
    level
        Probability of the limit.
    missing
        ``"raise"`` (default) or ``"drop"`` (subjects with a missing replicate left out,
        with a warning).

    Returns
    -------
    float

    Raises
    ------
    DataError
        Missing values with ``missing="raise"``, a level outside (0, 1), a bad table.

    Examples
    --------
    >>> round(repeatability_coefficient([[9.0, 11.0], [19.0, 21.0]]), 4)
    3.9199
    """
    where = "repeatability_coefficient: "
    if not (0.0 < level < 1.0):
        raise DataError(f"{where}level={level!r} must be strictly between 0 and 1, e.g. 0.95.")
    x = _replicates(matrix, missing, where)
    sw = np.sqrt(x.var(axis=1, ddof=1).mean())
    return float(stats.norm.ppf(1 - (1 - level) / 2) * np.sqrt(2.0) * sw)

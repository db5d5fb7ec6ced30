"""Kaplan-Meier and Nelson-Aalen estimators with log-log confidence intervals, and the
log-rank test (R survival's ``survfit``, ``survdiff``).

Kaplan-Meier: S(t) = prod (1 - d_i / n_i) with Greenwood's variance
``var(log S) = sum d / (n (n - d))`` and R's ``conf.type="log-log"`` interval
``S^exp(+-z se(log S) / log S)``. Nelson-Aalen: H(t) = sum d_i / n_i with variance
``sum d / n^2`` (survfit's ``ctype=1``) and the interval ``H exp(+-z se / H)`` (the
log-log interval of exp(-H)). Case weights enter d and n. Log-rank: survdiff with
``rho=0`` (``rho=1`` is the Peto-Peto modification), stratified when asked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from lmmkit.errors import DataError

__all__ = ["SurvivalCurve", "LogrankResult", "kaplan_meier", "nelson_aalen", "logrank_test"]


@dataclass(frozen=True, eq=False)
class SurvivalCurve:
    """One curve per group: a tidy table with time, n_risk, n_event, n_censor, estimate,
    std_err (of log S for KM, of H for NA), lower, upper and group."""

    table: pd.DataFrame
    kind: str
    conf_type: str
    level: float

    def at(self, times, group=None) -> np.ndarray:
        """The step function's value at ``times`` (right-continuous)."""
        tab = self.table if group is None else self.table[self.table["group"] == group]
        t = np.atleast_1d(np.asarray(times, dtype=float))
        pos = np.searchsorted(tab["time"].to_numpy(), t, side="right")
        start = 1.0 if self.kind == "kaplan-meier" else 0.0
        return np.concatenate([[start], tab["estimate"].to_numpy()])[pos]

    def median(self) -> pd.Series:
        """Median survival per group (R's rule: first time S <= 0.5; the midpoint when S
        equals 0.5 on an interval)."""
        if self.kind != "kaplan-meier":
            raise DataError("median() is defined for Kaplan-Meier curves.")
        out = {}
        for g, tab in self.table.groupby("group", sort=False):
            s, t = tab["estimate"].to_numpy(), tab["time"].to_numpy()
            below = np.flatnonzero(s <= 0.5 + 1e-12)
            if below.size == 0:
                out[g] = np.nan
                continue
            k = below[0]
            if abs(s[k] - 0.5) < 1e-12 and k + 1 < t.size:
                out[g] = (t[k] + t[k + 1]) / 2
            else:
                out[g] = t[k]
        return pd.Series(out, name="median")


def _inputs(time, event, group, weights):
    t = np.asarray(time, dtype=float).ravel()
    e = np.asarray(event, dtype=float).ravel()
    n = t.shape[0]
    if e.shape[0] != n:
        raise DataError(f"event has {e.shape[0]} values; time has {n}.")
    for name, arr in (("time", t), ("event", e)):
        if not np.isfinite(arr).all():
            i = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise DataError(f"{name} is missing or infinite at position {i}; drop the row.")
    if (t < 0).any():
        i = int(np.flatnonzero(t < 0)[0])
        raise DataError(f"time is negative ({t[i]!r}) at position {i}; times must be >= 0.")
    vals = set(np.unique(e).tolist())
    if vals <= {1.0, 2.0} and 2.0 in vals:
        e = e - 1.0
    elif not vals <= {0.0, 1.0}:
        raise DataError(f"event must be coded 0/1 or 1/2; got values {sorted(vals)[:6]}.")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float).ravel()
    if w.shape[0] != n or (w <= 0).any() or not np.isfinite(w).all():
        raise DataError("weights must be finite, > 0 and one per row.")
    g = np.zeros(n, dtype=object) if group is None else np.asarray(group, dtype=object).ravel()
    if g.shape[0] != n:
        raise DataError(f"group has {g.shape[0]} values; time has {n}.")
    return t, e, g, w


def _counts(t, e, w):
    T, idx = np.unique(t, return_inverse=True)
    d = np.bincount(idx, weights=w * e, minlength=T.size)
    c = np.bincount(idx, weights=w * (1 - e), minlength=T.size)
    nrisk = np.cumsum(np.bincount(idx, weights=w, minlength=T.size)[::-1])[::-1]
    return T, nrisk, d, c


def _curve(kind, time, event, group, weights, level, conf_type):
    if conf_type not in ("log-log", "log", "plain"):
        raise DataError(f"conf_type must be log-log, log or plain; got {conf_type!r}.")
    t, e, g, w = _inputs(time, event, group, weights)
    z = stats.norm.ppf(0.5 + level / 2)
    frames = []
    for lab in pd.unique(g):
        m = g == lab
        T, nr, d, c = _counts(t[m], e[m], w[m])
        if kind == "kaplan-meier":
            est = np.cumprod(1.0 - d / nr)
            with np.errstate(divide="ignore", invalid="ignore"):
                se = np.sqrt(np.cumsum(np.where(d > 0, d / (nr * (nr - d)), 0.0)))
                if conf_type == "log-log":
                    lls = np.log(est)
                    lo = est ** np.exp(-z * se / lls)
                    hi = est ** np.exp(z * se / lls)
                elif conf_type == "log":
                    lo, hi = est * np.exp(-z * se), np.minimum(est * np.exp(z * se), 1.0)
                else:
                    lo, hi = np.maximum(est - z * se * est, 0), np.minimum(est + z * se * est, 1)
        else:
            est = np.cumsum(d / nr)
            se = np.sqrt(np.cumsum(d / nr**2))
            with np.errstate(divide="ignore", invalid="ignore"):
                if conf_type == "plain":
                    lo, hi = np.maximum(est - z * se, 0), est + z * se
                else:  # log-log of S = exp(-H) is a log interval for H
                    lo, hi = est * np.exp(-z * se / est), est * np.exp(z * se / est)
        frames.append(
            pd.DataFrame(
                {
                    "time": T,
                    "n_risk": nr,
                    "n_event": d,
                    "n_censor": c,
                    "estimate": est,
                    "std_err": se,
                    "lower": lo,
                    "upper": hi,
                    "group": lab,
                }
            )
        )
    table = pd.concat(frames, ignore_index=True)
    return SurvivalCurve(table=table, kind=kind, conf_type=conf_type, level=level)


def kaplan_meier(
    time, event, *, group=None, weights=None, level: float = 0.95, conf_type: str = "log-log"
) -> SurvivalCurve:
    """Kaplan-Meier estimate with Greenwood standard errors (R ``survfit(...,
    conf.type="log-log")``).

    Parameters
    ----------
    time, event : array-like (n,)
        Times and status (0/1 or R's 1/2).
    group : array-like (n,), optional
        One curve per group.
    weights : array-like (n,), optional
    level : float
    conf_type : {"log-log", "log", "plain"}

    Returns
    -------
    SurvivalCurve

    Raises
    ------
    DataError
        Missing or negative times, bad status codes, bad weights.

    Examples
    --------
    >>> km = kaplan_meier([1, 2, 2, 3], [1, 1, 0, 1])
    >>> km.table["estimate"].round(3).tolist()
    [0.75, 0.5, 0.0]
    """
    return _curve("kaplan-meier", time, event, group, weights, level, conf_type)


def nelson_aalen(
    time, event, *, group=None, weights=None, level: float = 0.95, conf_type: str = "log-log"
) -> SurvivalCurve:
    """Nelson-Aalen cumulative hazard (R ``survfit(..., ctype=1)$cumhaz`` and its
    ``std.chaz``).

    Parameters
    ----------
    time, event : array-like (n,)
    group : array-like (n,), optional
    weights : array-like (n,), optional
    level : float
    conf_type : {"log-log", "log", "plain"}

    Returns
    -------
    SurvivalCurve

    Examples
    --------
    >>> na = nelson_aalen([1, 2, 2, 3], [1, 1, 0, 1])
    >>> na.table["estimate"].round(4).tolist()
    [0.25, 0.5833, 1.5833]
    """
    return _curve("nelson-aalen", time, event, group, weights, level, conf_type)


@dataclass(frozen=True, eq=False)
class LogrankResult:
    """survdiff's table (N, observed, expected per group), chi-square, df and p."""

    table: pd.DataFrame
    statistic: float
    df: int
    p_value: float
    variance: np.ndarray


def logrank_test(
    time, event, group, *, strata=None, weights=None, rho: float = 0.0
) -> LogrankResult:
    """Log-rank test of equal survival across groups (R ``survdiff``).

    Parameters
    ----------
    time, event, group : array-like (n,)
    strata : array-like (n,), optional
        Stratified test: observed, expected and variance summed over strata.
    weights : array-like (n,), optional
    rho : float
        0: log-rank; 1: Peto-Peto (weights S(t-)^rho of the pooled Kaplan-Meier).

    Returns
    -------
    LogrankResult

    Raises
    ------
    DataError
        Fewer than two groups, bad inputs.

    Examples
    --------
    >>> r = logrank_test([1, 2, 3, 4, 5, 6], [1, 1, 1, 1, 1, 0], ["a", "b", "a", "b", "a", "b"])
    >>> r.df
    1
    """
    t, e, g, w = _inputs(time, event, group, weights)
    levels = pd.unique(g)
    try:
        levels = np.array(sorted(levels))
    except TypeError:
        pass
    k = len(levels)
    if k < 2:
        raise DataError(f"logrank_test needs at least two groups; got {list(levels)}.")
    gi = np.searchsorted(levels, g) if levels.dtype != object else pd.Index(levels).get_indexer(g)
    st = np.zeros(len(t), int) if strata is None else pd.factorize(np.asarray(strata))[0]
    obs = np.zeros(k)
    exp_ = np.zeros(k)
    var = np.zeros((k, k))
    for s in np.unique(st):
        m = st == s
        T, idx = np.unique(t[m], return_inverse=True)
        nT = T.size
        D = np.zeros((nT, k))
        R = np.zeros((nT, k))
        np.add.at(D, (idx, gi[m]), w[m] * e[m])
        np.add.at(R, (idx, gi[m]), w[m])
        R = np.cumsum(R[::-1], axis=0)[::-1]
        dtot, rtot = D.sum(axis=1), R.sum(axis=1)
        if rho != 0:
            km = np.cumprod(1 - dtot / rtot)
            wt = np.concatenate([[1.0], km[:-1]]) ** rho
        else:
            wt = np.ones(nT)
        keep = dtot > 0
        D, R, dtot, rtot, wt = D[keep], R[keep], dtot[keep], rtot[keep], wt[keep]
        E = R * (dtot / rtot)[:, None]
        obs += (wt[:, None] * D).sum(axis=0)
        exp_ += (wt[:, None] * E).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            f = np.where(rtot > 1, wt**2 * dtot * (rtot - dtot) / (rtot**2 * (rtot - 1)), 0.0)
        for j in range(k):
            var[j, j] += np.sum(f * R[:, j] * rtot) - np.sum(f * R[:, j] ** 2)
            for m in range(j + 1, k):
                v = -np.sum(f * R[:, j] * R[:, m])
                var[j, m] += v
                var[m, j] += v
    diff = obs - exp_
    sub = var[:-1, :-1]
    stat = float(diff[:-1] @ np.linalg.solve(sub, diff[:-1]))
    df = k - 1
    n = np.array([w[gi == j].sum() for j in range(k)])
    table = pd.DataFrame(
        {
            "N": n,
            "observed": obs,
            "expected": exp_,
            "(O-E)^2/E": diff**2 / exp_,
            "(O-E)^2/V": diff**2 / np.diag(var),
        },
        index=pd.Index(levels, name="group"),
    )
    return LogrankResult(
        table=table, statistic=stat, df=df, p_value=float(stats.chi2.sf(stat, df)), variance=var
    )

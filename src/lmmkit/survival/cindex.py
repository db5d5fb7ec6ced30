"""Concordance of a predictor with a survival outcome: Harrell's C and Uno's C.

The numbers of R survival's ``concordance()`` (``concordancefit``): comparable pairs are
an event at time t and a row still at risk after t (a row censored at t counts as longer;
two events at the same time are tied on y and left out); pairs tied on the predictor count
1/2. ``C = (concordant + tied.x / 2) / (concordant + discordant + tied.x)``. The variance is
survival's infinitesimal jackknife, ``sum(dfbeta^2)`` with the dfbeta of each row (or
summed within clusters). ``timewt="n/G2"`` weighs each event time by 1 / G(t-)^2 (G the
Kaplan-Meier of the censoring), which is Uno's C; ``ymax`` truncates at a horizon tau.

``reverse=False`` (R's default) means larger predictor values go with longer survival; for
a risk score (a Cox linear predictor) use ``reverse=True`` (as ``coxph`` does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from lmmkit.errors import DataError

from ._concordance_kernel import concordance_counts

__all__ = ["ConcordanceResult", "concordance", "harrell_c", "uno_c"]

TimeWeight = Literal["n", "n/G2", "S", "S/G", "I"]


@dataclass(frozen=True, eq=False)
class ConcordanceResult:
    """Concordance with its pair counts and standard error.

    ``counts`` holds concordant, discordant, tied.x, tied.y, tied.xy (after ``reverse``,
    as R prints them); ``dfbeta`` the per-row (or per-cluster) influence on C.
    """

    concordance: float
    std_err: float
    ci_low: float
    ci_high: float
    level: float
    counts: pd.Series
    n: int
    timewt: str
    reverse: bool
    dfbeta: np.ndarray

    @property
    def var(self) -> float:
        return self.std_err**2

    def __float__(self) -> float:
        return float(self.concordance)

    def __repr__(self) -> str:
        return (
            f"ConcordanceResult(C={self.concordance:.6f}, se={self.std_err:.6f}, "
            f"{100 * self.level:g}% CI [{self.ci_low:.4f}, {self.ci_high:.4f}], n={self.n})"
        )


def _censoring_km(stop: np.ndarray, event: np.ndarray, w: np.ndarray):
    """Event times (ascending) with S(t-), G(t-) and the number at risk there (fastkm1's
    conventions: a censoring tied with an event happens after it)."""
    etimes = np.unique(stop[event == 1])
    order = np.argsort(stop, kind="stable")
    t, d, ww = stop[order], event[order], w[order]
    uniq, first = np.unique(t, return_index=True)
    wsum_at = np.add.reduceat(ww, first)
    dsum_at = np.add.reduceat(ww * d, first)
    csum_at = wsum_at - dsum_at
    nrisk = np.cumsum(wsum_at[::-1])[::-1]
    s_after = np.cumprod(1.0 - dsum_at / nrisk)
    # a censoring tied with events comes after them: its risk set excludes those events
    with np.errstate(divide="ignore", invalid="ignore"):
        g_after = np.cumprod(np.where(csum_at > 0, 1.0 - csum_at / (nrisk - dsum_at), 1.0))
    s_before = np.concatenate([[1.0], s_after[:-1]])
    g_before = np.concatenate([[1.0], g_after[:-1]])
    at = np.searchsorted(uniq, etimes)
    return etimes, s_before[at], g_before[at], nrisk[at]


def _time_weights(kind, stop, start, event, w, ymax):
    etimes = np.unique(stop[event == 1])
    if kind == "n" or etimes.size < 2:
        tw = np.ones(etimes.size)
    else:
        if start is not None and kind in ("S/G", "n/G2"):
            raise DataError(
                f"timewt={kind!r} is not defined for (start, stop] data (as in R survival)."
            )
        if start is not None:
            raise DataError(f"timewt={kind!r} is implemented for right-censored data only.")
        etimes, S, G, nrisk = _censoring_km(stop, event, w)
        tw = {
            "S": w.sum() * S / nrisk,
            "S/G": w.sum() * S / (G * nrisk),
            "n/G2": 1.0 / G**2,
            "I": 1.0 / nrisk,
        }[kind]
    if ymax is not None:
        tw = np.where(etimes > ymax, 0.0, tw)
    return tw[::-1].copy()  # counted from the largest event time


def concordance(
    time,
    event,
    score,
    *,
    start=None,
    strata=None,
    weights=None,
    cluster=None,
    reverse: bool = False,
    timewt: TimeWeight = "n",
    ymax: float | None = None,
    level: float = 0.95,
) -> ConcordanceResult:
    """Concordance index of a predictor with a censored time, as R survival's
    ``concordance()``.

    Parameters
    ----------
    time : array-like (n,)
        Event/censoring times (stop times for counting-process data).
    event : array-like (n,)
        1 = event, 0 = censored (R's 1/2 coding is also accepted).
    score : array-like (n,)
        The predictor.
    start : array-like (n,), optional
        Start times of ``(start, stop]`` rows.
    strata : array-like (n,), optional
        Pairs are formed within strata only.
    weights : array-like (n,), optional
        Case weights.
    cluster : array-like (n,), optional
        Cluster labels: the influence is summed within clusters for the variance.
    reverse : bool
        False: larger scores go with longer survival. True for risk scores.
    timewt : {"n", "n/G2", "S", "S/G", "I"}
        Weights of the event times (R's ``timewt``); ``"n/G2"`` gives Uno's C.
    ymax : float, optional
        Ignore events after this time (truncation at tau).
    level : float
        Confidence level of the normal CI ``C +- z * se``.

    Returns
    -------
    ConcordanceResult

    Raises
    ------
    DataError
        Arrays of different lengths, missing values, a status outside {0, 1}/{1, 2}.

    Examples
    --------
    >>> r = concordance([1, 2, 3, 4], [1, 1, 0, 1], [4.0, 3.0, 2.0, 1.0], reverse=True)
    >>> r.concordance
    1.0
    """
    stop = np.asarray(time, dtype=float).ravel()
    n = stop.shape[0]
    x = np.asarray(score, dtype=float).ravel()
    ev = np.asarray(event, dtype=float).ravel()
    arrays = {"event": ev, "score": x}
    st = None if start is None else np.asarray(start, dtype=float).ravel()
    if st is not None:
        arrays["start"] = st
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float).ravel()
    arrays["weights"] = w
    for name, arr in arrays.items():
        if arr.shape[0] != n:
            raise DataError(f"concordance: {name} has {arr.shape[0]} values, time has {n}.")
        if not np.isfinite(arr).all():
            i = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise DataError(f"concordance: {name} is not finite at position {i}; drop the row.")
    if not np.isfinite(stop).all():
        i = int(np.flatnonzero(~np.isfinite(stop))[0])
        raise DataError(f"concordance: time is not finite at position {i}; drop the row.")
    vals = set(np.unique(ev).tolist())
    if vals <= {1.0, 2.0} and 2.0 in vals:
        ev = ev - 1.0
    elif not vals <= {0.0, 1.0}:
        raise DataError(
            f"concordance: event must be coded 0/1 or 1/2; got values {sorted(vals)[:6]}."
        )
    if timewt not in ("n", "n/G2", "S", "S/G", "I"):
        raise DataError(f"timewt must be one of n, n/G2, S, S/G, I; got {timewt!r}.")
    event_i = ev.astype(np.int8)
    strat = (
        np.zeros(n, np.int64)
        if strata is None
        else pd.factorize(np.asarray(strata), sort=True)[0].astype(np.int64)
    )
    count = np.zeros(6)
    infl = np.zeros((n, 5))
    for s in np.unique(strat):
        rows = np.flatnonzero(strat == s)
        sub_stop, sub_ev, sub_x, sub_w = stop[rows], event_i[rows], x[rows], w[rows]
        sub_start = None if st is None else st[rows]
        if sub_ev.sum() == 0:
            continue
        uniq, rank = np.unique(sub_x, return_inverse=True)
        order_stop = np.lexsort((sub_x, sub_ev, -sub_stop)).astype(np.int64)
        order_start = (
            np.argsort(-sub_start, kind="stable").astype(np.int64)
            if sub_start is not None
            else order_stop
        )
        tw = _time_weights(timewt, sub_stop, sub_start, sub_ev, sub_w, ymax)
        c, inf = concordance_counts(
            sub_stop,
            np.full(rows.size, -np.inf) if sub_start is None else sub_start,
            sub_ev,
            rank.astype(np.int64),
            sub_w,
            tw,
            order_stop,
            order_start,
            sub_start is not None,
            int(uniq.size),
        )
        count += c
        infl[rows] = inf
    npair = count[0] + count[1] + count[2]
    if npair == 0:
        raise DataError(
            "concordance: there are no comparable pairs (no event has a row at risk after "
            "it); C is undefined."
        )
    somer = (count[0] - count[1]) / npair
    cidx = (somer + 1.0) / 2.0
    dfbeta = ((infl[:, 0] - infl[:, 1]) - infl[:, :3].sum(axis=1) * somer) * w / (2 * npair)
    if cluster is not None:
        cl = pd.factorize(np.asarray(cluster).ravel())[0]
        if cl.shape[0] != n:
            raise DataError(f"concordance: cluster has {cl.shape[0]} values, time has {n}.")
        dfbeta = np.bincount(cl, weights=dfbeta)
    var = float(np.sum(dfbeta**2))
    names = ["concordant", "discordant", "tied.x", "tied.y", "tied.xy"]
    counts = count[:5].copy()
    if reverse:
        cidx = 1.0 - cidx
        dfbeta = -dfbeta
        counts = counts[[1, 0, 2, 3, 4]]
    se = float(np.sqrt(var))
    z = stats.norm.ppf(0.5 + level / 2.0)
    return ConcordanceResult(
        concordance=float(cidx),
        std_err=se,
        ci_low=float(cidx - z * se),
        ci_high=float(cidx + z * se),
        level=level,
        counts=pd.Series(counts, index=names),
        n=n,
        timewt=timewt,
        reverse=reverse,
        dfbeta=dfbeta,
    )


def harrell_c(
    time, event, risk, *, tau: float | None = None, level: float = 0.95, **kwargs
) -> ConcordanceResult:
    """Harrell's C of a risk score (higher = earlier events): ``concordance(...,
    reverse=True)``, optionally truncated at ``tau``.

    Parameters
    ----------
    time, event, risk : array-like (n,)
    tau : float, optional
        Only events up to ``tau`` are used.
    level : float
    **kwargs
        ``start``, ``strata``, ``weights``, ``cluster`` as in :func:`concordance`.

    Returns
    -------
    ConcordanceResult

    Examples
    --------
    >>> round(harrell_c([1, 2, 3], [1, 1, 1], [3.0, 1.0, 2.0]).concordance, 4)
    0.6667
    """
    return concordance(time, event, risk, reverse=True, ymax=tau, level=level, **kwargs)


def uno_c(
    time, event, risk, *, tau: float | None = None, level: float = 0.95, **kwargs
) -> ConcordanceResult:
    """Uno's C of a risk score: pairs weighted by 1 / G(t-)^2 (R survival's
    ``concordance(timewt="n/G2")``), truncated at ``tau``.

    Parameters
    ----------
    time, event, risk : array-like (n,)
    tau : float, optional
    level : float
    **kwargs
        ``strata``, ``weights``, ``cluster`` as in :func:`concordance`.

    Returns
    -------
    ConcordanceResult

    Examples
    --------
    >>> round(uno_c([1, 2, 3, 4], [1, 0, 1, 1], [4.0, 3.0, 2.0, 1.0]).concordance, 4)
    1.0
    """
    return concordance(
        time, event, risk, reverse=True, timewt="n/G2", ymax=tau, level=level, **kwargs
    )

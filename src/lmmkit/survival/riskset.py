"""Risk-set summaries at the event times: baseline hazard and residuals.

One table per fit (:func:`event_table`): for each stratum and distinct event time the
hazard increment and the covariate means of the risk set, split into Efron's pieces where
tied events share a time (the k-th of d pieces removes the fraction k/d of the tied
events' risk). From it come the baseline cumulative hazard (survival's ``agsurv``), the
martingale, score and Schoenfeld residuals (``coxmart``, ``coxscore2``, ``coxscho``), each
in the data's row order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "EventTable",
    "event_table",
    "martingale_residuals",
    "score_residuals",
    "schoenfeld_residuals",
    "baseline_table",
]


@dataclass(frozen=True, eq=False)
class EventTable:
    """Per stratum and event time (ascending within stratum).

    ``hazard``: the increment of the cumulative hazard at the reference (risk = 1);
    ``xhaz``: sum over Efron pieces of mean(x) * hazard piece; ``down_h``/``down_xh``: the
    same weighted by the removed fraction k/d (the events' own share); ``xbar``: the mean
    over pieces of the risk-set mean (Schoenfeld's expected covariate).
    """

    stratum: np.ndarray
    time: np.ndarray
    ndeath: np.ndarray
    wdeath: np.ndarray
    hazard: np.ndarray
    xhaz: np.ndarray
    down_h: np.ndarray
    down_xh: np.ndarray
    xbar: np.ndarray


def _suffix_at(keys_sorted: np.ndarray, values_sorted: np.ndarray, at: np.ndarray, side: str):
    """Sum of values whose key is >= at (side='left') or > at (side='right')."""
    suffix = np.concatenate(
        [np.cumsum(values_sorted[::-1], axis=0)[::-1], np.zeros((1,) + values_sorted.shape[1:])]
    )
    return suffix[np.searchsorted(keys_sorted, at, side=side)]


def event_table(
    stop, start, event, X, weights, risk, stratum, efron: bool, counting: bool
) -> EventTable:
    """The event-time table of a fit (``risk`` = exp(linear predictor - reference))."""
    p = X.shape[1]
    out = {
        k: []
        for k in (
            "stratum",
            "time",
            "ndeath",
            "wdeath",
            "hazard",
            "xhaz",
            "down_h",
            "down_xh",
            "xbar",
        )
    }
    wr = weights * risk
    for s in np.unique(stratum):
        rows = np.flatnonzero(stratum == s)
        ev = event[rows] != 0
        if not ev.any():
            continue
        T = np.unique(stop[rows][ev])
        vals = np.column_stack([wr[rows], wr[rows, None] * X[rows]])
        o = np.argsort(stop[rows], kind="stable")
        at_risk = _suffix_at(stop[rows][o], vals[o], T, "left")
        if counting:
            o1 = np.argsort(start[rows], kind="stable")
            at_risk = at_risk - _suffix_at(start[rows][o1], vals[o1], T, "left")
        S0, S1 = at_risk[:, 0], at_risk[:, 1:]
        drows = rows[ev]
        m_of = np.searchsorted(T, stop[drows])
        d = np.bincount(m_of, minlength=T.size)
        dw = np.bincount(m_of, weights=weights[drows], minlength=T.size)
        E0 = np.bincount(m_of, weights=wr[drows], minlength=T.size)
        E1 = np.zeros((T.size, p))
        np.add.at(E1, m_of, wr[drows, None] * X[drows])
        npieces = d if efron else np.ones_like(d)
        piece_m = np.repeat(np.arange(T.size), npieces)
        first = np.concatenate([[0], np.cumsum(npieces)[:-1]])
        k = np.arange(piece_m.size) - first[piece_m]
        frac = k / npieces[piece_m] if efron else np.zeros(piece_m.size)
        denom = S0[piece_m] - frac * E0[piece_m]
        xbar_piece = (S1[piece_m] - frac[:, None] * E1[piece_m]) / denom[:, None]
        h = (dw[piece_m] / npieces[piece_m]) / denom
        nT = T.size
        out["stratum"].append(np.full(nT, s))
        out["time"].append(T)
        out["ndeath"].append(d)
        out["wdeath"].append(dw)
        out["hazard"].append(np.bincount(piece_m, weights=h, minlength=nT))
        xh = np.zeros((nT, p))
        np.add.at(xh, piece_m, xbar_piece * h[:, None])
        out["xhaz"].append(xh)
        out["down_h"].append(np.bincount(piece_m, weights=frac * h, minlength=nT))
        dxh = np.zeros((nT, p))
        np.add.at(dxh, piece_m, xbar_piece * (frac * h)[:, None])
        out["down_xh"].append(dxh)
        xb = np.zeros((nT, p))
        np.add.at(xb, piece_m, xbar_piece)
        out["xbar"].append(xb / npieces[:, None])
    cat = {
        k: (np.concatenate(v) if v else np.zeros((0, p) if k in ("xhaz", "down_xh", "xbar") else 0))
        for k, v in out.items()
    }
    return EventTable(**cat)


def _row_positions(tab: EventTable, stop, start, stratum):
    """For each row: the cumulative positions (within the table) of stop and start, and the
    row's own event-time index (or -1)."""
    n = stop.shape[0]
    hi = np.zeros(n, np.int64)
    lo = np.zeros(n, np.int64)
    own = np.full(n, -1, np.int64)
    for s in np.unique(stratum):
        rows = np.flatnonzero(stratum == s)
        idx = np.flatnonzero(tab.stratum == s)
        if idx.size == 0:
            continue
        T = tab.time[idx]
        base = idx[0]
        hi[rows] = base + np.searchsorted(T, stop[rows], side="right")
        lo[rows] = base + np.searchsorted(T, start[rows], side="right")
        pos = np.searchsorted(T, stop[rows])
        hit = (pos < T.size) & (T[np.minimum(pos, T.size - 1)] == stop[rows])
        own[rows[hit]] = base + pos[hit]
        # positions are within the stratum's block: lo never below its start
        lo[rows] = np.maximum(lo[rows], base)
    return hi, lo, own


def _cum(v: np.ndarray) -> np.ndarray:
    return np.concatenate([np.zeros((1,) + v.shape[1:]), np.cumsum(v, axis=0)])


def martingale_residuals(tab, stop, start, event, risk, stratum) -> np.ndarray:
    """Martingale residuals (survival's ``coxmart``/``agmart``; Efron: the events' own share
    of their time's hazard is removed)."""
    hi, lo, own = _row_positions(tab, stop, start, stratum)
    CL = _cum(tab.hazard)
    res = event - risk * (CL[hi] - CL[lo])
    dead = (event != 0) & (own >= 0)
    res[dead] += risk[dead] * tab.down_h[own[dead]]
    return res


def score_residuals(tab, stop, start, event, X, risk, stratum) -> np.ndarray:
    """Score residuals (n, p), as survival's ``coxscore2``/``agscore3``."""
    hi, lo, own = _row_positions(tab, stop, start, stratum)
    CL, CX = _cum(tab.hazard), _cum(tab.xhaz)
    res = -risk[:, None] * (X * (CL[hi] - CL[lo])[:, None] - (CX[hi] - CX[lo]))
    dead = np.flatnonzero((event != 0) & (own >= 0))
    m = own[dead]
    res[dead] += (X[dead] - tab.xbar[m]) + risk[dead, None] * (
        X[dead] * tab.down_h[m][:, None] - tab.down_xh[m]
    )
    return res


def schoenfeld_residuals(tab, stop, start, event, X, stratum):
    """Schoenfeld residuals of the event rows (x minus the risk-set mean averaged over
    Efron's pieces), ordered by stratum and time; returns (rows, residuals)."""
    _, _, own = _row_positions(tab, stop, start, stratum)
    dead = np.flatnonzero((event != 0) & (own >= 0))
    order = np.lexsort((stop[dead], stratum[dead]))
    dead = dead[order]
    return dead, X[dead] - tab.xbar[own[dead]]


def baseline_table(stop, start, event, weights, risk, stratum, efron: bool, counting: bool):
    """Per stratum and every distinct stop time: n.risk, n.event, n.censor (weighted) and the
    hazard increment at risk = 1 (``agsurv``): arrays (stratum, time, n_risk, n_event,
    n_censor, hazard)."""
    strata, times, nrisk, nevent, ncens, haz = [], [], [], [], [], []
    tab = event_table(
        stop, start, event, np.zeros((stop.shape[0], 0)), weights, risk, stratum, efron, counting
    )
    for s in np.unique(stratum):
        rows = np.flatnonzero(stratum == s)
        T = np.unique(stop[rows])
        o = np.argsort(stop[rows], kind="stable")
        w = weights[rows]
        nr = _suffix_at(stop[rows][o], w[o], T, "left")
        if counting:
            o1 = np.argsort(start[rows], kind="stable")
            nr = nr - _suffix_at(start[rows][o1], w[o1], T, "left")
        pos = np.searchsorted(T, stop[rows])
        ev = event[rows] != 0
        ne = np.bincount(pos, weights=w * ev, minlength=T.size)
        nc = np.bincount(pos, weights=w * ~ev, minlength=T.size)
        h = np.zeros(T.size)
        idx = np.flatnonzero(tab.stratum == s)
        h[np.searchsorted(T, tab.time[idx])] = tab.hazard[idx]
        strata.append(np.full(T.size, s))
        times.append(T)
        nrisk.append(nr)
        nevent.append(ne)
        ncens.append(nc)
        haz.append(h)
    return tuple(np.concatenate(v) for v in (strata, times, nrisk, nevent, ncens, haz))

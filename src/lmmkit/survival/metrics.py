"""Discrimination and calibration of survival predictions at a horizon.

* :func:`time_dependent_auc` -- cumulative/dynamic AUC(t) with inverse probability of
  censoring weights, the estimator of R's ``timeROC`` (Blanche, Dartigues & Jacqmin-Gadda
  2013): cases ``T_i <= t, event`` weighted ``1 / G(T_i-)``, controls ``T_j > t`` weighted
  ``1 / G(t)`` (a constant, so they count equally), pairs tied on the marker count 1/2.
  G is the reverse Kaplan-Meier of the censoring (``pec::ipcw(method="marginal")``:
  at a time with events and censorings the censorings come after the events).
* :func:`brier_survival` / :func:`integrated_brier` -- Graf et al.'s IPCW Brier score
  ``mean(S(t|x)^2 1{T<=t, event} / G(T-) + (1 - S(t|x))^2 1{T>t} / G(t))`` and its
  trapezoidal integral over the times divided by their range (scikit-survival's
  ``integrated_brier_score``).
* :func:`survival_calibration` -- observed risk by group of predicted risk at a horizon
  (1 - Kaplan-Meier within the group, log-log CI) against the mean predicted risk, and
  the calibration slope: the coefficient of cloglog(predicted risk) (the linear predictor
  of a proportional-hazards model, up to a constant) in a Cox model on the data.
* :func:`survival_decision_curve` -- net benefit at a horizon as dcurves' survival DCA:
  among patients with predicted risk >= p_t, true and false positives from the
  Kaplan-Meier risk at the horizon; ``NB = P(pos) (1 - S_pos(t)) - P(pos) S_pos(t)
  p_t / (1 - p_t)``; treat all uses the whole-sample Kaplan-Meier.

Censoring weights are estimated on the data given (or on ``train_time``/``train_event``
when given, as scikit-survival does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lmmkit.errors import DataError

__all__ = [
    "TimeAUC",
    "time_dependent_auc",
    "brier_survival",
    "integrated_brier",
    "SurvivalCalibration",
    "survival_calibration",
    "survival_decision_curve",
    "censoring_survival",
]


def _check(time, event, name="time"):
    t = np.asarray(time, dtype=float).ravel()
    e = np.asarray(event, dtype=float).ravel()
    if t.shape != e.shape:
        raise DataError(f"{name} and event have different lengths ({t.size} vs {e.size}).")
    if not (np.isfinite(t).all() and np.isfinite(e).all()):
        raise DataError(f"{name}/event contain missing or infinite values; drop those rows.")
    if (t < 0).any():
        raise DataError(f"{name} has negative values (first at {int(np.argmax(t < 0))}).")
    vals = set(np.unique(e).tolist())
    if vals <= {1.0, 2.0} and 2.0 in vals:
        e = e - 1
    elif not vals <= {0.0, 1.0}:
        raise DataError(f"event must be coded 0/1 or 1/2; got {sorted(vals)[:6]}.")
    return t, e.astype(int)


def censoring_survival(time, event):
    """Reverse Kaplan-Meier G of the censoring distribution as a callable
    ``G(s, left=False)`` (``left=True`` gives G(s-))."""
    t, e = _check(time, event)
    T, idx = np.unique(t, return_inverse=True)
    c = np.bincount(idx, weights=1 - e, minlength=T.size)
    d = np.bincount(idx, weights=e, minlength=T.size)
    n_at = np.cumsum(np.bincount(idx, minlength=T.size)[::-1])[::-1]
    # a censoring tied with events happens after them (prodlim's reverse Kaplan-Meier,
    # survival's fastkm1, scikit-survival)
    with np.errstate(divide="ignore", invalid="ignore"):
        G = np.cumprod(np.where(c > 0, 1.0 - c / (n_at - d), 1.0))

    def at(s, left: bool = False):
        s = np.asarray(s, dtype=float)
        pos = np.searchsorted(T, s, side="left" if left else "right")
        return np.concatenate([[1.0], G])[pos]

    return at


def _weights(time, event, train_time, train_event):
    if train_time is None:
        return censoring_survival(time, event)
    return censoring_survival(train_time, train_event)


@dataclass(frozen=True, eq=False)
class TimeAUC:
    """AUC(t) per time with the numbers of cases and controls; ``ci_low``/``ci_high`` from
    a percentile bootstrap when asked (NaN otherwise)."""

    times: np.ndarray
    auc: np.ndarray
    n_cases: np.ndarray
    n_controls: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "time": self.times,
                "auc": self.auc,
                "ci_low": self.ci_low,
                "ci_high": self.ci_high,
                "n_cases": self.n_cases,
                "n_controls": self.n_controls,
            }
        )


def _auc_at(t, e, m, G, s):
    cases = (t <= s) & (e == 1)
    controls = t > s
    if not cases.any() or not controls.any():
        return np.nan, int(cases.sum()), int(controls.sum())
    wc = 1.0 / G(t[cases], left=True)
    mc = m[cases]
    mk = np.sort(m[controls])
    below = np.searchsorted(mk, mc, side="left")
    upto = np.searchsorted(mk, mc, side="right")
    score = (below + 0.5 * (upto - below)) / mk.size
    return float(np.sum(wc * score) / np.sum(wc)), int(cases.sum()), int(controls.sum())


def time_dependent_auc(
    time,
    event,
    marker,
    times,
    *,
    train_time=None,
    train_event=None,
    n_boot: int = 0,
    level: float = 0.95,
    seed: int = 0,
) -> TimeAUC:
    """Cumulative/dynamic time-dependent AUC with IPCW (R ``timeROC``'s estimator).

    Parameters
    ----------
    time, event : array-like (n,)
    marker : array-like (n,)
        Higher values = higher risk.
    times : array-like
        Horizons t.
    train_time, train_event : array-like, optional
        Data for the censoring distribution (default: the data themselves).
    n_boot : int
        Bootstrap resamples for a percentile CI (0: none).
    level : float
    seed : int

    Returns
    -------
    TimeAUC

    Raises
    ------
    DataError
        Bad times, status or marker.

    Examples
    --------
    >>> r = time_dependent_auc([1, 2, 3, 4, 5, 6], [1, 1, 0, 1, 0, 1], [6, 5, 4, 3, 2, 1], [3.5])
    >>> float(r.auc[0])
    1.0
    """
    t, e = _check(time, event)
    m = np.asarray(marker, dtype=float).ravel()
    if m.shape != t.shape or not np.isfinite(m).all():
        raise DataError("marker must be finite with one value per row.")
    ts = np.atleast_1d(np.asarray(times, dtype=float))
    G = _weights(t, e, train_time, train_event)
    res = [_auc_at(t, e, m, G, s) for s in ts]
    auc = np.array([r[0] for r in res])
    lo = np.full(ts.size, np.nan)
    hi = np.full(ts.size, np.nan)
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        boots = np.full((n_boot, ts.size), np.nan)
        for b in range(n_boot):
            i = rng.integers(0, t.size, t.size)
            Gb = censoring_survival(t[i], e[i]) if train_time is None else G
            boots[b] = [_auc_at(t[i], e[i], m[i], Gb, s)[0] for s in ts]
        a = (1 - level) / 2
        lo = np.nanquantile(boots, a, axis=0)
        hi = np.nanquantile(boots, 1 - a, axis=0)
    return TimeAUC(
        times=ts,
        auc=auc,
        n_cases=np.array([r[1] for r in res]),
        n_controls=np.array([r[2] for r in res]),
        ci_low=lo,
        ci_high=hi,
    )


def _surv_matrix(surv, n, k):
    S = np.asarray(surv, dtype=float)
    if S.ndim == 1:
        S = S[:, None]
    if S.shape != (n, k):
        raise DataError(f"predicted survival must be (n rows, {k} times); got {S.shape}.")
    if not np.isfinite(S).all() or (S < 0).any() or (S > 1).any():
        raise DataError("predicted survival probabilities must be in [0, 1].")
    return S


def brier_survival(time, event, surv, times, *, train_time=None, train_event=None) -> np.ndarray:
    """IPCW Brier score at each time (Graf et al. 1999).

    Parameters
    ----------
    time, event : array-like (n,)
    surv : array-like (n, len(times))
        Predicted survival probabilities S(t | x_i).
    times : array-like
    train_time, train_event : array-like, optional
        Data for the censoring distribution.

    Returns
    -------
    numpy.ndarray
        One score per time.

    Examples
    --------
    >>> brier_survival([1, 2, 3], [1, 1, 1], [[0.0], [1.0], [1.0]], [1.5]).round(6).tolist()
    [0.0]
    """
    t, e = _check(time, event)
    ts = np.atleast_1d(np.asarray(times, dtype=float))
    S = _surv_matrix(surv, t.size, ts.size)
    G = _weights(t, e, train_time, train_event)
    out = np.empty(ts.size)
    g_t = 1.0 / np.maximum(G(t, left=True), 1e-300)
    for k, s in enumerate(ts):
        case = (t <= s) & (e == 1)
        alive = t > s
        gs = G(np.array([s]))[0]
        out[k] = np.mean(
            np.where(case, S[:, k] ** 2 * g_t, 0.0) + np.where(alive, (1 - S[:, k]) ** 2 / gs, 0.0)
        )
    return out


def integrated_brier(time, event, surv, times, **kwargs) -> float:
    """Integrated Brier score: trapezoidal integral of :func:`brier_survival` over
    ``times`` divided by ``times[-1] - times[0]``.

    Examples
    --------
    >>> float(integrated_brier([1, 2, 3, 4], [1, 1, 1, 1], [[0.5, 0.5]] * 4, [1.5, 2.5]))
    0.25
    """
    ts = np.atleast_1d(np.asarray(times, dtype=float))
    if ts.size < 2 or np.any(np.diff(ts) <= 0):
        raise DataError("integrated_brier needs at least two increasing times.")
    bs = brier_survival(time, event, surv, ts, **kwargs)
    from scipy.integrate import trapezoid

    return float(trapezoid(bs, ts) / (ts[-1] - ts[0]))


@dataclass(frozen=True, eq=False)
class SurvivalCalibration:
    """Calibration at a horizon: the group table (predicted and observed risk with the
    observed CI), calibration slope (with SE) and the observed/expected ratio."""

    horizon: float
    table: pd.DataFrame
    slope: float
    slope_se: float
    observed_expected: float


def _km_at(t, e, s):
    from .nonparametric import kaplan_meier

    km = kaplan_meier(t, e)
    tab = km.table
    pos = np.searchsorted(tab["time"].to_numpy(), s, side="right") - 1
    if pos < 0:
        return 1.0, 1.0, 1.0
    row = tab.iloc[pos]
    return float(row["estimate"]), float(row["lower"]), float(row["upper"])


def survival_calibration(
    time, event, risk, horizon: float, *, n_groups: int = 10
) -> SurvivalCalibration:
    """Observed (Kaplan-Meier) against predicted risk at a horizon, by group.

    Parameters
    ----------
    time, event : array-like (n,)
    risk : array-like (n,)
        Predicted probability of an event by ``horizon`` (1 - S(horizon | x)).
    horizon : float
    n_groups : int
        Groups of equal size by predicted risk.

    Returns
    -------
    SurvivalCalibration

    Raises
    ------
    DataError
        Risks outside (0, 1), too few rows for the groups.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> r = rng.uniform(0.1, 0.9, 200); t = rng.exponential(1 / -np.log(1 - r)); e = np.ones(200)
    >>> abs(survival_calibration(t, e, r, 1.0, n_groups=4).slope - 1) < 0.3
    True
    """
    t, e = _check(time, event)
    p = np.asarray(risk, dtype=float).ravel()
    if p.shape != t.shape or not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise DataError("risk must be one probability in [0, 1] per row.")
    if t.size < 2 * n_groups:
        raise DataError(f"{t.size} rows are too few for {n_groups} groups.")
    order = np.argsort(p, kind="stable")
    groups = np.empty(t.size, int)
    groups[order] = np.arange(t.size) * n_groups // t.size
    rows = []
    for g in range(n_groups):
        m = groups == g
        s, lo, hi = _km_at(t[m], e[m], horizon)
        rows.append(
            {
                "group": g + 1,
                "n": int(m.sum()),
                "events": int(e[m].sum()),
                "predicted": float(p[m].mean()),
                "observed": 1 - s,
                "observed_low": 1 - hi,
                "observed_high": 1 - lo,
            }
        )
    table = pd.DataFrame(rows)
    from .cox import coxph

    pc = np.clip(p, 1e-12, 1 - 1e-12)  # cloglog of 0 or 1 is infinite
    lp = np.log(-np.log1p(-pc))
    fit = coxph("Surv(time, event) ~ lp", pd.DataFrame({"time": t, "event": e, "lp": lp}))
    s_all = _km_at(t, e, horizon)[0]
    return SurvivalCalibration(
        horizon=float(horizon),
        table=table,
        slope=float(fit.coef["lp"]),
        slope_se=float(fit.se["lp"]),
        observed_expected=float((1 - s_all) / p.mean()),
    )


def survival_decision_curve(time, event, risk, horizon: float, thresholds=None):
    """Net benefit at a horizon across thresholds (dcurves' survival decision curve).

    Parameters
    ----------
    time, event : array-like (n,)
    risk : array-like (n,)
        Predicted risk of an event by ``horizon``.
    horizon : float
    thresholds : array-like, optional
        Default 0.01 to 0.99 by 0.01.

    Returns
    -------
    lmmkit.validation.decision_curve.DecisionCurve
        ``prevalence`` is the Kaplan-Meier risk at the horizon; no bootstrap band.

    Examples
    --------
    >>> c = survival_decision_curve([1, 2, 3, 4], [1, 1, 0, 1], [0.9, 0.6, 0.2, 0.1], 2.5,
    ...                             thresholds=[0.5])
    >>> round(float(c.model[0]), 4)
    0.5
    """
    from lmmkit.validation.decision_curve import DecisionCurve

    t, e = _check(time, event)
    p = np.asarray(risk, dtype=float).ravel()
    if p.shape != t.shape or not np.isfinite(p).all():
        raise DataError("risk must be finite with one value per row.")
    th = np.arange(1, 100) / 100 if thresholds is None else np.asarray(thresholds, float)
    if (th <= 0).any() or (th >= 1).any():
        raise DataError("thresholds must be in (0, 1).")
    s_all = _km_at(t, e, horizon)[0]
    odds = th / (1 - th)
    nb = np.empty(th.size)
    for k, pt in enumerate(th):
        pos = p >= pt
        if not pos.any():
            nb[k] = 0.0
            continue
        s_pos = _km_at(t[pos], e[pos], horizon)[0]
        rate = pos.mean()
        nb[k] = rate * (1 - s_pos) - rate * s_pos * odds[k]
    treat_all = (1 - s_all) - s_all * odds
    avoided = np.where(odds > 0, (nb - treat_all) / odds * 100, np.nan)
    nan = np.full(th.size, np.nan)
    return DecisionCurve(
        thresholds=th,
        model=nb,
        treat_all=treat_all,
        treat_none=np.zeros(th.size),
        interventions_avoided=avoided,
        model_low=nan,
        model_high=nan,
        prevalence=float(1 - s_all),
        n=int(t.size),
        n_boot=0,
        level=0.95,
    )

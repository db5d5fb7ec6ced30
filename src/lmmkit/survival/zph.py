"""Test of proportional hazards: R survival 3.x's ``cox.zph``.

The score test, at the fitted coefficients, for adding ``X * g(t)`` to the model (Grambsch
& Therneau's test in survival 3.x's form, not the older approximation from scaled
Schoenfeld residuals), per covariate and globally, with ``g`` one of survival's
transforms: ``"km"`` (1 - the Kaplan-Meier at t-, all rows pooled), ``"rank"``,
``"identity"``, ``"log"``; ``g`` is centred at its mean over the event rows. The scaled
Schoenfeld residuals (``y``) are returned for plots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.stats import rankdata

from lmmkit.errors import DataError

from .partial_likelihood import cox_problem

__all__ = ["ZphResult", "cox_zph"]


@dataclass(frozen=True, eq=False)
class ZphResult:
    """``table``: chisq, df, p per covariate and GLOBAL; ``x``/``time``: transformed and
    raw event times; ``y``: scaled Schoenfeld residuals (one row per event)."""

    table: pd.DataFrame
    transform: str
    x: np.ndarray
    time: np.ndarray
    y: pd.DataFrame

    def __str__(self) -> str:
        return self.table.to_string(float_format=lambda v: f"{v:.4g}")


def _km_before(stop: np.ndarray, event: np.ndarray, start: np.ndarray | None) -> np.ndarray:
    """1 - S(t-) of the pooled Kaplan-Meier (delayed entry for (start, stop] rows), at each
    row's stop time."""
    T, idx = np.unique(stop, return_inverse=True)
    d = np.bincount(idx, weights=event, minlength=T.size)
    n_at = np.cumsum(np.bincount(idx, minlength=T.size)[::-1])[::-1].astype(float)
    if start is not None:  # not yet entered: start >= t
        s_sorted = np.sort(start)
        n_at -= s_sorted.size - np.searchsorted(s_sorted, T, side="left")
    surv = np.cumprod(1.0 - d / n_at)
    before = np.concatenate([[1.0], surv[:-1]])
    return 1.0 - before[idx]


def _in_use(pr) -> np.ndarray:
    mask = np.zeros(pr.stop.shape[0], bool)
    mask[pr.order_stop] = True
    return mask


def cox_zph(fit, *, transform: str = "km") -> ZphResult:
    """Proportional-hazards test of a Cox fit, as R survival 3.x's ``cox.zph``.

    Parameters
    ----------
    fit : CoxResult
    transform : {"km", "rank", "identity", "log"}

    Returns
    -------
    ZphResult

    Raises
    ------
    DataError
        An unknown transform or a model without coefficients.

    Examples
    --------
    >>> import pandas as pd, lmmkit
    >>> d = pd.DataFrame({"t": [5, 8, 3, 9, 12, 4, 7, 10], "s": [1, 1, 1, 0, 1, 1, 0, 1],
    ...                   "x": [1.2, 0.3, 2.0, -0.5, -1.0, 1.5, 0.1, 0.4]})
    >>> z = lmmkit.coxph("Surv(t, s) ~ x", d).cox_zph()
    >>> list(z.table.index)
    ['x', 'GLOBAL']
    """
    d = fit.data
    ok = ~fit.coef.isna().to_numpy()
    if not ok.any():
        raise DataError("cox_zph needs a model with at least one estimated coefficient.")
    X = d.X[:, ok]
    beta = fit.coef.to_numpy()[ok]
    times = d.stop
    ev = d.event.astype(float)
    if transform == "km":
        g = _km_before(times, ev, d.start if d.counting else None)
    elif transform == "rank":
        g = rankdata(times)
    elif transform == "identity":
        g = times.astype(float)
    elif transform == "log":
        g = np.log(times)
    else:
        raise DataError(f"transform must be km, rank, identity or log; got {transform!r}.")
    g_raw = g
    g = g - g[ev == 1].mean()
    pr = cox_problem(
        d.stop,
        d.event,
        X,
        start=d.start if d.counting else None,
        stratum=d.stratum,
        weights=d.weights,
        offset=d.offset,
        ties=fit.ties,
    )
    eta = X @ beta + d.offset
    _, u, wrh, A, wbar, gk, _, _, _ = pr.sweep(eta, gtime=g)
    imat = pr.information(wrh[:, 0], A, wbar)
    ixg = pr.information(wrh[:, 1], A, wbar * gk)
    igg = pr.information(wrh[:, 2], A, wbar * gk * gk)
    dead = (d.event != 0) & _in_use(pr)
    ug = (d.weights[dead] * g[dead]) @ X[dead] - (wbar * gk) @ A
    p = X.shape[1]
    full = np.block([[imat, ixg], [ixg.T, igg]])
    names = list(fit.coef.index[ok])
    rows = []
    for j in range(p):
        kk = list(range(p)) + [p + j]
        uu = np.zeros(p + 1)
        uu[-1] = ug[j]
        rows.append(float(uu @ np.linalg.solve(full[np.ix_(kk, kk)], uu)))
    uu = np.concatenate([np.zeros(p), ug])
    rows.append(float(uu @ np.linalg.solve(full, uu)))
    df = [1] * p + [p]
    table = pd.DataFrame(
        {"chisq": rows, "df": df, "p": stats.chi2.sf(rows, df)}, index=[*names, "GLOBAL"]
    )
    # scaled Schoenfeld residuals: r V^-1 * nevent + beta (one stratum's rule for all)
    sch = fit.residuals("schoenfeld")
    nev = len(sch)
    scaled = sch.to_numpy() @ np.linalg.inv(imat / nev) + beta
    order = np.lexsort((d.stop[d.event == 1], d.stratum[d.event == 1]))
    gx = g_raw[d.event == 1][order] + 0.0
    return ZphResult(
        table=table,
        transform=transform,
        x=gx,
        time=sch.index.to_numpy(),
        y=pd.DataFrame(scaled, columns=names),
    )

"""Cox quantities the penalized paths need: Breslow partial likelihood and the C-index.

:func:`cox_deviance` is glmnet's ``coxnet.deviance`` (Breslow ties; a censored time tied with
an event time counts as later; saturated log-likelihood ``-sum d_k log d_k`` over distinct
event times). :func:`concordance` is the one seam for Harrell's C (now
``lmmkit.survival.harrell_c``, R survival's ``concordance()``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["cox_deviance", "concordance"]


def cox_deviance(eta: np.ndarray, time: np.ndarray, status: np.ndarray) -> np.ndarray:
    """``2 * (loglik_saturated - loglik(eta))`` for each column of ``eta`` (n x k)."""
    eta = np.asarray(eta, dtype=float)
    one = eta.ndim == 1
    if one:
        eta = eta[:, None]
    ty = time + (1.0 - status) * 100.0 * np.finfo(float).eps
    order = np.argsort(-ty, kind="mergesort")  # descending: risk sets are prefixes
    t = ty[order]
    d = status[order]
    e = eta[order]
    shift = e.max(axis=0)
    risk = np.cumsum(np.exp(e - shift), axis=0)
    # the risk set of time t is every row with time >= t: the last row of its tie block
    last = np.searchsorted(-t, -t, side="right") - 1
    log_risk = np.log(risk[last]) + shift
    ll = ((e - log_risk) * d[:, None]).sum(axis=0)
    ev = d > 0
    _, counts = np.unique(t[ev], return_counts=True)
    lsat = -float(np.sum(counts * np.log(counts)))
    dev = 2.0 * (lsat - ll)
    return dev[0] if one else dev


def concordance(time: np.ndarray, status: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C of ``risk`` (higher = earlier event) as R ``survival::concordance``
    (glmnet's ``Cindex``): :func:`lmmkit.survival.cindex.harrell_c`."""
    from lmmkit.survival.cindex import harrell_c

    return float(harrell_c(np.asarray(time, float), np.asarray(status, float),
                           np.asarray(risk, float)).concordance)  # fmt: skip

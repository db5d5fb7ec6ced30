"""Objective stage: the Cox partial likelihood (Efron or Breslow ties, strata, case weights,
offsets, counting-process data) with its score and information.

:class:`CoxProblem` sorts the data once; :meth:`CoxProblem.evaluate` is one compiled pass
(:func:`lmmkit.survival._kernels.cox_sums`). :func:`cox_partial_likelihood` is the public
one-call form, for other modules (penalized Cox paths, explanations).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from lmmkit.errors import DataError

from ._kernels import cox_pass

__all__ = ["CoxProblem", "cox_problem", "cox_partial_likelihood", "used_rows"]

Ties = Literal["efron", "breslow"]
_NO_G = np.empty(0)
_NO_GROUP = np.zeros(1, np.int64)


@dataclass(frozen=True, eq=False)
class CoxProblem:
    """Sorted data of a Cox partial likelihood (arrays in the caller's row order)."""

    stop: np.ndarray
    start: np.ndarray
    event: np.ndarray
    X: np.ndarray
    weights: np.ndarray
    offset: np.ndarray
    stratum: np.ndarray
    order_stop: np.ndarray
    order_start: np.ndarray
    efron: bool
    counting: bool

    @property
    def p(self) -> int:
        return int(self.X.shape[1])

    def sweep(
        self,
        eta: np.ndarray,
        *,
        gtime: np.ndarray | None = None,
        group: np.ndarray | None = None,
        q: int = 0,
    ):
        """The raw sweep (:func:`lmmkit.survival._kernels.cox_pass`) at a linear
        predictor (offset included)."""
        return cox_pass(
            self.stop,
            self.start,
            self.event,
            self.X,
            np.ascontiguousarray(eta, dtype=float),
            self.weights,
            self.stratum,
            self.order_stop,
            self.order_start,
            self.efron,
            self.counting,
            _NO_G if gtime is None else np.ascontiguousarray(gtime, dtype=float),
            _NO_GROUP if group is None else group,
            q,
        )

    def information(
        self, wrh: np.ndarray, A: np.ndarray, wbar: np.ndarray, X: np.ndarray | None = None
    ) -> np.ndarray:
        """X' diag(w r h) X - A' diag(wbar) A (see the kernel's notes)."""
        X = self.X if X is None else X
        return (X.T * wrh) @ X - (A.T * wbar) @ A

    def evaluate(
        self, beta: np.ndarray, *, info: bool = True, eta: np.ndarray | None = None
    ) -> tuple[float, np.ndarray, np.ndarray]:
        """(log partial likelihood, score, information) at ``beta`` (or at the linear
        predictor ``eta``, offset included, when given)."""
        if eta is None:
            eta = self.X @ beta + self.offset if self.p else self.offset
        ll, u, wrh, A, wbar, _, _, _, _ = self.sweep(eta)
        imat = self.information(wrh[:, 0], A, wbar) if info else np.zeros((self.p, self.p))
        return float(ll), u, imat


def used_rows(stop, start, event, stratum, counting: bool) -> np.ndarray:
    """Rows at risk at some event time of their stratum (survival's ``agreg.fit`` drops the
    others from the sums; for right-censored data every row is kept)."""
    if not counting:
        return np.ones(stop.shape[0], dtype=bool)
    # one time axis with the strata laid end to end (as agreg.fit's delta shift)
    span = float(np.max(stop) - np.min(start)) + 1.0
    shift = stratum.astype(float) * span
    s1, s2 = start + shift, stop + shift
    dtime = np.unique(s2[event != 0])
    return np.searchsorted(dtime, s1, side="right") != np.searchsorted(dtime, s2, side="right")


def cox_problem(
    stop: np.ndarray,
    event: np.ndarray,
    X: np.ndarray,
    *,
    start: np.ndarray | None = None,
    stratum: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    offset: np.ndarray | None = None,
    ties: Ties = "efron",
) -> CoxProblem:
    """Sort the data once for repeated evaluations of the partial likelihood.

    Parameters
    ----------
    stop : array (n,)
        Event or censoring times (the stop times of counting-process rows).
    event : array (n,)
        1 for an event, 0 for censored.
    X : array (n, p)
        Covariates.
    start : array (n,), optional
        Entry times of counting-process rows ``(start, stop]``.
    stratum : int array (n,), optional
        Stratum codes; risk sets never cross strata.
    weights, offset : array (n,), optional
        Case weights and an offset on the linear predictor.
    ties : {"efron", "breslow"}

    Returns
    -------
    CoxProblem

    Raises
    ------
    DataError
        Arrays of different lengths or an unknown ``ties``.

    Examples
    --------
    >>> import numpy as np
    >>> pr = cox_problem(np.array([1.0, 2, 3]), np.array([1, 1, 0]), np.zeros((3, 1)))
    >>> round(pr.evaluate(np.zeros(1))[0], 6)  # -log(3) - log(2)
    -1.791759
    """
    if ties not in ("efron", "breslow"):
        raise DataError(f"ties must be 'efron' or 'breslow'; got {ties!r}.")
    stop = np.ascontiguousarray(stop, dtype=float)
    n = stop.shape[0]
    X = np.ascontiguousarray(np.asarray(X, dtype=float).reshape(n, -1))
    event = np.ascontiguousarray(event, dtype=np.int8)
    counting = start is not None
    start = np.full(n, -np.inf) if start is None else np.ascontiguousarray(start, dtype=float)
    stratum = np.zeros(n, np.int64) if stratum is None else np.ascontiguousarray(stratum, np.int64)
    weights = np.ones(n) if weights is None else np.ascontiguousarray(weights, dtype=float)
    offset = np.zeros(n) if offset is None else np.ascontiguousarray(offset, dtype=float)
    for name, arr in (
        ("event", event),
        ("start", start),
        ("stratum", stratum),
        ("weights", weights),
        ("offset", offset),
    ):
        if arr.shape[0] != n:
            raise DataError(f"{name} has {arr.shape[0]} values; stop has {n}.")
    use = np.flatnonzero(used_rows(stop, start, event, stratum, counting))
    # R: order(strata, -stop); ties in stop keep the row order (stable sort)
    order_stop = use[np.lexsort((-stop[use], stratum[use]))]
    order_start = use[np.lexsort((-start[use], stratum[use]))] if counting else order_stop
    return CoxProblem(
        stop=stop,
        start=start,
        event=event,
        X=X,
        weights=weights,
        offset=offset,
        stratum=stratum,
        order_stop=np.ascontiguousarray(order_stop, dtype=np.int64),
        order_start=np.ascontiguousarray(order_start, dtype=np.int64),
        efron=ties == "efron",
        counting=counting,
    )


def cox_partial_likelihood(
    time,
    event,
    X,
    beta,
    *,
    start=None,
    strata=None,
    weights=None,
    offset=None,
    ties: Ties = "efron",
) -> tuple[float, np.ndarray, np.ndarray]:
    """Log partial likelihood of a Cox model with its score vector and information matrix.

    The same numbers as R survival's ``coxph(..., init=beta, iter.max=0)``: ``loglik``,
    the score ``u`` and the observed information (whose inverse is ``var``).

    Parameters
    ----------
    time : array-like (n,)
        Event/censoring times (stop times for counting-process data).
    event : array-like (n,)
        1 = event, 0 = censored.
    X : array-like (n, p)
    beta : array-like (p,)
    start : array-like (n,), optional
        Start times of ``(start, stop]`` rows.
    strata : array-like (n,), optional
        Stratum labels.
    weights, offset : array-like (n,), optional
    ties : {"efron", "breslow"}

    Returns
    -------
    loglik : float
    score : ndarray (p,)
    information : ndarray (p, p)

    Raises
    ------
    DataError
        Mismatched lengths or an unknown ``ties``.

    Examples
    --------
    >>> import numpy as np
    >>> ll, u, info = cox_partial_likelihood([1, 2, 3], [1, 1, 0], [[0.0], [1.0], [2.0]], [0.0])
    >>> round(ll, 6), u.round(6).tolist()
    (-1.791759, [-1.5])
    """
    stratum = None
    if strata is not None:
        import pandas as pd

        stratum = pd.factorize(np.asarray(strata), sort=True)[0]
    pr = cox_problem(
        np.asarray(time, dtype=float),
        np.asarray(event),
        np.asarray(X, dtype=float),
        start=None if start is None else np.asarray(start, dtype=float),
        stratum=stratum,
        weights=None if weights is None else np.asarray(weights, dtype=float),
        offset=None if offset is None else np.asarray(offset, dtype=float),
        ties=ties,
    )
    return pr.evaluate(np.asarray(beta, dtype=float).ravel())

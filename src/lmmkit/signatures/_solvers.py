"""The solver seam: glmnet's coordinate descent for each family, and nothing else.

* gaussian and binomial: glmnet's own Fortran (``elnet``/``lognet``) through the
  ``python-glmnet`` distribution (``glmnet.ElasticNet`` / ``glmnet.LogitNet`` with
  ``n_splits=0``, i.e. no internal cross-validation). It computes glmnet's lambda path,
  standardization, penalty-factor rescaling and early stopping itself.
* cox: scikit-survival's ``CoxnetSurvivalAnalysis`` (a C++ port of glmnet's coxnet). It does
  not reproduce glmnet's lambda path, standardization or stopping rules, so those are done
  here (:func:`cox_path`): centre and scale by the population SD, the path from
  ``lambda_max`` (the largest scaled score at beta = 0) down by ``lambda_min_ratio``, the
  penalty factors rescaled to sum to the number of variables, and glmnet's rule that stops
  the path when the deviance ratio changes by less than 0.1 % over four steps or exceeds
  0.99 (``coxnet5dpclean.m``).

Every function returns a :class:`RawPath` on the original scale of the features. Solvers are
imported on first use, so a missing optional dependency is a clear error at the call.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from lmmkit.errors import LmmkitWarning, ModelError

__all__ = ["RawPath", "PenalizedConvergenceWarning", "linear_path", "cox_path"]

# glmnet.control() defaults that shape the path
_EPS_MIN_RATIO = 1e-6  # eps: smallest allowed lambda.min.ratio
_MNLAM = 5  # mnlam: no early stop before this many lambdas
_FDEV = 1e-5  # fdev: smallest relative change of the deviance ratio
_DEVMAX = 0.999  # devmax: largest deviance ratio
_COX_FDEV = 1e-5 * 100.0  # coxnet1: sml = fdev * 100
_COX_DEVMAX = 0.999 * 0.99 / 0.999  # coxnet1: devmax * 0.99 / 0.999
_BIG = 9.9e35  # big: glmnet's first "lambda" of a default path
_RIDGE_L1 = 1e-300  # scikit-survival refuses l1_ratio = 0; this L1 weight is below rounding


class PenalizedConvergenceWarning(LmmkitWarning):
    """The coordinate-descent solver stopped before converging at some lambda."""


@dataclass(frozen=True)
class RawPath:
    """A solver's path on the original feature scale (rows = lambdas)."""

    lambdas: np.ndarray
    intercept: np.ndarray
    coef: np.ndarray  # (n_lambda, p)
    messages: tuple[str, ...] = ()


def _need(module: str, package: str):
    """Import ``module`` on first use; a clear error naming the ``signatures`` extra if absent."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelError(
            f"penalized signatures need the optional package '{package}' (import of "
            f"{module!r} failed: {exc}). Install the extra with "
            "`pip install 'lmmkit[signatures]'` (python-glmnet and scikit-survival)."
        ) from None


def linear_path(
    X: np.ndarray,
    y: np.ndarray,
    *,
    family: str,
    alpha: float,
    lambdas: np.ndarray | None,
    nlambda: int,
    lambda_min_ratio: float,
    standardize: bool,
    intercept: bool,
    penalty_factor: np.ndarray,
    tol: float,
    max_iter: int,
) -> RawPath:
    """glmnet's elnet (gaussian) or lognet (binomial) through python-glmnet."""
    gl = _need("glmnet", "python-glmnet")
    cls = gl.ElasticNet if family == "gaussian" else gl.LogitNet
    user = lambdas is not None
    est = cls(
        alpha=float(alpha),
        n_lambda=int(len(lambdas) if user else nlambda),
        min_lambda_ratio=float(lambda_min_ratio),
        lambda_path=None if not user else np.asarray(lambdas, dtype=float),
        standardize=bool(standardize),
        fit_intercept=bool(intercept),
        tol=float(tol),
        max_iter=int(max_iter),
        n_splits=0,
    )
    Xf = np.asfortranarray(X, dtype=float)
    yy = y.astype(float) if family == "gaussian" else y.astype(int)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            est.fit(Xf, yy, relative_penalties=np.asarray(penalty_factor, dtype=float))
        except ValueError as exc:  # glmnet's fatal error codes
            raise ModelError(f"glmnet ({family}) failed: {exc}") from None
    messages = tuple(str(w.message) for w in caught if "glmnet" in str(w.message).lower())
    return _unpack(est, family, lambdas if user else None, messages)


def _unpack(est, family: str, lambdas: np.ndarray | None, messages: tuple[str, ...]) -> RawPath:
    coef = np.asarray(est.coef_path_, dtype=float)
    if family == "binomial":
        coef = coef[0]
        a0 = np.asarray(est.intercept_path_, dtype=float)[0]
    else:
        a0 = np.asarray(est.intercept_path_, dtype=float)
    lam = np.asarray(est.lambda_path_, dtype=float).copy()
    if lambdas is not None:
        lam = np.asarray(lambdas, dtype=float)[: coef.shape[1]]
    return RawPath(lam, a0.copy(), coef.T.copy(), messages)


def linear_stop(dev: np.ndarray, coef: np.ndarray, family: str) -> int:
    """Number of lambdas glmnet's elnet/lognet keep before their early-stopping rules fire.

    Used only where the Fortran of python-glmnet (an older glmnet) stops differently from
    glmnet 4.1 (no-intercept fits): the path is then run on the full lambda grid and cut here.
    """
    nlam = len(dev)
    mnl = min(_MNLAM, nlam)
    p = coef.shape[1]
    for m in range(nlam):
        if m + 1 < mnl:
            continue
        if np.count_nonzero(coef[m]) > p + 1:
            return m + 1
        prev = dev[m - 1] if m > 0 else 0.0
        if family == "gaussian":
            change = np.inf if dev[m] == 0 else (dev[m] - prev) / dev[m]
        else:
            change = dev[m] - prev
        if change < _FDEV or dev[m] > _DEVMAX:
            return m + 1
    return nlam


# --------------------------------------------------------------------------- cox
def _cox_order(time: np.ndarray, status: np.ndarray) -> np.ndarray:
    """glmnet's times: a censored time tied with an event time counts as later."""
    return time + (1.0 - status) * 100.0 * np.finfo(float).eps


def cox_score(Xs: np.ndarray, time: np.ndarray, status: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """Score of the mean partial log-likelihood (Breslow) at linear predictor ``eta``.

    ``X' r / n`` with the martingale residuals ``r_i = d_i - exp(eta_i) * H0(t_i)``, as
    glmnet's ``outer`` computes them.
    """
    n = len(time)
    ty = _cox_order(time, status)
    order = np.argsort(ty, kind="mergesort")
    t_sorted = ty[order]
    d_sorted = status[order]
    e_sorted = np.exp(eta[order] - eta.max())
    uniq, start = np.unique(t_sorted, return_index=True)
    deaths = np.add.reduceat(d_sorted, start)
    at_risk = np.cumsum(e_sorted[::-1])[::-1][start]  # sum over {j: t_j >= t}
    cumhaz_u = np.cumsum(deaths / at_risk)  # Breslow baseline hazard (scaled by exp(-max))
    pos = np.searchsorted(uniq, t_sorted, side="right") - 1
    resid = np.empty(n)
    resid[order] = d_sorted - e_sorted * cumhaz_u[pos]
    return (resid / n) @ Xs


def cox_path(
    X: np.ndarray,
    time: np.ndarray,
    status: np.ndarray,
    *,
    alpha: float,
    lambdas: np.ndarray | None,
    nlambda: int,
    lambda_min_ratio: float,
    standardize: bool,
    penalty_factor: np.ndarray,
    tol: float,
    max_iter: int,
) -> RawPath:
    """glmnet's coxnet path (Breslow ties) with scikit-survival's coordinate descent."""
    sk = _need("sksurv.linear_model", "scikit-survival")
    n, p = X.shape
    mean = X.mean(axis=0)
    Xc = X - mean
    sd = np.sqrt((Xc**2).mean(axis=0))
    active = sd > 0
    scale = np.where(active, sd, 1.0) if standardize else np.ones(p)
    Xs = Xc[:, active] / scale[active]
    # glmnet: vp rescaled to sum to the number of variables (all of them, before exclusion)
    vq = np.maximum(penalty_factor, 0.0)
    vq = vq * p / vq.sum()
    vq_a = vq[active]
    y = _need("sksurv.util", "scikit-survival").Surv.from_arrays(
        event=status.astype(bool), time=time.astype(float)
    )
    # scikit-survival rescales the penalty factors it is given to sum to its column count:
    # undo that so that the penalty is exactly lambda * vq_j
    c = len(vq_a) / vq_a.sum()
    caught: list = []

    def solve(lam_seq: np.ndarray):
        est = sk.CoxnetSurvivalAnalysis(
            alphas=np.asarray(lam_seq, dtype=float) / c,
            l1_ratio=float(alpha) if alpha > 0 else _RIDGE_L1,
            penalty_factor=vq_a,
            normalize=False,
            tol=float(tol),
            max_iter=int(max_iter),
        )
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            try:
                est.fit(Xs, y)
            except (ValueError, ArithmeticError) as exc:
                raise ModelError(f"coxnet (scikit-survival) failed: {exc}") from None
        caught.extend(got)
        return est

    user = lambdas is not None
    if user:
        lam = np.asarray(lambdas, dtype=float)
        est = solve(lam)
    else:
        # glmnet's first point is lambda = "big": penalized coefficients zero, unpenalized
        # ones (penalty factor 0) fitted; lambda_max is the largest scaled score there
        pen = vq_a > 0
        if pen.all():
            eta0 = np.zeros(len(time))
        else:
            eta0 = Xs @ (np.asarray(solve(np.array([_BIG])).coef_, dtype=float)[:, 0])
        g = np.abs(cox_score(Xs, time.astype(float), status.astype(float), eta0))
        lam_max = float(np.max(g[pen] / vq_a[pen])) / max(float(alpha), 1e-3)
        ratio = max(_EPS_MIN_RATIO, float(lambda_min_ratio))
        # coxnet computes the exponent 1.0/(nlam-1) in single precision
        expo = float(np.float32(1.0) / np.float32(nlambda - 1)) if nlambda > 1 else 0.0
        lam = lam_max * (ratio**expo) ** np.arange(nlambda)
        est = solve(np.concatenate([[_BIG], lam[1:]]))
    messages = tuple(
        str(w.message) for w in caught if "all coefficients are zero" not in str(w.message)
    )
    coef_a = np.asarray(est.coef_, dtype=float).T / scale[active]
    lam = lam[: coef_a.shape[0]]  # scikit-survival may stop the path early by itself
    coef = np.zeros((len(lam), p))
    coef[:, active] = coef_a
    if not user:
        keep = _cox_stop(np.asarray(est.deviance_ratio_, dtype=float), coef, p)
        lam, coef = lam[:keep], coef[:keep]
    return RawPath(lam, np.zeros(len(lam)), coef, messages)


def _cox_stop(dev: np.ndarray, coef: np.ndarray, p: int) -> int:
    """Number of lambdas glmnet's coxnet keeps before its early-stopping rules fire."""
    nlam = len(dev)
    mnl = min(_MNLAM, nlam)
    for ilm in range(1, nlam + 1):  # glmnet's 1-based loop
        if ilm < mnl:
            continue
        me = int(np.count_nonzero(coef[ilm - 1]))
        if me > p + 1:
            return ilm
        d = dev[ilm - 1]
        if d != 0 and (d - dev[ilm - mnl]) / d < _COX_FDEV:
            return ilm
        if d > _COX_DEVMAX:
            return ilm
    return nlam

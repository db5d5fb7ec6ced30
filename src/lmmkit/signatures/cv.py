"""Cross-validated lambda (lambda.min and lambda.1se) with R ``cv.glmnet``'s rules.

As in glmnet 4.1: the path is fitted on all rows; each fold's training rows get their own
default path, whose coefficients are interpolated at the full-data lambdas
(``alignment="lambda"``); the held-out error is averaged within folds and the fold means are
averaged with fold sizes as weights (``grouped=TRUE``); ``cvsd`` is the weighted SD of the
fold means over ``sqrt(K - 1)``. Cox deviance is the "grouped" partial-likelihood deviance of
Verweij and van Houwelingen (full data minus training data, per event of the fold).
``lambda_min`` is the largest lambda reaching the minimum; ``lambda_1se`` the largest lambda
within one SE of it. Out-of-fold linear predictors at every lambda are kept (``oof``:
glmnet's ``fit.preval``).

Deliberate differences: a cox fold without events is skipped and counted (glmnet returns NaN);
random folds come from NumPy (use ``foldid`` for R's folds); Harrell's C uses
:func:`lmmkit.signatures._cox.concordance` (R survival's concordance() via lmmkit.survival).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.special import expit

from lmmkit.errors import DataError, LmmkitWarning

from ._cox import concordance, cox_deviance
from ._inputs import Response, as_matrix, as_response, check_family, check_penalty_factor
from .path import Family, PenalizedPath, check_options, fit_path

__all__ = ["CVPenalized", "cv_penalized", "MEASURES"]

#: type_measure choices per family (the first is the default), as glmnet's cvtype
MEASURES = {
    "gaussian": ("mse", "deviance", "mae"),
    "binomial": ("deviance", "class", "auc", "mse", "mae"),
    "cox": ("deviance", "C"),
}
_NAMES = {
    "mse": "Mean-Squared Error",
    "mae": "Mean Absolute Error",
    "class": "Misclassification Error",
    "auc": "AUC",
    "C": "C-index",
}
_DEV = {"gaussian": "Mean-Squared Error", "binomial": "Binomial Deviance",
        "cox": "Partial Likelihood Deviance"}  # fmt: skip


class CVFoldWarning(LmmkitWarning):
    """A cross-validation fold could not be scored and was skipped."""


@dataclass(frozen=True, eq=False)
class CVPenalized:
    """Cross-validated penalized path.

    ``cvm``, ``cvsd``, ``nzero`` are per lambda of ``lambdas`` (the full-data path, minus
    lambdas whose SD is undefined); ``lambda_min``/``lambda_1se`` and their 0-based indices;
    ``oof`` holds out-of-fold linear predictors (rows x all path lambdas); ``foldid`` the
    fold (1..K) of every row; ``checks`` counts skipped folds.
    """

    path: PenalizedPath
    lambdas: np.ndarray
    cvm: np.ndarray
    cvsd: np.ndarray
    nzero: np.ndarray
    measure: str
    measure_name: str
    lambda_min: float
    lambda_1se: float
    index_min: int
    index_1se: int
    foldid: np.ndarray
    oof: np.ndarray
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def cvup(self) -> np.ndarray:
        return self.cvm + self.cvsd

    @property
    def cvlo(self) -> np.ndarray:
        return self.cvm - self.cvsd

    def _s(self, s: str | float) -> float:
        if isinstance(s, str):
            key = s.replace(".", "_")
            if key not in ("lambda_min", "lambda_1se"):
                raise DataError(f"s={s!r}: use 'lambda_min', 'lambda_1se' or a number.")
            return float(getattr(self, key))
        return float(s)

    def coef(self, s: str | float = "lambda_1se") -> pd.Series:
        """Coefficients at ``s`` (``"lambda_1se"``, ``"lambda_min"`` or a lambda), with the
        intercept first unless cox."""
        a0, b = self.path.coef_at(self._s(s))
        out = pd.Series(b, index=list(self.path.feature_names), name="coef")
        if self.path.family != "cox":
            out = pd.concat([pd.Series({"(Intercept)": a0}), out])
        return out

    def predict(
        self, X: Any, s: str | float = "lambda_1se", *, type: Literal["link", "response"] = "link"
    ) -> np.ndarray:
        """Predictions for new rows at ``s`` (see :meth:`PenalizedPath.predict`)."""
        return self.path.predict(X, self._s(s), type=type)

    def to_frame(self) -> pd.DataFrame:
        """One row per lambda: ``lambda``, ``cvm``, ``cvsd``, ``cvup``, ``cvlo``, ``nzero``."""
        return pd.DataFrame(
            {"lambda": self.lambdas, "cvm": self.cvm, "cvsd": self.cvsd, "cvup": self.cvup,
             "cvlo": self.cvlo, "nzero": self.nzero}
        )  # fmt: skip


def _fold_ids(foldid: Any, nfolds: int, n: int, seed: Any, where: str) -> np.ndarray:
    if foldid is None:
        if int(nfolds) < 3:
            raise DataError(f"{where}nfolds={nfolds!r}: cv.glmnet needs at least 3 folds.")
        rng = np.random.default_rng(seed)
        return rng.permutation(np.resize(np.arange(1, int(nfolds) + 1), n))
    f = np.asarray(foldid)
    if len(f) != n:
        raise DataError(f"{where}foldid has {len(f)} entries for {n} rows.")
    if pd.isna(pd.Series(f)).any():
        raise DataError(f"{where}foldid has missing values.")
    _, codes = np.unique(f, return_inverse=True)
    codes = codes.ravel() + 1
    if codes.max() < 3:
        raise DataError(
            f"{where}foldid has {codes.max()} distinct folds; cv.glmnet needs at least 3."
        )
    return codes


def _raw_scores(measure: str, resp: Response, eta: np.ndarray) -> np.ndarray:
    """Per-row error (n x L) for the pointwise measures."""
    if resp.family == "gaussian":
        y = resp.y[:, None]
        return np.abs(y - eta) if measure == "mae" else (y - eta) ** 2
    y = resp.y[:, None]
    prob = expit(eta)
    if measure == "deviance":
        pc = np.clip(prob, 1e-5, 1 - 1e-5)
        return -2.0 * (y * np.log(pc) + (1 - y) * np.log1p(-pc))
    if measure == "mse":
        return 2.0 * (y - prob) ** 2
    if measure == "mae":
        return 2.0 * np.abs(y - prob)
    return y * (prob <= 0.5) + (1 - y) * (prob > 0.5)  # class


def _weighted_stats(raw: np.ndarray, w: np.ndarray, N: float) -> tuple[np.ndarray, np.ndarray]:
    ok = np.isfinite(raw)
    ww = np.where(ok, w[:, None], 0.0)
    rr = np.where(ok, raw, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cvm = (rr * ww).sum(axis=0) / ww.sum(axis=0)
        cvsd = np.sqrt(((rr - cvm) ** 2 * ww).sum(axis=0) / ww.sum(axis=0) / (N - 1))
    return cvm, cvsd


def cv_penalized(
    X: Any,
    y: Any,
    *,
    family: Family = "gaussian",
    foldid: Any = None,
    nfolds: int = 10,
    type_measure: str = "default",
    seed: int | None = None,
    alpha: float = 1.0,
    nlambda: int = 100,
    lambda_min_ratio: float | None = None,
    lambdas: Any = None,
    standardize: bool = True,
    intercept: bool = True,
    penalty_factor: Any = None,
    tol: float | None = None,
    max_iter: int = 100_000,
) -> CVPenalized:
    """Choose lambda by K-fold cross-validation, as R ``cv.glmnet``.

    Parameters
    ----------
    X, y, family, alpha, nlambda, lambda_min_ratio, lambdas, standardize, intercept,
    penalty_factor, tol, max_iter
        As :func:`lmmkit.penalized_path`.
    foldid : array-like, optional
        Fold label of every row (e.g. the site, for site-wise folds); at least 3 folds.
    nfolds : int
        Number of random folds when ``foldid`` is not given (drawn with ``seed``).
    type_measure : str
        ``"default"`` or one of gaussian ``mse``, ``mae``; binomial ``deviance``, ``class``,
        ``auc``, ``mse``, ``mae``; cox ``deviance``, ``C``.

    Returns
    -------
    CVPenalized

    Raises
    ------
    lmmkit.errors.DataError
        Bad inputs (see :func:`lmmkit.penalized_path`), fewer than 3 folds, an unknown
        measure.

    Examples
    --------
    >>> import numpy as np, lmmkit
    >>> rng = np.random.default_rng(1)
    >>> X = rng.standard_normal((90, 20)); y = (X[:, 0] + rng.standard_normal(90) > 0) * 1
    >>> cv = lmmkit.cv_penalized(X, y, family="binomial", foldid=np.arange(90) % 5)
    >>> bool(cv.lambda_1se >= cv.lambda_min)
    True
    """
    where = "cv_penalized: "
    check_family(family, where)
    user = check_options(alpha, nlambda, lambda_min_ratio, lambdas, where)
    Xa, names = as_matrix(X, where)
    n = Xa.shape[0]
    resp = as_response(y, family, n, where)
    pf = check_penalty_factor(penalty_factor, Xa.shape[1], names, where)
    measure = MEASURES[family][0] if type_measure == "default" else type_measure
    if measure not in MEASURES[family]:
        raise DataError(
            f"{where}type_measure={type_measure!r} is not available for {family}; use one of "
            f"{', '.join(MEASURES[family])}."
        )
    fid = _fold_ids(foldid, nfolds, n, seed, where)
    opts = dict(
        alpha=float(alpha), nlambda=int(nlambda), lambda_min_ratio=lambda_min_ratio,
        standardize=bool(standardize), intercept=bool(intercept), penalty_factor=pf, tol=tol,
        max_iter=int(max_iter),
    )  # fmt: skip
    full = fit_path(Xa, resp, names, lambdas=user, **opts)
    return cv_from_path(full, Xa, resp, names, fid, measure, opts, user)


def cv_from_path(
    full: PenalizedPath,
    Xa: np.ndarray,
    resp: Response,
    names: list[str],
    fid: np.ndarray,
    measure: str,
    opts: dict[str, Any],
    user: np.ndarray | None = None,
) -> CVPenalized:
    """Cross-validate an already fitted full-data path (checked arrays, folds 1..K)."""
    family = resp.family
    lam = full.lambdas
    K = int(fid.max())
    n = len(fid)
    oof = np.full((n, len(lam)), np.nan)
    cox_raw = np.full((K, len(lam)), np.nan)
    skipped: list[int] = []
    for k in range(1, K + 1):
        te = fid == k
        tr = ~te
        rtr = resp.take(np.flatnonzero(tr))
        if (
            family == "cox"
            and rtr.status.sum() < 2
            or family == "binomial"
            and (rtr.y.min() == rtr.y.max())
        ):
            skipped.append(k)
            continue
        fold = fit_path(Xa[tr], rtr, names, lambdas=user, **opts)
        a0, b = fold.coef_at(lam)
        oof[te] = Xa[te] @ b.T + a0
        if family == "cox" and measure == "deviance":
            eta_full = Xa @ b.T
            cox_raw[k - 1] = cox_deviance(eta_full, resp.time, resp.status) - cox_deviance(
                eta_full[tr], rtr.time, rtr.status
            )
    sizes = np.bincount(fid, minlength=K + 1)[1:].astype(float)
    if family == "cox" and measure == "deviance":
        events = np.bincount(fid, weights=resp.status, minlength=K + 1)[1:]
        no_events = [k for k in range(1, K + 1) if events[k - 1] == 0 and k not in skipped]
        skipped += no_events
        good = np.array([k not in skipped for k in range(1, K + 1)])
        raw = cox_raw[good] / events[good][:, None]
        cvm, cvsd = _weighted_stats(raw, events[good], float(good.sum()))
    elif measure in ("auc", "C"):
        good_k = [k for k in range(1, K + 1) if k not in skipped]
        raw = np.full((len(good_k), len(lam)), np.nan)
        for i, k in enumerate(good_k):
            te = fid == k
            for j in range(len(lam)):
                raw[i, j] = _fold_discrimination(measure, resp.take(np.flatnonzero(te)),
                                                 oof[te, j])  # fmt: skip
        cvm, cvsd = _weighted_stats(raw, sizes[np.array(good_k) - 1], float(len(good_k)))
    else:
        rows = ~np.isnan(oof[:, 0])
        per_row = _raw_scores(measure, resp.take(np.flatnonzero(rows)), oof[rows])
        f_rows = fid[rows]
        good_k = np.unique(f_rows)
        if n / K < 3:  # glmnet: grouped=FALSE enforced with < 3 observations per fold
            warnings.warn(
                "cv_penalized: fewer than 3 rows per fold; errors are averaged over rows "
                "(cv.glmnet's grouped=FALSE)", CVFoldWarning, stacklevel=3,
            )  # fmt: skip
            cvm, cvsd = _weighted_stats(per_row, np.ones(len(per_row)), float(len(per_row)))
        else:
            fold_means = np.vstack([per_row[f_rows == k].mean(axis=0) for k in good_k])
            cvm, cvsd = _weighted_stats(fold_means, sizes[good_k - 1], float(len(good_k)))
    if skipped:
        warnings.warn(
            f"cv_penalized: fold(s) {skipped} skipped: "
            + ("no events" if family == "cox" else "one outcome class in the training rows"),
            CVFoldWarning,
            stacklevel=3,
        )
    keep = ~np.isnan(cvsd)
    lam_k, cvm_k, cvsd_k = lam[keep], cvm[keep], cvsd[keep]
    nz = full.df[keep]
    if len(lam_k) == 0:
        raise DataError(
            "cv_penalized: no lambda could be scored (every fold was skipped or too small)."
        )
    score = -cvm_k if measure in ("auc", "C") else cvm_k
    i_min = int(np.flatnonzero(score <= np.nanmin(score))[0])
    semin = score[i_min] + cvsd_k[i_min]
    i_1se = int(np.flatnonzero(score <= semin)[0])
    return CVPenalized(
        path=full,
        lambdas=lam_k,
        cvm=cvm_k,
        cvsd=cvsd_k,
        nzero=nz,
        measure=measure,
        measure_name=_DEV[family] if measure == "deviance" else _NAMES[measure],
        lambda_min=float(lam_k[i_min]),
        lambda_1se=float(lam_k[i_1se]),
        index_min=i_min,
        index_1se=i_1se,
        foldid=fid,
        oof=oof,
        checks={"skipped_folds": skipped, "n_folds": K},
    )


def _fold_discrimination(measure: str, resp: Response, eta: np.ndarray) -> float:
    if measure == "C":
        if resp.status.sum() == 0:
            return float("nan")
        return concordance(resp.time, resp.status, eta)
    y = resp.y
    n1 = y.sum()
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    from scipy.stats import rankdata

    r = rankdata(eta)
    return float((r[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))

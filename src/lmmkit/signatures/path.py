"""Penalized regression paths (LASSO, ridge, elastic net) with glmnet's semantics.

For gaussian, binomial and cox outcomes the objective is glmnet's::

    -loglik(beta) / n + lambda * sum_j vp_j * ((1 - alpha) / 2 * beta_j**2 + alpha * |beta_j|)

(the gaussian loglik is the residual sum of squares over 2; cox is Breslow's partial
likelihood). As in R ``glmnet(...)``:

* the path starts at ``lambda_max`` (the smallest lambda with every penalized coefficient
  zero; for ridge computed as if ``alpha = 0.001``) and descends geometrically over ``nlambda``
  values to ``lambda_min_ratio * lambda_max`` (default 1e-4 when n > p, else 0.01);
* ``standardize=True`` fits on features centred and scaled by their population SD and
  returns coefficients on the original scale; the gaussian response is scaled too, so for
  ``alpha < 1`` the ridge part acts on the scaled response exactly as glmnet's does;
* the intercept is not penalized; cox has none;
* penalty factors are rescaled to sum to the number of features;
* the path stops early as glmnet's does (deviance ratio saturating or above 0.999; cox:
  change under 0.1 % over four steps or ratio above 0.99).

The numerical work is done by glmnet's own Fortran (gaussian, binomial) and by
scikit-survival's port of coxnet (cox); see :mod:`lmmkit.signatures._solvers`.
Observation weights and offsets are not supported.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.special import expit

import lmmkit.signatures._solvers as _solvers
from lmmkit.errors import DataError

from ._cox import cox_deviance
from ._inputs import Response, as_matrix, as_response, check_family, check_penalty_factor

__all__ = ["PenalizedPath", "penalized_path", "lambda_interp", "fit_path"]

Family = Literal["gaussian", "binomial", "cox"]

#: default convergence threshold per family: glmnet's ``thresh`` (1e-7) for gaussian/binomial
#: (same meaning); scikit-survival's ``tol`` for cox, whose 1e-7 reproduces glmnet's
#: default-threshold Cox path (see docs/signatures.md). Neither default is 1e-6 accurate
#: at the small-lambda end of a p > n path: pass a smaller ``tol`` for reference numbers.
DEFAULT_TOL = {"gaussian": 1e-7, "binomial": 1e-7, "cox": 1e-7}


@dataclass(frozen=True, eq=False)
class PenalizedPath:
    """A fitted regularization path (one row per lambda, largest first).

    Attributes
    ----------
    family, alpha
        Outcome family and elastic-net mixing (1 = LASSO, 0 = ridge).
    lambdas : ndarray (n_lambda,)
    intercept : ndarray (n_lambda,)
        Zero for cox and for ``intercept=False``.
    coef : ndarray (n_lambda, p)
        Coefficients on the original feature scale.
    feature_names : tuple of str
    dev_ratio : ndarray (n_lambda,)
        Fraction of the null deviance explained (glmnet's ``dev.ratio``).
    null_deviance : float
    n, n_events
        Rows used; events (binomial cases, cox events; None for gaussian).
    checks : dict
        ``constant_features`` (names fitted as zero because they do not vary),
        ``stopped_early`` (bool), ``solver_messages`` (convergence notes).
    """

    family: str
    alpha: float
    lambdas: np.ndarray
    intercept: np.ndarray
    coef: np.ndarray
    feature_names: tuple[str, ...]
    dev_ratio: np.ndarray
    null_deviance: float
    n: int
    n_events: int | None
    standardize: bool
    fit_intercept: bool
    penalty_factor: np.ndarray
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def df(self) -> np.ndarray:
        """Number of nonzero coefficients at each lambda."""
        return np.count_nonzero(self.coef, axis=1)

    def coef_at(self, s: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Intercept(s) and coefficients at lambda ``s``, linearly interpolated as glmnet's
        ``predict(..., s=)``; outside the path the end point is used."""
        s_arr = np.atleast_1d(np.asarray(s, dtype=float))
        left, right, frac = lambda_interp(self.lambdas, s_arr)
        a0 = self.intercept[left] * frac + self.intercept[right] * (1 - frac)
        b = self.coef[left] * frac[:, None] + self.coef[right] * (1 - frac)[:, None]
        if np.ndim(s) == 0:
            return a0[0], b[0]
        return a0, b

    def predict(
        self,
        X: Any,
        s: float | np.ndarray | None = None,
        *,
        type: Literal["link", "response"] = "link",
    ) -> np.ndarray:
        """Linear predictor (``"link"``) or mean/probability/relative risk (``"response"``)
        for new rows, at every lambda of the path (``s=None``: n x n_lambda) or at ``s``."""
        Xn = _new_features(X, self.feature_names, "predict: ")
        if s is None:
            eta = Xn @ self.coef.T + self.intercept
        else:
            a0, b = self.coef_at(s)
            eta = Xn @ np.atleast_2d(b).T + np.atleast_1d(a0)
            if np.ndim(s) == 0:
                eta = eta[:, 0]
        if type == "link":
            return eta
        if type != "response":
            raise DataError(f"predict: type={type!r} is not 'link' or 'response'.")
        if self.family == "binomial":
            return expit(eta)
        if self.family == "cox":
            return np.exp(eta)
        return eta

    def nonzero(self, s: float) -> list[str]:
        """Names of the features with a nonzero coefficient at lambda ``s``."""
        _, b = self.coef_at(float(s))
        return [n for n, v in zip(self.feature_names, b) if v != 0]

    def coef_frame(self) -> pd.DataFrame:
        """Coefficients as a lambdas x features DataFrame (an ``(Intercept)`` column first
        unless cox)."""
        df = pd.DataFrame(self.coef, columns=list(self.feature_names))
        if self.family != "cox":
            df.insert(0, "(Intercept)", self.intercept)
        df.index = pd.Index(self.lambdas, name="lambda")
        return df

    def to_frame(self) -> pd.DataFrame:
        """One row per lambda: ``lambda``, ``df``, ``dev_ratio`` (glmnet's print table)."""
        return pd.DataFrame({"lambda": self.lambdas, "df": self.df, "dev_ratio": self.dev_ratio})


def lambda_interp(lambdas: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """glmnet's ``lambda.interp``: left/right path indices and the weight of the left one."""
    lam = np.asarray(lambdas, dtype=float)
    s = np.asarray(s, dtype=float)
    k = len(lam)
    if k == 1:
        ones = np.zeros(len(s), dtype=int)
        return ones, ones, np.ones(len(s))
    span = lam[0] - lam[k - 1]
    sfrac = (lam[0] - s) / span
    pos = (lam[0] - lam) / span
    sfrac = np.clip(sfrac, pos.min(), pos.max())
    coord = np.interp(sfrac, pos, np.arange(k, dtype=float))
    left = np.floor(coord).astype(int)
    right = np.ceil(coord).astype(int)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = (sfrac - pos[right]) / (pos[left] - pos[right])
    frac = np.where((left == right) | (np.abs(lam[left] - lam[right]) < np.finfo(float).eps),
                    1.0, frac)  # fmt: skip
    return left, right, frac


def _new_features(X: Any, names: tuple[str, ...], where: str) -> np.ndarray:
    if isinstance(X, pd.DataFrame):
        missing = [c for c in names if c not in X.columns]
        if missing:
            raise DataError(f"{where}new data lack feature column(s) {missing[:5]}.")
        X = X[list(names)]
    arr, _ = as_matrix(X, where, names=list(names))
    if arr.shape[1] != len(names):
        raise DataError(f"{where}new data have {arr.shape[1]} columns; the model has {len(names)}.")
    return arr


def _deviances(eta: np.ndarray, resp: Response, intercept: bool) -> tuple[np.ndarray, float]:
    """Deviance at every column of eta and the null deviance (glmnet's definitions)."""
    if resp.family == "cox":
        dev = cox_deviance(eta, resp.time, resp.status)
        null = float(cox_deviance(np.zeros(len(resp)), resp.time, resp.status))
        return dev, null
    y = resp.y
    if resp.family == "gaussian":
        dev = ((y[:, None] - eta) ** 2).sum(axis=0)
        null = float(((y - y.mean()) ** 2).sum() if intercept else (y**2).sum())
        return dev, null
    p = np.clip(expit(eta), 1e-9, 1 - 1e-9)
    dev = -2.0 * (y[:, None] * np.log(p) + (1 - y[:, None]) * np.log1p(-p)).sum(axis=0)
    p0 = np.clip(y.mean(), 1e-9, 1 - 1e-9) if intercept else 0.5
    null = float(-2.0 * (y * np.log(p0) + (1 - y) * np.log1p(-p0)).sum())
    return dev, null


def fit_path(
    X: np.ndarray,
    resp: Response,
    names: list[str],
    *,
    alpha: float,
    lambdas: np.ndarray | None,
    nlambda: int,
    lambda_min_ratio: float | None,
    standardize: bool,
    intercept: bool,
    penalty_factor: np.ndarray,
    tol: float | None,
    max_iter: int,
) -> PenalizedPath:
    """The path on checked arrays (used by :func:`penalized_path` and the CV folds)."""
    family = resp.family
    n, p = X.shape
    if lambda_min_ratio is None:
        lambda_min_ratio = 1e-4 if n > p else 1e-2
    tol = DEFAULT_TOL[family] if tol is None else float(tol)
    constant = np.ptp(X, axis=0) == 0
    if family == "cox":
        raw = _solvers.cox_path(
            X, resp.time, resp.status, alpha=alpha, lambdas=lambdas, nlambda=nlambda,
            lambda_min_ratio=lambda_min_ratio, standardize=standardize,
            penalty_factor=penalty_factor, tol=tol, max_iter=max_iter,
        )  # fmt: skip
    else:
        opts = dict(
            family=family, alpha=alpha, nlambda=nlambda, lambda_min_ratio=lambda_min_ratio,
            standardize=standardize, intercept=intercept, penalty_factor=penalty_factor,
            tol=tol, max_iter=max_iter,
        )  # fmt: skip
        Xfit, xs = X, np.ones(p)
        if not intercept and standardize:
            # glmnet 4.1 scales a no-intercept fit by the centred SD of the uncentred column;
            # python-glmnet's older Fortran does not: scale here and fit unstandardized
            sd = np.sqrt(np.maximum((X**2).mean(axis=0) - X.mean(axis=0) ** 2, 0.0))
            xs = np.where(sd > 0, sd, 1.0)
            Xfit = X / xs
            opts["standardize"] = False
        raw = _solvers.linear_path(Xfit, resp.y, lambdas=lambdas, **opts)
        if not intercept and lambdas is None and len(raw.lambdas) > 2:
            # python-glmnet's older Fortran stops no-intercept paths too early: run glmnet
            # 4.1's grid from the same lambda_max and apply its stopping rules here
            ratio = max(_solvers._EPS_MIN_RATIO, lambda_min_ratio)
            grid = raw.lambdas[0] * ratio ** (np.arange(nlambda) / max(nlambda - 1, 1))
            raw = _solvers.linear_path(Xfit, resp.y, lambdas=grid, **opts)
            dev, null = _deviances(Xfit @ raw.coef.T + raw.intercept, resp, intercept)
            keep = _solvers.linear_stop(1.0 - dev / null, raw.coef, family)
            raw = _solvers.RawPath(
                raw.lambdas[:keep], raw.intercept[:keep], raw.coef[:keep], raw.messages
            )
        if not intercept and standardize:
            raw = _solvers.RawPath(raw.lambdas, raw.intercept, raw.coef / xs, raw.messages)
    eta = X @ raw.coef.T + raw.intercept
    dev, null = _deviances(eta, resp, intercept)
    dev_ratio = 1.0 - dev / null if null > 0 else np.zeros(len(dev))
    if raw.messages:
        warnings.warn(
            "penalized path: " + "; ".join(raw.messages[:3]),
            _solvers.PenalizedConvergenceWarning,
            stacklevel=3,
        )
    checks = {
        "constant_features": [nm for nm, c in zip(names, constant) if c],
        "stopped_early": lambdas is None and len(raw.lambdas) < nlambda,
        "solver_messages": list(raw.messages),
    }
    return PenalizedPath(
        family=family,
        alpha=float(alpha),
        lambdas=raw.lambdas,
        intercept=raw.intercept,
        coef=raw.coef,
        feature_names=tuple(names),
        dev_ratio=dev_ratio,
        null_deviance=null,
        n=n,
        n_events=resp.n_events,
        standardize=standardize,
        fit_intercept=intercept and family != "cox",
        penalty_factor=penalty_factor,
        checks=checks,
    )


def check_options(
    alpha: float, nlambda: int, lambda_min_ratio: float | None, lambdas: Any, where: str
) -> np.ndarray | None:
    """Validate the path options; return the user lambdas sorted decreasing (or None)."""
    if not (0.0 <= float(alpha) <= 1.0):
        raise DataError(f"{where}alpha={alpha!r} must be in [0, 1] (1 = LASSO, 0 = ridge).")
    if int(nlambda) < 1:
        raise DataError(f"{where}nlambda={nlambda!r} must be a positive integer (glmnet: 100).")
    if lambda_min_ratio is not None and not (0.0 < float(lambda_min_ratio) < 1.0):
        raise DataError(f"{where}lambda_min_ratio={lambda_min_ratio!r} must be in (0, 1).")
    if lambdas is None:
        return None
    lam = np.asarray(lambdas, dtype=float).ravel()
    if len(lam) == 0 or (lam < 0).any() or not np.isfinite(lam).all():
        raise DataError(f"{where}lambdas must be finite and >= 0; got {lam[:5]}.")
    return np.sort(lam)[::-1]


def penalized_path(
    X: Any,
    y: Any,
    *,
    family: Family = "gaussian",
    alpha: float = 1.0,
    nlambda: int = 100,
    lambda_min_ratio: float | None = None,
    lambdas: Any = None,
    standardize: bool = True,
    intercept: bool = True,
    penalty_factor: Any = None,
    tol: float | None = None,
    max_iter: int = 100_000,
) -> PenalizedPath:
    """The LASSO / elastic-net / ridge regularization path, as R ``glmnet()``.

    Parameters
    ----------
    X : DataFrame or 2-D array (n x p)
        Numeric features without missing values (column names are kept).
    y : array-like
        gaussian: numbers; binomial: 0/1; cox: ``(time, status)`` as a tuple of arrays or a
        two-column array/DataFrame, status 1 = event, 0 = censored.
    family : {"gaussian", "binomial", "cox"}
    alpha : float
        Elastic-net mixing in [0, 1]: 1 = LASSO, 0 = ridge.
    nlambda, lambda_min_ratio
        Path length and its smallest lambda relative to ``lambda_max`` (glmnet's defaults:
        100; 1e-4 if n > p else 0.01).
    lambdas : array-like, optional
        Your own lambda sequence instead (sorted decreasing; no early stopping).
    standardize : bool
        Fit on standardized features, report on the original scale (glmnet's default).
    intercept : bool
        Unpenalized intercept (ignored for cox).
    penalty_factor : array-like or dict, optional
        Per-feature penalty multipliers (0 = always in the model), rescaled to sum to p.
    tol : float, optional
        Convergence threshold (default per family, see ``DEFAULT_TOL``).
    max_iter : int
        Maximum passes over the data.

    Returns
    -------
    PenalizedPath

    Raises
    ------
    lmmkit.errors.DataError
        Non-numeric or missing features, a response that does not fit the family (binomial
        not 0/1 or one class only; cox times <= 0, status outside {0, 1}, fewer than two
        events), bad options.
    lmmkit.errors.ModelError
        The solver failed (e.g. every feature constant).

    Examples
    --------
    >>> import numpy as np, lmmkit
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((50, 8)); y = X[:, 0] - 0.5 * X[:, 1] + rng.standard_normal(50)
    >>> path = lmmkit.penalized_path(X, y, family="gaussian", alpha=1.0)
    >>> path.coef.shape[1], bool(path.df[0] == 0)
    (8, True)
    """
    where = "penalized_path: "
    check_family(family, where)
    user = check_options(alpha, nlambda, lambda_min_ratio, lambdas, where)
    Xa, names = as_matrix(X, where)
    resp = as_response(y, family, Xa.shape[0], where)
    pf = check_penalty_factor(penalty_factor, Xa.shape[1], names, where)
    return fit_path(
        Xa, resp, names, alpha=float(alpha), lambdas=user, nlambda=int(nlambda),
        lambda_min_ratio=lambda_min_ratio, standardize=bool(standardize),
        intercept=bool(intercept), penalty_factor=pf, tol=tol, max_iter=int(max_iter),
    )  # fmt: skip

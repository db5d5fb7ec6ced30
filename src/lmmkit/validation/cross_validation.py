"""Site-grouped cross-validation: leave-one-site-out and grouped K-fold.

Every fold holds out whole sites, so the held-out rows come from sites the model never saw:
the honest estimate of performance at a new hospital.

* Mixed models (``model`` is an lme4 formula): :func:`lmmkit.lmm` is fitted on the training
  sites and the held-out rows are predicted with ``allow_new_levels=True``, i.e. at the
  population level ``X beta`` for a grouping factor whose levels are all new (the site).
* Any scikit-learn estimator: cloned and fitted on the training rows' ``features``;
  binary outcomes use ``predict_proba`` when the estimator has it.

``preprocess`` is refitted inside every fold on the training rows only (no leakage): either a
scikit-learn transformer (cloned, fitted on the training rows of ``preprocess_columns`` and
applied to both parts) or a callable ``preprocess(train, test) -> (train, test)`` on data
frames (e.g. a harmonization fitted on the training sites).

Metrics per fold, per site and pooled over all held-out rows: RMSE, MAE and R^2 for a
continuous outcome; AUC (:func:`lmmkit.validation.discrimination.roc_auc`) and Brier score
for a binary one (AUC is NaN for a site with one class only).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from lmmkit.errors import DataError, close_matches

__all__ = ["SiteCVResult", "cross_validate_sites", "site_metrics", "site_splits"]

OutcomeType = Literal["auto", "continuous", "binary"]


@dataclass(frozen=True, eq=False)
class SiteCVResult:
    """Held-out predictions and their metrics.

    ``predictions`` has one row per input row used (index = the data's index) with columns
    ``site``, ``fold``, ``y`` and ``pred``; ``per_fold`` and ``per_site`` are metric tables;
    ``pooled`` the metrics over all held-out predictions.
    """

    predictions: pd.DataFrame
    per_fold: pd.DataFrame
    per_site: pd.DataFrame
    pooled: dict[str, float]
    outcome_type: str
    scheme: str
    n_folds: int

    def summary(self) -> str:
        lines = [
            f"Site-grouped cross-validation ({self.scheme}, {self.n_folds} folds, "
            f"{self.outcome_type} outcome)",
            "Pooled held-out metrics: "
            + ", ".join(f"{k} {v:.4g}" for k, v in self.pooled.items() if k != "n")
            + f" (n = {int(self.pooled['n'])})",
            "",
            self.per_site.to_string(float_format="%.4g"),
        ]
        return "\n".join(lines)


# --------------------------------------------------------------------------- metrics
def site_metrics(y: Any, pred: Any, outcome_type: str) -> dict[str, float]:
    """RMSE, MAE, R^2 (continuous) or AUC, Brier (binary) of held-out predictions."""
    yy = np.asarray(y, dtype=float)
    pp = np.asarray(pred, dtype=float)
    n = len(yy)
    if outcome_type == "continuous":
        err = pp - yy
        ss_tot = float(((yy - yy.mean()) ** 2).sum()) if n else float("nan")
        return {
            "n": float(n),
            "rmse": float(np.sqrt(np.mean(err**2))) if n else float("nan"),
            "mae": float(np.mean(np.abs(err))) if n else float("nan"),
            "r2": 1.0 - float((err**2).sum()) / ss_tot if n and ss_tot > 0 else float("nan"),
        }
    from lmmkit.validation.calibration import brier_score
    from lmmkit.validation.discrimination import roc_auc

    n1 = int(yy.sum())
    auc = float("nan")
    if 0 < n1 < n:
        auc = float(roc_auc(yy.astype(int), pp, ci=None, direction="<").auc)
    brier = float(brier_score(yy.astype(int), np.clip(pp, 0.0, 1.0))) if n else float("nan")
    return {"n": float(n), "n_cases": float(n1), "auc": auc, "brier": brier}


def _outcome_type(y: np.ndarray, requested: str) -> str:
    if requested not in ("auto", "continuous", "binary"):
        raise DataError(f"outcome_type={requested!r} is not one of 'auto', 'continuous', 'binary'.")
    if requested != "auto":
        return requested
    vals = np.unique(y[~np.isnan(y)])
    return "binary" if len(vals) <= 2 and set(vals.tolist()) <= {0.0, 1.0} else "continuous"


# --------------------------------------------------------------------------- folds
def site_splits(
    groups: Any, cv: str | int | Any = "loso"
) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """(train, test) row positions of each fold and the scheme's name.

    ``cv`` is ``"loso"`` (scikit-learn ``LeaveOneGroupOut``), an integer K (``GroupKFold``)
    or any scikit-learn splitter taking ``groups``.
    """
    from sklearn.model_selection import GroupKFold, LeaveOneGroupOut

    g = np.asarray(groups)
    nsites = len(pd.unique(g))
    if nsites < 2:
        raise DataError(f"site-grouped CV needs at least 2 sites; the data have {nsites}.")
    if isinstance(cv, str):
        if cv.lower() not in ("loso", "leave-one-site-out", "logo"):
            raise DataError(f"cv={cv!r}: use 'loso', an integer K (grouped K-fold) or a splitter.")
        splitter, name = LeaveOneGroupOut(), "leave-one-site-out"
    elif isinstance(cv, int | np.integer) and not isinstance(cv, bool):
        k = int(cv)
        if not 2 <= k <= nsites:
            raise DataError(
                f"cv={k}: grouped K-fold needs 2 <= K <= the number of sites ({nsites})."
            )
        splitter, name = GroupKFold(n_splits=k), f"grouped {k}-fold"
    elif hasattr(cv, "split"):
        splitter, name = cv, type(cv).__name__
    else:
        raise DataError(f"cv must be 'loso', an integer or a splitter; got {type(cv).__name__}.")
    X = np.zeros((len(g), 1))
    folds = [(np.asarray(tr), np.asarray(te)) for tr, te in splitter.split(X, groups=g)]
    for i, (tr, te) in enumerate(folds):
        shared = set(pd.unique(g[tr])) & set(pd.unique(g[te]))
        if shared:
            raise DataError(
                f"fold {i} of {name} has site(s) {sorted(map(str, shared))[:5]} in both the "
                "training and the held-out part; use a group-aware splitter."
            )
    return folds, name


# --------------------------------------------------------------------------- fitting
def _is_transformer(obj: Any) -> bool:
    return hasattr(obj, "fit") and hasattr(obj, "transform")


def _apply_preprocess(
    preprocess: Any, train: pd.DataFrame, test: pd.DataFrame, columns: list[str] | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    if preprocess is None:
        return train, test
    if _is_transformer(preprocess):
        from sklearn.base import clone

        if not columns:
            raise DataError(
                "preprocess is a transformer: name the columns it transforms with "
                "preprocess_columns=[...]."
            )
        tr = clone(preprocess).fit(train[columns])
        train, test = train.copy(), test.copy()
        train[columns] = np.asarray(tr.transform(train[columns]), dtype=float)
        test[columns] = np.asarray(tr.transform(test[columns]), dtype=float)
        return train, test
    if callable(preprocess):
        out = preprocess(train.copy(), test.copy())
        if not (isinstance(out, tuple) and len(out) == 2):
            raise DataError(
                "preprocess(train, test) must return a (train, test) pair of data frames; got "
                f"{type(out).__name__}."
            )
        new_train, new_test = out
        if len(new_train) != len(train) or len(new_test) != len(test):
            raise DataError(
                "preprocess(train, test) must keep the rows (same number, same order); got "
                f"{len(new_train)} and {len(new_test)} rows for {len(train)} and {len(test)}."
            )
        return new_train, new_test
    raise DataError(
        f"preprocess must be a scikit-learn transformer or a callable; got {type(preprocess).__name__}."
    )


def _fit_predict(
    model: Any,
    train: pd.DataFrame,
    test: pd.DataFrame,
    outcome: str,
    features: list[str] | None,
    outcome_type: str,
    reml: bool,
    lmm_kwargs: dict[str, Any],
) -> np.ndarray:
    if isinstance(model, str):
        import lmmkit

        res = lmmkit.lmm(model, train, reml=reml, **lmm_kwargs)
        return np.asarray(res.predict(test, allow_new_levels=True), dtype=float)
    from sklearn.base import clone

    est = clone(model)
    Xtr, Xte = train[features], test[features]
    ytr = train[outcome].to_numpy()
    if outcome_type == "binary":
        ytr = ytr.astype(int)
    est.fit(Xtr, ytr)
    if outcome_type == "binary" and hasattr(est, "predict_proba"):
        proba = np.asarray(est.predict_proba(Xte))
        classes = list(getattr(est, "classes_", [0, 1]))
        if 1 not in classes:
            return np.zeros(len(test))
        return proba[:, classes.index(1)]
    return np.asarray(est.predict(Xte), dtype=float).ravel()


def cross_validate_sites(
    model: str | Any,
    data: pd.DataFrame,
    *,
    site: str,
    cv: str | int | Any = "loso",
    outcome: str | None = None,
    features: list[str] | None = None,
    preprocess: Any | Callable[[pd.DataFrame, pd.DataFrame], Any] = None,
    preprocess_columns: list[str] | None = None,
    outcome_type: OutcomeType = "auto",
    reml: bool = True,
    lmm_kwargs: dict[str, Any] | None = None,
) -> SiteCVResult:
    """Cross-validate ``model`` holding out whole sites (column ``site``).

    ``model`` is an lme4 formula (fitted with :func:`lmmkit.lmm`, predicted at the population
    level for the new sites) or a scikit-learn estimator (``outcome`` and ``features`` name
    the columns; ``features`` defaults to every column except ``outcome`` and ``site``).
    Rows with a missing outcome are left out; for formulas, rows with missing model columns
    are left out by the fit and predicted as NaN (and then left out of the metrics).
    """
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame; got {type(data).__name__}.")
    cols = [str(c) for c in data.columns]
    if site not in data.columns:
        raise DataError(f"site={site!r} is not a column of the data.{close_matches(site, cols)}")
    if isinstance(model, str):
        from lmmkit.formula.parse import parse_formula

        response = parse_formula(model).response
        if outcome is None:
            outcome = response
        elif outcome != response:
            raise DataError(
                f"outcome={outcome!r} differs from the formula's response {response!r}."
            )
    elif outcome is None:
        raise DataError(
            "outcome= is required with a scikit-learn estimator (the column to predict)."
        )
    if not hasattr(model, "fit") and not isinstance(model, str):
        raise DataError(
            f"model must be an lme4 formula or a scikit-learn estimator; got {type(model).__name__}."
        )
    if outcome not in data.columns:
        raise DataError(
            f"outcome {outcome!r} is not a column of the data.{close_matches(outcome, cols)}"
        )
    if not isinstance(model, str):
        if features is None:
            features = [c for c in data.columns if c not in (outcome, site)]
        missing = [f for f in features if f not in data.columns]
        if missing:
            raise DataError(f"features {missing} are not columns of the data.")
    if isinstance(preprocess, str):
        raise DataError("preprocess must be a transformer or a callable, not a string.")
    if _is_transformer(preprocess) and preprocess_columns is None and features is not None:
        preprocess_columns = list(features)

    d = data.loc[data[outcome].notna() & data[site].notna()]
    y_all = pd.to_numeric(d[outcome], errors="coerce").to_numpy(dtype=float)
    otype = _outcome_type(y_all, outcome_type)
    folds, scheme = site_splits(d[site].to_numpy(), cv)

    pred = np.full(len(d), np.nan)
    fold_of = np.full(len(d), -1, dtype=int)
    for i, (tr, te) in enumerate(folds):
        train, test = d.iloc[tr], d.iloc[te]
        train, test = _apply_preprocess(preprocess, train, test, preprocess_columns)
        pred[te] = _fit_predict(
            model, train, test, outcome, features, otype, reml, dict(lmm_kwargs or {})
        )
        fold_of[te] = i
    predictions = pd.DataFrame(
        {"site": d[site].to_numpy(), "fold": fold_of, "y": y_all, "pred": pred}, index=d.index
    )
    ok = predictions.dropna(subset=["pred"])
    per_fold = pd.DataFrame(
        [
            {"fold": i, "sites": ", ".join(map(str, pd.unique(g["site"]))),
             **site_metrics(g["y"], g["pred"], otype)}
            for i, g in ok.groupby("fold", sort=True)
        ]
    ).set_index("fold")  # fmt: skip
    per_site = pd.DataFrame(
        [{"site": s, **site_metrics(g["y"], g["pred"], otype)} for s, g in ok.groupby("site")]
    ).set_index("site")
    pooled = site_metrics(ok["y"], ok["pred"], otype)
    if otype == "continuous":
        pooled["rmse_mean_over_sites"] = float(per_site["rmse"].mean())
    else:
        pooled["auc_mean_over_sites"] = (
            float(np.nanmean(per_site["auc"])) if per_site["auc"].notna().any() else math.nan
        )
    return SiteCVResult(predictions, per_fold, per_site, pooled, otype, scheme, len(folds))

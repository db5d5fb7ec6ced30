"""The signature pipeline: every data-driven step inside each training fold of site-wise CV.

For each fold of :func:`lmmkit.validation.cross_validation.site_splits` (leave-one-site-out
by default) the training rows alone are used to

1. drop features constant in the fold (counted per fold),
2. harmonize by site with ComBat (held-out sites: reference-batch ComBat onto the training
   data, from their feature values only; see :mod:`lmmkit.signatures.preprocess`),
3. filter features by variance or test-retest ICC,
4. fit the penalized path and choose lambda (lambda.1se or lambda.min) by an inner
   cross-validation whose folds are groups of whole training sites (``inner_folds``, 5 by
   default; random folds when a training fold has fewer than 3 sites),

and the held-out rows are predicted once. The outer predictions are scored as a user would:
AUC with DeLong CI, calibration and decision curve (:mod:`lmmkit.validation`) for a binary
outcome; Harrell's C for survival; RMSE and R^2 for a continuous one. Selecting anything on
all rows before cross-validating leaks the held-out outcomes into the model; see
docs/signatures.md for the null-data demonstration.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.special import expit

from lmmkit.errors import DataError, ModelError, close_matches

from ._cox import concordance
from ._inputs import Response, as_response
from .cv import CVFoldWarning, CVPenalized, cv_from_path
from .path import fit_path
from .preprocess import FoldPreprocess, fit_preprocess

__all__ = ["SignatureResult", "signature", "score_predictions"]


@dataclass(frozen=True)
class PipelineConfig:
    """Options shared by every fold (see :func:`signature`)."""

    family: str
    harmonize: str | None = "combat"
    filter: str | None = "variance"
    keep: float = 0.5
    min_icc: float = 0.75
    reliability: dict[str, Any] | None = None
    alpha: float = 1.0
    lambda_choice: str = "1se"
    nlambda: int = 100
    lambda_min_ratio: float | None = None
    type_measure: str = "default"
    inner_folds: int = 5
    penalty_factor: dict[str, float] | None = None
    seed: int | None = 0
    tol: float | None = None
    #: per-block preprocessing ``(columns, harmonize, filter)``; None = one block of all
    blocks: tuple[tuple[tuple[str, ...], str | None, str | None], ...] | None = None


@dataclass(frozen=True, eq=False)
class FoldFit:
    """One training fold: held-out link predictions, the inner out-of-fold predictions at the
    chosen lambda, the choice and what preprocessing did."""

    test_link: np.ndarray
    train_oof: np.ndarray
    lam: float
    selected: list[str]
    coef: pd.Series
    prep: FoldPreprocess
    skipped_inner: list
    cv: CVPenalized
    train_X: pd.DataFrame


def fit_fold(
    Xtr: pd.DataFrame, rtr: Response, sites_tr: pd.Series, Xte: pd.DataFrame,
    sites_te: pd.Series, cfg: PipelineConfig, where: str, subjects_te: set | None = None,
) -> FoldFit:  # fmt: skip
    """Preprocess, choose lambda by inner CV and predict the held-out rows (one fold)."""
    blocks = cfg.blocks or ((tuple(Xtr.columns), cfg.harmonize, cfg.filter),)
    parts = []
    for cols, harm, filt in blocks:
        parts.append(fit_preprocess(
            Xtr[list(cols)], sites_tr, Xte[list(cols)], sites_te, harmonize=harm, filter=filt,
            keep=cfg.keep, min_icc=cfg.min_icc, reliability=cfg.reliability,
            exclude_subjects=subjects_te, where=where,
        ))  # fmt: skip
    tr = pd.concat([p[0] for p in parts], axis=1)
    te = pd.concat([p[1] for p in parts], axis=1)
    prep = FoldPreprocess(
        kept=list(tr.columns), constant=sum((p[2].constant for p in parts), []),
        filtered=sum((p[2].filtered for p in parts), []),
        combat_zero_variance=sum(p[2].combat_zero_variance for p in parts),
        combat_warnings=tuple(m for p in parts for m in p[2].combat_warnings),
    )  # fmt: skip
    names = list(tr.columns)
    Xa = tr.to_numpy(dtype=float)
    pf = np.array([(cfg.penalty_factor or {}).get(c, 1.0) for c in names])
    if pf.max() <= 0:
        pf = np.ones(len(names))
    opts = dict(alpha=cfg.alpha, nlambda=cfg.nlambda, lambda_min_ratio=cfg.lambda_min_ratio,
                standardize=True, intercept=True, penalty_factor=pf, tol=cfg.tol,
                max_iter=100_000)  # fmt: skip
    codes = pd.factorize(sites_tr)[0]
    n_sites = int(codes.max()) + 1
    if n_sites >= 3:  # inner folds = groups of whole training sites
        from sklearn.model_selection import GroupKFold

        k = min(cfg.inner_folds, n_sites)
        fid = np.zeros(len(codes), dtype=int)
        for f, (_, idx) in enumerate(GroupKFold(n_splits=k).split(Xa, groups=codes)):
            fid[idx] = f + 1
    else:
        rng = np.random.default_rng(cfg.seed)
        fid = rng.permutation(np.resize(np.arange(1, cfg.inner_folds + 1), len(Xa)))
    from .cv import MEASURES

    measure = MEASURES[cfg.family][0] if cfg.type_measure == "default" else cfg.type_measure
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CVFoldWarning)
        full = fit_path(Xa, rtr, names, lambdas=None, **opts)
        cv = cv_from_path(full, Xa, rtr, names, fid, measure, opts)
    for w in caught:
        if not issubclass(w.category, CVFoldWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    lam = cv.lambda_1se if cfg.lambda_choice == "1se" else cv.lambda_min
    a0, b = full.coef_at(lam)
    j = int(np.argmin(np.abs(full.lambdas - lam)))
    coef = pd.Series(b, index=names)
    return FoldFit(
        test_link=te.to_numpy(dtype=float) @ b + a0,
        train_oof=cv.oof[:, j],
        lam=float(lam),
        selected=[c for c, v in zip(names, b) if v != 0],
        coef=coef,
        prep=prep,
        skipped_inner=list(cv.checks["skipped_folds"]),
        cv=cv,
        train_X=tr,
    )


@dataclass(frozen=True, eq=False)
class SignatureResult:
    """Outer (held-out site) predictions of the signature pipeline and their scores.

    ``predictions``: one row per input row: ``site``, ``fold``, the outcome column(s),
    ``link`` (linear predictor) and ``pred`` (probability / linear predictor / mean);
    ``folds``: per fold the held-out site(s), rows, features after each stage, lambda and
    selected count; ``metrics``: pooled scores; ``per_site``: scores per held-out site;
    ``selection``: how often each feature was selected over folds; ``calibration`` and
    ``decision_curve``: lmmkit.validation results (binary outcomes); ``final``: the
    penalized model refitted on all rows with the same pipeline (ComBat on all sites) and
    ``final_features`` its preprocessed training features (e.g. the background for
    :func:`lmmkit.shapley_values`);
    ``checks``: constant features dropped, sites without events, skipped inner folds.
    """

    family: str
    predictions: pd.DataFrame
    folds: pd.DataFrame
    metrics: dict[str, float]
    per_site: pd.DataFrame
    selection: pd.Series
    calibration: Any
    decision_curve: Any
    final: CVPenalized | None
    final_features: pd.DataFrame | None
    checks: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        m = ", ".join(f"{k} {v:.4g}" for k, v in self.metrics.items())
        lines = [
            f"Signature ({self.family}), {len(self.folds)} site-wise folds, "
            f"{len(self.predictions)} rows",
            f"Held-out: {m}",
            f"Features selected per fold: median {self.folds['n_selected'].median():.0f}",
        ]
        for key, val in self.checks.items():
            if val:
                lines.append(f"Note: {key}: {val}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- scoring
def score_predictions(pred: pd.DataFrame, family: str) -> tuple[dict, pd.DataFrame, Any, Any]:
    """Pooled metrics, per-site table, calibration and decision curve of outer predictions.

    ``pred`` has ``site`` and ``pred`` plus ``y`` (gaussian/binomial) or ``time``/``status``.
    """
    from lmmkit.validation.calibration import calibration
    from lmmkit.validation.decision_curve import decision_curve
    from lmmkit.validation.discrimination import roc_auc

    rows = []
    cal = dc = None
    if family == "binomial":
        y = pred["y"].to_numpy().astype(int)
        p = pred["pred"].to_numpy()
        roc = roc_auc(y, p, direction="<")
        try:
            cal = calibration(y, np.clip(p, 1e-12, 1 - 1e-12))
            c_int, c_slope = cal.intercept, cal.slope
        except ModelError:  # e.g. every prediction equal: the slope is not identifiable
            cal, c_int, c_slope = None, np.nan, np.nan
        dc = decision_curve(y, p)
        metrics = {"auc": roc.auc, "auc_low": roc.ci_low, "auc_high": roc.ci_high,
                   "brier": float(np.mean((p - y) ** 2)), "calibration_intercept": c_int,
                   "calibration_slope": c_slope, "n": float(len(y)),
                   "events": float(y.sum())}  # fmt: skip
        for s, g in pred.groupby("site", sort=True):
            yy = g["y"].to_numpy().astype(int)
            ok = 0 < yy.sum() < len(yy)
            auc = roc_auc(yy, g["pred"].to_numpy(), ci=None, direction="<").auc if ok else np.nan
            rows.append({"site": s, "n": len(g), "events": int(yy.sum()), "auc": auc})
    elif family == "cox":
        t, d, r = (pred[c].to_numpy(dtype=float) for c in ("time", "status", "pred"))
        metrics = {"c_index": concordance(t, d, r), "n": float(len(t)), "events": float(d.sum())}
        for s, g in pred.groupby("site", sort=True):
            dd = g["status"].to_numpy(dtype=float)
            c = (
                concordance(g["time"].to_numpy(float), dd, g["pred"].to_numpy(float))
                if (dd.sum() > 0 and len(g) > 1)
                else np.nan
            )
            rows.append({"site": s, "n": len(g), "events": int(dd.sum()), "c_index": c})
    else:
        y, p = pred["y"].to_numpy(float), pred["pred"].to_numpy(float)
        err = p - y
        metrics = {"rmse": float(np.sqrt(np.mean(err**2))),
                   "r2": float(1 - (err**2).sum() / ((y - y.mean()) ** 2).sum()),
                   "n": float(len(y))}  # fmt: skip
        for s, g in pred.groupby("site", sort=True):
            e = g["pred"].to_numpy(float) - g["y"].to_numpy(float)
            rows.append({"site": s, "n": len(g), "rmse": float(np.sqrt(np.mean(e**2)))})
    return metrics, pd.DataFrame(rows).set_index("site"), cal, dc


# --------------------------------------------------------------------------- inputs
def prepare_data(
    data: pd.DataFrame, outcome: str | tuple[str, str], site: str, features: list[str] | None,
    family: str, where: str, extra: tuple[str, ...] = (),
) -> tuple[pd.DataFrame, Response, pd.Series, str, list[str], int]:  # fmt: skip
    """Checked features, response, sites and family; rows with a missing outcome or site are
    dropped (returned count)."""
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"{where}data must be a pandas DataFrame; got {type(data).__name__}.")
    cols = [str(c) for c in data.columns]
    out_cols = list(outcome) if isinstance(outcome, tuple | list) else [outcome]
    for c in [site, *out_cols, *extra]:
        if c not in data.columns:
            raise DataError(f"{where}column {c!r} is not in the data.{close_matches(c, cols)}")
    if features is None:
        features = [c for c in data.columns if c not in (site, *out_cols, *extra)
                    and pd.api.types.is_numeric_dtype(data[c])]  # fmt: skip
    missing = [f for f in features if f not in data.columns]
    if missing:
        raise DataError(f"{where}feature column(s) {missing[:5]} are not in the data.")
    if not features:
        raise DataError(f"{where}no numeric feature columns; name them with features=[...].")
    keep = data[[site, *out_cols]].notna().all(axis=1)
    dropped = int((~keep).sum())
    d = data.loc[keep]
    if family == "auto":
        if len(out_cols) == 2:
            family = "cox"
        else:
            vals = pd.unique(d[out_cols[0]].dropna())
            family = (
                "binomial" if set(np.asarray(vals, float).tolist()) <= {0.0, 1.0} else ("gaussian")
            )
    if family == "cox" and len(out_cols) != 2:
        raise DataError(f"{where}a survival outcome is outcome=('time', 'status').")
    X = d[features]
    bad = X.isna().to_numpy()
    if bad.any():
        i, j = (int(v[0]) for v in np.nonzero(bad))
        raise DataError(
            f"{where}feature {features[j]!r} is missing at row {X.index[i]!r} "
            f"({int(bad.sum())} missing cells); impute before the signature pipeline."
        )
    y = (d[out_cols[0]], d[out_cols[1]]) if family == "cox" else d[out_cols[0]]
    resp = as_response(y, family, len(d), where)
    return X.astype(float), resp, d[site], family, list(features), dropped


def _response_columns(resp: Response) -> dict[str, np.ndarray]:
    if resp.family == "cox":
        return {"time": resp.time, "status": resp.status}
    return {"y": resp.y}


def _response_scale(family: str, link: np.ndarray) -> np.ndarray:
    return expit(link) if family == "binomial" else link


def run_folds(
    folds: list, X: pd.DataFrame, resp: Response, sites: pd.Series, cfg: PipelineConfig,
    where: str, scheduler: str | None,
) -> list[FoldFit]:  # fmt: skip
    """:func:`fit_fold` for every outer fold, through the executor seam (``threads:2`` runs
    two folds at a time: glmnet's Fortran releases the GIL)."""
    from lmmkit.parallel.executor import get_executor

    def one(item):
        i, (tr, te) = item
        held = ", ".join(str(s) for s in pd.unique(sites.iloc[te]))
        return fit_fold(X.iloc[tr], resp.take(tr), sites.iloc[tr], X.iloc[te], sites.iloc[te],
                        cfg, f"{where}fold {i} (held out {held}): ",
                        subjects_te=set(X.index[te]))  # fmt: skip

    ex = get_executor(scheduler)
    try:
        return list(ex.map(one, list(enumerate(folds))))
    finally:
        ex.close()


# --------------------------------------------------------------------------- public
def signature(
    data: pd.DataFrame,
    *,
    outcome: str | tuple[str, str],
    site: str,
    features: list[str] | None = None,
    family: Literal["auto", "gaussian", "binomial", "cox"] = "auto",
    cv: str | int | Any = "loso",
    harmonize: Literal["combat"] | None = "combat",
    filter: Literal["variance", "icc"] | None = "variance",
    keep: float = 0.5,
    min_icc: float = 0.75,
    reliability: dict[str, Any] | None = None,
    alpha: float = 1.0,
    lambda_choice: Literal["1se", "min"] = "1se",
    nlambda: int = 100,
    type_measure: str = "default",
    penalty_factor: dict[str, float] | None = None,
    inner_folds: int = 5,
    final_model: bool = True,
    seed: int | None = 0,
    scheduler: str | None = None,
) -> SignatureResult:
    """Build and validate a penalized signature with every step inside site-wise CV.

    Parameters
    ----------
    data : DataFrame
        One row per sample: feature columns, the outcome and the site.
    outcome : str or (str, str)
        Binary (0/1) or continuous outcome column, or ``(time, status)`` for survival.
    site : str
        Site (hospital, scanner, batch) column: the unit held out.
    features : list of str, optional
        Feature columns (default: every other numeric column).
    family : {"auto", "gaussian", "binomial", "cox"}
    cv : "loso", int or splitter
        Outer folds as :func:`lmmkit.validation.cross_validation.site_splits`.
    harmonize : {"combat", None}
        ComBat by site inside each fold.
    filter : {"variance", "icc", None}
        Keep the ``keep`` most variable features (a float is a fraction, an int a count), or those
        with test-retest ICC >= ``min_icc`` computed from ``reliability``: a dict with
        ``data`` (one row per subject x repeat, the feature columns), ``subject``, ``repeat``
        and optional ``form`` ("ICC1", "ICC2" default, "ICC3"); subjects of the held-out
        site (matched on the data's index) are excluded inside each fold.
    alpha, nlambda, type_measure, penalty_factor
        Penalized path options (:func:`lmmkit.penalized_path`, :func:`lmmkit.cv_penalized`);
        ``penalty_factor`` maps feature names to factors (0 = unpenalized).
    lambda_choice : {"1se", "min"}
    final_model : bool
        Also fit the pipeline on all rows (``result.final``).
    inner_folds : int
        Inner folds (groups of whole training sites) for the lambda choice.
    seed : int
        Random inner folds when a training fold has fewer than 3 sites.
    scheduler : str, optional
        Executor for the outer folds (:func:`lmmkit.parallel.executor.get_executor`):
        None (serial), ``"threads:2"``, a Dask address.

    Returns
    -------
    SignatureResult

    Raises
    ------
    lmmkit.errors.DataError
        Missing columns, features with missing values, fewer than 2 sites, a site with one
        row under ComBat, a response that does not fit the family.

    Examples
    --------
    >>> import numpy as np, pandas as pd, lmmkit
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((120, 40))
    >>> df = pd.DataFrame(X, columns=[f"f{j}" for j in range(40)])
    >>> df["site"] = np.repeat(list("ABCD"), 30)
    >>> df["y"] = (2 * X[:, 0] + rng.standard_normal(120) > 0).astype(int)
    >>> res = lmmkit.signature(df, outcome="y", site="site", filter=None, final_model=False)
    >>> bool(res.metrics["auc"] > 0.7)
    True
    """
    from lmmkit.validation.cross_validation import site_splits

    where = "signature: "
    if lambda_choice not in ("1se", "min"):
        raise DataError(f"{where}lambda_choice={lambda_choice!r} is not '1se' or 'min'.")
    if not (0 < keep <= 1 or (isinstance(keep, int) and keep >= 1)):
        raise DataError(f"{where}keep={keep!r} must be a fraction in (0, 1] or a count >= 1.")
    X, resp, sites, fam, feats, dropped = prepare_data(data, outcome, site, features, family,
                                                       where)  # fmt: skip
    cfg = PipelineConfig(family=fam, harmonize=harmonize, filter=filter, keep=keep,
                         min_icc=min_icc, reliability=reliability, alpha=alpha,
                         lambda_choice=lambda_choice, nlambda=nlambda, type_measure=type_measure,
                         penalty_factor=penalty_factor, inner_folds=inner_folds,
                         seed=seed)  # fmt: skip
    folds, scheme = site_splits(sites.to_numpy(), cv)
    link = np.full(len(X), np.nan)
    fold_of = np.full(len(X), -1)
    rows, counts = [], pd.Series(0, index=feats, dtype=int)
    fits = run_folds(folds, X, resp, sites, cfg, where, scheduler)
    for i, ((tr, te), fit) in enumerate(zip(folds, fits)):
        held = [str(s) for s in pd.unique(sites.iloc[te])]
        link[te] = fit.test_link
        fold_of[te] = i
        counts[fit.selected] += 1
        rows.append({
            "fold": i, "held_out": ", ".join(held), "n_train": len(tr), "n_test": len(te),
            "events_test": resp.take(te).n_events, "constant_dropped": len(fit.prep.constant),
            "filtered_out": len(fit.prep.filtered), "n_features": len(fit.prep.kept),
            "lambda": fit.lam, "n_selected": len(fit.selected),
            "inner_folds_skipped": len(fit.skipped_inner),
        })  # fmt: skip
    pred = pd.DataFrame({"site": sites.to_numpy(), "fold": fold_of, **_response_columns(resp),
                         "link": link, "pred": _response_scale(fam, link)},
                        index=X.index)  # fmt: skip
    metrics, per_site, cal, dc = score_predictions(pred, fam)
    fold_tab = pd.DataFrame(rows).set_index("fold")
    checks = {
        "rows_dropped_missing_outcome_or_site": dropped,
        "constant_features_dropped_total": int(fold_tab["constant_dropped"].sum()),
        "sites_without_events": [] if fam == "gaussian" else
        [str(s) for s in per_site.index[per_site["events"] == 0]],
        "inner_folds_skipped_total": int(fold_tab["inner_folds_skipped"].sum()),
        "scheme": scheme,
    }  # fmt: skip
    final = final_X = None
    if final_model:
        fit = fit_fold(X, resp, sites, X.iloc[:0], sites.iloc[:0], cfg, f"{where}final model: ")
        final, final_X = fit.cv, fit.train_X
    return SignatureResult(
        family=fam, predictions=pred, folds=fold_tab, metrics=metrics, per_site=per_site,
        selection=(counts / len(folds)).sort_values(ascending=False).rename("selected_share"),
        calibration=cal, decision_curve=dc, final=final, final_features=final_X,
        checks=checks,
    )  # fmt: skip

"""Early and late fusion of feature modalities (e.g. radiomic + clinical), both inside the
same site-wise cross-validation, compared in one table.

* **single**: one penalized model per modality (the references).
* **early**: the modalities' features concatenated into one penalized model (each modality
  preprocessed with its own ComBat/filter settings inside the fold; ``unpenalized`` lists
  modalities whose features enter with penalty factor 0, e.g. a few clinical covariates).
* **late** (stacking): one penalized model per modality; a meta-learner (logistic, linear or
  Cox regression on the modalities' linear predictors) is fitted on **out-of-fold**
  predictions only: the inner cross-validation predictions at the chosen lambda within the
  training fold (glmnet's pre-validated ``fit.preval``). The held-out site is then
  predicted by the modality models refitted on the whole training fold, combined by the
  meta-learner. No held-out row is seen by any stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from lmmkit.errors import DataError
from lmmkit.signatures._solvers import _need

from ._inputs import Response
from .pipeline import (
    PipelineConfig,
    _response_columns,
    _response_scale,
    prepare_data,
    run_folds,
    score_predictions,
)

__all__ = ["FusionResult", "fuse"]


@dataclass(frozen=True, eq=False)
class FusionResult:
    """``table``: one row per strategy (single modalities, early, late) with the held-out
    metrics; ``predictions``: held-out predictions per strategy (columns = strategies);
    ``meta_coef``: the late-fusion meta-learner's coefficients per outer fold."""

    family: str
    table: pd.DataFrame
    predictions: pd.DataFrame
    meta_coef: pd.DataFrame
    checks: dict[str, Any]


def _meta_fit(Z: np.ndarray, resp: Response) -> tuple[float, np.ndarray]:
    """Unpenalized meta-learner on the modalities' linear predictors: (intercept, weights)."""
    ok = np.isfinite(Z).all(axis=1)
    Z, r = Z[ok], resp.take(np.flatnonzero(ok))
    if r.family == "binomial":
        from sklearn.linear_model import LogisticRegression

        m = LogisticRegression(C=np.inf, max_iter=10_000).fit(Z, r.y.astype(int))
        return float(m.intercept_[0]), m.coef_.ravel()
    if r.family == "gaussian":
        A = np.column_stack([np.ones(len(Z)), Z])
        sol = np.linalg.lstsq(A, r.y, rcond=None)[0]
        return float(sol[0]), sol[1:]
    sk = _need("sksurv.linear_model", "scikit-survival")
    y = _need("sksurv.util", "scikit-survival").Surv.from_arrays(
        event=r.status.astype(bool), time=r.time
    )
    m = sk.CoxPHSurvivalAnalysis(ties="breslow").fit(Z, y)
    return 0.0, np.asarray(m.coef_, dtype=float)


def fuse(
    data: pd.DataFrame,
    *,
    outcome: str | tuple[str, str],
    site: str,
    modalities: dict[str, list[str]],
    family: Literal["auto", "gaussian", "binomial", "cox"] = "auto",
    cv: str | int | Any = "loso",
    harmonize: dict[str, str | None] | str | None = "combat",
    filter: dict[str, str | None] | str | None = None,
    keep: float = 0.5,
    unpenalized: list[str] | None = None,
    alpha: float = 1.0,
    lambda_choice: Literal["1se", "min"] = "1se",
    inner_folds: int = 5,
    seed: int | None = 0,
    scheduler: str | None = None,
) -> FusionResult:
    """Compare early and late fusion of modalities under the same site-wise CV.

    Parameters
    ----------
    data : DataFrame
        One row per sample with every modality's columns, the outcome and the site.
    outcome, site, family, cv, keep, alpha, lambda_choice, inner_folds, seed, scheduler
        As :func:`lmmkit.signature`.
    modalities : dict
        ``{name: [columns]}``, at least two modalities, disjoint columns.
    harmonize, filter : str, None or dict
        Per-modality settings (a dict by modality name) or one setting for all; e.g.
        ``harmonize={"radiomic": "combat", "clinical": None}``.
    unpenalized : list of str, optional
        Modalities whose features are not penalized in the early-fusion model.

    Returns
    -------
    FusionResult

    Raises
    ------
    lmmkit.errors.DataError
        Fewer than two modalities, overlapping or unknown columns, unknown modality names,
        and every error of :func:`lmmkit.signature`.

    Examples
    --------
    >>> import numpy as np, pandas as pd, lmmkit
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame(rng.standard_normal((120, 12)), columns=[f"r{j}" for j in range(12)])
    >>> df["age"] = rng.normal(60, 10, 120); df["site"] = np.repeat(list("ABCD"), 30)
    >>> df["y"] = (df["r0"] + 0.05 * df["age"] + rng.standard_normal(120) > 3).astype(int)
    >>> res = lmmkit.fuse(df, outcome="y", site="site", harmonize=None,
    ...                   modalities={"radiomic": [f"r{j}" for j in range(12)],
    ...                               "clinical": ["age"]})
    >>> list(res.table.index)
    ['radiomic', 'clinical', 'early', 'late']
    """
    from lmmkit.validation.cross_validation import site_splits

    where = "fuse: "
    if not isinstance(modalities, dict) or len(modalities) < 2:
        raise DataError(f"{where}modalities must be a dict of at least two named column lists.")
    seen: dict[str, str] = {}
    for name, cols in modalities.items():
        for c in cols:
            if c in seen:
                raise DataError(f"{where}column {c!r} is in modalities {seen[c]!r} and {name!r}.")
            seen[c] = name
    for key, opt in (("harmonize", harmonize), ("filter", filter)):
        if isinstance(opt, dict):
            unknown = [k for k in opt if k not in modalities]
            if unknown:
                raise DataError(f"{where}{key} names unknown modalities {unknown}.")
    unknown = [k for k in (unpenalized or []) if k not in modalities]
    if unknown:
        raise DataError(f"{where}unpenalized names unknown modalities {unknown}.")

    def opt(o, name):
        return o.get(name) if isinstance(o, dict) else o

    all_cols = [c for cols in modalities.values() for c in cols]
    X, resp, sites, fam, _, dropped = prepare_data(data, outcome, site, all_cols, family, where)
    folds, scheme = site_splits(sites.to_numpy(), cv)
    base = dict(family=fam, keep=keep, alpha=alpha, lambda_choice=lambda_choice,
                inner_folds=inner_folds, seed=seed)  # fmt: skip
    per_mod = {}
    for name, cols in modalities.items():
        cfg = PipelineConfig(blocks=((tuple(cols), opt(harmonize, name), opt(filter, name)),),
                             **base)  # fmt: skip
        per_mod[name] = run_folds(folds, X[cols], resp, sites, cfg, where + f"{name}: ",
                                  scheduler)  # fmt: skip
    pf = {c: 0.0 for name in (unpenalized or []) for c in modalities[name]}
    early_cfg = PipelineConfig(
        blocks=tuple((tuple(cols), opt(harmonize, n), opt(filter, n))
                     for n, cols in modalities.items()),
        penalty_factor=pf or None, **base,
    )  # fmt: skip
    early = run_folds(folds, X, resp, sites, early_cfg, where + "early: ", scheduler)

    n = len(X)
    links = {name: np.full(n, np.nan) for name in [*modalities, "early", "late"]}
    meta_rows = []
    for i, (tr, te) in enumerate(folds):
        for name in modalities:
            links[name][te] = per_mod[name][i].test_link
        links["early"][te] = early[i].test_link
        Z_tr = np.column_stack([per_mod[name][i].train_oof for name in modalities])
        Z_te = np.column_stack([per_mod[name][i].test_link for name in modalities])
        b0, w = _meta_fit(Z_tr, resp.take(tr))
        links["late"][te] = b0 + Z_te @ w
        meta_rows.append({"fold": i, "intercept": b0, **dict(zip(modalities, w))})
    cols = _response_columns(resp)
    rows, preds = [], {}
    for name, link in links.items():
        pr = pd.DataFrame({"site": sites.to_numpy(), **cols, "link": link,
                           "pred": _response_scale(fam, link)}, index=X.index)  # fmt: skip
        metrics, _, _, _ = score_predictions(pr, fam)
        fits = per_mod.get(name) or (early if name == "early" else None)
        n_sel = float(np.median([len(f.selected) for f in fits])) if fits else np.nan
        strategy = "single modality" if name in modalities else f"{name} fusion"
        rows.append({"model": name, "strategy": strategy, **metrics,
                     "median_selected": n_sel})  # fmt: skip
        preds[name] = pr["pred"]
    table = pd.DataFrame(rows).set_index("model")
    return FusionResult(
        family=fam, table=table, predictions=pd.DataFrame(preds),
        meta_coef=pd.DataFrame(meta_rows).set_index("fold"),
        checks={"rows_dropped_missing_outcome_or_site": dropped, "scheme": scheme},
    )  # fmt: skip

"""The public functions: harmonize in one call, or fit on training samples and apply."""

from __future__ import annotations

from collections.abc import Hashable

import pandas as pd

from lmmkit.errors import DataError
from lmmkit.omics.combat.apply import apply_model
from lmmkit.omics.combat.estimate import fit
from lmmkit.omics.combat.inputs import match_features, prepare
from lmmkit.omics.combat.model import ComBatModel

__all__ = ["apply_combat", "combat", "fit_combat"]


def combat(
    expr,
    batch,
    *,
    covariates=None,
    ref_batch: Hashable | None = None,
    parametric: bool = True,
    mean_only: bool = False,
) -> pd.DataFrame:
    """Remove batch effects with empirical-Bayes ComBat (R ``sva::ComBat``).

    Parameters
    ----------
    expr
        Features × samples DataFrame (or 2-D array) of normalized, e.g. log-scale, values.
    batch
        Batch label of every sample: a Series indexed by sample (aligned to
        ``expr.columns`` by label), or an array in the column order of ``expr``.
    covariates
        Sample covariates whose effects are preserved (sva's ``mod``): a DataFrame indexed
        by sample, or aligned by position.  Numeric columns enter as they are; other
        columns are one-hot coded with the first level (sorted) dropped.  Do not include
        an intercept; constant columns are dropped with a warning.
    ref_batch
        Batch left unchanged; the others are adjusted towards it.
    parametric
        Parametric (True) or non-parametric (False) empirical-Bayes priors.
    mean_only
        Adjust only the batch means, not the scales.

    Returns
    -------
    DataFrame of the same shape, index and columns as ``expr``.  ``attrs`` holds
    ``"combat_zero_variance"``: the features left unchanged.
    """
    data, batch_s, cov_df = prepare(expr, batch, covariates)
    model = fit(data, batch_s, cov_df, ref_batch, parametric, mean_only)
    return apply_model(model, data, batch_s, cov_df)


def fit_combat(
    expr,
    batch,
    *,
    covariates=None,
    ref_batch: Hashable | None = None,
    parametric: bool = True,
    mean_only: bool = False,
) -> ComBatModel:
    """Fit ComBat on training data; arguments as :func:`combat`."""
    data, batch_s, cov_df = prepare(expr, batch, covariates)
    return fit(data, batch_s, cov_df, ref_batch, parametric, mean_only)


def apply_combat(model: ComBatModel, expr, batch, covariates=None) -> pd.DataFrame:
    """Harmonize (possibly new) samples from known batches with a fitted model.

    ``expr`` must hold the model's features (matched by name for a DataFrame, by position
    for an array); ``covariates`` must have the columns used in the fit, with levels seen
    in the fit.  Samples of the reference batch are returned unchanged.
    """
    if not isinstance(model, ComBatModel):
        raise TypeError(f"model must be a ComBatModel from fit_combat, got {type(model).__name__}")
    data, batch_s, cov_df = prepare(expr, batch, covariates, min_samples=1)
    order = data.index
    data = match_features(data, model.features)
    if model.covariate_specs and cov_df is None:
        names = ", ".join(repr(s.name) for s in model.covariate_specs)
        raise DataError(f"the model was fitted with covariates {names}; pass covariates= too")
    unknown = sorted({str(b) for b in pd.unique(batch_s)} - {str(b) for b in model.batch_levels})
    if unknown:
        known = ", ".join(repr(b) for b in model.batch_levels)
        raise DataError(
            f"batch {', '.join(repr(u) for u in unknown)} was not in the training data "
            f"(known batches: {known}); ComBat can only harmonize samples from fitted batches."
        )
    out = apply_model(model, data, batch_s, cov_df)
    if not out.index.equals(order) and not isinstance(order, pd.RangeIndex):
        out = out.loc[order]
    return out

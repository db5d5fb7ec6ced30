"""The public functions: harmonize in one call, or fit on training samples and apply."""

from __future__ import annotations

from collections.abc import Hashable

import pandas as pd

from lmmkit.errors import DataError
from lmmkit.omics.combat.anndata_adapter import as_anndata, unpack, write_layer
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
    layer: str | None = None,
    key_added: str | None = "combat",
):
    """Remove batch effects with empirical-Bayes ComBat (R ``sva::ComBat``).

    Parameters
    ----------
    expr
        Features × samples DataFrame (or 2-D array) of normalized, e.g. log-scale, values;
        or an AnnData (samples × features: samples in ``obs``, features in ``var``), in
        memory or as the path of an ``.h5ad`` file (read with anndata: ``lmmkit[anndata]``).
        A sparse ``X`` is densified (refused, with the numbers, when the dense copy would
        not fit; see ``lmmkit.omics.combat.anndata_adapter``); ``obs_names`` and
        ``var_names`` must be unique.
    batch
        Batch label of every sample: a Series indexed by sample (aligned to
        ``expr.columns`` by label), or an array in the column order of ``expr``.  A Series
        with a default index (0, 1, ...) that matches no sample name is aligned by position
        with a warning.  With an AnnData, the name of a column of ``adata.obs``.
    covariates
        Sample covariates whose effects are preserved (sva's ``mod``): a DataFrame indexed
        by sample, or aligned by position.  Numeric columns enter as they are; other
        columns are one-hot coded with the first level (sorted) dropped.  Do not include
        an intercept; constant columns are dropped with a warning.  With an AnnData, a
        column name or a list of column names of ``adata.obs``.
    ref_batch
        Batch left unchanged; the others are adjusted towards it.
    parametric
        Parametric (True) or non-parametric (False) empirical-Bayes priors.
    mean_only
        Adjust only the batch means, not the scales.
    layer, key_added
        AnnData only: harmonize ``adata.layers[layer]`` instead of ``adata.X``, and write
        the result to ``adata.layers[key_added]``; ``key_added=None`` replaces ``adata.X``
        (as scanpy's ``pp.combat`` does) instead of adding a layer.

    Returns
    -------
    DataFrame
        Same shape, index and columns as ``expr``.  ``attrs`` holds
        ``"combat_zero_variance"``: the features left unchanged.
    AnnData
        For an AnnData input: the same object, with the harmonized values added as
        ``adata.layers[key_added]`` (``X`` unchanged) and the unadjusted features in
        ``adata.uns[key_added]["zero_variance"]``.  For an ``.h5ad`` path: the AnnData read
        from it, so modified (the file is not rewritten; save it with
        ``lmmkit.omics.combat.anndata_adapter.write_h5ad`` or ``lmmkit harmonize --out``).

    Raises
    ------
    DataError
        Missing values, a sample without a batch, a batch of one sample, misaligned inputs;
        for an AnnData: a batch or covariate name that is not a column of ``adata.obs``
        (the columns are listed), repeated ``obs_names``/``var_names``, a sparse matrix too
        large to densify, or a missing ``anndata`` package for an ``.h5ad`` path.
    ModelError
        A covariate that cannot be preserved (its columns are combinations of the batches).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> expr = pd.DataFrame(rng.normal(size=(30, 12)), columns=[f"s{i}" for i in range(12)])
    >>> batch = pd.Series(np.repeat(["a", "b"], 6), index=expr.columns)
    >>> harmonized = combat(expr + np.repeat([0.0, 2.0], 6), batch)
    >>> harmonized.shape
    (30, 12)
    """
    adata = as_anndata(expr)
    if adata is not None:
        expr, batch, covariates = unpack(adata, batch, covariates, layer)
    data, batch_s, cov_df = prepare(expr, batch, covariates)
    model = fit(data, batch_s, cov_df, ref_batch, parametric, mean_only)
    out = apply_model(model, data, batch_s, cov_df)
    return out if adata is None else write_layer(adata, out, key_added)


def fit_combat(
    expr,
    batch,
    *,
    covariates=None,
    ref_batch: Hashable | None = None,
    parametric: bool = True,
    mean_only: bool = False,
    layer: str | None = None,
) -> ComBatModel:
    """Fit ComBat on training data; arguments as :func:`combat` (AnnData accepted).

    Returns
    -------
    ComBatModel
        The estimates, to harmonize samples with :func:`apply_combat`.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> expr = pd.DataFrame(rng.normal(size=(30, 12)), columns=[f"s{i}" for i in range(12)])
    >>> model = fit_combat(expr, np.repeat(["a", "b"], 6))
    >>> model.batch_levels
    ('a', 'b')
    """
    adata = as_anndata(expr)
    if adata is not None:
        expr, batch, covariates = unpack(adata, batch, covariates, layer)
    data, batch_s, cov_df = prepare(expr, batch, covariates)
    return fit(data, batch_s, cov_df, ref_batch, parametric, mean_only)


def apply_combat(
    model: ComBatModel,
    expr,
    batch,
    covariates=None,
    *,
    layer: str | None = None,
    key_added: str | None = "combat",
):
    """Harmonize (possibly new) samples from known batches with a fitted model.

    ``expr`` must hold the model's features (matched by name for a DataFrame, by position
    for an array); ``covariates`` must have the columns used in the fit, with levels seen
    in the fit.  Samples of the reference batch are returned unchanged.  An AnnData is
    accepted as in :func:`combat` (result in ``adata.layers[key_added]``).

    Returns
    -------
    DataFrame or AnnData
        As :func:`combat`.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> expr = pd.DataFrame(rng.normal(size=(30, 12)), columns=[f"s{i}" for i in range(12)])
    >>> batch = pd.Series(np.repeat(["a", "b"], 6), index=expr.columns)
    >>> model = fit_combat(expr.iloc[:, ::2], batch.iloc[::2])
    >>> apply_combat(model, expr.iloc[:, 1::2], batch.iloc[1::2]).shape
    (30, 6)
    """
    if not isinstance(model, ComBatModel):
        raise TypeError(f"model must be a ComBatModel from fit_combat, got {type(model).__name__}")
    adata = as_anndata(expr)
    if adata is not None:
        expr, batch, covariates = unpack(adata, batch, covariates, layer)
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
    return out if adata is None else write_layer(adata, out, key_added)

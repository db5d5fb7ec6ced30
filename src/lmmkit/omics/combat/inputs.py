"""Input checks and alignment: the expression matrix, batch labels and covariates by sample."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from lmmkit.errors import DataError, LmmkitWarning, close_matches
from lmmkit.omics.combat.model import SHOW

__all__ = ["align", "batch_levels", "match_features", "prepare"]


def prepare(expr, batch, covariates, min_samples: int = 2):
    """Validate and align inputs; return (data frame, batch series, covariate frame)."""
    if isinstance(expr, pd.DataFrame):
        data = expr
    else:
        try:
            arr = np.asarray(expr)
        except (TypeError, ValueError) as exc:
            arr = np.empty(0, dtype=object)
            reason = f" ({exc})"
        else:
            reason = ""
        if arr.dtype == object and arr.ndim != 2:
            raise DataError(
                f"expr must be a features × samples DataFrame, a 2-D numeric array or an "
                f"AnnData; got {type(expr).__module__}.{type(expr).__name__}{reason}."
            )
        if arr.ndim != 2:
            raise DataError(f"expr must be 2-D (features × samples), got shape {arr.shape}")
        data = pd.DataFrame(arr)
    if data.shape[1] < min_samples or data.shape[0] < 1:
        raise DataError(
            f"expr has shape {data.shape}; need features × samples with samples ≥ {min_samples}"
        )
    if data.columns.has_duplicates:
        dup = data.columns[data.columns.duplicated()].unique()[:SHOW]
        raise DataError(f"expr has duplicated sample names: {', '.join(map(repr, dup))}")
    try:
        values = data.to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        bad = [c for c in data.columns if not pd.api.types.is_numeric_dtype(data[c])][:SHOW]
        raise DataError(f"expr must be numeric; non-numeric sample columns: {bad}") from exc
    bad = ~np.isfinite(values)
    if bad.any():
        rows, cols = np.nonzero(bad)
        where = ", ".join(
            f"({data.index[r]!r}, {data.columns[c]!r})" for r, c in zip(rows[:SHOW], cols[:SHOW])
        )
        nrow = len(np.unique(rows))
        ncol = len(np.unique(cols))
        raise DataError(
            f"expr has {int(bad.sum())} missing or non-finite values in {nrow} features and "
            f"{ncol} samples, e.g. at (feature, sample) {where}. ComBat needs complete data: "
            "impute or drop those features/samples first."
        )
    data = pd.DataFrame(values, index=data.index, columns=data.columns)
    if not isinstance(expr, pd.DataFrame):  # no sample names: align everything by position
        batch = batch.to_numpy() if isinstance(batch, pd.Series | pd.DataFrame) else batch
        if isinstance(covariates, pd.Series):
            covariates = covariates.to_frame()
        if isinstance(covariates, pd.DataFrame):
            covariates = covariates.reset_index(drop=True)
    batch_s = align(batch, data.columns, "batch")
    if isinstance(batch_s, pd.DataFrame):
        if batch_s.shape[1] != 1:
            raise DataError("batch must be a single variable; combine several into one label")
        batch_s = batch_s.iloc[:, 0]
    if batch_s.isna().any():
        miss = list(batch_s.index[batch_s.isna()][:SHOW])
        raise DataError(f"batch is missing for {int(batch_s.isna().sum())} samples, e.g. {miss}")
    cov_df = None
    if covariates is not None:
        cov_df = align(covariates, data.columns, "covariates")
        if isinstance(cov_df, pd.Series):
            cov_df = cov_df.to_frame(name=cov_df.name if cov_df.name is not None else "covariate")
        if cov_df.shape[1] == 0:
            cov_df = None
        elif cov_df.isna().any().any():
            col = cov_df.columns[cov_df.isna().any()][0]
            miss = list(cov_df.index[cov_df[col].isna()][:SHOW])
            raise DataError(f"covariate {col!r} is missing for samples {miss}; impute or drop them")
    return data, batch_s, cov_df


def align(obj, samples: pd.Index, what: str, *, stacklevel: int = 4):
    """Align a Series/DataFrame by sample label, or an array-like by position.

    A Series/DataFrame with a default ``RangeIndex`` that matches none of the sample names
    (a sample sheet read without ``index_col``) is aligned by position when its length is
    the number of samples, with a warning saying so; otherwise its index must hold every
    sample name.
    """
    if isinstance(obj, pd.Series | pd.DataFrame):
        idx = obj.index
        missing = samples[~samples.isin(idx)]
        if len(missing) == 0:
            if idx.has_duplicates:
                dup = idx[idx.duplicated()].unique()[:SHOW]
                raise DataError(f"{what} has duplicated sample labels {list(dup)}")
            return obj.loc[samples]
        positional = isinstance(idx, pd.RangeIndex) and not samples.isin(idx).any()
        if not positional:
            shown = ", ".join(repr(m) for m in missing[:SHOW])
            more = f" (and {len(missing) - SHOW} more)" if len(missing) > SHOW else ""
            hint = close_matches(str(missing[0]), [str(i) for i in idx])
            raise DataError(
                f"{len(missing)} samples of expr are not in the index of {what}: {shown}{more}."
                f"{hint} Give {what} for every column of expr (index = sample names)."
            )
        index_hint = (
            f"index {what} by sample ID (e.g. samples.set_index('sample')), so that it is "
            "matched to expr's columns by name"
        )
        if len(obj) != len(samples):
            raise DataError(
                f"{what} has {len(obj)} entries with a default index (0, 1, ...) but expr has "
                f"{len(samples)} samples (columns); {index_hint}."
            )
        warnings.warn(
            f"{what} has a default index (0, 1, ...) that matches none of expr's "
            f"{len(samples)} sample names; it was aligned to expr's columns by position "
            f"(row 0 = sample {samples[0]!r}). If the rows are not in expr's column order "
            f"this is wrong: {index_hint}.",
            LmmkitWarning,
            stacklevel=stacklevel,
        )
        out = obj.copy()
        out.index = samples
        return out
    arr = np.asarray(obj, dtype=object)
    if arr.ndim == 0:
        raise DataError(f"{what} must have one entry per sample, got a scalar")
    if arr.shape[0] != len(samples):
        raise DataError(
            f"{what} has {arr.shape[0]} entries but expr has {len(samples)} samples (columns)"
        )
    if arr.ndim == 1:
        return pd.Series(list(obj), index=samples)
    return pd.DataFrame(np.asarray(obj), index=samples)


def match_features(data: pd.DataFrame, features: pd.Index) -> pd.DataFrame:
    """``data`` with rows in the model's feature order (same feature set required)."""
    if data.index.equals(features):
        return data
    if isinstance(data.index, pd.RangeIndex) and len(data) == len(features):
        return data.set_axis(features, axis=0)
    missing = features[~features.isin(data.index)]
    extra = data.index[~data.index.isin(features)]
    if len(missing) or len(extra) or data.index.has_duplicates:
        raise DataError(
            f"expr must hold exactly the {len(features)} features the model was fitted on: "
            f"{len(missing)} are missing (e.g. {list(missing[:SHOW])}) and {len(extra)} "
            f"are unknown (e.g. {list(extra[:SHOW])})"
        )
    return data.loc[features]


def batch_levels(batch_s: pd.Series) -> list:
    levels = [v.item() if isinstance(v, np.generic) else v for v in pd.unique(batch_s)]
    try:
        return sorted(levels)
    except TypeError:
        return sorted(levels, key=str)

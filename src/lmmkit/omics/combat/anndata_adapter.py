"""AnnData in and out: samples are ``obs``, features are ``var``, results go to a layer.

lmmkit does not depend on anndata: an AnnData is recognized by its interface (``obs``,
``var``, ``obs_names``, ``var_names``, ``X``, ``layers``), transposed to the features x
samples frame that ComBat works on, and the harmonized values are written back as
``adata.layers[key_added]`` (samples x features, as ``X``), leaving ``X`` untouched.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError, close_matches

__all__ = ["is_anndata", "unpack", "write_layer"]

_INTERFACE = ("obs", "var", "obs_names", "var_names", "X", "layers")


def is_anndata(obj: Any) -> bool:
    """True for an AnnData (or an object with its interface), without importing anndata."""
    return not isinstance(obj, pd.DataFrame | np.ndarray) and all(
        hasattr(obj, a) for a in _INTERFACE
    )


def _obs_columns(adata, names, what: str) -> pd.DataFrame:
    obs = adata.obs
    for name in names:
        if name not in obs.columns:
            raise DataError(
                f"{what} {name!r} is not a column of adata.obs (columns: {list(obs.columns)})."
                + close_matches(str(name), [str(c) for c in obs.columns])
            )
    return obs[list(names)]


def unpack(adata, batch, covariates, layer: str | None) -> tuple[pd.DataFrame, Any, Any]:
    """The features x samples frame of ``adata.X`` (or ``layer``), the batch and covariates.

    ``batch`` may name a column of ``adata.obs`` (or be a Series/array as for a DataFrame);
    ``covariates`` may name one or several columns of ``adata.obs`` (or be a DataFrame).
    """
    if layer is None:
        values, source = adata.X, "adata.X"
    else:
        if layer not in adata.layers:
            raise DataError(
                f"layer {layer!r} is not in adata.layers (layers: {list(adata.layers.keys())})."
            )
        values, source = adata.layers[layer], f"adata.layers[{layer!r}]"
    if values is None:
        raise DataError(f"{source} is empty; pass layer= naming the values to harmonize.")
    if hasattr(values, "toarray"):  # scipy sparse: ComBat's output is dense anyway
        values = values.toarray()
    values = np.asarray(values)
    if values.ndim != 2 or values.shape != (len(adata.obs_names), len(adata.var_names)):
        raise DataError(
            f"{source} has shape {values.shape}, not (n_obs, n_vars) = "
            f"({len(adata.obs_names)}, {len(adata.var_names)})."
        )
    expr = pd.DataFrame(
        values.T, index=pd.Index(adata.var_names), columns=pd.Index(adata.obs_names)
    )
    if isinstance(batch, str):
        batch = _obs_columns(adata, [batch], "batch").iloc[:, 0]
    if isinstance(covariates, str):
        covariates = _obs_columns(adata, [covariates], "covariate")
    elif isinstance(covariates, list | tuple) and all(isinstance(c, str) for c in covariates):
        covariates = _obs_columns(adata, covariates, "covariate")
    return expr, batch, covariates


def write_layer(adata, harmonized: pd.DataFrame, key_added: str):
    """Store ``harmonized`` (features x samples) as ``adata.layers[key_added]``; return adata.

    ``adata.uns[key_added]`` records the features left unadjusted.
    """
    adata.layers[key_added] = harmonized.T.to_numpy()
    adata.uns[key_added] = {"zero_variance": list(harmonized.attrs["combat_zero_variance"])}
    return adata

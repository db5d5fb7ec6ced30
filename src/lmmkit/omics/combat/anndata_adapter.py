"""AnnData in and out for the omics functions (ComBat and variance partition).

Samples are ``obs`` (the sample sheet is ``adata.obs``), features are ``var``.  An AnnData
is recognized by its interface (``obs``, ``var``, ``obs_names``, ``var_names``, ``X``,
``layers``), so an in-memory object works without lmmkit importing anndata; an ``.h5ad``
path is read with ``anndata.read_h5ad`` (the ``lmmkit[anndata]`` extra).  The values are
transposed to the features x samples frame the estimators work on; results go back as
``adata.layers[key]`` (ComBat: samples x features, as ``X``; ``X`` is kept unless asked)
or ``.var`` columns (variance partition), and :func:`write_h5ad` writes a file atomically.

A sparse ``X`` (or layer) is densified, because ComBat's output and the per-feature model
fits are dense anyway; the dense size is estimated first and refused above
:data:`MAX_DENSE_BYTES` (or half the machine's physical memory, if smaller) with the numbers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError, close_matches

__all__ = [
    "MAX_DENSE_BYTES",
    "as_anndata",
    "check_names",
    "dense_values",
    "features_by_samples",
    "is_anndata",
    "obs_columns",
    "read_h5ad",
    "unpack",
    "var_column",
    "write_h5ad",
    "write_layer",
    "write_var_columns",
]

_INTERFACE = ("obs", "var", "obs_names", "var_names", "X", "layers")
#: largest dense copy of a sparse matrix made without asking (bytes, float64)
MAX_DENSE_BYTES = 16 * 2**30
_SHOW = 5


def is_anndata(obj: Any) -> bool:
    """True for an AnnData (or an object with its interface), without importing anndata."""
    return not isinstance(obj, pd.DataFrame | np.ndarray) and all(
        hasattr(obj, a) for a in _INTERFACE
    )


def _is_h5ad_path(obj: Any) -> bool:
    return isinstance(obj, str | os.PathLike) and str(obj).lower().endswith(".h5ad")


def _import_anndata(why: str):
    try:
        import anndata
    except ImportError as exc:
        raise DataError(
            f"{why} needs the anndata package, which is not installed: "
            "pip install 'lmmkit[anndata]' (anndata requires pandas < 3, so that environment "
            "gets pandas 2.x; lmmkit supports both)."
        ) from exc
    return anndata


def read_h5ad(path: str | os.PathLike[str]):
    """Read an ``.h5ad`` file with anndata (a clear error if it or the file is missing)."""
    anndata = _import_anndata(f"reading {os.fspath(path)!r}")
    if not Path(path).is_file():
        raise DataError(f"{os.fspath(path)!r}: no such .h5ad file.")
    return anndata.read_h5ad(path)


def as_anndata(obj: Any):
    """The AnnData behind ``obj`` (read from an ``.h5ad`` path), or None for other inputs."""
    if _is_h5ad_path(obj):
        return read_h5ad(obj)
    return obj if is_anndata(obj) else None


def check_names(adata) -> None:
    """Refuse duplicated ``obs_names`` or ``var_names`` (results are matched by name)."""
    for axis, names, fix in (
        ("obs_names", pd.Index(adata.obs_names), "obs_names_make_unique()"),
        ("var_names", pd.Index(adata.var_names), "var_names_make_unique()"),
    ):
        if names.has_duplicates:
            dup = names[names.duplicated()].unique()
            raise DataError(
                f"adata.{axis} are not unique: {len(dup)} names repeat, e.g. "
                f"{[str(d) for d in dup[:_SHOW]]}. Samples and features are matched by name; "
                f"make them unique first (adata.{fix})."
            )


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def dense_values(adata, layer: str | None) -> tuple[np.ndarray, str]:
    """``adata.X`` (or ``adata.layers[layer]``) as a dense float array, and where it came from.

    A sparse matrix is densified when its dense size fits under :data:`MAX_DENSE_BYTES`
    and half the physical memory; otherwise a :class:`~lmmkit.errors.DataError` gives
    the numbers.
    """
    if layer is None:
        values, source = adata.X, "adata.X"
    else:
        if layer not in adata.layers:
            raise DataError(
                f"layer {layer!r} is not in adata.layers (layers: {list(adata.layers.keys())})."
                + close_matches(str(layer), [str(k) for k in adata.layers.keys()])
            )
        values, source = adata.layers[layer], f"adata.layers[{layer!r}]"
    if values is None:
        raise DataError(f"{source} is empty; pass layer= naming the values to use.")
    n_obs, n_vars = len(adata.obs_names), len(adata.var_names)
    if hasattr(values, "toarray"):  # scipy sparse
        need = n_obs * n_vars * 8
        memory = _physical_memory()
        limit = MAX_DENSE_BYTES if memory is None else min(MAX_DENSE_BYTES, memory // 2)
        if need > limit:
            raise DataError(
                f"{source} is sparse ({n_obs} samples x {n_vars} features, {values.nnz} "
                f"non-zeros); the dense copy the model needs takes {need / 2**30:.1f} GiB, "
                f"over the limit of {limit / 2**30:.1f} GiB (min of MAX_DENSE_BYTES and half "
                "the physical memory). Subset the features first (e.g. highly variable genes), "
                "or raise lmmkit.omics.combat.anndata_adapter.MAX_DENSE_BYTES."
            )
        values = values.toarray()
    values = np.asarray(values)
    if values.ndim != 2 or values.shape != (n_obs, n_vars):
        raise DataError(
            f"{source} has shape {values.shape}, not (n_obs, n_vars) = ({n_obs}, {n_vars})."
        )
    return values, source


def features_by_samples(adata, layer: str | None) -> pd.DataFrame:
    """The features x samples frame of ``adata.X`` (or ``layer``), after :func:`check_names`."""
    check_names(adata)
    values, _ = dense_values(adata, layer)
    return pd.DataFrame(
        values.T, index=pd.Index(adata.var_names), columns=pd.Index(adata.obs_names)
    )


def obs_columns(adata, names, what: str) -> pd.DataFrame:
    """The columns ``names`` of ``adata.obs``; a missing one is named with the available."""
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
    expr = features_by_samples(adata, layer)
    if isinstance(batch, str):
        batch = obs_columns(adata, [batch], "batch").iloc[:, 0]
    if isinstance(covariates, str):
        covariates = obs_columns(adata, [covariates], "covariate")
    elif isinstance(covariates, list | tuple) and all(isinstance(c, str) for c in covariates):
        covariates = obs_columns(adata, covariates, "covariate")
    return expr, batch, covariates


def write_layer(adata, harmonized: pd.DataFrame, key_added: str | None):
    """Store ``harmonized`` (features x samples) as ``adata.layers[key_added]``; return adata.

    ``key_added=None`` replaces ``adata.X`` instead.  ``adata.uns["combat"]`` (or
    ``adata.uns[key_added]``) records the features left unadjusted and where the values went.
    """
    values = harmonized.T.to_numpy()
    if key_added is None:
        adata.X = values
    else:
        adata.layers[key_added] = values
    adata.uns[key_added or "combat"] = {
        "zero_variance": [str(f) for f in harmonized.attrs["combat_zero_variance"]],
        "written_to": "X" if key_added is None else f"layers/{key_added}",
    }
    return adata


def var_column(key_added: str, name: str) -> str:
    """The ``.var`` column for a result column: ``key_added + "_" + name``, ``/`` -> ``_over_``
    (HDF5 reads ``/`` as a group separator)."""
    return f"{key_added}_{name}".replace("/", "_over_")


def write_var_columns(adata, fractions: pd.DataFrame, key_added: str) -> list[str]:
    """Add every column of ``fractions`` (rows = features) to ``adata.var``; return the names."""
    written = []
    table = fractions.reindex(pd.Index(adata.var_names))
    for name in fractions.columns:
        col = var_column(key_added, str(name))
        adata.var[col] = table[name].to_numpy()
        written.append(col)
    return written


def write_h5ad(adata, path: str | os.PathLike[str]) -> None:
    """``adata.write_h5ad(path)`` atomically: a temporary file in the same folder, renamed."""
    from lmmkit._io import write_with

    if not hasattr(adata, "write_h5ad"):
        raise DataError(
            f"cannot write {os.fspath(path)!r}: {type(adata).__name__} has no write_h5ad."
        )
    write_with(path, adata.write_h5ad, suffix=".h5ad")

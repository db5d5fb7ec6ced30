"""ComBat on AnnData (samples in obs, features in var, result in a layer) and sample sheets
with a default index (#21 item 5)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest

import lmmkit
from lmmkit.errors import DataError, LmmkitWarning
from lmmkit.omics.combat import apply_combat, combat, fit_combat


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    names = [f"cell{i}" for i in range(24)]
    obs = pd.DataFrame(
        {"batch": np.repeat(["a", "b", "c"], 8), "group": ["x", "y"] * 12}, index=names
    )
    X = rng.normal(size=(24, 40)) + np.repeat([0.0, 1.0, 2.5], 8)[:, None]
    var_names = [f"gene{j}" for j in range(40)]
    expr = pd.DataFrame(X.T, index=var_names, columns=names)  # features x samples
    return X, obs, var_names, expr


@dataclass
class _AnnDataDouble:
    """The part of anndata.AnnData's interface ComBat uses (anndata itself needs
    pandas < 3 on Python 3.11, so CI cannot install it next to lmmkit)."""

    X: np.ndarray
    obs: pd.DataFrame
    var: pd.DataFrame
    layers: dict = field(default_factory=dict)
    uns: dict = field(default_factory=dict)

    @property
    def obs_names(self) -> pd.Index:
        return self.obs.index

    @property
    def var_names(self) -> pd.Index:
        return self.var.index


def _make_anndata(X, obs, var_names, *, real: bool):
    if real:
        anndata = pytest.importorskip("anndata")
        return anndata.AnnData(X=X.copy(), obs=obs, var=pd.DataFrame(index=var_names))
    return _AnnDataDouble(X.copy(), obs, pd.DataFrame(index=var_names))


@pytest.mark.parametrize("real", [False, True], ids=["interface", "anndata"])
def test_combat_on_anndata_writes_a_layer_equal_to_the_dataframe_result(real: bool) -> None:
    X, obs, var_names, expr = _data()
    adata = _make_anndata(X, obs, var_names, real=real)
    expected = combat(expr, obs["batch"], covariates=obs[["group"]])
    out = combat(adata, "batch", covariates=["group"])  # obs column names
    assert out is adata
    np.testing.assert_array_equal(adata.X, X)  # X untouched
    np.testing.assert_allclose(adata.layers["combat"], expected.T.to_numpy(), rtol=0, atol=0)
    assert adata.uns["combat"] == {"zero_variance": []}
    # a Series from obs works too, and the layer name is chosen with key_added
    combat(adata, adata.obs["batch"], covariates=adata.obs[["group"]], key_added="cb")
    np.testing.assert_array_equal(adata.layers["cb"], adata.layers["combat"])
    # fit on the AnnData, apply to it: the same numbers
    model = fit_combat(adata, "batch", covariates="group")
    apply_combat(model, adata, "batch", covariates="group", key_added="applied")
    np.testing.assert_allclose(adata.layers["applied"], adata.layers["combat"], atol=1e-12)
    # harmonize a layer instead of X
    adata.layers["raw"] = X.copy()
    combat(adata, "batch", covariates=["group"], layer="raw", key_added="from_raw")
    np.testing.assert_array_equal(adata.layers["from_raw"], adata.layers["combat"])


def test_anndata_bad_column_and_layer_are_named() -> None:
    X, obs, var_names, _ = _data()
    adata = _make_anndata(X, obs, var_names, real=False)
    with pytest.raises(DataError, match=r"batch 'batchh' is not a column of adata.obs.*'batch'"):
        combat(adata, "batchh")
    with pytest.raises(DataError, match=r"layer 'counts' is not in adata.layers"):
        combat(adata, "batch", layer="counts")


def test_unknown_container_gets_a_clear_error() -> None:
    class Container:
        pass

    with pytest.raises(DataError, match=r"features × samples DataFrame, a 2-D numeric array"):
        combat(Container(), ["a", "b"])


def test_sample_sheet_with_default_index_is_aligned_by_position_with_a_warning() -> None:
    _, obs, _, expr = _data()
    sheet = obs.reset_index(names="sample")  # as read by pd.read_csv without index_col
    expected = combat(expr, obs["batch"])
    with pytest.warns(LmmkitWarning, match=r"aligned to expr's columns by position"):
        got = combat(expr, sheet["batch"])
    pd.testing.assert_frame_equal(got, expected)
    with pytest.raises(DataError, match=r"index batch by sample ID"):
        combat(expr, sheet["batch"].iloc[:-1])


def test_batch_predictability_accepts_a_sample_sheet_with_default_index() -> None:
    _, obs, _, expr = _data()
    sheet = obs.reset_index(names="sample")
    expected = lmmkit.batch_predictability(expr, obs["batch"], n_splits=4)
    with pytest.warns(LmmkitWarning, match=r"aligned to expr's columns by position"):
        got = lmmkit.batch_predictability(expr, sheet["batch"], n_splits=4)
    assert got == expected
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match=r"index batch by sample ID"):
            lmmkit.batch_predictability(expr, sheet["batch"].iloc[:-1])

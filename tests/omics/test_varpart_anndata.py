"""variance_partition on an AnnData (#17 item 5): the sample table is ``adata.obs``, the
fractions go to ``.var`` columns and the tidy table is returned as for a DataFrame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from lmmkit.cli.main import main
from lmmkit.errors import DataError, FormulaError
from lmmkit.omics.varpart import variance_partition
from tests.omics.test_combat_anndata import _AnnDataDouble, require_anndata

FORMULA = "~ age + (1 | batch) + (1 | donor)"


def _data(seed: int = 3):
    rng = np.random.default_rng(seed)
    n, m = 24, 8
    names = [f"s{i}" for i in range(n)]
    obs = pd.DataFrame(
        {
            "batch": np.repeat(["b1", "b2", "b3"], 8),
            "donor": np.tile([f"d{i}" for i in range(6)], 4),
            "age": rng.normal(50, 10, n),
        },
        index=names,
    )
    b = rng.normal(0, 1.0, 3)[np.repeat([0, 1, 2], 8)]
    d = rng.normal(0, 0.7, 6)[np.tile(np.arange(6), 4)]
    X = b[:, None] + d[:, None] + 0.02 * obs["age"].to_numpy()[:, None]
    X = X + rng.normal(size=(n, m))
    var_names = [f"g{j}" for j in range(m)]
    return X, obs, var_names


def _adata(X, obs, var_names, *, real: bool = False):
    if real:
        anndata = require_anndata()
        return anndata.AnnData(X=X.copy(), obs=obs.copy(), var=pd.DataFrame(index=var_names))
    return _AnnDataDouble(X.copy(), obs.copy(), pd.DataFrame(index=var_names))


@pytest.mark.parametrize("real", [False, True], ids=["interface", "anndata"])
def test_fractions_go_to_var_and_equal_the_dataframe_result(real: bool) -> None:
    X, obs, var_names = _data()
    expected = variance_partition(
        FORMULA, pd.DataFrame(X.T, index=var_names, columns=obs.index), obs, progress=False
    )
    adata = _adata(X, obs, var_names, real=real)
    got = variance_partition(
        FORMULA, adata, progress=False, ratios={"batch/donor": ("batch", "donor")}
    )
    pd.testing.assert_frame_equal(got.drop(columns="batch/donor"), expected)
    np.testing.assert_allclose(got[["age", "batch", "donor", "Residuals"]].sum(axis=1), 1.0)
    for col in ["age", "batch", "donor", "Residuals"]:
        np.testing.assert_array_equal(adata.var[f"varpart_{col}"].to_numpy(), expected[col])
    np.testing.assert_allclose(
        adata.var["varpart_batch_over_donor"], got["batch"] / got["donor"], rtol=1e-12
    )
    assert list(adata.var["varpart_reason"]) == [""] * len(var_names)
    assert adata.uns["varpart"]["formula"] == FORMULA and adata.uns["varpart"]["n_failed"] == 0
    np.testing.assert_array_equal(adata.X, X)


def test_layer_sparse_and_key_added() -> None:
    X, obs, var_names = _data()
    adata = _adata(np.zeros_like(X), obs, var_names)
    adata.layers["logcounts"] = sp.csr_matrix(X)
    expected = variance_partition(
        FORMULA, pd.DataFrame(X.T, index=var_names, columns=obs.index), obs, progress=False
    )
    got = variance_partition(FORMULA, adata, layer="logcounts", key_added="vp", progress=False)
    pd.testing.assert_frame_equal(got, expected)
    assert "vp_batch" in adata.var.columns and "vp" in adata.uns


def test_bad_input_names_the_offending_value() -> None:
    X, obs, var_names = _data()
    adata = _adata(X, obs, var_names)
    with pytest.raises(DataError, match=r"the sample table is adata.obs; do not pass samples="):
        variance_partition(FORMULA, adata, obs, progress=False)
    with pytest.raises(FormulaError, match=r"Column 'dnor' is not in the data.*'donor'"):
        variance_partition("~ (1 | dnor)", adata, progress=False)
    dup = _adata(X, obs.set_axis(["s1"] + list(obs.index[1:])), var_names)
    with pytest.raises(DataError, match=r"obs_names are not unique.*'s1'"):
        variance_partition(FORMULA, dup, progress=False)
    with pytest.raises(DataError, match=r"layer 'counts' is not in adata.layers"):
        variance_partition(FORMULA, adata, layer="counts", progress=False)


def test_cli_varpart_h5ad_in_and_out(tmp_path: Path) -> None:
    anndata = require_anndata()
    X, obs, var_names = _data()
    path = tmp_path / "in.h5ad"
    _adata(X, obs, var_names, real=True).write_h5ad(path)
    expected = variance_partition(
        FORMULA, pd.DataFrame(X.T, index=var_names, columns=obs.index), obs, progress=False
    )
    argv = ["varpart", FORMULA, "--expr", str(path), "--ratio", "batch/donor"]
    assert main([*argv, "--out", str(tmp_path / "out.h5ad")]) == 0
    written = anndata.read_h5ad(tmp_path / "out.h5ad")
    np.testing.assert_array_equal(written.X, X)
    np.testing.assert_allclose(written.var["varpart_batch"], expected["batch"], rtol=1e-12)
    assert "varpart_batch_over_donor" in written.var.columns
    assert main([*argv, "--out", str(tmp_path / "vp.tsv")]) == 0
    table = pd.read_csv(tmp_path / "vp.tsv", sep="\t", index_col=0)
    np.testing.assert_allclose(table["donor"], expected["donor"], rtol=1e-12)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5ad", "out.h5ad", "vp.tsv"]

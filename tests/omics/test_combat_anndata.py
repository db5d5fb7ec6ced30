"""ComBat on AnnData (samples in obs, features in var, result in a layer; #21 item 5,
#17 item 5), .h5ad files in and out, and sample sheets with a default index.

anndata declares pandas < 3; the default venv runs lmmkit on pandas 3, so the tests that need
the real package skip there and run in the second venv of ``scripts/test_anndata.sh`` (which
sets LMMKIT_REQUIRE_ANNDATA=1: a missing anndata then fails instead of skipping)."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import lmmkit
from lmmkit.cli.main import main
from lmmkit.errors import DataError, LmmkitWarning
from lmmkit.omics.combat import (
    ZeroVarianceWarning,
    anndata_adapter,
    apply_combat,
    combat,
    fit_combat,
)


def require_anndata():
    """The anndata module; skip without it (fail under LMMKIT_REQUIRE_ANNDATA=1)."""
    try:
        import anndata
    except ImportError:
        if os.environ.get("LMMKIT_REQUIRE_ANNDATA") == "1":
            pytest.fail("LMMKIT_REQUIRE_ANNDATA=1 but anndata is not installed")
        pytest.skip("anndata is not installed (it needs pandas < 3): bash scripts/test_anndata.sh")
    return anndata


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
        anndata = require_anndata()
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
    assert adata.uns["combat"] == {"zero_variance": [], "written_to": "layers/combat"}
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


def test_key_added_none_replaces_x_as_scanpy_does() -> None:
    X, obs, var_names, expr = _data()
    adata = _make_anndata(X, obs, var_names, real=False)
    expected = combat(expr, obs["batch"])
    combat(adata, "batch", key_added=None)
    np.testing.assert_array_equal(adata.X, expected.T.to_numpy())
    assert adata.layers == {} and adata.uns["combat"]["written_to"] == "X"


def test_anndata_bad_input_is_named() -> None:
    X, obs, var_names, _ = _data()
    adata = _make_anndata(X, obs, var_names, real=False)
    with pytest.raises(
        DataError,
        match=r"covariate 'grp' is not a column of adata.obs "
        r"\(columns: \['batch', 'group'\]\).*'group'",
    ):
        combat(adata, "batch", covariates=["grp"])
    dup_obs = obs.set_axis(["cell0"] * 2 + list(obs.index[2:]))
    with pytest.raises(
        DataError,
        match=r"obs_names are not unique: 1 names repeat.*'cell0'"
        r".*obs_names_make_unique",
    ):
        combat(_make_anndata(X, dup_obs, var_names, real=False), "batch")
    dup_var = ["gene0"] + var_names[1:-1] + ["gene0"]
    with pytest.raises(DataError, match=r"var_names are not unique"):
        combat(_make_anndata(X, obs, dup_var, real=False), "batch")
    with pytest.raises(DataError, match=r"needs the anndata package|no such .h5ad file"):
        combat("missing.h5ad", "batch")


def test_sparse_x_is_densified_and_refused_past_the_memory_limit(monkeypatch) -> None:
    X, obs, var_names, expr = _data()
    X = np.where(np.abs(X) < 0.5, 0.0, X)  # some structural zeros
    adata = _make_anndata(X, obs, var_names, real=False)
    adata.X = sp.csr_matrix(X)
    combat(adata, "batch")
    expected = combat(pd.DataFrame(X.T, index=var_names, columns=obs.index), obs["batch"])
    np.testing.assert_array_equal(adata.layers["combat"], expected.T.to_numpy())
    assert sp.issparse(adata.X)  # X itself is kept as it was
    monkeypatch.setattr(anndata_adapter, "MAX_DENSE_BYTES", 24 * 40 * 8 - 1)
    with pytest.raises(
        DataError,
        match=r"adata.X is sparse \(24 samples x 40 features, \d+ "
        r"non-zeros\); the dense copy .* takes 0.0 GiB, over the limit",
    ):
        combat(adata, "batch")


def test_zero_variance_genes_within_a_batch_are_counted_and_reported() -> None:
    X, obs, var_names, expr = _data()
    X[:8, [3, 7]] = 1.5  # genes 3 and 7 constant within batch "a"
    adata = _make_anndata(X, obs, var_names, real=False)
    with pytest.warns(
        ZeroVarianceWarning,
        match=r"2 of 40 features are constant within a batch \(per batch: 'a': 2\)",
    ):
        combat(adata, "batch")
    assert adata.uns["combat"]["zero_variance"] == ["gene3", "gene7"]
    np.testing.assert_array_equal(adata.layers["combat"][:, [3, 7]], X[:, [3, 7]])


def test_write_h5ad_is_atomic(tmp_path: Path) -> None:
    class Failing:
        def write_h5ad(self, path):
            Path(path).write_bytes(b"partial")
            raise OSError("disk full")

    target = tmp_path / "out.h5ad"
    target.write_bytes(b"old")
    with pytest.raises(OSError, match="disk full"):
        anndata_adapter.write_h5ad(Failing(), target)
    assert target.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [target]


def test_h5ad_path_and_cli_round_trip(tmp_path: Path, capsys) -> None:
    require_anndata()
    X, obs, var_names, expr = _data()
    adata = _make_anndata(X, obs, var_names, real=True)
    path = tmp_path / "in.h5ad"
    adata.write_h5ad(path)
    expected = combat(expr, obs["batch"], covariates=obs[["group"]])
    out = combat(str(path), "batch", covariates="group")  # a path: the AnnData read from it
    np.testing.assert_allclose(out.layers["combat"], expected.T.to_numpy(), rtol=0, atol=0)
    argv = ["harmonize", "--expr", str(path), "--batch", "batch", "--covariate", "group"]
    assert main([*argv, "--out", str(tmp_path / "out.h5ad")]) == 0
    import anndata

    written = anndata.read_h5ad(tmp_path / "out.h5ad")
    np.testing.assert_array_equal(written.X, X)  # X kept
    np.testing.assert_allclose(written.layers["combat"], expected.T.to_numpy(), atol=0)
    assert list(written.uns["combat"]["zero_variance"]) == []
    assert main([*argv, "--replace-x", "--out", str(tmp_path / "x.h5ad")]) == 0
    np.testing.assert_allclose(
        anndata.read_h5ad(tmp_path / "x.h5ad").X, expected.T.to_numpy(), atol=0
    )
    assert main([*argv, "--out", str(tmp_path / "h.tsv")]) == 0  # a table out of an .h5ad
    table = pd.read_csv(tmp_path / "h.tsv", sep="\t", index_col=0)
    np.testing.assert_allclose(table.to_numpy(), expected.to_numpy(), atol=1e-12)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.tsv", "in.h5ad", "out.h5ad", "x.h5ad"]
    capsys.readouterr()
    assert main([*argv, "--samples", "s.csv", "--out", str(tmp_path / "y.h5ad")]) == 2
    assert "its sample table is adata.obs; drop --samples" in capsys.readouterr().err
    assert main(["harmonize", "--expr", str(path), "--batch", "lot", "--out", "z.h5ad"]) == 2
    assert "batch 'lot' is not a column of adata.obs (columns: ['batch', 'group'])" in (
        capsys.readouterr().err
    )


def test_cli_refuses_h5ad_out_from_a_table(tmp_path: Path, capsys) -> None:
    _, obs, _, expr = _data()
    expr.to_csv(tmp_path / "e.csv")
    obs.to_csv(tmp_path / "s.csv")
    argv = ["harmonize", "--expr", str(tmp_path / "e.csv"), "--batch", "batch"]
    assert main([*argv, "--samples", str(tmp_path / "s.csv"), "--out", "o.h5ad"]) == 2
    assert "needs an .h5ad --expr" in capsys.readouterr().err
    assert main([*argv, "--out", "o.tsv"]) == 2
    assert "--samples is required" in capsys.readouterr().err

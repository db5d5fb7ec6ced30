"""ComBat: agreement with R sva, invariances, fit/apply, and input errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmmkit.errors import DataError, LmmkitWarning, ModelError
from lmmkit.omics.combat import (
    ComBatModel,
    ConfoundingWarning,
    ZeroVarianceWarning,
    apply_combat,
    combat,
    fit_combat,
)

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
FROZEN = REPO / "tests" / "reference" / "sva"
TOL = 1e-12  # measured: at most 1.6e-13 against sva on every case (docs/agreement-claims.md)

needs_shared = pytest.mark.skipif(
    not (SHARED / "data" / "omics" / "bladder_exprs.csv.gz").exists(),
    reason=f"shared bladder data not found at {SHARED} (expected <repo>/../shared)",
)


@pytest.fixture(scope="module")
def bladder():
    exprs = pd.read_csv(SHARED / "data" / "omics" / "bladder_exprs.csv.gz", index_col=0)
    pheno = pd.read_csv(SHARED / "data" / "omics" / "bladder_pheno.csv", index_col=0)
    assert list(exprs.columns) == list(pheno.index)
    return exprs, pheno


def _sva(name: str) -> pd.DataFrame:
    path = SHARED / "reference" / "sva" / name
    if not path.exists():
        pytest.skip(f"sva reference {path} is missing")
    return pd.read_csv(path, index_col=0)


def _maxdiff(ours: pd.DataFrame, ref: pd.DataFrame) -> float:
    assert list(ours.index) == list(ref.index)
    assert list(ours.columns) == list(ref.columns)
    return float(np.max(np.abs(ours.to_numpy() - ref.to_numpy())))


# ----------------------------------------------------------------------------- vs R sva


@needs_shared
def test_matches_sva_parametric_no_covariates(bladder):
    exprs, pheno = bladder
    ref = _sva("combat_nomod.csv.gz")
    out = combat(exprs, pheno["batch"])
    assert _maxdiff(out, ref) < TOL


@needs_shared
def test_matches_sva_parametric_cancer_covariate(bladder):
    # cancer is partially confounded with batch: batches 1, 3 and 4 each hold a single
    # cancer level, but every level also occurs in another batch, so [batch, cancer] is
    # full rank and sva fits it; we fit the same model and warn about the confounding.
    exprs, pheno = bladder
    ref = _sva("combat_cancer.csv.gz")
    with pytest.warns(ConfoundingWarning, match=r"batch 3 contains only level 'Normal'"):
        out = combat(exprs, pheno["batch"], covariates=pheno[["cancer"]])
    assert _maxdiff(out, ref) < TOL


FROZEN_CASES = {
    "sub500_par_nomod": {},
    "sub500_nonpar_nomod": {"parametric": False},
    "sub500_nonpar_cancer": {"parametric": False, "cancer": True},
    "sub500_par_meanonly": {"mean_only": True},
    "sub500_nonpar_meanonly": {"parametric": False, "mean_only": True},
    "sub500_par_ref2": {"ref_batch": 2},
    "sub500_par_ref2_cancer": {"ref_batch": 2, "cancer": True},
    "sub500_nonpar_ref5": {"parametric": False, "ref_batch": 5},
    "sub500_par_zerovar": {"zerovar": True},
}


@needs_shared
@pytest.mark.parametrize("name", list(FROZEN_CASES))
def test_matches_frozen_sva_subset(bladder, name):
    path = FROZEN / f"{name}.csv.gz"
    if not path.exists():
        pytest.skip(
            f"frozen reference {path.name} missing; run tests/reference/sva/make_reference.R"
        )
    ref = pd.read_csv(path, index_col=0)
    exprs, pheno = bladder
    kw = dict(FROZEN_CASES[name])
    dat = exprs.iloc[:500].copy()
    if kw.pop("zerovar", False):
        dat.iloc[:3, (pheno["batch"] == 4).to_numpy()] = 7.5
    cov = pheno[["cancer"]] if kw.pop("cancer", False) else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LmmkitWarning)
        out = combat(dat, pheno["batch"], covariates=cov, **kw)
    assert _maxdiff(out, ref) < TOL
    if "ref_batch" in kw:
        cols = pheno.index[pheno["batch"] == kw["ref_batch"]]
        pd.testing.assert_frame_equal(out[cols], dat[cols])


# ----------------------------------------------------------------------------- synthetic


def _synthetic(seed=0, n_genes=120, sizes=(6, 8, 5, 7)):
    rng = np.random.default_rng(seed)
    batch = np.repeat([f"b{i}" for i in range(len(sizes))], sizes)
    n = batch.size
    group = np.where(rng.random(n) < 0.5, "case", "control")
    group[:: len(sizes)] = "case"
    group[1 :: len(sizes)] = "control"
    age = rng.normal(50, 10, n)
    base = rng.normal(8, 2, n_genes)[:, None]
    shift = {b: rng.normal(0, 1, n_genes) for b in np.unique(batch)}
    scale = {b: rng.uniform(0.5, 2.0, n_genes) for b in np.unique(batch)}
    noise = rng.normal(0, 1, (n_genes, n))
    y = base + 0.8 * (group == "case") + 0.02 * age
    for b in np.unique(batch):
        m = batch == b
        y[:, m] += shift[b][:, None] + scale[b][:, None] * noise[:, m]
    samples = [f"s{i:02d}" for i in range(n)]
    expr = pd.DataFrame(y, index=[f"g{i}" for i in range(n_genes)], columns=samples)
    pheno = pd.DataFrame({"batch": batch, "group": group, "age": age}, index=samples)
    return expr, pheno


VARIANTS = [
    {},
    {"parametric": False},
    {"mean_only": True},
    {"ref_batch": "b1"},
    {"covariates": ["group", "age"]},
    {"covariates": ["group"], "ref_batch": "b2", "parametric": False},
]


def _kw(pheno, variant):
    kw = dict(variant)
    if "covariates" in kw:
        kw["covariates"] = pheno[kw["covariates"]]
    return kw


@pytest.mark.parametrize("variant", VARIANTS)
def test_identity_shaped_and_sample_order_invariant(variant):
    expr, pheno = _synthetic()
    out = combat(expr, pheno["batch"], **_kw(pheno, variant))
    assert out.shape == expr.shape
    assert out.index.equals(expr.index) and out.columns.equals(expr.columns)
    perm = np.random.default_rng(1).permutation(expr.shape[1])
    shuffled = expr.iloc[:, perm]
    out2 = combat(shuffled, pheno["batch"], **_kw(pheno, variant))  # aligned by label
    assert out2.columns.equals(shuffled.columns)
    np.testing.assert_allclose(out2[expr.columns].to_numpy(), out.to_numpy(), atol=1e-10)


@pytest.mark.parametrize("variant", VARIANTS)
def test_batch_relabelling_invariant(variant):
    expr, pheno = _synthetic()
    out = combat(expr, pheno["batch"], **_kw(pheno, variant))
    relabel = {"b0": "zeta", "b1": "alpha", "b2": "mid", "b3": "beta"}
    v = dict(variant)
    if "ref_batch" in v:
        v["ref_batch"] = relabel[v["ref_batch"]]
    out2 = combat(expr, pheno["batch"].map(relabel), **_kw(pheno, v))
    np.testing.assert_allclose(out2.to_numpy(), out.to_numpy(), atol=1e-10)


@pytest.mark.parametrize("variant", VARIANTS)
def test_fit_apply_equals_combat(variant):
    expr, pheno = _synthetic()
    kw = _kw(pheno, variant)
    model = fit_combat(expr, pheno["batch"], **kw)
    assert isinstance(model, ComBatModel)
    applied = apply_combat(model, expr, pheno["batch"], kw.get("covariates"))
    pd.testing.assert_frame_equal(applied, combat(expr, pheno["batch"], **kw))
    # new samples from known batches: each sample is harmonized on its own
    sub = expr.columns[::3]
    cov = kw.get("covariates")
    part = apply_combat(
        model, expr[sub], pheno.loc[sub, "batch"], None if cov is None else cov.loc[sub]
    )
    pd.testing.assert_frame_equal(part, applied[sub])


def test_array_input_and_positional_batch():
    expr, pheno = _synthetic()
    out = combat(expr.to_numpy(), pheno["batch"].to_numpy())
    ref = combat(expr, pheno["batch"])
    assert isinstance(out, pd.DataFrame)
    np.testing.assert_allclose(out.to_numpy(), ref.to_numpy(), atol=1e-12)


def test_removes_batch_means():
    expr, pheno = _synthetic()
    out = combat(expr, pheno["batch"])
    means = out.T.groupby(pheno["batch"].to_numpy()).mean()
    before = expr.T.groupby(pheno["batch"].to_numpy()).mean()
    assert means.std().mean() < 0.3 * before.std().mean()


def test_model_fields():
    expr, pheno = _synthetic()
    model = fit_combat(expr, pheno["batch"], covariates=pheno[["group", "age"]])
    assert model.batch_levels == ("b0", "b1", "b2", "b3")
    assert model.batch_sizes == (6, 8, 5, 7)
    assert model.covariate_columns == ("group[control]", "age")
    assert model.gamma_star.shape == (4, expr.shape[0])
    assert all(i > 0 for i in model.iterations)
    with pytest.raises(AttributeError):
        model.ref_batch = "b0"  # frozen
    eff = model.batch_effects()
    assert eff["delta_star"].shape == (4, expr.shape[0])


def test_zero_variance_features_unchanged_and_reported():
    expr, pheno = _synthetic()
    in_b2 = (pheno["batch"] == "b2").to_numpy()
    expr.iloc[[3, 7], in_b2] = 5.0
    with pytest.warns(ZeroVarianceWarning, match=r"2 of 120 features .*'g3', 'g7'"):
        out = combat(expr, pheno["batch"])
    pd.testing.assert_frame_equal(out.loc[["g3", "g7"]], expr.loc[["g3", "g7"]])
    assert out.attrs["combat_zero_variance"] == ["g3", "g7"]
    with pytest.warns(ZeroVarianceWarning):
        model = fit_combat(expr, pheno["batch"])
    assert list(model.zero_variance) == ["g3", "g7"]
    assert model.adjusted.sum() == 118


# ----------------------------------------------------------------------------- confounding


def test_level_within_one_batch_warns_and_names_it():
    expr, pheno = _synthetic()
    pheno = pheno.copy()
    pheno["site"] = "A"
    pheno.loc[pheno.index[:3], "site"] = "B"  # level B only in batch b0
    with pytest.warns(
        ConfoundingWarning, match=r"level 'B' of covariate 'site' occurs only in batch 'b0'"
    ):
        combat(expr, pheno["batch"], covariates=pheno[["site"]])


def test_singular_design_warns_then_fails():
    expr, pheno = _synthetic()
    pheno = pheno.copy()
    pheno["lab"] = np.where(pheno["batch"].isin(["b0", "b1"]), "east", "west")
    with pytest.warns(ConfoundingWarning, match="lab"):
        with pytest.raises(ModelError, match=r"singular.*lab\[west\].*'b2', 'b3'"):
            combat(expr, pheno["batch"], covariates=pheno[["lab"]])


# ----------------------------------------------------------------------------- bad input


def test_sample_missing_from_batch_is_named():
    expr, pheno = _synthetic()
    with pytest.raises(DataError, match=r"not in the index of batch: 's03'"):
        combat(expr, pheno["batch"].drop("s03"))


def test_sample_missing_from_covariates_is_named():
    expr, pheno = _synthetic()
    with pytest.raises(DataError, match=r"not in the index of covariates: 's05'"):
        combat(expr, pheno["batch"], covariates=pheno[["group"]].drop("s05"))


def test_single_sample_batch_is_named():
    expr, pheno = _synthetic()
    batch = pheno["batch"].copy()
    batch["s00"] = "lonely"
    with pytest.raises(
        DataError, match=r"batch 'lonely' has a single sample \('s00'\).*mean_only=True"
    ):
        combat(expr, batch)
    out = combat(expr, batch, mean_only=True)  # allowed in the mean-only model, as in sva
    assert np.isfinite(out.to_numpy()).all()


def test_nan_in_expr_counted_and_located():
    expr, pheno = _synthetic()
    expr.iloc[4, 2] = np.nan
    expr.iloc[9, 2] = np.nan
    with pytest.raises(DataError, match=r"2 missing or non-finite values.*\('g4', 's02'\)"):
        combat(expr, pheno["batch"])


def test_length_mismatch():
    expr, pheno = _synthetic()
    with pytest.raises(DataError, match=r"batch has 25 entries but expr has 26 samples"):
        combat(expr, pheno["batch"].to_numpy()[:-1])
    with pytest.raises(DataError, match=r"covariates has 25 entries"):
        combat(expr, pheno["batch"].to_numpy(), covariates=pheno[["age"]].to_numpy()[:-1])


def test_unknown_ref_batch_and_unknown_batch_in_apply():
    expr, pheno = _synthetic()
    with pytest.raises(DataError, match=r"ref_batch 'b9' is not a batch"):
        combat(expr, pheno["batch"], ref_batch="b9")
    model = fit_combat(expr, pheno["batch"])
    with pytest.raises(DataError, match=r"batch 'new' was not in the training data"):
        apply_combat(model, expr.iloc[:, :2], pd.Series(["new", "b0"], index=expr.columns[:2]))


def test_apply_missing_covariates_or_levels():
    expr, pheno = _synthetic()
    model = fit_combat(expr, pheno["batch"], covariates=pheno[["group"]])
    with pytest.raises(DataError, match="pass covariates="):
        apply_combat(model, expr, pheno["batch"])
    bad = pheno[["group"]].copy()
    bad.iloc[0, 0] = "other"
    with pytest.raises(DataError, match=r"levels \['other'\] not seen"):
        apply_combat(model, expr, pheno["batch"], bad)


def test_array_expr_aligns_labelled_batch_by_position():
    expr, pheno = _synthetic()
    out = combat(expr.to_numpy(), pheno["batch"], covariates=pheno[["group"]])
    ref = combat(expr, pheno["batch"], covariates=pheno[["group"]])
    np.testing.assert_allclose(out.to_numpy(), ref.to_numpy(), atol=1e-12)


def test_feature_fitted_exactly_is_left_unchanged():
    expr, pheno = _synthetic()
    expr.loc["g5"] = 3.0 + 2.0 * (pheno["group"] == "case") + (pheno["batch"] == "b1")
    with pytest.warns(ZeroVarianceWarning, match=r"fitted exactly.*'g5'"):
        out = combat(expr, pheno["batch"], covariates=pheno[["group"]])
    pd.testing.assert_series_equal(out.loc["g5"], expr.loc["g5"])
    assert np.isfinite(out.to_numpy()).all()


def test_reference_batch_without_residual_df():
    expr, pheno = _synthetic(sizes=(2, 8, 5, 7))
    pheno["group"] = "control"
    pheno.iloc[0, pheno.columns.get_loc("group")] = "case"
    pheno.iloc[3, pheno.columns.get_loc("group")] = "case"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfoundingWarning)
        with pytest.raises(DataError, match=r"reference batch 'b0' has 2 samples .* rank 2"):
            combat(expr, pheno["batch"], covariates=pheno[["group"]], ref_batch="b0")


def test_constant_covariate_dropped_with_warning():
    expr, pheno = _synthetic()
    cov = pheno[["age"]].assign(intercept=1.0)
    with pytest.warns(ConfoundingWarning, match=r"'intercept' is constant"):
        out = combat(expr, pheno["batch"], covariates=cov)
    pd.testing.assert_frame_equal(out, combat(expr, pheno["batch"], covariates=pheno[["age"]]))


def test_apply_matches_features_by_name():
    expr, pheno = _synthetic()
    model = fit_combat(expr, pheno["batch"])
    full = apply_combat(model, expr, pheno["batch"])
    shuffled = expr.iloc[::-1]
    out = apply_combat(model, shuffled, pheno["batch"])
    assert out.index.equals(shuffled.index)
    pd.testing.assert_frame_equal(out.loc[expr.index], full)
    with pytest.raises(DataError, match=r"1 are missing \(e.g. \['g0'\]\)"):
        apply_combat(model, expr.iloc[1:], pheno["batch"])

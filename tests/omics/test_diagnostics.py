"""Batch diagnostics on the real bladder data (5 batches, cancer status confounded)."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest

from lmmkit.errors import DataError
from lmmkit.omics.combat import ConfoundingWarning, combat
from lmmkit.omics.diagnostics import batch_predictability, plot_pca
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def bladder():
    expr = pd.read_csv(shared_path("data", "omics", "bladder_exprs.csv.gz"), index_col=0)
    pheno = pd.read_csv(shared_path("data", "omics", "bladder_pheno.csv")).set_index("sample")
    return expr, pheno.loc[expr.columns]


def test_batch_is_predictable_before_and_at_chance_after_harmonization(bladder) -> None:
    expr, pheno = bladder
    before = batch_predictability(expr, pheno["batch"])
    after = batch_predictability(expr, pheno["batch"], harmonize=True)
    assert before.accuracy > 0.7 > before.chance
    assert after.accuracy <= after.chance + 0.05, after.summary()
    assert after.chance == pytest.approx(19 / 57)


def test_confounding_warning_names_the_covariate(bladder) -> None:
    expr, pheno = bladder
    with pytest.warns(
        ConfoundingWarning, match=r"batch 1 contains only level 'Cancer' of covariate 'cancer'"
    ):
        combat(expr.iloc[:100], pheno["batch"], covariates=pheno[["cancer"]])


def test_pca_plot_and_bad_input(bladder, tmp_path) -> None:
    expr, pheno = bladder
    fig = plot_pca(expr.iloc[:500], pheno, ["batch", "cancer"])
    fig.savefig(tmp_path / "pca.png")
    assert (tmp_path / "pca.png").stat().st_size > 10_000
    with pytest.raises(DataError, match="color_by 'plate'"):
        plot_pca(expr.iloc[:50], pheno, ["plate"])
    tiny = pheno["batch"].copy()
    tiny.iloc[:] = [1, 2] * 28 + [3]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match=r"batch '3' has 1 sample\(s\)"):
            batch_predictability(expr.iloc[:50], tiny)


def test_harmonization_removes_batch_and_keeps_biology(bladder) -> None:
    from lmmkit.omics.diagnostics import harmonization_effect

    expr, pheno = bladder
    sub = expr.iloc[:300]
    pheno = pheno.assign(batch=pheno["batch"].astype(str))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = harmonization_effect(
            "~ (1 | batch) + (1 | cancer)", sub, pheno, "batch", preserve=["cancer"]
        )
    assert table.loc["batch", "after"] < 0.2 * table.loc["batch", "before"]
    assert table.loc["cancer", "after"] > 0.5 * table.loc["cancer", "before"]

"""Batch diagnostics on the real bladder data (5 batches, cancer status confounded)."""

from __future__ import annotations

import warnings

import numpy as np
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
    # at chance within two standard errors (0.367, SE 0.064, against 0.333 when written)
    assert abs(after.accuracy - after.chance) < 2 * after.se, after.summary()
    assert after.chance == pytest.approx(19 / 57)


def _null_data(seed: int, effect: float = 0.0):
    """3 batches x 20 samples, 500 features; ``effect`` = SD of the per-batch shifts."""
    rng = np.random.default_rng(seed)
    batch = pd.Series(np.repeat(["a", "b", "c"], 20), index=[f"s{i}" for i in range(60)])
    shift = rng.normal(size=(500, 3)) * effect
    x = rng.normal(size=(500, 60)) + shift[:, np.repeat([0, 1, 2], 20)]
    return pd.DataFrame(x, columns=batch.index), batch


def test_harmonized_accuracy_is_at_chance_on_data_without_batch_effects() -> None:
    """#27 item 1: the held-out fold is harmonized without its labels, so on data with no
    batch effect the accuracy is at chance (1/3) within its Monte-Carlo error. Harmonizing
    the held-out samples with their own labels gave 0.02 here."""
    repeats = 30
    acc = np.empty(repeats)
    for r in range(repeats):
        expr, batch = _null_data(1000 + r)
        acc[r] = batch_predictability(expr, batch, harmonize=True, seed=r).accuracy
    mc_se = acc.std(ddof=1) / np.sqrt(repeats)
    assert mc_se < 0.02  # precise enough to see a bias of the size found
    assert abs(acc.mean() - 1 / 3) < 3 * mc_se, (acc.mean(), mc_se)


def test_label_free_harmonization() -> None:
    """The posterior-weighted adjustment of held-out samples: probabilities that sum to 1,
    and with batches that the data identify, the labelled adjustment itself."""
    from lmmkit.omics.combat import apply_combat, fit_combat
    from lmmkit.omics.combat.apply import apply_label_free

    expr, batch = _null_data(7, effect=1.0)
    train, test = expr.columns[::2], expr.columns[1::2]
    model = fit_combat(expr[train], batch[train])
    free, posterior = apply_label_free(model, expr[test], None)
    np.testing.assert_allclose(posterior.sum(axis=1), 1.0, atol=1e-12)
    assert (posterior.idxmax(axis=1) == batch[test]).all()
    labelled = apply_combat(model, expr[test], batch[test])
    np.testing.assert_allclose(free.to_numpy(), labelled.to_numpy(), atol=1e-8)
    # no batch effect: the posterior is not a copy of the labels
    expr0, batch0 = _null_data(8)
    model0 = fit_combat(expr0[train], batch0[train])
    _, post0 = apply_label_free(model0, expr0[test], None)
    assert (post0.idxmax(axis=1) == batch0[test]).mean() < 0.7


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

"""Sharp edges of gwas() a newcomer hits (issue 21 item 4, issue 25 item 4): kinship None /
"none" / identity, plots with titles and tight QQ axes, output permissions, output layouts
(GEMMA, plink2, REGENIE)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmmkit.errors import DataError
from lmmkit.genetics.gwas import gwas
from lmmkit.genetics.gwas.layouts import format_table
from lmmkit.genetics.gwas.plots import qq_figure
from lmmkit.genetics.heritability import reml_heritability
from lmmkit.genetics.plink import read_plink

from ._genetics_helpers import simulate_genotypes, write_plink

PLINK2_REF = (
    Path(__file__).resolve().parents[1] / "reference" / "genetics" / "plink2_grm_missing.json"
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("edges")
    n, m = 120, 300
    g = simulate_genotypes(n, m, seed=11, missing=0.01)
    rng = np.random.default_rng(4)
    x = np.nan_to_num(g[:, 7] - np.nanmean(g[:, 7]))
    y = 0.9 * x + rng.normal(size=n)
    fam = [f"F{i} I{i} 0 0 1 {y[i]:.6f}" for i in range(n)]
    prefix = write_plink(d / "s", g, fam_rows=fam)
    pcs = pd.DataFrame(rng.normal(size=(n, 2)), columns=["PC1", "PC2"])
    return read_plink(prefix), pcs


def test_kinship_none_and_identity_are_clear_errors(data):
    pl, pcs = data
    with pytest.raises(DataError, match="needs a kinship"):
        gwas(pl, 1, kinship=None, covariates=pcs, progress=False)  # was IndexError
    with pytest.raises(DataError, match="needs a kinship.*plink2 --glm"):
        gwas(pl, 1, kinship="none", progress=False)  # was: none.grm.id not found
    with pytest.raises(DataError, match="neither a kinship computed.*nor a GCTA GRM"):
        gwas(pl, 1, kinship="centred", progress=False)
    # was: pve 0.99999, lambda 1e5 and no warning
    with pytest.raises(DataError, match="proportional to the identity.*not identifiable"):
        gwas(pl, 1, kinship=np.eye(pl.n_samples), progress=False)
    with pytest.raises(DataError, match="proportional to the identity"):
        gwas(pl, 1, kinship=3.0 * np.eye(pl.n_samples), recenter_kinship=False, progress=False)
    y = pl.phenotype(1)
    with pytest.raises(DataError, match="proportional to the identity"):
        reml_heritability(y, np.eye(len(y)))
    # a kinship with two variance levels (zeros beyond the covariates) is identifiable
    k = np.diag(np.r_[np.ones(60), np.zeros(60)])
    fit = reml_heritability(y, k, center_kernel=False)
    assert np.isfinite(fit.h2)


def test_plots_titled_and_qq_axes_tight(data, tmp_path):
    pl, pcs = data
    out = tmp_path / "g.tsv"
    res = gwas(pl, 1, covariates=pcs, loco=True, out=out, progress=False)
    assert (tmp_path / "g.tsv.qq.png").exists() and (tmp_path / "g.tsv.manhattan.png").exists()
    # one very strong signal among uniform p-values: the x axis spans the expected range
    p = np.r_[1e-40, np.linspace(0.001, 1, 999)]
    fig = qq_figure(p, "p_wald", title="trait ~ PC1 | centered kinship, LOCO")
    ax = fig.axes[0]
    exp_max = -np.log10(0.5 / len(p))
    assert ax.get_xlim()[1] <= 1.05 * exp_max  # was: up to 40, 85 % empty
    assert ax.get_ylim()[1] >= 40
    assert "trait ~ PC1" in ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    # the written plots are titled with the trait, covariates and LOCO
    from lmmkit.genetics.gwas.plots import plot_title

    t = plot_title("fam1", "centered", True, ["intercept", "PC1", "PC2"])
    assert t == "fam1 ~ intercept + PC1 + PC2 | centered kinship, LOCO | exact"
    assert "fam1 ~ intercept + PC1 + PC2" in (tmp_path / "g.tsv.log").read_text() or res.n_tested


def test_manhattan_places_every_snp_by_chromosome():
    """Every plotted SNP gets a finite x inside its chromosome's span, chromosomes in order
    of appearance alternate colours, and a missing chromosome label is its own group."""
    from lmmkit.genetics.gwas.plots import manhattan_figure

    t = pd.DataFrame({"chrom": ["2"] * 4 + [None] * 2 + ["10"] * 3, "pos": np.arange(9) * 10,
                      "p": np.r_[np.linspace(0.01, 1, 8), np.nan]})  # fmt: skip
    ax = manhattan_figure(t, "p").axes[0]
    marks = [ln for ln in ax.lines if ln.get_marker() == "o"]
    assert len(marks) == 2 and marks[0].get_color() != marks[1].get_color()
    xs = np.sort(np.concatenate([ln.get_xdata() for ln in marks]))
    assert len(xs) == 8 and np.all(np.isfinite(xs))  # the NaN p-value is not plotted
    assert [x.get_text() for x in ax.get_xticklabels()] == ["2", "nan", "10"]
    np.testing.assert_array_equal(xs[:4], [0, 10, 20, 30])  # positions within chromosome 2
    assert xs[4] > xs[3] and xs[6] > xs[5]


def test_outputs_honour_the_umask(data, tmp_path):
    pl, _ = data
    old = os.umask(0o022)
    try:
        gwas(pl, 1, out=tmp_path / "u.tsv", progress=False)
    finally:
        os.umask(old)
    for name in ("u.tsv", "u.tsv.log", "u.tsv.skipped.tsv", "u.tsv.qq.png", "u.tsv.manhattan.png"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o644, (name, oct(mode))  # PNGs were 0600


def test_output_layouts_gemma_plink2_regenie(data, tmp_path):
    pl, _ = data
    base = gwas(pl, 1, progress=False)
    t = base.table
    written = {}
    for layout in ("gemma", "plink2", "regenie"):
        out = tmp_path / f"{layout}.txt"
        gwas(pl, 1, out=out, output_format=layout, plots=False, progress=False)
        sep = " " if layout == "regenie" else "\t"
        written[layout] = pd.read_csv(out, sep=sep, keep_default_na=True, na_values=[".", "nan"])
    gem = written["gemma"]
    assert list(gem.columns) == [
        "chr", "rs", "ps", "n_miss", "allele1", "allele0", "af", "beta", "se", "logl_H1",
        "l_remle", "l_mle", "p_wald", "p_lrt", "p_score",
    ]  # fmt: skip
    np.testing.assert_array_equal(gem["n_miss"], base.n_samples - t["n"])
    np.testing.assert_allclose(gem["p_lrt"], t["p_lrt"], rtol=1e-15)
    # logl_H1 is the ML log-likelihood under H1 when the LRT ran (GEMMA -lmm 4)
    ll0 = base.null["all"]["logl_mle"]
    from scipy import stats

    np.testing.assert_allclose(
        stats.chi2.sf(2 * (gem["logl_H1"] - ll0).clip(lower=0), 1), t["p_lrt"], rtol=1e-6
    )
    p2 = written["plink2"]
    assert list(p2.columns) == json.loads(PLINK2_REF.read_text())["glm_linear_header"]
    np.testing.assert_allclose(p2["T_STAT"], t["beta"] / t["se"], rtol=1e-15)
    assert (p2["ALT"] == t["a1"]).all() and (p2["REF"] == t["a0"]).all()
    rg = written["regenie"]
    assert list(rg.columns) == [
        "CHROM", "GENPOS", "ID", "ALLELE0", "ALLELE1", "A1FREQ", "N", "TEST", "BETA", "SE",
        "CHISQ", "LOG10P", "EXTRA",
    ]  # fmt: skip
    np.testing.assert_allclose(10 ** -rg["LOG10P"], t["p_wald"], rtol=1e-12)
    # GEMMA's -lmm 1 (Wald only) layout, and the errors
    wald = format_table(t, "gemma", tests=("wald",), n_analyzed=base.n_samples)[0]
    assert list(wald.columns)[7:] == ["beta", "se", "logl_H1", "l_remle", "p_wald"]
    with pytest.raises(DataError, match="expected one of"):
        gwas(pl, 1, output_format="bolt", progress=False)
    with pytest.raises(DataError, match="Wald"):
        format_table(t, "regenie", tests=("score",))

"""PC-only, LMM and LMM+PCs side by side (#23 item 2, the comparison)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lmmkit.errors import DataError
from lmmkit.genetics.gwas import gwas
from lmmkit.genetics.pc_compare import compare_pc_lmm, lambda_gc_ci
from lmmkit.genetics.plink import read_plink
from tests.genetics._genetics_helpers import write_plink


def test_lambda_ci_covers_one_under_the_null_and_widens_with_blocks():
    p = np.random.default_rng(3).uniform(size=20_000)
    lam, lo, hi = lambda_gc_ci(p, block=1, n_boot=400)
    assert lo < 1.0 < hi and lo < lam < hi
    # the median's standard error under the null: sqrt(0.25 / n) / f(median) on the chi2 scale
    med = stats.chi2.ppf(0.5, 1)
    se = np.sqrt(0.25 / len(p)) / stats.chi2.pdf(med, 1) / med
    assert (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.2)
    # p-values repeated in runs of 50 (perfect LD within a run): blocks see the dependence
    runs = np.repeat(p[:400], 50)
    narrow = lambda_gc_ci(runs, block=1, n_boot=400)
    wide = lambda_gc_ci(runs, block=100, n_boot=400)
    assert (wide[2] - wide[1]) > 3 * (narrow[2] - narrow[1])
    with pytest.raises(DataError, match="fewer than two bootstrap blocks"):
        lambda_gc_ci(p[:50], block=100)


@pytest.fixture(scope="module")
def related(tmp_path_factory):
    """120 samples in 30 families of 4 (shared family effect on y), 600 SNPs."""
    rng = np.random.default_rng(11)
    fams, size, m = 30, 4, 600
    parent = rng.binomial(2, rng.uniform(0.1, 0.5, m), size=(fams, m))
    g = np.vstack([np.clip(fam_g + rng.integers(-1, 2, size=(size, m)), 0, 2)
                   for fam_g in parent]).astype(float)  # fmt: skip
    n = len(g)
    y = np.repeat(rng.normal(0, 1.2, fams), size) + 0.8 * (g[:, 10] - g[:, 10].mean())
    y += rng.normal(size=n)
    fam = [f"F{i // size} I{i} 0 0 1 {y[i]:.6f}" for i in range(n)]
    return read_plink(write_plink(tmp_path_factory.mktemp("cmp") / "s", g, fam_rows=fam))


def test_compare_three_scans(related, tmp_path):
    cmp = compare_pc_lmm(related, 1, pcs=3, top_k=20, n_boot=200, block=20)
    s = cmp.summary.set_index("scan")
    assert list(s.index) == ["PC-only", "LMM", "LMM+PCs"]
    assert (s["ci_low"] <= s["lambda_gc"]).all() and (s["lambda_gc"] <= s["ci_high"]).all()
    # each column is its own scan's result
    pc_only = gwas(related, 1, kinship=None, pcs=3, progress=False).table.set_index("snp")
    np.testing.assert_allclose(cmp.pvalues.set_index("snp")["PC-only"],
                               pc_only.loc[cmp.pvalues["snp"], "p_wald"], rtol=1e-12)  # fmt: skip
    n = len(cmp.pvalues)
    for scan in s.index:
        p = cmp.pvalues[scan].to_numpy()
        assert s.loc[scan, "hits_bonferroni"] == (p < 0.05 / n).sum()
    a = cmp.agreement.set_index("pair")
    assert list(a.index) == ["PC-only vs LMM", "PC-only vs LMM+PCs", "LMM vs LMM+PCs"]
    assert ((a["overlap"] >= 0) & (a["overlap"] <= 20)).all()
    assert (a["spearman_all"] > 0.5).all()  # the same data, related scans
    assert np.isnan(s.loc["PC-only", "pve"]) and s.loc["LMM", "pve"] > 0
    fig = cmp.qq_figure()
    ax = fig.axes[0]
    assert ax.get_xlabel() == "expected -log10(p)" and ax.get_title()
    assert len(ax.get_legend().get_texts()) == 6  # three scans, identity, 5e-8, Bonferroni
    assert "| scan |" in cmp.to_markdown()
    with pytest.raises(DataError, match="top_k"):
        compare_pc_lmm(related, 1, pcs=3, top_k=0)


def test_gwas_compare_command(related, tmp_path):
    from lmmkit.cli.main import main

    out = tmp_path / "c"
    args = [
        "gwas-compare",
        "--bfile",
        str(related.prefix),
        "--pheno-fam",
        "1",
        "--pcs",
        "2",
        "--top-k",
        "10",
        "--n-boot",
        "50",
        "--block",
        "20",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(args) == 0
    summary = pd.read_csv(f"{out}.summary.tsv", sep="\t")
    assert list(summary["scan"]) == ["PC-only", "LMM", "LMM+PCs"]
    assert (tmp_path / "c.qq.png").stat().st_size > 10_000
    assert main(args) == 2  # outputs exist: refused without --overwrite

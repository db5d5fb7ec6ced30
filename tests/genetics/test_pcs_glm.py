"""``gwas(..., kinship=None, pcs=k)``: PC-adjusted least squares against plink2 --glm and
statsmodels, and its bad inputs (#23 item 2a). References: tests/reference/pcs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmmkit.errors import DataError
from lmmkit.genetics.gwas import gwas
from lmmkit.genetics.plink import read_pheno_file, read_plink
from tests.conftest import REFERENCE
from tests.genetics._genetics_helpers import require_eur, require_hs, write_plink

REF = REFERENCE / "pcs"
PCA = REFERENCE / "pca"
# plink2 prints 6 significant digits: half a unit in the 6th digit is 5e-6 relative, plus
# the rounding of its last digit. The full-precision check is against statsmodels (1e-9).
PLINK2_RTOL = 6e-6


def _plink2(name: str) -> pd.DataFrame:
    ref = pd.read_csv(REF / name, sep="\t")
    return ref[ref["ERRCODE"] == "."]  # plink2 tests the SNPs that vary (others: NA)


def _compare(table: pd.DataFrame, ref: pd.DataFrame) -> dict[str, float]:
    m = table.merge(ref, left_on="snp", right_on="ID", validate="one_to_one")
    assert len(m) == len(ref), "every SNP plink2 tested is tested"
    assert (m["a1"] == m["A1"]).all() and (m["n"] == m["OBS_CT"]).all()
    out = {}
    for ours, theirs in (("beta", "BETA"), ("se", "SE"), ("t_stat", "T_STAT"), ("p_wald", "P")):
        out[ours] = float(np.max(np.abs(m[ours] / m[theirs].astype(float) - 1)))
    return out


def test_hs1940_matches_plink2_glm():
    """HS1940 CD8 with plink2's 10 PCs (chromosomes 1-2, 1,508 SNPs; 1,410 mice)."""
    pl = read_plink(require_hs())
    ref = _plink2("hs1940_pcs.glm.linear.gz")
    snps = np.flatnonzero(pl.bim["chrom"].astype(str).isin(["1", "2"]).to_numpy())
    res = gwas(pl, 1, kinship=None, pcs=PCA / "hs1940.eigenvec.gz", snps=snps, maf=0.0,
               max_missing=1.0, progress=False)  # fmt: skip
    assert res.n_samples == 1410 and res.null == {}
    d = _compare(res.table, ref)
    print("max relative differences vs plink2 --glm:", d)
    assert max(d.values()) < PLINK2_RTOL, d


def test_eur_matches_plink2_glm_with_covariates():
    """EUR_subset PHENO with QCOV1, QCOV2, CAT_COV and 10 PCs (chromosome 22)."""
    pl = read_plink(require_eur())
    cov = read_pheno_file(REF / "eur_subset.covar_pcs.tsv", ["QCOV1", "QCOV2", "CAT_COV"])
    pheno = read_pheno_file(f"{pl.prefix}.pheno2.covars", ["PHENO"])["PHENO"]
    snps = np.flatnonzero(pl.bim["chrom"].astype(str).to_numpy() == "22")
    res = gwas(pl, pheno, covariates=cov, kinship=None, pcs=PCA / "eur_subset.eigenvec",
               snps=snps, maf=0.0, max_missing=1.0, progress=False)  # fmt: skip
    assert res.n_samples == 366
    assert "CAT_COV[B]" in res.log[4] and "PC10" in res.log[4]
    d = _compare(res.table, _plink2("eur_subset_pcs.glm.linear.gz"))
    print("max relative differences vs plink2 --glm:", d)
    assert max(d.values()) < PLINK2_RTOL, d


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """120 samples x 40 SNPs with missing calls, a covariate, 3 given PCs."""
    rng = np.random.default_rng(23)
    n, m = 120, 40
    g = rng.binomial(2, rng.uniform(0.1, 0.5, m), size=(n, m)).astype(float)
    g[rng.random((n, m)) < 0.03] = np.nan
    y = 0.5 * np.nan_to_num(g[:, 3]) + rng.normal(size=n)
    fam = [f"F{i} I{i} 0 0 1 {y[i]:.6f}" for i in range(n)]
    prefix = write_plink(tmp_path_factory.mktemp("glm") / "s", g, fam_rows=fam)
    pcs = pd.DataFrame(rng.normal(size=(n, 3)), columns=["PC1", "PC2", "PC3"])
    cov = pd.DataFrame({"age": rng.normal(50, 10, n)})
    return read_plink(prefix), g, y, pcs, cov


def test_matches_statsmodels_ols_per_snp(sim):
    """Each SNP's complete-case OLS (missing calls dropped, as plink2) equals statsmodels."""
    sm = pytest.importorskip("statsmodels.api")
    pl, g, _, pcs, cov = sim
    y = pl.phenotype(1)  # as written in the .fam
    res = gwas(pl, 1, covariates=cov, kinship=None, pcs=pcs, maf=0.0, max_missing=1.0,
               progress=False)  # fmt: skip
    assert res.n_tested == g.shape[1]
    for j, row in res.table.iterrows():
        called = ~np.isnan(g[:, j])
        x = np.column_stack([np.ones(len(y)), cov["age"], pcs.to_numpy(), g[:, j]])[called]
        fit = sm.OLS(y[called], x).fit()
        assert row["n"] == called.sum()
        np.testing.assert_allclose(
            [row["beta"], row["se"], row["t_stat"], row["p_wald"]],
            [fit.params[-1], fit.bse[-1], fit.tvalues[-1], fit.pvalues[-1]], rtol=1e-9,
        )  # fmt: skip


def test_output_layouts_and_pcs_zero(sim, tmp_path):
    pl, g, y, pcs, cov = sim
    out = tmp_path / "glm.tsv"
    res = gwas(pl, 1, kinship=None, pcs=pcs, out=out, plots=False, progress=False,
               output_format="plink2")  # fmt: skip
    written = pd.read_csv(out, sep="\t")
    assert list(written.columns)[:3] == ["#CHROM", "POS", "ID"]
    np.testing.assert_allclose(written["P"], res.table["p_wald"], rtol=1e-12)
    np.testing.assert_allclose(written["T_STAT"], res.table["t_stat"], rtol=1e-12)
    with pytest.raises(DataError, match="gemma.*LMM columns"):
        gwas(pl, 1, kinship=None, pcs=pcs, output_format="gemma", progress=False)
    # pcs=0 with kinship=None: plain least squares (intercept only)
    plain = gwas(pl, 1, kinship=None, pcs=0, progress=False)
    assert plain.log[2] == "PCs: none" and "covariates: intercept" in plain.log[4]


def test_bad_pcs_are_clear_errors(sim, tmp_path):
    pl, g, y, pcs, cov = sim
    n = pl.n_samples
    with pytest.raises(DataError, match=f"k must be an integer from 1 to min.*= {g.shape[1]}"):
        gwas(pl, 1, kinship=None, pcs=g.shape[1] + 1, progress=False)  # more PCs than SNPs
    with pytest.raises(DataError, match=f"{n} PCs for {n} samples"):
        gwas(pl, 1, kinship=None, pcs=np.random.default_rng(0).normal(size=(n, n)),
             progress=False)  # fmt: skip
    # a PC file missing a genotyped sample: the first missing one is named
    ids = pl.sample_ids.rename(columns={"fid": "#FID", "iid": "IID"})
    f = tmp_path / "part.eigenvec"
    pd.concat([ids, pcs], axis=1).drop(index=[0, 5]).to_csv(f, sep="\t", index=False)
    with pytest.raises(DataError, match=r"sample FID='F0' IID='I0' .* has no PCs \(2 of 120"):
        gwas(pl, 1, kinship=None, pcs=f, progress=False)
    g2 = pd.concat([ids, pcs], axis=1)
    g2.loc[3, "IID"] = "stranger"
    g2.to_csv(f, sep="\t", index=False)
    with pytest.raises(DataError, match="IID='I3' .* has no PCs"):
        gwas(pl, 1, kinship=None, pcs=f, progress=False)
    with pytest.raises(DataError, match="goes without binary, loco"):
        gwas(pl, 1, kinship=None, pcs=pcs, loco=True, progress=False)
    # too many columns for the samples: no residual degree of freedom
    many = np.random.default_rng(1).normal(size=(n, n - 2))
    with pytest.raises(DataError, match="no residual degree of freedom"):
        gwas(pl, 1, kinship=None, pcs=many, progress=False)

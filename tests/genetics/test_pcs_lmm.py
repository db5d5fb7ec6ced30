"""``gwas(..., pcs=k)`` with a kinship: the LMM with the PCs as fixed covariates against
GEMMA ``-lmm 4`` with the PCs in ``-c`` (#23 item 2b), and collinear PCs refused.
Reference: tests/reference/pcs/make_reference.sh."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmmkit.errors import DataError
from lmmkit.genetics.gwas import gwas
from lmmkit.genetics.pca import read_pcs
from lmmkit.genetics.plink import read_plink
from tests.conftest import REFERENCE
from tests.genetics._genetics_helpers import require_hs, write_plink

REF = REFERENCE / "pcs"
PCS = REFERENCE / "pca" / "hs1940.eigenvec.gz"


@pytest.mark.slow
def test_hs1940_lmm_with_pcs_matches_gemma():
    """HS1940 CD8, GEMMA's centered kinship, intercept + plink2's 10 PCs (chromosomes 1-2:
    1,776 SNPs). Tolerances as for GEMMA without PCs (tests/genetics/test_gwas.py): beta and
    se 1e-4 relative, p-values 1e-3 in log10, lambdas 1e-4."""
    pl = read_plink(require_hs())
    snps = np.flatnonzero(pl.bim["chrom"].astype(str).isin(["1", "2"]).to_numpy())
    res = gwas(pl, 1, pcs=PCS, snps=snps, progress=False)
    null = res.null["all"]
    # GEMMA's log: pve 0.592207, vg 1.39347, ve 0.345069, REML logL -1551.3, ML -1574.32
    assert null["pve"] == pytest.approx(0.592207, abs=5e-7)
    assert null["vg"] == pytest.approx(1.39347, rel=5e-6)
    assert null["ve"] == pytest.approx(0.345069, rel=5e-6)
    assert null["logl_remle"] == pytest.approx(-1551.3, abs=5e-2)
    assert null["logl_mle"] == pytest.approx(-1574.32, abs=5e-3)
    ref = pd.read_csv(REF / "hs1940_lmm_pcs.assoc.txt.gz", sep="\t").set_index("rs")
    t = res.table.set_index("snp")
    assert sorted(t.index) == sorted(ref.index)  # the same SNPs tested
    ref = ref.loc[t.index]
    d = {k: float(np.max(np.abs(t[k] / ref[k] - 1))) for k in ("beta", "se", "l_remle", "l_mle")}
    for k in ("p_wald", "p_lrt", "p_score"):
        d[k] = float(np.max(np.abs(np.log10(t[k]) - np.log10(ref[k]))))
    print("max differences vs GEMMA -lmm 4 -c (PCs):", d)
    assert max(d["beta"], d["se"], d["l_remle"], d["l_mle"]) < 1e-4, d
    assert max(d["p_wald"], d["p_lrt"], d["p_score"]) < 1e-3, d


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    rng = np.random.default_rng(5)
    n, m = 80, 60
    g = rng.binomial(2, 0.3, size=(n, m)).astype(float)
    y = rng.normal(size=n)
    fam = [f"F{i} I{i} 0 0 1 {y[i]:.6f}" for i in range(n)]
    pl = read_plink(write_plink(tmp_path_factory.mktemp("lmmpc") / "s", g, fam_rows=fam))
    pcs = pd.DataFrame(rng.normal(size=(n, 3)), columns=["PC1", "PC2", "PC3"])
    return pl, pcs


def test_pcs_collinear_with_covariates_are_named(small):
    pl, pcs = small
    cov = pd.DataFrame({"age": 2.0 * pcs["PC2"] + 1.0, "sex": np.arange(80) % 2})
    with pytest.raises(DataError, match=r"pcs: PC2 is collinear with the covariates .*on "
                                        r"intercept, age\)"):  # fmt: skip
        gwas(pl, 1, covariates=cov, pcs=pcs, progress=False)
    # a PC that is a combination of earlier PCs is named too
    dup = pcs.assign(PC3=pcs["PC1"] - pcs["PC2"])
    with pytest.raises(DataError, match=r"PC3 is collinear .* PC1, PC2"):
        gwas(pl, 1, pcs=dup, progress=False)
    # PC names clashing with covariate names
    with pytest.raises(DataError, match=r"PC column\(s\) \['PC1'\] have the names"):
        gwas(pl, 1, covariates=pcs[["PC1"]] * 3.0, pcs=pcs, progress=False)


def test_pcs_join_the_lmm_covariates(small, tmp_path):
    """PCs by ``pcs=`` equal the same columns passed as covariates; the file form too."""
    pl, pcs = small
    a = gwas(pl, 1, pcs=pcs, tests=("wald",), progress=False)
    b = gwas(pl, 1, covariates=pcs, tests=("wald",), progress=False)
    np.testing.assert_allclose(a.table["p_wald"], b.table["p_wald"], rtol=1e-10)
    assert a.log[2] == "PCs: 3 given" or "PCs: 3 given" in a.log
    f = tmp_path / "s.eigenvec"
    ids = pl.sample_ids.rename(columns={"fid": "#FID", "iid": "IID"})
    pd.concat([ids, pcs], axis=1).to_csv(f, sep="\t", index=False, float_format="%.17g")
    pd.testing.assert_frame_equal(read_pcs(f).reset_index(drop=True), pcs)
    c = gwas(pl, 1, pcs=f, tests=("wald",), progress=False)
    np.testing.assert_allclose(c.table["p_wald"], a.table["p_wald"], rtol=1e-10)
    # plink2's layout without FIDs ('#IID PC1 ...'): matched on IID
    g = tmp_path / "noid.eigenvec"
    pd.concat([ids[["IID"]].rename(columns={"IID": "#IID"}), pcs], axis=1).to_csv(
        g, sep="\t", index=False, float_format="%.17g")  # fmt: skip
    d = gwas(pl, 1, pcs=g, tests=("wald",), progress=False)
    np.testing.assert_allclose(d.table["p_wald"], a.table["p_wald"], rtol=1e-10)


def test_cli_pcs_options(small, tmp_path):
    from lmmkit.cli.genetics.gwas import run_gwas_cli

    pl, pcs = small
    f = tmp_path / "s.eigenvec"
    ids = pl.sample_ids.rename(columns={"fid": "#FID", "iid": "IID"})
    pd.concat([ids, pcs], axis=1).to_csv(f, sep="\t", index=False, float_format="%.17g")
    base = ["--bfile", str(pl.prefix), "--pheno-fam", "1", "--quiet", "--no-plots"]
    out = tmp_path / "a.tsv"
    assert run_gwas_cli([*base, "--pcs-file", str(f), "--pcs", "2", "--no-kinship",
                         "--out", str(out)]) == 0  # fmt: skip
    want = gwas(pl, 1, kinship=None, pcs=pcs.iloc[:, :2], progress=False).table
    np.testing.assert_allclose(pd.read_csv(out, sep="\t")["p_wald"], want["p_wald"], rtol=1e-12)
    assert run_gwas_cli([*base, "--no-kinship", "--out", str(tmp_path / "b.tsv")]) == 2
    assert run_gwas_cli([*base, "--pcs-file", str(f), "--pcs", "4",
                         "--out", str(tmp_path / "c.tsv")]) == 2  # fmt: skip

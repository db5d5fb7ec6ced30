"""The matrix-free path with BOLT-LMM's conventions (issue 25 item 3): the kinship
standardized by each SNP's SD over the *analysed* samples, allele frequencies from them,
h2 on BOLT's scale; the other kinships' conventions stated in the log."""

from __future__ import annotations

import numpy as np
import pytest

from lmmkit.errors import DataError
from lmmkit.genetics.grm import compute_grm
from lmmkit.genetics.gwas import gwas, gwas_matrix_free
from lmmkit.genetics.gwas.matfree.genotypes import _decode, load_genotypes
from lmmkit.genetics.heritability import reml_heritability
from lmmkit.genetics.plink import read_plink
from tests.genetics.test_gwas_helpers import simulate


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return read_plink(simulate(tmp_path_factory.mktemp("mfb") / "sim"))


def test_empirical_kinship_uses_the_analysed_samples(tiny):
    """Held genotypes decoded with BOLT's normalization: centre = mean over the analysed
    samples' calls, squared norm n - 1; every SNP varying among them is in the kinship."""
    pl = tiny
    keep = np.flatnonzero(np.isfinite(pl.phenotype(1)))[10:]  # not every .fam sample
    n = len(keep)
    codes = np.zeros(pl.n_snps, dtype=np.int64)
    q = np.ones((n, 1)) / np.sqrt(n)
    geno, _ = load_genotypes(pl, keep, "empirical", q, 0.01, 0.05, 64, 32, codes, 1, False)
    z = np.empty((n, geno.m), dtype=np.float32, order="F")
    _decode(geno.g, 0, geno.m, geno.center, geno.scale, z)
    x = pl.read(samples=keep)
    mean = np.nanmean(x, 0)
    zc = np.where(np.isnan(x), 0.0, x - mean)
    ss = (zc * zc).sum(0)
    poly = ss > 0
    want = zc[:, poly] * np.sqrt((n - 1) / ss[poly])
    assert geno.m == poly.sum()
    np.testing.assert_allclose(z, want, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose((z.astype(float) ** 2).sum(0), n - 1, rtol=1e-5)
    # the same kinship as the exact path's compute_grm("empirical") over those samples
    k = compute_grm(pl, "empirical", samples=keep).matrix
    np.testing.assert_allclose(z.astype(float) @ z.T / geno.m, k, rtol=1e-5, atol=1e-6)


def test_matrix_free_empirical_states_conventions_and_bolt_scale(tiny):
    res = gwas_matrix_free(tiny, 1, kinship="empirical", progress=False, seed=1)
    log = "\n".join(res.log)
    assert "empirical: every SNP varying among the analysed samples, mean and SD over them" in log
    assert "h2 on BOLT-LMM's scale" in log
    # BOLT's scale: the kinship normalized to tr(P_W K P_W) = n - c
    keep = np.flatnonzero(np.isfinite(tiny.phenotype(1)))
    k = compute_grm(tiny, "empirical", samples=keep).matrix
    n = len(keep)
    p = np.eye(n) - np.ones((n, n)) / n
    t = np.trace(p @ k @ p) / (n - 1)
    lam = res.null["all"]["lambda_remle"]
    assert res.null["all"]["pve_bolt"] == pytest.approx(lam * t / (lam * t + 1), rel=1e-6)
    # the exact REML on the same kinship agrees within the Monte-Carlo error
    y = tiny.phenotype(1)[keep]
    ex = reml_heritability(y, k, center_kernel=False)
    assert abs(lam - ex.lam) < 4 * res.null["all"]["lambda_se"] + 0.05
    std = gwas_matrix_free(tiny, 1, kinship="standardized", progress=False, seed=1)
    assert "allele frequencies over all .fam samples" in "\n".join(std.log)
    with pytest.raises(DataError, match="analysed samples only"):
        gwas_matrix_free(tiny, 1, kinship_samples="all", progress=False)


def test_exact_path_empirical_kinship(tiny):
    res = gwas(tiny, 1, kinship="empirical", progress=False, tests=("wald",))
    assert "mean and SD of each SNP over the same samples (BOLT-LMM)" in "\n".join(res.log)
    assert np.isfinite(res.null["all"]["pve"])

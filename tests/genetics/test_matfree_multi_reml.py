"""Multi-kernel REML without n x n matrices (lmmkit.genetics.gwas.matfree.multi) against the
dense AI-REML (lmmkit.genetics.multi_reml) on the same SNP-set kernels."""

from __future__ import annotations

import numpy as np
import pytest

from lmmkit.errors import DataError
from lmmkit.genetics.multi_reml import multi_reml_from_plink
from lmmkit.genetics.plink import read_plink
from tests.genetics.test_gwas_helpers import simulate


@pytest.fixture(autouse=True)
def _one_blas_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """500 related samples x 2,400 SNPs on 3 chromosomes, ~1% missing calls, a polygenic
    phenotype (one SNP-set kernel per chromosome)."""
    return read_plink(simulate(tmp_path_factory.mktemp("mfm") / "sim", n=500, m=2400))


def test_matches_dense_within_a_tenth_of_the_se(cohort):
    """Every component within SE/10 of the dense fit (the issue's bound), and its Monte-Carlo
    SE (100 probes, control variates) below SE/10: the only approximation is the trace
    estimator, CG is solved to 1e-6."""
    groups = cohort.bim["chrom"].astype(str).to_numpy()
    dense = multi_reml_from_plink(cohort, 1, groups, normalization="empirical")
    mf = multi_reml_from_plink(
        cohort, 1, groups, normalization="empirical", method="matrix-free", n_probes=100
    )
    assert mf.converged and mf.names == dense.names
    se = dense.sigma2_se
    assert np.all(np.abs(mf.sigma2 - dense.sigma2) < se / 10)
    assert np.all(mf.sigma2_mc_se < se / 10)
    np.testing.assert_allclose(mf.sigma2_se, se, rtol=0.05)
    np.testing.assert_allclose(mf.h2, dense.h2, atol=0.02)


def test_bad_input(cohort):
    groups = cohort.bim["chrom"].astype(str).to_numpy()
    with pytest.raises(DataError, match="normalization='standardized'"):
        multi_reml_from_plink(cohort, 1, groups, method="matrix-free")
    with pytest.raises(DataError, match="method must be"):
        multi_reml_from_plink(cohort, 1, groups, method="sparse")

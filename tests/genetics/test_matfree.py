"""lmmkit.genetics.gwas.matfree: the matrix-free path against the exact one (same model, LOCO)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmmkit.errors import DataError
from lmmkit.genetics.grm import compute_grm
from lmmkit.genetics.gwas import (
    EXACT_MAX_SAMPLES,
    OUTPUT_COLUMNS,
    gwas,
    gwas_matrix_free,
    select_method,
)
from lmmkit.genetics.heritability import reml_heritability
from lmmkit.genetics.plink import read_plink
from tests.genetics.test_gwas_helpers import simulate


@pytest.fixture(autouse=True)
def _one_blas_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """400 related samples x 2,000 SNPs on 4 chromosomes (families sharing allele
    frequencies), a polygenic phenotype, ~1% missing calls, one monomorphic SNP."""
    prefix = simulate(tmp_path_factory.mktemp("matfree") / "sim", n=400, m=2000, n_chrom=4)
    return read_plink(prefix)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """160 samples x 240 SNPs on 3 chromosomes (the exact path's test set)."""
    return read_plink(simulate(tmp_path_factory.mktemp("matfree_tiny") / "sim"))


@pytest.fixture(scope="module")
def both(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("mf_out") / "mf.tsv"
    mf = gwas_matrix_free(
        cohort, 1, kinship="standardized", loco=True, progress=False, out=out, plots=False
    )
    ex = gwas(
        cohort, 1, kinship="standardized", loco=True, progress=False, plots=False, tests=("wald",)
    )
    return mf, ex


def test_agrees_with_exact_path(both):
    mf, ex = both
    assert list(mf.table.columns) == OUTPUT_COLUMNS
    # same SNPs tested and skipped for the same reasons
    assert (mf.table["snp"].to_numpy() == ex.table["snp"].to_numpy()).all()
    assert mf.n_skipped == ex.n_skipped
    a = -np.log10(mf.table["p_wald"].to_numpy())
    b = -np.log10(ex.table["p_wald"].to_numpy())
    assert np.corrcoef(a, b)[0, 1] > 0.999
    assert np.max(np.abs(a - b)) < 0.5
    # per-chromosome variance components (LOCO REML, 2 probes + control variate) within
    # half a standard error (se(pve) ~ 0.1 at n = 400) of the exact path's
    for c in ("1", "2", "3", "4"):
        assert abs(mf.null[c]["pve"] - ex.null[c]["pve"]) < 0.5 * mf.null[c]["pve_se"]
        assert mf.null[c]["pve_se"] > 0.05
    assert np.isnan(mf.table["p_lrt"]).all() and np.isnan(mf.table["p_score"]).all()
    assert any("exact x'V^-1x for all" in m for m in mf.log)  # small data: exact denominators


def test_calibrated_denominators(cohort, both):
    """The large-cohort approximation (calibrated x'V^-1 x): its spread is ~1/sqrt(n), so
    at n = 400 with families it is looser than at scale, but still close."""
    _, ex = both
    mf = gwas_matrix_free(
        cohort, 1, kinship="standardized", progress=False, plots=False, exact_denominators=False
    )
    assert not any("exact x'V^-1x for all" in m for m in mf.log)
    a = -np.log10(mf.table["p_wald"].to_numpy())
    b = -np.log10(ex.table["p_wald"].to_numpy())
    assert np.corrcoef(a, b)[0, 1] > 0.99
    assert 0.0 < mf.null["all"]["calibration_sd"] < 0.1


def test_h2_matches_exact_reml_within_se(cohort, both):
    mf, _ = both
    y = cohort.phenotype(1)
    ok = np.flatnonzero(np.isfinite(y))
    grm = compute_grm(cohort, "standardized")
    ref = reml_heritability(y[ok], grm.subset(ok))
    got = mf.null["all"]
    assert abs(got["pve"] - ref.h2) < ref.h2_se
    # its standard error is the exact path's (observed information of the profiled REML)
    assert got["pve_se"] == pytest.approx(ref.h2_se, rel=0.1)
    # the log-determinant is a Monte-Carlo (Hutchinson) estimate: about 1 unit of noise here
    assert got["logl_remle"] == pytest.approx(ref.logl_reml, abs=3.0)


def test_output_file_and_log(both):
    mf, _ = both
    text = mf.out.read_text().splitlines()
    assert text[0].split("\t") == OUTPUT_COLUMNS
    assert len(text) == mf.n_tested + 1
    log = mf.out.with_name(mf.out.name + ".log").read_text()
    assert "matrix-free" in log and "calibration" in log
    assert not mf.out.with_name(mf.out.name + ".parts").exists()


def test_resume_reuses_null_fit(tiny, tmp_path):
    cohort = tiny
    out = tmp_path / "r.tsv"
    kw = dict(kinship="centered", loco=True, progress=False, plots=False, block_snps=50)
    full = gwas_matrix_free(cohort, 1, out=out, **kw)
    # simulate an interruption: rerun with parts kept by failing in the executor
    out2 = tmp_path / "r2.tsv"

    class Boom:
        def __init__(self):
            self.n = 0

        def map(self, fn, items, shared=None):
            for it in items:
                self.n += 1
                if self.n == 3:
                    raise KeyboardInterrupt
                yield fn(shared, it)

        def close(self):
            pass

    with pytest.raises(KeyboardInterrupt):
        gwas_matrix_free(cohort, 1, out=out2, executor=Boom(), **kw)
    assert (tmp_path / "r2.tsv.parts" / "matfree_null.npz").exists()
    again = gwas_matrix_free(cohort, 1, out=out2, **kw)
    assert again.resumed_blocks == 2
    assert any("null model and LOCO solves read" in m for m in again.log)
    np.testing.assert_array_equal(again.table["p_wald"], full.table["p_wald"])


def test_bad_input(tiny):
    cohort = tiny
    with pytest.raises(DataError, match="leave-one-chromosome-out"):
        gwas_matrix_free(cohort, 1, loco=False, progress=False)
    with pytest.raises(DataError, match="method='exact'"):
        gwas_matrix_free(cohort, 1, kinship=np.eye(cohort.n_samples), progress=False)
    with pytest.raises(DataError, match="n_probes"):
        gwas_matrix_free(cohort, 1, n_probes=1, progress=False)


def test_select_method():
    assert select_method(500, available_bytes=16 * 2**30)[0] == "exact"
    m, why = select_method(EXACT_MAX_SAMPLES + 1, available_bytes=64 * 2**30)
    assert m == "matrix-free" and str(EXACT_MAX_SAMPLES) in why
    # memory decides below the sample threshold: 9,000 samples with 20 LOCO kinships
    assert select_method(9000, loco=True, n_chromosomes=20, available_bytes=8 * 2**30)[0] == (
        "matrix-free"
    )
    assert select_method(100, method="matrix-free")[0] == "matrix-free"
    with pytest.raises(DataError, match="method"):
        select_method(100, method="fast")


def test_centered_kinship_matches_exact(tiny):
    """GEMMA's centered kinship (SNP filters on the analyzed samples, ~1% missing calls,
    a monomorphic and an all-missing SNP, a sample without phenotype)."""
    mf = gwas_matrix_free(tiny, 1, kinship="centered", progress=False, plots=False)
    ex = gwas(tiny, 1, kinship="centered", loco=True, progress=False, plots=False)
    assert mf.n_skipped == ex.n_skipped and mf.n_samples_dropped == ex.n_samples_dropped
    a = -np.log10(mf.table["p_wald"].to_numpy())
    b = -np.log10(ex.table["p_wald"].to_numpy())
    assert np.corrcoef(a, b)[0, 1] > 0.999
    np.testing.assert_allclose(mf.table["af"], ex.table["af"], rtol=1e-12)


@pytest.mark.slow
def test_real_data_agreement():
    """EUR_subset (379 unrelated Europeans, covariates; benchmarks/matfree_agreement.py):
    matrix-free vs exact LOCO, measured correlation 0.9996."""
    from lmmkit.genetics.plink import read_pheno_file
    from tests.genetics._genetics_helpers import require_eur

    prefix = require_eur()
    f = f"{prefix}.pheno2.covars"
    pheno = read_pheno_file(f, ["PHENO"])["PHENO"]
    cov = read_pheno_file(f, ["QCOV1", "QCOV2", "CAT_COV"])
    kw = dict(covariates=cov, kinship="standardized", loco=True, progress=False, plots=False)
    mf = gwas_matrix_free(prefix, pheno, **kw)
    ex = gwas(prefix, pheno, tests=("wald",), **kw)
    a = -np.log10(mf.table["p_wald"].to_numpy())
    b = -np.log10(ex.table["p_wald"].to_numpy())
    assert np.corrcoef(a, b)[0, 1] > 0.999


def test_gwas_dispatches_by_method(tiny):
    """gwas(method=...) states the path it took; matrix-free equals gwas_matrix_free."""
    mf = gwas(tiny, 1, kinship="centered", method="matrix-free", progress=False, plots=False)
    assert mf.log[0].startswith("path: matrix-free (requested)")
    direct = gwas_matrix_free(tiny, 1, kinship="centered", progress=False, plots=False)
    pd.testing.assert_frame_equal(mf.table, direct.table)
    auto = gwas(tiny, 1, kinship="centered", method="auto", progress=False, plots=False)
    assert any(line.startswith("path: exact") for line in auto.log)  # small n: exact
    with pytest.raises(DataError, match="values other than two classes"):  # binary path
        gwas(tiny, 1, binary=True, method="matrix-free", progress=False, plots=False)
    with pytest.raises(DataError, match="method must be one of"):
        gwas(tiny, 1, method="fast", progress=False, plots=False)

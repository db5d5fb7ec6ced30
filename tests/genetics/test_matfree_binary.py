"""Binary-trait GWAS without n x n matrices (lmmkit.genetics.gwas.matfree.binary*): the
matrix-free logistic mixed null model against the dense PQL / AI-REML fit on the same
kinship, the score tests with the variance ratio against the exact variance, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

from lmmkit.errors import DataError, ModelError
from lmmkit.genetics import spa
from lmmkit.genetics.gwas import BINARY_OUTPUT_COLUMNS, gwas
from lmmkit.genetics.gwas.matfree.binary import fit_null_binary_matfree, pcg
from lmmkit.genetics.gwas.matfree.binary_loco import fit_loco_binary
from lmmkit.genetics.gwas.matfree.genotypes import _decode, _Operator, load_genotypes
from lmmkit.genetics.plink import read_plink
from tests.genetics._genetics_helpers import require_hs
from tests.genetics.test_gwas_helpers import simulate


@pytest.fixture(autouse=True)
def _one_blas_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def _operator(pl, kinship="standardized"):
    """The matrix-free kinship operator of all samples and its dense K = ZZ'/M."""
    n = pl.n_samples
    q0 = np.zeros((n, 0))
    chrom = pl.bim["chrom"].astype(str).to_numpy()
    codes = {c: i for i, c in enumerate(dict.fromkeys(chrom))}
    cc = np.array([codes[c] for c in chrom])
    geno, testable = load_genotypes(
        pl, np.arange(n), kinship, q0, 0.01, 0.05, 2000, 512, cc, len(codes), False
    )
    z = np.empty((n, geno.m), np.float32)
    _decode(geno.g, 0, geno.m, geno.center, geno.scale, z)
    k = z.astype(float) @ z.T.astype(float) / geno.m
    return _Operator(geno, q0, 512), k, testable


def _liability_cases(k, frac, seed, scale=1.0):
    """Cases = the top ``frac`` of a liability g + e, g ~ N(0, scale K / mean diag K)."""
    n = len(k)
    s, u = linalg.eigh(k)
    rng = np.random.default_rng(seed)
    g = u @ (np.sqrt(np.clip(s, 0, None) * scale / np.mean(np.diag(k))) * rng.normal(size=n))
    liab = g + rng.normal(size=n)
    return (liab > np.quantile(liab, 1.0 - frac)).astype(float), rng


def _imputed(pl, snps=None):
    g = pl.read(snps=snps, samples=np.arange(pl.n_samples))
    g = np.where(np.isnan(g), np.nanmean(g, 0), g)
    return g[:, g.std(0) > 0]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """500 related samples x 2,400 SNPs on 3 chromosomes; 20% cases of a polygenic
    liability, one covariate."""
    pl = read_plink(simulate(tmp_path_factory.mktemp("mfb") / "sim", n=500, m=2400, special=False))
    op, k, testable = _operator(pl)
    y, rng = _liability_cases(k, 0.2, seed=3)
    x = np.column_stack([np.ones(pl.n_samples), rng.normal(size=pl.n_samples)])
    return pl, op, k, testable, y, x


def test_pcg_solves_spd_system():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(60, 60))
    a = a @ a.T + 60 * np.eye(60)
    b = rng.normal(size=(60, 3))
    x, resid, it = pcg(lambda v: a @ v, np.diag(a), b, None, 1e-12, 200)
    np.testing.assert_allclose(x, linalg.solve(a, b), rtol=1e-9, atol=1e-12)
    assert resid.max() < 1e-12 and it <= 60


def test_null_model_and_score_tests_match_dense(cohort):
    """tau within 3 Monte-Carlo SEs of the dense fit on the same K (its stochastic error:
    the trace estimator is the only approximation, CG is solved to 1e-5); alpha within
    5% of its SE; the score-test variance within 10% SNP by SNP (variance ratio), -log10 p
    within 0.2 and the saddlepoint used for the same SNPs (up to the cutoff's edge)."""
    pl, op, k, testable, y, x = cohort
    dense = spa.fit_null_binary(k, y, x)
    g = _imputed(pl)
    cal = g[:, :: g.shape[1] // 30][:, :30]
    mf, fit = fit_null_binary_matfree(op, y, x, cal, n_probes=30, seed=1)
    assert mf.converged and dense.converged
    assert dense.tau > 0.1
    assert abs(mf.tau - dense.tau) < 3 * fit.tau_mc_se + 1e-3 * dense.tau
    assert fit.tau_mc_se < 0.2 * dense.tau
    np.testing.assert_allclose(mf.alpha, dense.alpha, atol=0.05 * dense.alpha_se.min())
    a = spa.score_tests(dense, g)
    b = spa.score_tests(mf, g)
    # T moves with mu (tau's Monte-Carlo error): within 0.05 of its SD
    assert np.max(np.abs(b["score"] - a["score"]) / np.sqrt(a["var"])) < 0.05
    assert np.max(np.abs(b["var"] / a["var"] - 1)) < 0.10
    assert np.median(np.abs(b["var"] / a["var"] - 1)) < 0.02
    la, lb = -np.log10(a["p_spa"]), -np.log10(b["p_spa"])
    assert np.max(np.abs(la - lb)) < 0.2
    z = np.abs(a["score"]) / np.sqrt(a["var"])
    far = np.abs(z - spa.SPA_CUTOFF) > 0.1  # not at the cutoff's edge
    np.testing.assert_array_equal(a["spa"][far], b["spa"][far])
    assert (a["spa"] == 1).sum() > 20


def test_gwas_binary_matrix_free_end_to_end(cohort, tmp_path):
    """gwas(binary=True, method='matrix-free'): the binary table, SPA, log, output file;
    a rerun after an interruption reads the saved null model."""
    pl, _, _, _, y, _ = cohort
    out = tmp_path / "b.tsv"
    res = gwas(pl, y, binary=True, method="matrix-free", kinship="standardized",
               progress=False, out=out, plots=False)  # fmt: skip
    assert list(res.table.columns) == BINARY_OUTPUT_COLUMNS
    assert res.log[0].startswith("path: matrix-free binary")
    info = res.null["all"]
    assert info["converged"] == 1.0 and info["tau"] > 0 and 0 < info["var_ratio"] < 1.5
    assert (res.table["spa"] == 1).any()
    assert np.all((res.table["p_spa"] > 0) & (res.table["p_spa"] <= 1))
    assert out.exists()
    assert any("variance ratio" in line for line in res.log)
    assert res.log[0].endswith("LOCO as SAIGE")
    assert any(line.startswith("LOCO null models (3 chromosomes") for line in res.log)
    assert set(res.null) == {"all", "1", "2", "3"}
    assert all(res.null[c]["tau"] == info["tau"] for c in "123")  # tau fixed (SAIGE)
    assert info["loco_converged"] == 1.0 and 0 < info["loco_var_ratio"] < 1.5


def test_loco_one_tested_chromosome_draws_its_own_calibration_snps(cohort):
    """snps= on one chromosome: the LOCO variance ratio's calibration SNPs all lie on it
    (drawn from the whole genome, 2 of them would often miss it and the run failed after
    the full null-model fit, at 50,000 samples an hour in)."""
    from lmmkit.genetics.gwas.matfree.binary_path import gwas_binary_matrix_free

    pl, _, _, _, y, _ = cohort
    chrom = pl.bim["chrom"].astype(str).to_numpy()
    res = gwas_binary_matrix_free(pl, y, kinship="standardized", progress=False, plots=False,
                                  snps=chrom == "3", n_calibration=2)  # fmt: skip
    assert set(res.table["chrom"].astype(str)) == {"3"}
    assert set(res.null) == {"all", "3"}
    info = res.null["all"]
    assert info["loco_n_calibration"] == 2.0 and info["n_calibration"] == 2.0
    assert 0 < info["loco_var_ratio"] < 1.5


def test_resume_reads_saved_null_model(cohort, tmp_path):
    """An interrupted run keeps its null model in OUT.parts; the rerun reads it and gives
    the same table as an uninterrupted run."""
    from lmmkit.genetics.gwas.matfree.binary_path import NULL_FILE, gwas_binary_matrix_free

    pl, _, _, _, y, _ = cohort
    kw = dict(kinship="standardized", progress=False, plots=False, block_snps=600)
    full = gwas_binary_matrix_free(pl, y, out=tmp_path / "a.tsv", **kw)

    class Boom:
        n = 0

        def map(self, fn, items, shared=None):
            for it in items:
                self.n += 1
                if self.n == 2:
                    raise KeyboardInterrupt
                yield fn(shared, it)

    out = tmp_path / "b.tsv"
    with pytest.raises(KeyboardInterrupt):
        gwas_binary_matrix_free(pl, y, out=out, executor=Boom(), **kw)
    assert (tmp_path / "b.tsv.parts" / NULL_FILE).exists()
    again = gwas_binary_matrix_free(pl, y, out=out, **kw)
    assert again.resumed_blocks == 1
    assert any("null model read from" in m for m in again.log)
    np.testing.assert_array_equal(again.table["p_spa"], full.table["p_spa"])
    assert again.null["all"]["tau"] == full.null["all"]["tau"]
    # the LOCO models come back too
    assert again.null["2"].keys() == full.null["2"].keys()
    np.testing.assert_array_equal(list(again.null["2"].values()), list(full.null["2"].values()))


def _chrom_codes(pl):
    chrom = pl.bim["chrom"].astype(str).to_numpy()
    codes = {c: i for i, c in enumerate(dict.fromkeys(chrom))}
    return np.array([codes[c] for c in chrom])


def _dense_kernel(op, use):
    """Z_use Z_use' / M_use densely, ``use`` a mask over the kinship SNPs."""
    geno = op.geno
    z = np.empty((op.n, geno.m), np.float32)
    _decode(geno.g, 0, geno.m, geno.center, geno.scale, z)
    z = z[:, use].astype(float)
    return z @ z.T / use.sum()


def _loco_setup(cohort):
    """The cohort's operator, phenotype, covariates, chromosome codes, 30 calibration SNPs
    (rows and genotypes) and the full-kinship matrix-free fit the LOCO models start from."""
    pl, op, _, testable, y, x = cohort
    sel = np.flatnonzero(testable)
    rows = sel[:: len(sel) // 30][:30]
    cal = _imputed(pl, snps=rows)
    full, _ = fit_null_binary_matfree(op, y, x, cal, n_probes=30, seed=1)
    return op, y, x, _chrom_codes(pl), rows, cal, full


def test_loco_models_solve_the_dense_loco_equations(cohort):
    """Each chromosome's LOCO model is the PQL fixed point of Sigma_c = W_c^-1 + tau K_-c
    (K_-c built densely here): eta = y~ - P_c y~ / w and alpha the GLS estimate, to the
    CG and PQL tolerances; tau is the full fit's; the LOCO variance ratio is the mean over
    the calibration SNPs of the dense g'P_c g / g~'W g~ of each SNP's own chromosome."""
    op, y, x, cc, rows, cal, full = _loco_setup(cohort)
    lf = fit_loco_binary(op, full, np.array([0, 1, 2]), cal, cc[rows], score_variance="saige")
    assert lf.converged and lf.n_calibration == 30 and set(lf.models) == {0, 1, 2}
    assert all(m.moments is None for m in lf.models.values())
    ratios = np.empty(30)
    for code in (0, 1, 2):
        k = _dense_kernel(op, op.geno.chrom != code)
        mod = lf.models[code]
        assert mod.tau == full.tau and mod.var_ratio == lf.var_ratio
        w = mod.mu * (1.0 - mod.mu)
        yw = mod.eta + (y - mod.mu) / w
        si = linalg.inv(np.diag(1.0 / w) + full.tau * k)
        a = x.T @ si @ x
        alpha = linalg.solve(a, x.T @ si @ yw)
        p = si - si @ x @ linalg.solve(a, x.T @ si)
        assert np.max(np.abs(yw - p @ yw / w - mod.eta)) < 1e-3
        np.testing.assert_allclose(mod.alpha, alpha, atol=1e-3 * mod.alpha_se.min())
        on = cc[rows] == code
        g = cal[:, on]
        gt = g - x @ (mod.adjust @ g)
        ratios[on] = np.einsum("ij,ij->j", g, p @ g) / np.einsum("ij,i,ij->j", gt, w, gt)
    assert abs(lf.var_ratio / ratios.mean() - 1) < 1e-3
    assert lf.var_ratio_sd == pytest.approx(ratios.std(ddof=1), rel=0.05)


def test_loco_moment_variance_matches_dense(cohort):
    """The default LOCO variance: each chromosome's (a, b) by moments from Hutchinson traces
    (200 probes here) equals the exact dense solution of the same moment equations
    (:func:`lmmkit.genetics.spa.residual_moments` on tr(P_c), tr(P_c K_-c P_c), ... of the
    dense K_-c) within 2 % (a) and 6 % (b), and the variance ratio is the mean of g'C_c g / g~'W g~."""
    op, y, x, cc, rows, cal, full = _loco_setup(cohort)
    lf = fit_loco_binary(op, full, np.array([0, 1, 2]), cal, cc[rows], n_probes=200)
    ratios = np.empty(30)
    for code in (0, 1, 2):
        k = _dense_kernel(op, op.geno.chrom != code)
        mod, tau = lf.models[code], full.tau
        w = mod.mu * (1.0 - mod.mu)
        si = linalg.inv(np.diag(1.0 / w) + tau * k)
        p = si - si @ x @ linalg.solve(x.T @ si @ x, x.T @ si)
        pk, r = p @ k, y - mod.mu
        a, b, note = spa.residual_moments(
            r @ r, r @ k @ r, np.trace(p), np.trace(pk @ p), np.trace(pk), np.sum(pk * pk.T), tau
        )
        assert not note
        print(code, (a, b), mod.moments)
        assert mod.moments[0] == pytest.approx(a, rel=0.02)
        assert mod.moments[1] == pytest.approx(b, rel=0.06)  # b: the noisier of the two
        c = a * p + (b - a * tau) * pk @ p
        on = cc[rows] == code
        g = cal[:, on]
        gt = g - x @ (mod.adjust @ g)
        ratios[on] = np.einsum("ij,ij->j", g, c @ g) / np.einsum("ij,i,ij->j", gt, w, gt)
    assert abs(lf.var_ratio / ratios.mean() - 1) < 0.03


def test_loco_removes_proximal_contamination(tmp_path):
    """Few kinship SNPs per sample (n / M = 2) and a liability carried by the first
    chromosome's SNPs only, so the SNPs of the other two have no effect.  Tested against the
    full kinship, which contains them, their score tests are deflated (the random effect
    absorbs each SNP's own share: mean chi^2 about 0.5); LOCO takes them out of the kinship
    and lifts the mean chi^2 to the dense exact path's with LOCO (tau refitted per
    chromosome, exact g'Pg): 0.82 against 0.80 here with SAIGE's variance, the rest of the
    deflation being the model's own in so extreme a design (100 SNPs per chromosome); the
    default variance (the residuals' moments) takes that away too: 1.09."""
    pl = read_plink(simulate(tmp_path / "pc", n=600, m=300, special=False, seed=4))
    op, _, testable = _operator(pl)
    cc = _chrom_codes(pl)
    y, _ = _liability_cases(_dense_kernel(op, op.geno.chrom == 0), 0.3, seed=2, scale=4.0)
    x = np.ones((len(y), 1))
    rows = np.flatnonzero(testable)[::10]
    cal = _imputed(pl, snps=rows)
    full, _ = fit_null_binary_matfree(op, y, x, cal, n_probes=30, seed=1)
    lf = fit_loco_binary(op, full, np.array([0, 1, 2]), cal, cc[rows], score_variance="saige")
    lfm = fit_loco_binary(op, full, np.array([0, 1, 2]), cal, cc[rows])
    null = np.flatnonzero(testable & (cc > 0))
    g = _imputed(pl, snps=null)
    t = spa.score_tests(full, g)
    chi_full = t["score"] ** 2 / t["var"]
    chi_loco, chi_dense, chi_moments = (np.empty(len(null)) for _ in range(3))
    for c in (1, 2):
        on = cc[null] == c
        t = spa.score_tests(lf.models[c], g[:, on])
        chi_loco[on] = t["score"] ** 2 / t["var"]
        t = spa.score_tests(lfm.models[c], g[:, on])
        chi_moments[on] = t["score"] ** 2 / t["var"]
        dense = spa.fit_null_binary(
            _dense_kernel(op, op.geno.chrom != c), y, x, score_variance="saige"
        )
        t = spa.score_tests(dense, g[:, on])
        chi_dense[on] = t["score"] ** 2 / t["var"]
    print(chi_full.mean(), chi_loco.mean(), chi_dense.mean(), chi_moments.mean())
    assert full.tau > 1.0
    assert chi_full.mean() < 0.6
    assert chi_loco.mean() > chi_full.mean() + 0.2
    assert abs(chi_loco.mean() - chi_dense.mean()) < 0.05
    # the default variance (residual moments) takes away the model's own deflation too
    assert chi_loco.mean() < 0.9 and 0.9 < chi_moments.mean() < 1.3


def test_bad_input(cohort):
    pl, op, _, _, y, x = cohort
    few = np.zeros_like(y)
    few[:5] = 1.0
    with pytest.raises(DataError, match="5 cases and 495 controls.*at least 10"):
        fit_null_binary_matfree(op, few, x, np.ones((len(y), 2)))
    with pytest.raises(DataError, match="5 cases"):
        gwas(pl, few, binary=True, method="matrix-free", kinship="standardized",
             progress=False, plots=False)  # fmt: skip
    cal = _imputed(pl, snps=np.arange(10))
    with pytest.raises(ModelError, match=r"after 1 iterations.*raise max_cg_iter"):
        fit_null_binary_matfree(op, y, x, cal, cg_tol=1e-12, max_cg_iter=1)
    with pytest.raises(DataError, match="n x n matrix needs method='exact'"):
        gwas(pl, y, binary=True, method="matrix-free", kinship=np.eye(pl.n_samples),
             progress=False)  # fmt: skip


@pytest.mark.slow
def test_hs1940_matches_dense_path():
    """HS1940 (1,940 mice, strong relatedness), 10% cases of a liability with h2 = 0.5:
    matrix-free vs dense binary GWAS on the same standardized kinship.  The variance ratio
    is SAIGE's approximation, and it is at its worst on such a related cohort (ratio sd
    ~14% of its mean), so -log10 p agree to 0.03 in median and 1.0 at most."""
    from lmmkit.genetics.grm import compute_grm
    from lmmkit.genetics.gwas.matfree.binary_path import gwas_binary_matrix_free

    pl = read_plink(require_hs())
    k = compute_grm(pl, "standardized", progress=False).matrix
    y, _ = _liability_cases(k, 0.1, seed=5)
    kw = dict(kinship="standardized", binary=True, progress=False, plots=False)
    ex = gwas(pl, y, method="exact", **kw)
    mf = gwas_binary_matrix_free(pl, y, loco=False, kinship="standardized", progress=False,
                                 plots=False)  # fmt: skip
    a = ex.table.set_index("snp")
    b = mf.table.set_index("snp").loc[a.index]
    tau_ex, info = ex.null["all"]["tau"], mf.null["all"]
    assert abs(info["tau"] - tau_ex) < 3 * info["tau_mc_se"]
    la, lb = -np.log10(a["p_spa"]), -np.log10(b["p_spa"])
    assert np.median(np.abs(la - lb)) < 0.03
    assert np.max(np.abs(la - lb)) < 1.0
    assert np.mean(a["spa"] == b["spa"]) > 0.97
    assert 0.95 < mf.gc_lambda / ex.gc_lambda < 1.05

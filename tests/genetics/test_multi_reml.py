"""Multi-component AI-REML: brute-force dense REML, single-kernel GEMMA path, BOLT-REML."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from lmmkit.errors import DataError
from lmmkit.genetics.grm import compute_grm
from lmmkit.genetics.heritability import reml_heritability
from lmmkit.genetics.multi_reml import (
    epistasis_kernel,
    gxe_kernel,
    multi_reml,
    multi_reml_from_plink,
    reml_loglik,
    snp_set_grms,
)
from lmmkit.genetics.plink import read_pheno_file, read_plink

from ._genetics_helpers import require_eur

BOLT_REF = Path(__file__).resolve().parents[1] / "reference" / "genetics" / "bolt_reml_eur.json"


def _brute_loglik(y, x, kernels, s2):
    """REML log-likelihood written out directly (independent of the module's algebra)."""
    n, p = x.shape
    v = sum(s * k for s, k in zip(s2[:-1], kernels)) + s2[-1] * np.eye(n)
    vinv = np.linalg.inv(v)
    xvx = x.T @ vinv @ x
    pmat = vinv - vinv @ x @ np.linalg.solve(xvx, x.T @ vinv)
    return -0.5 * (
        (n - p) * np.log(2 * np.pi)
        + np.linalg.slogdet(v)[1]
        + np.linalg.slogdet(xvx)[1]
        - np.linalg.slogdet(x.T @ x)[1]
        + y @ pmat @ y
    )


def _brute_fit(y, x, kernels, start, bounds=None):
    """Maximize the direct REML likelihood with scipy (L-BFGS-B, then Nelder-Mead/Powell)."""
    r = len(kernels) + 1
    if bounds is None:  # interior: optimize log-variances

        def f(t):
            return -_brute_loglik(y, x, kernels, np.exp(t))

        t = optimize.minimize(f, np.log(start), method="BFGS", options={"gtol": 1e-9}).x
        res = optimize.minimize(
            f,
            t,
            method="Nelder-Mead",
            options={"xatol": 1e-11, "fatol": 1e-14, "maxiter": 40000},
        )
        return np.exp(res.x), -res.fun

    def g(s):
        try:
            np.linalg.cholesky(sum(v * k for v, k in zip(s[:-1], kernels)) + s[-1] * np.eye(len(y)))
        except np.linalg.LinAlgError:
            return 1e10
        return -_brute_loglik(y, x, kernels, s)

    b = [(0.0, None)] * r
    res = optimize.minimize(
        g,
        start,
        method="L-BFGS-B",
        bounds=b,
        options={"ftol": 1e-16, "gtol": 1e-11, "maxiter": 20000},
    )
    res = optimize.minimize(
        g,
        res.x,
        method="Powell",
        bounds=b,
        options={"xtol": 1e-12, "ftol": 1e-15, "maxiter": 40000},
    )
    return res.x, -res.fun


def _sim(seed=1, n=150, m=300):
    rng = np.random.default_rng(seed)
    g = rng.binomial(2, rng.uniform(0.1, 0.5, m), (n, m)).astype(float)
    z = (g - g.mean(0)) / g.std(0)
    h = m // 2
    k1 = z[:, :h] @ z[:, :h].T / h
    k2 = z[:, h:] @ z[:, h:].T / (m - h)
    x = rng.normal(size=(n, 2))
    return rng, k1, k2, x


def test_two_grms_match_brute_force_reml():
    rng, k1, k2, x = _sim(1)
    n = len(x)
    cov = 0.6 * k1 + 0.4 * k2 + 0.5 * np.eye(n)
    y = 1.0 + x @ [0.5, -0.2] + rng.multivariate_normal(np.zeros(n), cov)
    fit = multi_reml(y, {"a": k1, "b": k2}, x)
    assert fit.converged and fit.steps[0] == "EM" and "AI" in fit.steps
    x1 = np.column_stack([np.ones(n), x])
    s2, ll = _brute_fit(y, x1, [k1, k2], fit.sigma2 * 1.2)
    np.testing.assert_allclose(fit.sigma2, s2, atol=1e-6, rtol=0)
    assert abs(fit.logl_reml - ll) < 1e-6
    assert abs(fit.logl_reml - _brute_loglik(y, x1, [k1, k2], fit.sigma2)) < 1e-8
    assert abs(reml_loglik(y, [k1, k2], fit.sigma2, x) - fit.logl_reml) < 1e-8
    # GCTA proportions and their SEs (delta method on the inverse AI matrix)
    assert fit.vp == pytest.approx(fit.sigma2.sum())
    np.testing.assert_allclose(fit.h2, fit.sigma2[:2] / fit.vp)
    assert fit.h2_total == pytest.approx(fit.h2.sum())
    assert np.all(fit.sigma2_se > 0) and np.all(fit.h2_se > 0)
    # the AI matrix written out: 1/2 y'P K_i P K_j P y at the estimates
    v = fit.sigma2[0] * k1 + fit.sigma2[1] * k2 + fit.sigma2[2] * np.eye(n)
    vinv = np.linalg.inv(v)
    p = vinv - vinv @ x1 @ np.linalg.solve(x1.T @ vinv @ x1, x1.T @ vinv)
    py = p @ y
    ks = [k1, k2, np.eye(n)]
    ai = np.array([[0.5 * (ki @ py) @ p @ (kj @ py) for kj in ks] for ki in ks])
    np.testing.assert_allclose(fit.sigma2_se, np.sqrt(np.diag(np.linalg.inv(ai))), rtol=1e-6)
    tab = fit.table()
    assert list(tab["source"])[:4] == ["V(a)", "V(b)", "V(residual)", "Vp"]
    assert "sum of V(G)/Vp" in fit.summary()


def test_boundary_component_fixed_at_zero_matches_bounded_brute_force():
    rng, k1, k2, x = _sim(10)
    n = len(x)
    env = rng.normal(size=n)
    kg = gxe_kernel(k1, env)
    y = x @ [0.3, 0.1] + rng.multivariate_normal(np.zeros(n), 0.8 * k1 + 0.6 * np.eye(n))
    fit = multi_reml(y, {"G": k1, "G2": k2, "GxE": kg}, x)
    x1 = np.column_stack([np.ones(n), x])
    s2, ll = _brute_fit(y, x1, [k1, k2, kg], np.array([0.5, 0.1, 0.1, 0.5]), bounds=True)
    assert fit.converged
    assert any(fit.fixed_at_zero)
    np.testing.assert_allclose(fit.sigma2, s2, atol=1e-6, rtol=0)
    assert fit.logl_reml >= ll - 1e-7
    for j, f in enumerate(fit.fixed_at_zero):
        if f:
            assert fit.sigma2[j] == 0.0 and np.isnan(fit.sigma2_se[j])
    assert "constrained at 0" in fit.summary()


def test_epistasis_kernel_three_components_match_brute_force():
    rng, k1, _, x = _sim(3, n=120)
    n = len(x)
    kk = epistasis_kernel(k1)
    np.testing.assert_allclose(kk, k1 * k1)
    y = rng.multivariate_normal(np.zeros(n), 0.7 * k1 + 0.5 * kk + 0.4 * np.eye(n))
    fit = multi_reml(y, [k1, kk], x, names=["A", "AxA"])
    x1 = np.column_stack([np.ones(n), x])
    # K o K has a large identity-like part: here the optimum puts the residual at 0
    s2, ll = _brute_fit(y, x1, [k1, kk], np.array([0.5, 0.5, 0.5]), bounds=True)
    assert fit.converged
    np.testing.assert_allclose(fit.sigma2, s2, atol=1e-6, rtol=0)
    assert abs(fit.logl_reml - ll) < 1e-6
    assert fit.fixed_at_zero == (False, False, True)


def test_single_kernel_reproduces_gemma_style_reml():
    rng, k1, _, x = _sim(4)
    n = len(x)
    y = x @ [1.0, 0.0] + rng.multivariate_normal(np.zeros(n), 0.5 * k1 + np.eye(n))
    h = reml_heritability(y, k1, x, center_kernel=False)
    fit = multi_reml(y, [k1], x)
    assert fit.sigma2[0] == pytest.approx(h.vg, rel=1e-6)
    assert fit.sigma2[1] == pytest.approx(h.ve, rel=1e-6)
    assert fit.logl_reml == pytest.approx(h.logl_reml, abs=1e-7)
    assert fit.logl_reml_null == pytest.approx(h.logl_reml_null, abs=1e-7)
    np.testing.assert_allclose(fit.beta, h.beta, rtol=1e-5, atol=1e-8)


def test_missing_values_dropped_and_errors():
    rng, k1, k2, x = _sim(5, n=80, m=100)
    y = rng.normal(size=80)
    y[3] = np.nan
    fit = multi_reml(y, [k1, k2], x)
    assert fit.n == 79
    with pytest.raises(DataError, match="kernel"):
        multi_reml(y[:50], [k1], x[:50])
    with pytest.raises(DataError, match="at least one kernel"):
        multi_reml(y, [], x)
    with pytest.raises(DataError, match="names"):
        multi_reml(y, [k1, k2], x, names=["a"])
    with pytest.raises(DataError, match="init"):
        multi_reml(y, [k1], x, init=[1.0, -1.0])
    with pytest.raises(DataError, match="rank deficient"):
        multi_reml(y, [k1], np.column_stack([x[:, 0], x[:, 0]]))
    with pytest.raises(DataError, match="values"):
        gxe_kernel(k1, np.ones(3))


def test_snp_set_grms_equal_compute_grm_per_set():
    prefix = require_eur()
    pl = read_plink(prefix)
    samples = np.arange(0, 379, 3)
    sel = np.arange(0, pl.n_snps, 25)
    chrom = pl.bim["chrom"].astype(int).to_numpy()
    groups = {"lo": sel[chrom[sel] <= 19], "hi": sel[chrom[sel] > 19]}
    grms = snp_set_grms(pl, groups, samples=samples)
    for name, idx in groups.items():
        ref = compute_grm(pl, "standardized", snps=idx, samples=samples, gemma_filter=False)
        # QC (max missing 10%, single genotype class) may drop a few SNPs; compare on
        # the same SNPs then
        if grms[name].n_snps == ref.n_snps:
            np.testing.assert_allclose(grms[name].matrix, ref.matrix, atol=1e-10)
        else:
            assert grms[name].n_snps < ref.n_snps
    labels = np.where(chrom <= 19, "lo", "hi").astype(object)
    labels[np.setdiff1d(np.arange(pl.n_snps), sel)] = None
    grms2 = snp_set_grms(pl, labels, samples=samples)
    for name in groups:
        np.testing.assert_allclose(grms2[name].matrix, grms[name].matrix, atol=1e-12)
    with pytest.raises(DataError, match="overlaps"):
        snp_set_grms(pl, {"a": sel, "b": sel[:5]}, samples=samples)


def test_bolt_reml_two_components_eur_subset():
    prefix = require_eur()
    if not BOLT_REF.exists():
        pytest.skip(f"frozen BOLT-REML reference {BOLT_REF} missing; run make_bolt_reference.sh")
    ref = json.loads(BOLT_REF.read_text())
    pl = read_plink(prefix)
    ph = read_pheno_file(f"{prefix}.pheno2.covars")
    groups = np.where(pl.bim["chrom"].astype(int) <= 19, "chr17_19", "chr20_22")
    fit = multi_reml_from_plink(pl, ph["PHENO"], groups, ph[["QCOV1", "QCOV2", "CAT_COV"]])
    assert fit.n == ref["n_used"]
    assert fit.converged
    ours = dict(zip(fit.names, [*fit.h2, fit.sigma2[-1] / fit.vp]))
    for name, h in ref["h2"].items():
        assert abs(ours[name] - h) < ref["h2_se"][name], (name, ours[name], h)
    vp, vp_se = ref["sigma2_pheno"]
    assert abs(fit.vp - vp) < vp_se
    # SEs of the same order as BOLT's (both from an AI matrix)
    for j, name in enumerate(fit.names[:-1]):
        assert 0.5 < fit.h2_se[j] / ref["h2_se"][name] < 2.0


def test_multi_reml_from_plink_sample_ids_align():
    prefix = require_eur()
    pl = read_plink(prefix)
    ph = read_pheno_file(f"{prefix}.pheno2.covars")
    chrom = pl.bim["chrom"].astype(int).to_numpy()
    sel = np.arange(0, pl.n_snps, 10)
    groups = {"c17": sel[chrom[sel] == 17], "rest": sel[chrom[sel] != 17]}
    fit = multi_reml_from_plink(pl, ph["PHENO"], groups, ph[["QCOV1"]])
    assert isinstance(fit.sample_ids, pd.DataFrame) and len(fit.sample_ids) == fit.n
    assert fit.covariate_names == ("intercept", "QCOV1")


@pytest.mark.slow
def test_one_kernel_hs1940_matches_gemma_and_two_kernels_sum_close():
    """HS1940 CD8 (n = 1,410): one centered kinship reproduces GEMMA -lmm's null model."""
    from ._genetics_helpers import reference, require_hs

    prefix = require_hs()
    ref = reference()["gemma_lmm_n1"]
    pl = read_plink(prefix)
    y = pl.phenotype(1)
    ok = np.flatnonzero(np.isfinite(y))
    grm = compute_grm(pl, "centered", filter_samples=ok).subset(ok)
    k = grm.matrix - grm.matrix.mean(0)[None, :]
    k = k - k.mean(1)[:, None]
    fit = multi_reml(y[ok], [k])
    assert fit.sigma2[0] == pytest.approx(ref["vg"], rel=2e-5)
    assert fit.sigma2[1] == pytest.approx(ref["ve"], rel=2e-5)
    assert fit.logl_reml == pytest.approx(ref["logl_reml"], abs=0.01)
    # split the SNPs by chromosome parity: two kernels, total h2 close to the one-kernel fit
    chrom = pd.to_numeric(pl.bim["chrom"], errors="coerce").fillna(0).to_numpy()
    groups = {"odd": np.flatnonzero(chrom % 2 == 1), "even": np.flatnonzero(chrom % 2 == 0)}
    two = multi_reml_from_plink(pl, 1, groups)
    one = multi_reml_from_plink(pl, 1, {"all": np.arange(pl.n_snps)})
    assert two.converged and two.logl_reml >= one.logl_reml - 1e-6
    assert abs(two.h2_total - one.h2_total) < 2 * one.h2_se[0]

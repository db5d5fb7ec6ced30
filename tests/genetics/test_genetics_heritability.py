"""REML heritability: GEMMA anchors on HS1940, invariances, and a brute-force dense check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from lmmkit.errors import DataError
from lmmkit.genetics.heritability import heritability_from_plink, reml_heritability
from tests.genetics._genetics_helpers import reference, require_hs

RTOL = 1e-4


def _simulate(n=120, m=400, h2=0.5, seed=7, n_cov=1):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.1, 0.5, m)
    g = rng.binomial(2, p, size=(n, m)).astype(float)
    z = (g - g.mean(0)) / g.std(0)
    k = z @ z.T / m
    u = z @ rng.normal(0, np.sqrt(h2 / m), m)
    x = rng.normal(size=(n, n_cov))
    y = 1.0 + x @ np.arange(1, n_cov + 1) * 0.3 + u + rng.normal(0, np.sqrt(1 - h2), n)
    return y, k, x


def _check_gemma(res, ref):
    for ours, theirs in [
        (res.h2, ref["pve"]),
        (res.h2_se, ref["pve_se"]),
        (res.vg, ref["vg"]),
        (res.ve, ref["ve"]),
        (res.logl_reml, ref["logl_reml"]),
        (res.logl_ml, ref["logl_ml"]),
        (res.beta_se[0], ref["beta_se"]),
    ]:
        assert ours == pytest.approx(theirs, rel=RTOL)
    assert res.n == ref["n_analyzed"]
    assert abs(res.beta[0]) < 1e-10


def test_hs1940_cd8_matches_gemma():
    require_hs()
    ref = reference()["gemma_lmm_n1"]
    assert ref["pve"] == 0.609672 and ref["logl_reml"] == -1584.07
    res = heritability_from_plink(require_hs(), pheno_fam=1, blas_threads=1)
    _check_gemma(res, ref)
    assert res.normalization == "centered"
    assert res.lrt_pvalue < 1e-100
    assert "0.609672" in res.summary()


@pytest.mark.slow
def test_hs1940_mch_matches_gemma():
    ref = reference()["gemma_lmm_n6"]
    res = heritability_from_plink(require_hs(), pheno_fam=6, blas_threads=1)
    _check_gemma(res, ref)


def _dense_reml(y, k, x):
    """Direct REML over (Vg, Ve) with V = Vg K + Ve I (no eigendecomposition)."""
    n, c = x.shape
    logdet_xx = np.linalg.slogdet(x.T @ x)[1]

    def negll(t):
        vg, ve = np.exp(t)
        v = vg * k + ve * np.eye(n)
        vi = np.linalg.inv(v)
        xvx = x.T @ vi @ x
        beta = np.linalg.solve(xvx, x.T @ vi @ y)
        r = y - x @ beta
        return 0.5 * (
            (n - c) * np.log(2 * np.pi)
            + np.linalg.slogdet(v)[1]
            + np.linalg.slogdet(xvx)[1]
            - logdet_xx
            + r @ vi @ r
        )

    best = min(
        (
            optimize.minimize(
                negll,
                x0,
                method="Nelder-Mead",
                options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000},
            )
            for x0 in ([0.0, 0.0], [-1.0, 0.5])
        ),
        key=lambda r: r.fun,
    )
    vg, ve = np.exp(best.x)
    v = vg * k + ve * np.eye(n)
    vi = np.linalg.inv(v)
    beta = np.linalg.solve(x.T @ vi @ x, x.T @ vi @ y)
    blup = vg * k @ vi @ (y - x @ beta)
    return vg, ve, -best.fun, blup


def test_equals_brute_force_dense_reml():
    y, k, x = _simulate(n=80, m=300, n_cov=2)
    res = reml_heritability(y, k, x, center_kernel=False)
    vg, ve, ll, blup = _dense_reml(y, k, np.column_stack([np.ones(len(y)), x]))
    assert res.vg == pytest.approx(vg, rel=1e-5)
    assert res.ve == pytest.approx(ve, rel=1e-5)
    assert res.logl_reml == pytest.approx(ll, rel=1e-9)
    np.testing.assert_allclose(res.blup, blup, rtol=1e-4, atol=1e-6)
    # centering K does not change REML when there is an intercept
    rc = reml_heritability(y, k, x, center_kernel=True)
    assert rc.logl_reml == pytest.approx(res.logl_reml, rel=1e-10)
    assert rc.vg == pytest.approx(res.vg, rel=1e-6)


def test_pve_se_is_delta_method_of_observed_information():
    y, k, x = _simulate(n=100, m=300, seed=11)
    res = reml_heritability(y, k)
    from lmmkit.genetics.heritability import _RotatedModel

    kc = k - k.mean(0)
    kc = kc - kc.mean(1)[:, None]
    s, u = np.linalg.eigh(kc)
    m = _RotatedModel(
        np.clip(s, 0, None), u.T @ y, u.T @ np.ones((len(y), 1)), np.ones((len(y), 1))
    )
    h = 1e-4 * res.lam
    d2 = (m.reml(res.lam + h) - 2 * m.reml(res.lam) + m.reml(res.lam - h)) / h**2
    assert res.lam_se == pytest.approx(np.sqrt(-1 / d2), rel=1e-4)
    tr = res.trace_k
    assert res.h2_se == pytest.approx(tr / (tr * res.lam + 1) ** 2 * res.lam_se, rel=1e-12)


def test_invariant_to_scaling_y_and_sample_order():
    y, k, x = _simulate(seed=3)
    base = reml_heritability(y, k, x)
    scaled = reml_heritability(10.0 * y - 3.0, k, x)
    assert scaled.h2 == pytest.approx(base.h2, rel=1e-6)
    assert scaled.vg == pytest.approx(100 * base.vg, rel=1e-6)
    assert scaled.ve == pytest.approx(100 * base.ve, rel=1e-6)
    perm = np.random.default_rng(0).permutation(len(y))
    pr = reml_heritability(y[perm], k[np.ix_(perm, perm)], x[perm])
    assert pr.h2 == pytest.approx(base.h2, rel=1e-6)
    assert pr.logl_reml == pytest.approx(base.logl_reml, rel=1e-10)
    np.testing.assert_allclose(pr.blup, base.blup[perm], rtol=1e-5, atol=1e-8)


def test_lrt_and_missing_values():
    y, k, x = _simulate(seed=5, h2=0.0)
    res = reml_heritability(y, k, x)
    assert res.lrt_stat == pytest.approx(max(0, 2 * (res.logl_reml - res.logl_reml_null)))
    if res.lrt_stat > 0:
        assert res.lrt_pvalue == pytest.approx(0.5 * stats.chi2.sf(res.lrt_stat, 1))
    y2 = y.copy()
    y2[:5] = np.nan
    r2 = reml_heritability(y2, k, pd.DataFrame({"age": x[:, 0]}))
    assert r2.n == len(y) - 5 and r2.covariate_names == ("intercept", "age")
    r3 = reml_heritability(y[5:], k[5:, 5:], x[5:])
    assert r2.h2 == pytest.approx(r3.h2, rel=1e-8)


def test_heritability_input_errors():
    y, k, x = _simulate(n=30, m=50)
    with pytest.raises(DataError, match="constant"):
        reml_heritability(np.ones(30), k)
    with pytest.raises(DataError, match="kinship is 30x30 but y has 29"):
        reml_heritability(y[:29], k)
    bad = k.copy()
    bad[0, 0] = -50
    with pytest.raises(DataError, match="positive semi-definite"):
        reml_heritability(y, bad)
    with pytest.raises(DataError, match="rank deficient"):
        reml_heritability(y, k, np.column_stack([x, 2 * x]))


def test_eur_subset_pheno_file_covariates_end_to_end():
    from lmmkit.genetics.grm import compute_grm
    from lmmkit.genetics.plink import match_samples, read_pheno_file, read_plink
    from tests.genetics._genetics_helpers import require_eur

    eur = require_eur()
    pl = read_plink(eur)
    tab = read_pheno_file(str(eur) + ".pheno2.covars")
    keep, rep = match_samples(pl.fam, tab["PHENO"], tab[["QCOV1", "QCOV2"]])
    grm = compute_grm(pl, "standardized", samples=keep, gemma_filter=False, block_size=10000)
    aligned = tab.reindex(pd.MultiIndex.from_frame(grm.sample_ids))
    res = reml_heritability(aligned["PHENO"], grm, aligned[["QCOV1", "QCOV2"]], blas_threads=1)
    assert res.n == rep.n_kept
    assert 0.0 <= res.h2 <= 1.0 and res.covariate_names == ("intercept", "QCOV1", "QCOV2")
    assert res.blup.shape == (res.n,)
    assert "QCOV1" in res.summary()

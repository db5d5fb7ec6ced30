"""Every REML path handles a variance at its boundary and says so (issue 25 item 1): the
multi-kernel AI-REML with the residual at 0 (h2 near 1, kernels centred on the samples,
covariates), the single-kernel REML and the GWAS null model with lambda at a search bound;
both REML log-likelihood conventions; the LRT line's p-value."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import linalg, optimize

from lmmkit.errors import LmmkitWarning
from lmmkit.genetics.gwas import gwas
from lmmkit.genetics.heritability import reml_heritability
from lmmkit.genetics.multi_reml import multi_reml, multi_reml_from_plink, snp_set_grms
from lmmkit.genetics.plink import read_plink

from ._genetics_helpers import simulate_genotypes, write_plink


def _contrast_loglik(y, x, kernels, s2):
    """REML logL of Q'y ~ N(0, Q'VQ) (Q: orthonormal complement of X), GEMMA's constant;
    defined with the residual at 0 as long as Q'VQ is positive definite."""
    q = linalg.null_space(x.T)
    v = sum(s * (q.T @ k @ q) for s, k in zip(s2[:-1], kernels)) + s2[-1] * np.eye(q.shape[1])
    yt = q.T @ y
    c = np.linalg.cholesky(v)
    a = np.linalg.solve(c, yt)
    return -0.5 * (len(yt) * np.log(2 * np.pi) + 2 * np.log(np.diag(c)).sum() + a @ a)


def _h2_one(seed, n=200, m=400):
    """A trait with h2 = 1 on a kernel centred on the samples (K 1 = 0), two covariates."""
    rng = np.random.default_rng(seed)
    g = rng.binomial(2, rng.uniform(0.1, 0.5, m), (n, m)).astype(float)
    z = (g - g.mean(0)) / g.std(0)
    k = z @ z.T / m
    x = rng.normal(size=(n, 2))
    w, u = np.linalg.eigh(k)
    y = 1.0 + x @ [0.5, -0.3] + u @ (np.sqrt(np.clip(w, 0, None)) * rng.normal(size=n))
    return k, x, y


@pytest.mark.parametrize("seed", [0, 2, 3])
def test_residual_at_zero_is_the_optimum_found_and_said(seed):
    k, x, y = _h2_one(seed)
    with pytest.warns(LmmkitWarning, match="residual variance is at its boundary 0"):
        fit = multi_reml(y, [k], x)  # was: V(G) 1e21..1e27, NOT converged, no word
    assert fit.converged and fit.fixed_at_zero == (False, True)
    assert fit.sigma2[1] == 0.0 and fit.h2[0] == 1.0
    x1 = np.column_stack([np.ones(len(y)), x])
    # the bounded maximum of the likelihood written out on the error contrasts
    res = optimize.minimize_scalar(
        lambda t: -_contrast_loglik(y, x1, [k], [np.exp(t), 0.0]), bounds=(-5, 3),
        method="bounded", options={"xatol": 1e-10},
    )  # fmt: skip
    assert fit.sigma2[0] == pytest.approx(np.exp(res.x), rel=1e-5)
    assert fit.logl_reml == pytest.approx(-res.fun, abs=1e-7)
    for se in (1e-3, 1e-2):  # moving the residual off 0 lowers the likelihood
        best = optimize.minimize_scalar(
            lambda t, se=se: -_contrast_loglik(y, x1, [k], [np.exp(t), se]), bounds=(-5, 3),
            method="bounded",
        )  # fmt: skip
        assert -best.fun < fit.logl_reml
    assert "residual variance is at its boundary 0" in fit.summary()
    assert fit.fixed_effects_at_limit and np.all(np.isfinite(fit.beta))


@pytest.fixture(scope="module")
def plink_h2_near_one(tmp_path_factory):
    n, m = 160, 360
    g = simulate_genotypes(n, m, seed=5, missing=0.0)
    bim = [f"{1 + j // 120} rs{j} 0 {1000 + j} A G" for j in range(m)]
    pl = read_plink(write_plink(tmp_path_factory.mktemp("h") / "h", g, bim_rows=bim))
    keys = pd.MultiIndex.from_frame(pl.fam[["fid", "iid"]].astype(str))
    k = snp_set_grms(pl, {"all": np.arange(m)})["all"].matrix
    w, u = np.linalg.eigh(k)

    def trait(seed):
        rng = np.random.default_rng(seed)
        cov = pd.DataFrame(rng.normal(size=(n, 2)), columns=["q1", "q2"], index=keys)
        y = 0.3 * cov["q1"].to_numpy() + u @ (np.sqrt(np.clip(w, 0, None)) * rng.normal(size=n))
        return pd.Series(y, index=keys, name="y"), cov

    return pl, trait


def test_multi_reml_from_plink_residual_at_zero_one_and_three_kernels(plink_h2_near_one):
    """The issue's case: multi_reml_from_plink, h2 near 1, two quantitative covariates (on
    today's code: DataError 'V is not positive definite' / LinAlgError)."""
    pl, trait = plink_h2_near_one
    ph, cov = trait(10)
    for groups in ({"all": np.arange(pl.n_snps)}, pl.bim["chrom"].astype(str).tolist()):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            fit = multi_reml_from_plink(pl, ph, groups, cov)
        assert fit.converged and fit.fixed_at_zero[-1] and fit.sigma2[-1] == 0.0
        assert fit.h2_total == pytest.approx(1.0)
        assert any("residual variance is at its boundary 0" in str(r.message) for r in rec)
        assert "note: the residual variance is at its boundary 0" in fit.summary()


def test_multi_reml_from_plink_three_kernels_near_the_boundary(plink_h2_near_one):
    """Seed 9 with three kernels: today numpy.linalg.LinAlgError ('2-th leading minor');
    now the bounded optimum of the likelihood written out on the error contrasts."""
    pl, trait = plink_h2_near_one
    ph, cov = trait(9)
    groups = pl.bim["chrom"].astype(str).tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LmmkitWarning)
        fit = multi_reml_from_plink(pl, ph, groups, cov)
    assert fit.converged
    grms = snp_set_grms(pl, groups)
    ks = [grms[c].matrix for c in ("1", "2", "3")]
    x1 = np.column_stack([np.ones(pl.n_samples), cov.to_numpy()])
    y = ph.to_numpy()

    def negll(s):
        try:
            return -_contrast_loglik(y, x1, ks, s)
        except np.linalg.LinAlgError:
            return 1e10

    best = optimize.minimize(
        negll, fit.sigma2 * 0.8 + 0.01, method="L-BFGS-B", bounds=[(0, None)] * 4,
        options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 5000},
    )  # fmt: skip
    assert fit.logl_reml >= -best.fun - 1e-6
    assert fit.logl_reml == pytest.approx(_contrast_loglik(y, x1, ks, fit.sigma2), abs=1e-8)


def test_single_kernel_reml_says_which_variance_is_at_its_bound():
    k, x, y = _h2_one(0)
    with pytest.warns(LmmkitWarning, match="Ve at its boundary 0"):
        fit = reml_heritability(y, k, x)
    assert "Ve at its boundary 0" in fit.boundary and "note: Ve at its boundary" in fit.summary()
    with pytest.warns(LmmkitWarning, match="Vg at its boundary 0"):
        null = reml_heritability((np.arange(len(y)) % 7).astype(float), k, x)
    assert null.boundary.startswith("Vg at its boundary 0")


def test_gwas_null_model_at_its_bound_is_in_the_log(tmp_path):
    n, m = 100, 150
    g = simulate_genotypes(n, m, seed=2)
    y = np.tile([0.0, 1.0, 2.0, 3.0], n // 4)  # unrelated to the genotypes: Vg -> 0
    prefix = write_plink(tmp_path / "n", g, fam_rows=[f"F{i} I{i} 0 0 1 {y[i]}" for i in range(n)])
    with pytest.warns(LmmkitWarning, match=r"null model \[all\]: Vg at its boundary 0"):
        res = gwas(prefix, 1, progress=False, out=tmp_path / "n.tsv", plots=False)
    assert "Vg at its boundary 0" in res.null["all"]["boundary"]
    assert "Vg at its boundary 0" in (tmp_path / "n.tsv.log").read_text()


def test_both_reml_loglik_conventions_and_lrt_p_value():
    rng = np.random.default_rng(3)
    n = 120
    z = rng.normal(size=(n, 200))
    k = z @ z.T / 200
    x = rng.normal(size=(n, 2))
    y = x @ [1.0, 2.0] + rng.multivariate_normal(np.zeros(n), 0.6 * k + np.eye(n))
    x1 = np.column_stack([np.ones(n), x])
    half_logdet_xx = 0.5 * np.linalg.slogdet(x1.T @ x1)[1]
    h = reml_heritability(y, k, x, center_kernel=False)
    assert h.logl_reml - h.logl_reml_lme4 == pytest.approx(half_logdet_xx, rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LmmkitWarning)
        f = multi_reml(y, [k], x)
    assert f.logl_reml - f.logl_reml_lme4 == pytest.approx(half_logdet_xx, rel=1e-12)
    # lme4's REML criterion of the same model: -2 logL without 1/2 log|X'X| (written out)
    v = f.sigma2[0] * k + f.sigma2[1] * np.eye(n)
    vinv = np.linalg.inv(v)
    xvx = x1.T @ vinv @ x1
    p = vinv - vinv @ x1 @ np.linalg.solve(xvx, x1.T @ vinv)
    lme4 = -0.5 * ((n - 3) * np.log(2 * np.pi) + np.linalg.slogdet(v)[1]
                   + np.linalg.slogdet(xvx)[1] + y @ p @ y)  # fmt: skip
    assert f.logl_reml_lme4 == pytest.approx(lme4, abs=1e-8)
    text = f.summary()
    assert "REML logL (lme4)" in text and "GEMMA/FaST-LMM" in text
    lrt = next(line for line in text.splitlines() if line.strip().startswith("LRT"))
    assert "p = " in lrt  # was: the statistic only
    assert "iterations" in text and "EM, EM" not in text  # step counts, not a list

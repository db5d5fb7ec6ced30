"""Why the binary GWAS is deflated at large tau n / M, on data with nothing else going on (issue 17).

    .venv/bin/python benchmarks/binary_dispersion_check.py --seeds 1 2 3
    .venv/bin/python benchmarks/binary_dispersion_check.py --hs1940 --seeds 1 2
    .venv/bin/python benchmarks/binary_dispersion_check.py --n 2000 --m 1000 --h2 0.5 --prevalence 0.3 --matfree

The 50,000-sample binary runs of ``scale_gwas.py binary`` gave lambda GC 0.915 on SNPs without
effect.  Synthetic mode (default) removes LD, population structure and LOCO altogether:
``--n`` samples, ``--m`` independent kinship SNPs (K = Z Z' / M, standardized) carrying a
liability with h2 = ``--h2`` whose top ``--prevalence`` are the cases, and ``--tests`` further
independent SNPs without effect.  ``--hs1940``: the real HS1940 mice, K their centered
kinship, a liability g + e with g ~ N(0, s2 K) (h2 0.5, as gwas_binary_calibration.py), half
of them cases (``--prevalence``), every other SNP with MAF > 0.05 tested (the tested SNPs lie inside the
kinship and its population structure).

Each replicate fits the logistic mixed null model as SAIGE and GMMAT do (PQL / AI-REML,
dispersion fixed at 1: ``lmmkit.genetics.spa.fit_null_binary``) and scores the SNPs
(T = g~'(y - mu), Var = g~'P g~, ``spa.score_tests``'s formulas).  Reported: lambda GC with
that variance (``fixed``); the residuals' dispersion c = sum (y - mu)^2 / tr(P) (for SNPs
independent of y and of K, E[T^2 | y] / E[Var] is exactly c) and lambda with every variance
scaled by it (``global``); and a per-SNP version that rescales only the binomial part of the
working covariance, Var = g~'P g~ - (1 - phi) g~'P W^-1 P g~ with phi = 1 - (tr P - r'r) /
tr(P W^-1 P) (``per_snp``; the same c for SNPs outside K's span, little change for SNPs along
K's large eigenvalues).  Synthetic mode also runs the plain logistic score test (tau = 0)
and the linear mixed model on the 0/1 trait (BOLT-LMM's way, ``lmmkit.gwas`` Wald test), the
calibrated references; with ``--two-component`` also the working model whose dispersion is
estimated along with tau (MASS::glmmPQL's, :func:`two_component`).

``moments`` is lmmkit's default since 2026-12-08 (``score_variance="moments"``,
:mod:`lmmkit.genetics.spa`): T unchanged, Var(T) = g~'C g~ with the residual covariance
C = a P W^-1 P + b P K P fitted by moments from r'r and r'K r.  ``--matfree`` (synthetic)
also runs ``gwas(binary=True, method="matrix-free")`` on the same data (kinship SNPs on
chromosome 1, tested SNPs on chromosome 2, so its LOCO model of chromosome 2 has the same
K) under both variances.  Results: ``benchmarks/_data/binary_dispersion_<mode>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
HS = HERE.parent.parent / "shared" / "data" / "genetics" / "mouse_hs1940"


def _lambda(chi2: np.ndarray) -> float:
    return float(np.median(chi2) / 0.454936423119572)


def variances(k: np.ndarray | None, y: np.ndarray, g: np.ndarray) -> dict:
    """The fixed-dispersion null model of y on K (intercept only; None: logistic regression)
    and lambda GC of the
    score tests of the centered genotypes ``g`` under the three variances (module docstring)."""
    from lmmkit.genetics import spa

    x = np.ones((len(y), 1))
    m = spa.fit_null_binary(k, y, x, score_variance="saige")
    p, w, r = m.proj, m.mu * (1.0 - m.mu), y - m.mu
    pwp = p @ (p / w[:, None])
    c = float(r @ r / np.trace(p))
    phi = float(1.0 - (np.trace(p) - r @ r) / np.trace(pwp))
    gt = g - x @ (m.adjust @ g)
    t2 = (gt.T @ r) ** 2
    v1 = np.einsum("ij,ij->j", gt, p @ gt)
    v2 = np.einsum("ij,ij->j", gt, pwp @ gt)
    out = {}
    if k is not None:
        mm = spa.fit_null_binary(k, y, x)
        res = spa.score_tests(mm, g)
        out = {"lambda_moments": _lambda(res["score"] ** 2 / res["var"]),
               "moments_a": mm.moments[0], "moments_b_over_tau": mm.moments[1] / mm.tau}  # fmt: skip
    return {"tau": float(m.tau), "c": c, "phi": phi, **out,
            "lambda_fixed": _lambda(t2 / v1), "lambda_global": _lambda(t2 / (c * v1)),
            "lambda_per_snp": _lambda(t2 / (v1 - (1.0 - phi) * v2)),
            "median_v2_over_v1": float(np.median(v2 / v1))}  # fmt: skip


def two_component(k: np.ndarray, y: np.ndarray, g: np.ndarray) -> dict:
    """The working model with its dispersion estimated along with tau (MASS::glmmPQL's):
    Y ~ N(X a, phi (W^-1 + t K)) by REML at every PQL step (t by a bounded search of the
    profile, phi = Y'P_1 Y / (n - c) in closed form); the score test is then
    (g'P_1 Y)^2 / (phi g'P_1 g).  Returns tau = t phi, phi and lambda GC."""
    from scipy import linalg, optimize

    from lmmkit.genetics import spa

    n = len(y)
    x = np.ones((n, 1))

    def profile(w, yw):
        def negll(lt):
            fac = linalg.cho_factor(np.diag(1.0 / w) + np.exp(lt) * k, lower=True)
            sx, sy = linalg.cho_solve(fac, x), linalg.cho_solve(fac, yw)
            xsx = x.T @ sx
            r = yw - x @ np.linalg.solve(xsx, x.T @ sy)
            q = r @ linalg.cho_solve(fac, r)
            logdet = 2.0 * np.sum(np.log(np.diag(fac[0])))
            return 0.5 * ((n - 1) * np.log(q / (n - 1)) + logdet + np.linalg.slogdet(xsx)[1])

        t = float(np.exp(optimize.minimize_scalar(negll, bounds=(-8, 4), method="bounded").x))
        proj, _, py, _, _ = spa._working_pieces(k, w, t, x, yw)
        return t, float(yw @ py / (n - 1)), proj, py

    m0 = spa.fit_null_binary(k, y, x, score_variance="saige")
    eta, mu = m0.eta.copy(), m0.mu.copy()
    for _ in range(60):
        w = np.maximum(mu * (1.0 - mu), 1e-12)
        yw = eta + (y - mu) / w
        t, phi, proj, py = profile(w, yw)
        new = yw - py / w
        done = np.max(np.abs(new - eta)) < 1e-6
        eta, mu = new, spa._expit(new)
        if done:
            break
    chi2 = (g.T @ py) ** 2 / (phi * np.einsum("ij,ij->j", g, proj @ g))
    return {"tau_two_component": t * phi, "phi_two_component": phi,
            "lambda_two_component": _lambda(chi2)}  # fmt: skip


def synthetic(a, seed: int) -> dict:
    """One synthetic replicate, with the plain logistic test and the LMM on the 0/1 trait."""
    from bed_reader import to_bed
    from scipy import special

    from lmmkit.genetics import spa
    from lmmkit.genetics.gwas import gwas

    n, m = a.n, a.m
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.1, 0.5, m + a.tests)
    geno = (rng.uniform(size=(n, m + a.tests)) < p).astype(np.int8)
    geno += (rng.uniform(size=(n, m + a.tests)) < p).astype(np.int8)
    z = (geno[:, :m] - 2 * p[:m]) / np.sqrt(2 * p[:m] * (1 - p[:m]))
    k = z @ z.T / m
    g = z @ rng.standard_normal(m)
    g = (g - g.mean()) / g.std()
    liab = np.sqrt(a.h2) * g + np.sqrt(1 - a.h2) * rng.standard_normal(n)
    y = (liab > np.quantile(liab, 1 - a.prevalence)).astype(float)
    gt = geno[:, m:].astype(float)
    gt -= gt.mean(0)
    out = {"seed": seed, **variances(k, y, gt)}
    out["lambda_plain_logistic"] = variances(None, y, gt)["lambda_fixed"]
    if a.two_component:
        out.update(two_component(k, y, gt))
    with tempfile.TemporaryDirectory() as tmp:
        prefix = Path(tmp) / "c"
        to_bed(f"{prefix}.bed", geno.astype(np.float32),
               properties={"chromosome": ["1"] * m + ["2"] * a.tests})  # fmt: skip
        lin = gwas(prefix, y, kinship=k, method="exact", tests=("wald",),
                   snps=np.r_[np.zeros(m, bool), np.ones(a.tests, bool)], progress=False,
                   plots=False)  # fmt: skip
        out["lambda_lmm_on_01"] = _lambda(special.chdtri(1.0, lin.table["p_wald"].to_numpy()))
        if a.matfree:
            for how in spa.SCORE_VARIANCES:
                mf = gwas(prefix, y, binary=True, method="matrix-free", kinship="standardized",
                          snps=np.r_[np.zeros(m, bool), np.ones(a.tests, bool)],
                          score_variance=how, progress=False, plots=False)  # fmt: skip
                p_spa = mf.table["p_spa"].to_numpy()
                out[f"lambda_matfree_{how}"] = _lambda(special.chdtri(1.0, p_spa))
    return out


def hs1940(seed: int, prevalence: float = 0.5) -> dict:
    """One HS1940 replicate (module docstring)."""
    from scipy import linalg

    from lmmkit.genetics.grm import compute_grm
    from lmmkit.genetics.plink import read_plink

    pl = read_plink(HS)
    k = compute_grm(pl, "centered").matrix
    g = pl.read(dtype="float64")
    g = np.where(np.isnan(g), np.nanmean(g, 0), g)
    af = g.mean(0) / 2
    g = g[:, np.minimum(af, 1 - af) > 0.05][:, ::2]
    g -= g.mean(0)
    s, u = linalg.eigh(k)
    rng = np.random.default_rng(seed)
    h2 = 0.5  # liability heritability, with e ~ N(0, 1): Var(g) = h2 / (1 - h2)
    s2 = h2 / (1.0 - h2) / np.mean(np.diag(k))
    liab = u @ (np.sqrt(np.clip(s, 0, None) * s2) * rng.standard_normal(len(s)))
    liab += rng.standard_normal(len(s))
    y = (liab > np.quantile(liab, 1.0 - prevalence)).astype(float)
    return {"seed": seed, **variances(k, y, g)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hs1940", action="store_true", help="the HS1940 mice instead")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--m", type=int, default=200, help="kinship SNPs (n/M = 10 by default)")
    ap.add_argument("--tests", type=int, default=5000)
    ap.add_argument("--h2", type=float, default=0.3)
    ap.add_argument("--prevalence", type=float, default=None,
                    help="case fraction (synthetic 0.1, --hs1940 0.5 by default)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--matfree", action="store_true",
                    help="synthetic: also the matrix-free binary GWAS (LOCO) under both variances")
    ap.add_argument("--two-component", action="store_true",
                    help="synthetic: also the working model with phi estimated with tau "
                    "(MASS::glmmPQL's; slow: a REML profile per PQL step)")
    a = ap.parse_args(argv)
    if a.prevalence is None:
        a.prevalence = 0.5 if a.hs1940 else 0.1
    if a.hs1940 and not Path(f"{HS}.bed").exists():
        print(f"{HS}.bed not found (../shared)")
        return 1
    reps = []
    for seed in a.seeds:
        reps.append(hs1940(seed, a.prevalence) if a.hs1940 else synthetic(a, seed))
        print(json.dumps(reps[-1]), flush=True)
    keys = [k for k in reps[0] if k.startswith(("lambda", "tau", "phi")) or k == "c"]
    summary = {"settings": vars(a), "replicates": reps,
               "mean": {k: float(np.mean([r[k] for r in reps])) for k in keys}}  # fmt: skip
    mode = f"hs1940_p{a.prevalence:g}" if a.hs1940 else f"n{a.n}_m{a.m}_h{a.h2:g}_p{a.prevalence:g}"
    out = HERE / "_data" / f"binary_dispersion_{mode}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary["mean"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Simulation check: does a logistic GLMM with the real HS1940 kinship recover latent h2?

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/sim_glmm_h2.py
    ... benchmarks/sim_glmm_h2.py --replicates 50 --h2 0.3 0.6 --n 500

A fixed random subset of ``--n`` HS1940 mice (real genotypes; centered GEMMA kinship over all
1,940, then re-centered over the subset so that c = tr(K)/n is GEMMA's pve scale). Binary
traits y ~ Bernoulli(logit^-1(b0 + b1 x + g)), g ~ N(0, s2 K), x ~ N(0, 1), with s2 chosen so
that the latent-logit h2 = s2 c / (s2 c + pi^2/3) equals the target. Each replicate is fitted
by ``lmmkit.glmm(y ~ x + (1 | id), family="binomial", kernels={"id": K})`` (Laplace, glmer's
two stages) and summarized with ``lmmkit.h2_latent``. Reported: mean estimate and bias of h2,
the mean delta-method SE against the SD of the estimates, coverage of 95% Wald intervals,
boundary fits, and seconds per fit. Not a pytest test (minutes).

``--records R`` gives every mouse R Bernoulli records (the Laplace approximation improves with
records per level); ``--lee`` adds the observed-scale route for comparison: REML on the 0/1
trait (``reml_heritability``, covariate x) transformed with ``h2_observed_to_liability`` at the
sample's case fraction (a population sample, P = K). That route targets the probit liability
scale, which the logistic latent scale only approximates.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "genetics" / "mouse_hs1940"


def main(argv: list[str] | None = None) -> int:
    import lmmkit
    from lmmkit.genetics.grm import compute_grm
    from lmmkit.genetics.heritability import reml_heritability
    from lmmkit.genetics.plink import read_plink

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=100)
    ap.add_argument("--h2", type=float, nargs="+", default=[0.3, 0.6])
    ap.add_argument("--n", type=int, default=600, help="mice in the subset (max 1940)")
    ap.add_argument("--prevalence", type=float, default=0.5, help="P(y = 1) at g = x = 0")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--records", type=int, default=1, help="Bernoulli records per mouse")
    ap.add_argument("--lee", action="store_true", help="also the observed-scale + Lee route")
    args = ap.parse_args(argv)
    if not SHARED.with_suffix(".bed").exists():
        print(f"needs {SHARED}.bed (../shared)", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    grm = compute_grm(read_plink(SHARED), normalization="centered")
    rng = np.random.default_rng(args.seed)
    pick = np.sort(rng.choice(grm.n, size=min(args.n, grm.n), replace=False))
    K = grm.matrix[np.ix_(pick, pick)]
    P = np.eye(len(pick)) - 1.0 / len(pick)
    K = P @ K @ P
    K = 0.5 * (K + K.T)
    n = K.shape[0]
    ids = [f"m{i}" for i in pick]
    Kdf = pd.DataFrame(K, index=ids, columns=ids)
    w, Q = np.linalg.eigh(K)
    L = Q * np.sqrt(np.clip(w, 0.0, None))
    c = float(np.trace(K) / n)
    b0 = math.log(args.prevalence / (1.0 - args.prevalence))
    print(
        f"HS1940 subset: n = {n} mice x {args.records} record(s), c = tr(K)/n = {c:.4f}, "
        f"intercept {b0:.3f}, slope 0.5; setup {time.perf_counter() - t0:.1f} s"
    )
    R = args.records
    if args.lee and R != 1:
        print("--lee needs --records 1 (one 0/1 value per mouse)", file=sys.stderr)
        return 1
    print(
        f"{'h2':>5} {'reps':>5} {'mean h2':>8} {'bias':>8} {'(MC se)':>8} {'mean SE':>8} "
        f"{'SD(h2)':>8} {'cover95':>8} {'boundary':>8} {'s/fit':>6}"
    )
    for h2 in args.h2:
        s2 = h2 / (1.0 - h2) * (math.pi**2 / 3.0) / c
        est, ses, cover, bound, secs, lee = [], [], 0, 0, [], []
        for _ in range(args.replicates):
            g = math.sqrt(s2) * (L @ rng.standard_normal(n))
            x = rng.standard_normal(n * R)
            eta = b0 + 0.5 * x + np.repeat(g, R)
            y = rng.binomial(1, 1.0 / (1.0 + np.exp(-eta)))
            d = pd.DataFrame({"id": np.repeat(ids, R), "x": x, "y": y})
            if args.lee:
                obs = reml_heritability(y.astype(float), K, x[:, None])
                lee.append(lmmkit.h2_observed_to_liability(obs.h2, float(y.mean())))
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = lmmkit.glmm("y ~ x + (1 | id)", d, family="binomial", kernels={"id": Kdf})
            secs.append(time.perf_counter() - t)
            h = lmmkit.h2_latent(res)
            est.append(h.h2)
            if math.isfinite(h.se):
                ses.append(h.se)
                cover += abs(h.h2 - h2) <= 1.96 * h.se
            else:
                bound += 1
        e = np.asarray(est)
        k = len(ses)
        print(
            f"{h2:5.2f} {len(e):5d} {e.mean():8.4f} {e.mean() - h2:+8.4f} "
            f"{e.std(ddof=1) / math.sqrt(len(e)):8.4f} {np.mean(ses) if k else math.nan:8.4f} "
            f"{e.std(ddof=1):8.4f} {cover / max(k, 1):8.3f} {bound:8d} {np.mean(secs):6.2f}",
            flush=True,
        )
        if lee:
            le = np.asarray(lee)
            print(
                f"{'':5} {len(le):5d} {le.mean():8.4f} {le.mean() - h2:+8.4f} "
                f"{le.std(ddof=1) / math.sqrt(len(le)):8.4f} {'':8} {le.std(ddof=1):8.4f}   "
                "(observed scale + Lee, vs the same latent h2)",
                flush=True,
            )
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Simulation benchmark: does REML recover h2 on real genotypes, with honest standard errors?

    .venv/bin/python benchmarks/sim_heritability.py                 # 1,000 replicates, h2 0.2 and 0.6
    .venv/bin/python benchmarks/sim_heritability.py --replicates 200 --h2 0.5

Phenotypes y = g + e on the real HS1940 genotypes (1,940 mice; centered GEMMA kinship K over
the SNPs that pass GEMMA's filters), g ~ N(0, Vg K), e ~ N(0, Ve I), with Vg and Ve chosen so
that h2 in GEMMA's pve convention, Vg tr(K)/n / (Vg tr(K)/n + Ve), equals the target. Each
replicate is fitted by lmmkit's REML (one eigendecomposition shared by all replicates: the same
code path as `reml_heritability`, minus the repeated decomposition). Reported: bias of h2, the
mean of the reported SEs against the SD of the estimates, and the coverage of 95% Wald intervals.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "genetics" / "mouse_hs1940"


def main(argv: list[str] | None = None) -> int:
    from lmmkit.genetics.grm import compute_grm
    from lmmkit.genetics.heritability import LAMBDA_BOUNDS, _maximize, _RotatedModel
    from lmmkit.genetics.plink import read_plink

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=1000)
    ap.add_argument("--h2", type=float, nargs="+", default=[0.2, 0.6])
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args(argv)
    if not SHARED.with_suffix(".bed").exists():
        print(f"needs {SHARED}.bed (../shared)", file=sys.stderr)
        return 1
    start = time.perf_counter()
    grm = compute_grm(read_plink(SHARED), normalization="centered", progress=False)
    K = np.asarray(grm.matrix, dtype=float)
    n = K.shape[0]
    K = K - K.mean(axis=0)[None, :]  # centred over the analysed samples, as GEMMA's -lmm
    K = K - K.mean(axis=1)[:, None]
    K = 0.5 * (K + K.T)
    s, u = np.linalg.eigh(K)
    s = np.clip(np.where(np.abs(s) < 1e-10 * s.max(), 0.0, s), 0.0, None)
    tr = float(np.trace(K) / n)
    ones = np.ones((n, 1))
    utw = u.T @ ones
    print(f"HS1940: n = {n}, tr(K)/n = {tr:.4f}; setup {time.perf_counter() - start:.1f} s\n")
    rng = np.random.default_rng(args.seed)
    print(
        f"{'h2':>5} {'reps':>5} {'mean h2':>9} {'bias':>9} {'mean SE':>9} {'SD(h2)':>9} "
        f"{'coverage':>9} {'at bound':>9} {'s/rep':>7}"
    )
    for h2 in args.h2:
        ve = 1.0
        vg = h2 / (1.0 - h2) / tr  # pve = vg tr / (vg tr + ve)
        est, ses = [], []
        t0 = time.perf_counter()
        for _ in range(args.replicates):
            g = u @ (np.sqrt(vg * s) * rng.standard_normal(n))
            y = 1.0 + g + np.sqrt(ve) * rng.standard_normal(n)
            model = _RotatedModel(s, u.T @ y, utw, ones)
            lam = _maximize(model, LAMBDA_BOUNDS)
            d2 = model.reml_d2(lam)
            lam_se = np.sqrt(-1.0 / d2) if d2 < 0 else np.nan
            est.append(tr * lam / (tr * lam + 1.0))
            ses.append(tr / (tr * lam + 1.0) ** 2 * lam_se)
        est, ses = np.array(est), np.array(ses)
        cover = np.mean(np.abs(est - h2) <= 1.96 * ses)
        at_bound = np.mean((est < 1e-4) | (est > 1 - 1e-4))
        per = (time.perf_counter() - t0) / args.replicates
        print(
            f"{h2:5.2f} {args.replicates:5d} {est.mean():9.4f} {est.mean() - h2:+9.4f} "
            f"{np.nanmean(ses):9.4f} {est.std(ddof=1):9.4f} {cover:9.3f} {at_bound:9.3f} {per:7.3f}"
        )
    print(
        "\nbias = mean estimate - truth (target |bias| < 0.01); coverage of h2 +- 1.96 SE (nominal 0.95)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

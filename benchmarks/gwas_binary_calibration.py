"""Binary-trait GWAS calibration: null case/control phenotypes on the real HS1940 genotypes.

    OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \\
        python benchmarks/gwas_binary_calibration.py --replicates 20 --json out.json

No SNP is causal.  A polygenic liability l = g + e with g ~ N(0, s2 K) (K the centered
kinship of all 1,940 mice from the SNPs passing the filters, s2 set so that the liability
heritability is ``--h2``) and e ~ N(0, 1); the top ``f`` of the liabilities are the cases, for
case fractions f = 0.5, 0.1 and (a stress case, 39 cases) 0.02.  Every replicate runs the full ``lmmkit.gwas(...,
binary=True)`` path with that kinship (logistic mixed null model by PQL / AI-REML, exact
score variance, saddlepoint p-values where |T|/sd > 2) on SNPs with MAF >= 0.005 and
missingness <= 5%.  Reported per case fraction and MAF bin, pooled over replicates: the
genomic-control lambda (median chi-square / 0.4549, averaged over replicates) and the type-I
error at alpha = 1e-2, 1e-3, 1e-4 of the saddlepoint p (``p_spa``) and of the normal
approximation (``p_score_normal``), with the expected count, and in how many replicates at
least one SNP of the bin reached it.  SNPs in LD are not independent tests (one chance
association lights up a whole HS haplotype block), so the counts scatter far more than
binomially; the replicate counts show whether excess hits come from one replicate.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import linalg, stats

ROOT = Path(__file__).resolve().parents[1]
PREFIX = ROOT.parent / "shared" / "data" / "genetics" / "mouse_hs1940"
BINS = [(0.005, 0.01), (0.01, 0.05), (0.05, 0.2), (0.2, 0.5)]
ALPHAS = (1e-2, 1e-3, 1e-4)
CHI2_MEDIAN = stats.chi2.ppf(0.5, 1)


def genomic_lambda(p: np.ndarray) -> float:
    p = p[np.isfinite(p)]
    return float(np.median(stats.chi2.isf(p, 1)) / CHI2_MEDIAN) if len(p) else float("nan")


def main(argv: list[str] | None = None) -> int:
    from lmmkit.genetics.grm import compute_grm
    from lmmkit.genetics.gwas import gwas
    from lmmkit.genetics.plink import read_plink

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=20)
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.1, 0.02])
    ap.add_argument("--h2", type=float, default=0.5, help="liability-scale heritability")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--json", type=Path, help="write the summary (and per-replicate numbers)")
    args = ap.parse_args(argv)
    if not PREFIX.with_suffix(".bed").exists():
        print(f"needs {PREFIX}.bed (../shared)", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    pl = read_plink(PREFIX)
    n = pl.n_samples
    grm = compute_grm(pl, "centered", progress=False)
    k = grm.matrix
    s, u = linalg.eigh(k, driver="evd")
    s = np.clip(s, 0.0, None)
    s2 = args.h2 / (1.0 - args.h2) / float(np.mean(np.diag(k)))
    print(
        f"HS1940: {n} mice; kinship from {grm.n_snps} SNPs; setup {time.perf_counter() - t0:.1f} s"
    )
    rng = np.random.default_rng(args.seed)
    summary: dict[str, dict] = {}
    for frac in args.fractions:
        pooled = {"p_spa": [], "p_score_normal": []}
        maf_all, lam, taus, iters, secs = [], {"p_spa": [], "p_score_normal": []}, [], [], []
        for rep in range(args.replicates):
            liab = u @ (np.sqrt(s2 * s) * rng.standard_normal(n)) + rng.standard_normal(n)
            y = (liab > np.quantile(liab, 1.0 - frac)).astype(float)
            t1 = time.perf_counter()
            res = gwas(
                pl,
                y,
                kinship=k,
                binary=True,
                maf=0.005,
                block_snps=4000,
                progress=False,
                plots=False,
            )
            secs.append(time.perf_counter() - t1)
            tab = res.table
            af = tab["af"].to_numpy()
            maf_all.append(np.minimum(af, 1.0 - af))
            for col in pooled:
                pooled[col].append(tab[col].to_numpy())
                lam[col].append(genomic_lambda(tab[col].to_numpy()))
            info = res.null["all"]
            taus.append(info["tau"])
            iters.append(info["n_iter"])
            print(
                f"f={frac:g} rep {rep + 1}/{args.replicates}: {int(y.sum())} cases, tau "
                f"{info['tau']:.3f} ({int(info['n_iter'])} it., "
                f"{'converged' if info['converged'] else 'NOT converged'}), "
                f"lambda_GC spa {lam['p_spa'][-1]:.3f} normal {lam['p_score_normal'][-1]:.3f}, "
                f"{secs[-1]:.0f} s",
                flush=True,
            )
        maf = np.concatenate(maf_all)
        rep_id = np.concatenate([np.full(len(m), i) for i, m in enumerate(maf_all)])
        rows = []
        for lo, hi in [*BINS, (0.005, 0.5)]:
            sel = (maf >= lo) & (maf < hi) if hi < 0.5 else (maf >= lo) & (maf <= hi)
            row = {"maf": [lo, hi], "tests": int(sel.sum())}
            for col in pooled:
                p = np.concatenate(pooled[col])[sel]
                row[col] = {
                    "lambda_gc_pooled": genomic_lambda(p),
                    "min_p": float(np.nanmin(p)) if len(p) else float("nan"),
                    **{f"n_p<{a:g}": int(np.sum(p < a)) for a in ALPHAS},
                    **{f"replicates_p<{a:g}": len(np.unique(rep_id[sel][p < a])) for a in ALPHAS},
                }
            rows.append(row)
        summary[str(frac)] = {
            "bins": rows,
            "lambda_gc_mean": {c: float(np.mean(v)) for c, v in lam.items()},
            "tau_mean": float(np.mean(taus)),
            "iterations_mean": float(np.mean(iters)),
            "seconds_per_replicate": float(np.mean(secs)),
        }
        _print_table(frac, summary[str(frac)], args.replicates)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": vars(args) | {"json": str(args.json)}, "summary": summary}, indent=1
            )
        )
    return 0


def _print_table(frac: float, summ: dict, reps: int) -> None:
    print(
        f"\ncase fraction {frac:g}, {reps} replicates: mean tau {summ['tau_mean']:.3f}, "
        f"mean lambda_GC spa {summ['lambda_gc_mean']['p_spa']:.3f} / normal "
        f"{summ['lambda_gc_mean']['p_score_normal']:.3f}, "
        f"{summ['seconds_per_replicate']:.0f} s per replicate"
    )
    head = f"{'MAF bin':<14}{'tests':>8}  {'method':<8}{'lambda':>8}{'min p':>10}"
    head += "".join(f"{f'p<{a:g} (exp) [reps]':>24}" for a in ALPHAS)
    print(head)
    for row in summ["bins"]:
        lo, hi = row["maf"]
        for col, name in (("p_spa", "SPA"), ("p_score_normal", "normal")):
            r = row[col]
            line = f"{f'[{lo:g}, {hi:g})':<14}{row['tests']:>8}  {name:<8}"
            line += f"{r['lambda_gc_pooled']:8.3f}{r['min_p']:10.2g}"
            for a in ALPHAS:
                cell = f"{r[f'n_p<{a:g}']} ({row['tests'] * a:.1f}) [{r[f'replicates_p<{a:g}']}]"
                line += f"{cell:>24}"
            print(line)


if __name__ == "__main__":
    sys.exit(main())

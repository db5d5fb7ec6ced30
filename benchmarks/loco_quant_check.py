"""Is exact LOCO calibrated on this simulation design?  A quantitative control (issue 17).

    .venv/bin/python benchmarks/loco_quant_check.py --n 50000 --samples 3000 --seeds 1 2 3

On the random ``--samples`` subset of the scale_gwas.py cohort (written by ``scale_gwas.py
binary --exact-samples``), for each phenotype seed: the continuous liability of the
``--background odd`` design (``scale_gwas._null_binary``'s draw, without the threshold:
h2 = 0.5 on the odd chromosomes' SNPs), the exact path with ``loco=True`` (GEMMA's
algorithm, variance components refitted per left-out chromosome, Wald test), and lambda GC
over the even chromosomes' SNPs (no effect), overall and per chromosome.  Lambda near 1 here
says the design itself leaves LOCO calibrated at this size, so a deflation of the binary
path is the binary machinery's or the larger cohort's.  Results: ``sub<samples>/loco_quant.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import scale_gwas  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from lmmkit.genetics.gwas import gwas

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--snps", type=int, default=100_000)
    ap.add_argument("--samples", type=int, default=3000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--h2", type=float, default=0.5)
    a = ap.parse_args(argv)
    d = scale_gwas.DATA / f"scale_{a.n}x{a.snps}" / f"sub{a.samples}"
    prefix = d / "cohort"
    if not Path(f"{prefix}.bed").exists():
        print(f"{prefix}.bed missing: run scale_gwas.py binary --exact-samples {a.samples}")
        return 1
    out = {}
    for seed in a.seeds:
        y = scale_gwas.background_liability(prefix, seed=seed, h2=a.h2, background="odd")
        t0 = time.perf_counter()
        res = gwas(prefix, y, loco=True, method="exact", tests=("wald",),
                   kinship="standardized", progress=False, plots=False)  # fmt: skip
        tab = res.table
        chrom = tab["chrom"].astype(int).to_numpy()
        p = tab["p_wald"].to_numpy()
        even = chrom % 2 == 0
        out[seed] = {
            "gc_lambda_null_snps": scale_gwas._lambda(p[even]),
            "per_null_chrom": {
                int(c): scale_gwas._lambda(p[chrom == c]) for c in np.unique(chrom[even])
            },
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(seed, json.dumps(out[seed]), flush=True)
    lam = np.array([v for r in out.values() for v in r["per_null_chrom"].values()])
    summary = {
        "seeds": out,
        "mean_per_chrom_lambda": float(lam.mean()),
        "se": float(lam.std(ddof=1) / np.sqrt(len(lam))),
    }
    (d / "loco_quant.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "seeds"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

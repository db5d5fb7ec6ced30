"""Does LOCO change the calibration of the binary GWAS on SNPs without effect? (issue 17)

    .venv/bin/python benchmarks/binary_loco_check.py --n 50000 --samples 3000

On the scale_gwas.py cohort (``simulate --n N`` first) with the ``--background odd`` case/control
phenotype (polygenic background on the odd chromosomes only, so the even chromosomes' SNPs
have no effect), runs the dense (exact) binary path on the random ``--samples`` subset that
``scale_gwas.py binary --exact-samples`` writes, without and with ``loco=True`` (null model
refitted per left-out chromosome), and records lambda GC of p_spa over the SNPs without effect
and over all SNPs in ``sub<samples>/binary_loco_odd.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import scale_gwas  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from lmmkit.genetics.gwas import gwas

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--snps", type=int, default=100_000)
    ap.add_argument("--samples", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    d = HERE / "_data" / f"scale_{a.n}x{a.snps}"
    sub = d / f"sub{a.samples}" / "cohort"
    if not Path(f"{sub}.bed").exists():
        raise SystemExit(f"{sub}.bed not found: run scale_gwas.py binary --exact-samples first")
    y = scale_gwas._null_binary(d / "cohort", 0.3, 0.1, a.seed, "odd")
    ys = y[scale_gwas.subset_samples(a.n, a.samples, a.seed)]  # the subset scale_gwas drew
    out = {}
    for loco in (False, True):
        t0, c0 = time.perf_counter(), time.process_time()
        res = gwas(sub, ys, binary=True, kinship="standardized", method="exact", loco=loco,
                   plots=False, progress=False)  # fmt: skip
        out[f"loco={loco}"] = {
            **scale_gwas._null_lambdas(res.table, "odd"),
            "wall": round(time.perf_counter() - t0, 1),
            "cpu": round(time.process_time() - c0, 1),
        }
        print(f"loco={loco}", out[f"loco={loco}"], flush=True)
    (sub.parent / "binary_loco_odd.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

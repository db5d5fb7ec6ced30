"""Genotype formats on the whole HS1940 (1,940 samples x 10,300 variants): plink2 converts
the .bed to PGEN, BGEN 1.2 (8- and 16-bit), BGEN 1.3 and VCF (bgzip), then each is read
once in 2,000-variant blocks (``read``: float dosages) and once as int8 hard calls
(``iter_codes``), timed in wall and CPU seconds, and checked equal to the .bed.

Run:  OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_formats.py [--repeats 3]

Needs plink2 on PATH, the biobank extra and ../shared.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from lmmkit.genetics.source import open_genotypes

ROOT = Path(__file__).resolve().parents[1]
HS = ROOT.parent / "shared" / "data" / "genetics" / "mouse_hs1940"
EXPORTS = {
    "hs.bed": ["--make-bed"],
    "hs.pgen": ["--make-pgen"],
    "hs8.bgen": ["--export", "bgen-1.2", "bits=8"],
    "hs16.bgen": ["--export", "bgen-1.2", "bits=16"],
    "hs13.bgen": ["--export", "bgen-1.3"],
    "hs.vcf.gz": ["--export", "vcf", "bgz", "id-delim=+"],
}


def timed(fn, repeats: int):
    best = (np.inf, np.inf)
    out = None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, (time.perf_counter() - w, time.process_time() - c))
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags in EXPORTS.items():
            out = str(Path(tmp) / name.split(".")[0])
            subprocess.run(["plink2", "--bfile", str(HS), *flags, "--out", out, "--threads",
                            "1", "--silent"], check=True)  # fmt: skip
        ref = None
        print(f"{'file':12} {'MB':>6} {'read wall':>10} {'read CPU':>9} {'codes wall':>11} "
              f"{'codes CPU':>10}  equal to .bed")  # fmt: skip
        for name in EXPORTS:
            path = Path(tmp) / name
            src = open_genotypes(path, **({"id_delim": "+"} if "vcf" in name else {}))
            (rw, rc), g = timed(
                lambda s=src: np.hstack([b for _, b in s.iter_blocks(2000)]), args.repeats
            )
            (cw, cc), c = timed(
                lambda s=src: np.hstack([b for _, b in s.iter_codes(2000)]), args.repeats
            )
            if ref is None:
                ref = (g, c)
            same = np.array_equal(g, ref[0], equal_nan=True) and np.array_equal(c, ref[1])
            size = sum(p.stat().st_size for p in src.files.values()) / 2**20
            print(f"{name:12} {size:6.1f} {rw:10.2f} {rc:9.2f} {cw:11.2f} {cc:10.2f}  {same}")


if __name__ == "__main__":
    main()

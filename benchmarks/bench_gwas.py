"""HS1940 CD8 GWAS: kinship + exact LMM association, lmmkit vs GEMMA 0.98.5 side by side.

Run:  .venv/bin/python benchmarks/bench_gwas.py [--repeats 3] [--no-gemma] [--scheduler local:2]

lmmkit: centered kinship (= ``gemma -gk 1``), then :func:`lmmkit.genetics.gwas.gwas` with
all three tests (= ``gemma -lmm 4``: eigendecomposition, per-SNP REML/ML lambda, Wald, LRT,
score), writing the TSV and log; the Manhattan/QQ plots (GEMMA has none) are timed apart.
GEMMA is timed through subprocess only if ``gemma`` is on PATH, in the same environment,
so both tools run with the same BLAS thread setting (the default: all cores,
unless OPENBLAS_NUM_THREADS is set); its output is compared with lmmkit's.  Each tool's
best of ``--repeats`` runs is reported (the load average is printed: on a shared machine
the times are only comparable within one run).  lmmkit eigendecomposes kinships of up to
2000 samples with one BLAS thread (:data:`lmmkit.genetics.lmm_assoc.EIGH_SERIAL_MAX`).
The shared README's reference timing on a 2-core machine is 3.3 s (kinship) + 13.6 s
(association).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lmmkit.genetics.grm import compute_grm
from lmmkit.genetics.gwas import gwas
from lmmkit.genetics.gwas.plots import write_plots as _plots
from lmmkit.genetics.plink import read_plink

ROOT = Path(__file__).resolve().parents[1]
HS = ROOT.parent / "shared" / "data" / "genetics" / "mouse_hs1940"
README_GEMMA = (3.3, 13.6)


def run_lmmkit(tmp: Path, scheduler: str | None) -> tuple[float, float, pd.DataFrame]:
    from lmmkit.parallel.executor import get_executor

    t0 = time.perf_counter()
    pl = read_plink(HS)
    ok = np.flatnonzero(np.isfinite(pl.phenotype(1)))
    grm = compute_grm(pl, "centered", filter_samples=ok)
    t1 = time.perf_counter()
    ex = get_executor(scheduler)
    try:
        t1b = time.perf_counter()
        res = gwas(pl, 1, kinship=grm, out=tmp / "lmmkit.tsv", overwrite=True, progress=False,
                   executor=ex, plots=False)  # fmt: skip
        t2 = time.perf_counter()
    finally:
        ex.close()
    t3 = time.perf_counter()
    _plots(res.table, "p_wald", str(tmp / "lmmkit.tsv"))  # GEMMA draws none: timed apart
    print(f"(lmmkit Manhattan + QQ PNGs, not in the totals: {time.perf_counter() - t3:.2f} s)")
    return t1 - t0, t2 - t1b, res.table


def run_gemma(tmp: Path) -> tuple[float, float, pd.DataFrame]:
    t0 = time.perf_counter()
    subprocess.run(
        ["gemma", "-bfile", str(HS), "-gk", "1", "-o", "hs"],
        cwd=tmp, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    t1 = time.perf_counter()
    subprocess.run(
        ["gemma", "-bfile", str(HS), "-k", "output/hs.cXX.txt", "-n", "1", "-lmm", "4",
         "-o", "hs_n1"],
        cwd=tmp, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, pd.read_csv(tmp / "output" / "hs_n1.assoc.txt", sep="\t")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--no-gemma", action="store_true")
    ap.add_argument("--scheduler", default=None, help="lmmkit executor (default serial)")
    args = ap.parse_args()
    if not HS.with_suffix(".bed").exists():
        raise SystemExit(f"HS1940 data not found at {HS}.bed")
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '(unset)')}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")  # fmt: skip
    # warm-up: numba kernels are compiled (and cached on disk) on first use
    compute_grm(read_plink(HS), "centered", snps=np.arange(300))
    with tempfile.TemporaryDirectory() as d:
        gwas(HS, 1, kinship=np.eye(1940), snps=np.arange(300), progress=False,
             out=Path(d) / "w.tsv", plots=False)  # fmt: skip
    lk = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as d:
            lk.append(run_lmmkit(Path(d), args.scheduler))
    k_l, a_l, tab = min(lk, key=lambda r: r[0] + r[1])
    print(f"lmmkit  kinship {k_l:6.2f} s   association {a_l:6.2f} s   total {k_l + a_l:6.2f} s")
    gem = None
    if not args.no_gemma and shutil.which("gemma"):
        gm = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as d:
                gm.append(run_gemma(Path(d)))
        k_g, a_g, gem = min(gm, key=lambda r: r[0] + r[1])
        print(f"GEMMA   kinship {k_g:6.2f} s   association {a_g:6.2f} s   total {k_g + a_g:6.2f} s")
    else:
        k_g, a_g = README_GEMMA
        print(f"GEMMA   not run; README reference {k_g} s + {a_g} s")
    print(f"speed-up: kinship {k_g / k_l:.1f}x, association {a_g / a_l:.1f}x, "
          f"total {(k_g + a_g) / (k_l + a_l):.1f}x (target >= 20x)")  # fmt: skip
    rk, ra = README_GEMMA
    print(f"vs README GEMMA timing ({rk} + {ra} s): total {(rk + ra) / (k_l + a_l):.1f}x")
    if gem is not None:
        g = gem.set_index("rs").loc[tab["snp"]]
        for k in ("p_wald", "p_lrt", "p_score"):
            d = np.abs(np.log10(tab[k].to_numpy()) - np.log10(g[k].to_numpy()))
            print(f"  max |dlog10 {k}| vs this GEMMA run: {d.max():.2e}")
        for k in ("beta", "se"):
            d = np.abs(tab[k].to_numpy() / g[k].to_numpy() - 1)
            print(f"  max rel diff {k}: {d.max():.2e}")


def user_tasks(quick: bool) -> list:
    """What a user times (#14 item 5): ``lmmkit gwas`` on HS1940 MCH (.fam phenotype 6,
    GEMMA's ``-n 6``), process start to the TSV and the Manhattan/QQ PNGs written, against
    ``gemma -gk 1`` then ``gemma -lmm 4`` (process start to its association file)."""
    from _timing import Task

    gemma = ("gemma -bfile {arg0} -gk 1 -n 6 -o hs && "
             "gemma -bfile {arg0} -k output/hs.cXX.txt -n 6 -lmm 4 -o hs")  # fmt: skip
    return [Task(
        "HS1940 `lmmkit gwas` MCH, all three tests (1,940 mice x 12,226 SNPs)",
        setup="from lmmkit.cli.main import main as lmmkit",
        body="""
        code = lmmkit(["gwas", "--bfile", ARGS[0], "--pheno-fam", "6", "--test", "all",
                       "--out", OUT, "--overwrite", "--quiet"])
        assert code == 0, code
        """,
        prepare=lambda tmp: [str(HS)], anchor_cmd=("sh", "-c", gemma), anchor="GEMMA",
        repeats=3, goal="≥ 10× GEMMA (#14)",
    )]  # fmt: skip


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _timing

    if not _timing.cli(user_tasks):
        main()

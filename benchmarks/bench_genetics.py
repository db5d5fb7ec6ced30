"""HS1940: centered GRM + null-model REML heritability, lmmkit vs GEMMA 0.98.5.

Run:  .venv/bin/python benchmarks/bench_genetics.py [--repeats 3] [--pheno 1]

GEMMA is timed through subprocess only if ``gemma`` is on PATH: ``-gk 1`` for the
kinship and ``-lmm 4`` for the REML.  GEMMA's ``-lmm`` always runs the per-SNP scan, so
it is timed twice: on all SNPs, and restricted to one SNP with ``-snps`` (close to the
null-model-only cost that lmmkit measures).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from lmmkit.genetics.grm import compute_grm
from lmmkit.genetics.heritability import reml_heritability
from lmmkit.genetics.plink import read_plink

ROOT = Path(__file__).resolve().parents[1]
HS = ROOT.parent / "shared" / "data" / "genetics" / "mouse_hs1940"


def best_of(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def run_gemma(args, cwd):
    t = time.perf_counter()
    subprocess.run(["gemma", *args], cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pheno", type=int, default=1, help=".fam phenotype (GEMMA -n)")
    ap.add_argument("--block-size", type=int, default=2000)
    a = ap.parse_args()
    if not HS.with_suffix(".bed").exists():
        raise SystemExit(f"shared data not found at {HS}.bed")

    pl = read_plink(HS)
    y = pl.phenotype(a.pheno)
    ok = np.flatnonzero(np.isfinite(y))

    t_grm, grm = best_of(
        lambda: compute_grm(pl, "centered", filter_samples=ok, block_size=a.block_size),
        a.repeats,
    )
    sub = grm.subset(ok)
    t_reml, res = best_of(lambda: reml_heritability(y[ok], sub), a.repeats)
    t_reml1, _ = best_of(lambda: reml_heritability(y[ok], sub, blas_threads=1), a.repeats)
    print(f"lmmkit  centered GRM ({grm.n_snps} SNPs x {grm.n} samples): {t_grm:8.2f} s")
    print(f"lmmkit  REML h2 (n={res.n}, eigendecomposition included): {t_reml:8.2f} s")
    print(f"lmmkit  REML h2, blas_threads=1:                      {t_reml1:8.2f} s")
    print(
        f"        h2={res.h2:.6f} se={res.h2_se:.7f} vg={res.vg:.6f} ve={res.ve:.6f} "
        f"logL={res.logl_reml:.4f}"
    )

    if shutil.which("gemma") is None:
        print("gemma not on PATH: GEMMA timings skipped")
        return
    with tempfile.TemporaryDirectory() as tmp:
        snp1 = Path(tmp) / "one_snp.txt"
        snp1.write_text(pl.bim["snp"].iloc[0] + "\n")
        g_gk = min(
            run_gemma(["-bfile", str(HS), "-gk", "1", "-n", str(a.pheno), "-o", "hs"], tmp)
            for _ in range(a.repeats)
        )
        kin = str(Path(tmp) / "output" / "hs.cXX.txt")
        lmm = ["-bfile", str(HS), "-k", kin, "-n", str(a.pheno), "-lmm", "4"]
        g_lmm1 = min(
            run_gemma([*lmm, "-snps", str(snp1), "-o", "one"], tmp) for _ in range(a.repeats)
        )
        g_lmm = run_gemma([*lmm, "-o", "all"], tmp)
    print(f"GEMMA   -gk 1:                                {g_gk:8.2f} s")
    print(f"GEMMA   -lmm 4, one SNP (~ null model only):  {g_lmm1:8.2f} s")
    print(f"GEMMA   -lmm 4, all SNPs:                     {g_lmm:8.2f} s")
    print(
        f"ratio lmmkit/GEMMA  GRM: {t_grm / g_gk:.2f}   REML vs one-SNP -lmm: "
        f"{t_reml / g_lmm1:.2f}   GRM+REML vs -gk + one-SNP -lmm: "
        f"{(t_grm + t_reml) / (g_gk + g_lmm1):.2f}"
    )
    print(
        f"ratio with blas_threads=1  REML: {t_reml1 / g_lmm1:.2f}   GRM+REML: "
        f"{(t_grm + t_reml1) / (g_gk + g_lmm1):.2f}"
    )


def user_tasks(quick: bool) -> list:
    """What a user times (#14): read the PLINK files, GRM, REML h2, write; GEMMA ``-gk 1``
    then ``-lmm 4`` on one SNP, process start to output written."""
    from _timing import Task

    def prepare(tmp: Path) -> list[str]:
        first = next(iter(Path(f"{HS}.bim").open())).split()[1]
        (tmp / "one_snp.txt").write_text(first + "\n")
        return [str(HS), str(tmp / "one_snp.txt")]

    gemma = ("gemma -bfile {arg0} -gk 1 -n 1 -o hs && gemma -bfile {arg0} -n 1 -lmm 4 "
             "-k output/hs.cXX.txt -snps {arg1} -o one")  # fmt: skip
    return [Task(
        "HS1940 GRM + REML h² (1,940 mice)",
        setup="import numpy as np\nfrom lmmkit.genetics.grm import compute_grm\n"
        "from lmmkit.genetics.heritability import reml_heritability\n"
        "from lmmkit.genetics.plink import read_plink",
        body="""
        pl = read_plink(ARGS[0])
        y = pl.phenotype(1)
        ok = np.flatnonzero(np.isfinite(y))
        grm = compute_grm(pl, "centered", filter_samples=ok)
        res = reml_heritability(y[ok], grm.subset(ok))
        open(OUT, "w").write(f"{res.h2} {res.h2_se}\\n")
        """,
        prepare=prepare, anchor_cmd=("sh", "-c", gemma), anchor="GEMMA", repeats=3,
    )]  # fmt: skip


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _timing

    if not _timing.cli(user_tasks):
        main()

"""Two-component REML on EUR_subset: lmmkit AI-REML vs BOLT-REML side by side.

Run:  OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_reml_multi.py [--repeats 3]
      [--no-bolt]

Model (BOLT-LMM's example data, 366 analyzed samples x 54,051 SNPs): PHENO ~ QCOV1 +
QCOV2 + CAT_COV with one standardized GRM for chromosomes 17-19 and one for 20-22.
lmmkit is timed end to end from the PLINK files (reading, QC, both GRMs in one pass, AI-REML).
BOLT-REML (``bolt --reml --numThreads=1``, the same model through --modelSnps) is timed
through subprocess when ``bolt`` is on PATH, else its frozen time from
tests/reference/genetics/bolt_reml_eur.json (make_bolt_reference.sh) is shown.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from lmmkit.genetics.multi_reml import multi_reml_from_plink
from lmmkit.genetics.plink import read_pheno_file, read_plink

ROOT = Path(__file__).resolve().parents[1]
EUR = ROOT.parent / "shared" / "data" / "genetics" / "EUR_subset"
REF = ROOT / "tests" / "reference" / "genetics" / "bolt_reml_eur.json"


def run_lmmkit():
    t0 = time.perf_counter()
    pl = read_plink(EUR)
    ph = read_pheno_file(f"{EUR}.pheno2.covars")
    groups = np.where(pl.bim["chrom"].astype(int) <= 19, "chr17_19", "chr20_22")
    fit = multi_reml_from_plink(pl, ph["PHENO"], groups, ph[["QCOV1", "QCOV2", "CAT_COV"]])
    return time.perf_counter() - t0, fit


def _model_snps(tmp: Path) -> Path:
    """BOLT's --modelSnps file: each SNP with its GRM (chromosomes 17-19 / 20-22)."""
    snps = tmp / "modelSnps2"
    with open(f"{EUR}.bim") as fh, open(snps, "w") as out:
        for line in fh:
            f = line.split()
            out.write(f"{f[1]} {'chr17_19' if int(f[0]) <= 19 else 'chr20_22'}\n")
    return snps


def _bolt_args(prefix: str, snps: str) -> list[str]:
    """``bolt --reml`` on the model: PHENO ~ QCOV1 + QCOV2 + CAT_COV, two GRMs."""
    return [
        "bolt",
        f"--bfile={prefix}",
        f"--phenoFile={prefix}.pheno2.covars",
        "--phenoCol=PHENO",
        f"--covarFile={prefix}.pheno2.covars",
        "--qCovarCol=QCOV1",
        "--qCovarCol=QCOV2",
        "--covarCol=CAT_COV",
        f"--modelSnps={snps}",
        "--reml",
    ]


def run_bolt(tmp: Path) -> tuple[float, str]:
    cmd = [*_bolt_args(str(EUR), str(_model_snps(tmp))), "--numThreads=1"]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, check=True)
    return time.perf_counter() - t0, res.stdout + res.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-bolt", action="store_true")
    args = ap.parse_args()
    if not EUR.with_suffix(".bed").exists():
        raise SystemExit(f"shared data not found: {EUR}.bed")
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '(unset)')}")
    times = []
    for _ in range(args.repeats):
        t, fit = run_lmmkit()
        times.append(t)
    t_lmm = min(times)
    print(
        f"lmmkit  AI-REML (GRMs + fit): best {t_lmm:.2f} s of {args.repeats} "
        f"({', '.join(f'{t:.2f}' for t in times)}); {fit.n_iter} iterations"
    )
    for nm, h, s in zip(fit.names, [*fit.h2, fit.sigma2[-1] / fit.vp], [*fit.h2_se, np.nan]):
        print(f"    h2[{nm}] = {h:.4f} (se {s:.4f})")
    bolt_t = None
    if not args.no_bolt and shutil.which("bolt"):
        with tempfile.TemporaryDirectory() as d:
            bolt_t, _log = run_bolt(Path(d))
        print(f"BOLT-REML (--numThreads=1): {bolt_t:.2f} s (measured now)")
    elif REF.exists():
        ref = json.loads(REF.read_text())
        bolt_t = ref["wall_seconds"]
        print(f"BOLT-REML (--numThreads=1): {bolt_t:.2f} s (frozen, {REF.name})")
    if REF.exists():
        ref = json.loads(REF.read_text())
        for nm, h in ref["h2"].items():
            print(f"    BOLT h2[{nm}] = {h:.4f} (se {ref['h2_se'][nm]:.4f})")
    if bolt_t:
        print(f"speed-up lmmkit vs BOLT-REML: {bolt_t / t_lmm:.1f}x")


def user_tasks(quick: bool) -> list:
    """What a user times (#14): two-GRM REML from the PLINK files (read, QC, GRMs, AI-REML,
    h² written) against ``bolt --reml`` (its thread default), process start to end."""
    from _timing import Task

    def prepare(tmp: Path) -> list[str]:
        return [str(EUR), str(_model_snps(tmp))]

    bolt = " ".join(_bolt_args("{arg0}", "{arg1}")) + " > {out}"
    return [Task(
        "EUR_subset two-GRM REML (366 x 54,051)",
        setup="import numpy as np\n"
        "from lmmkit.genetics.multi_reml import multi_reml_from_plink\n"
        "from lmmkit.genetics.plink import read_pheno_file, read_plink",
        body="""
        pl = read_plink(ARGS[0])
        ph = read_pheno_file(ARGS[0] + ".pheno2.covars")
        groups = np.where(pl.bim["chrom"].astype(int) <= 19, "chr17_19", "chr20_22")
        fit = multi_reml_from_plink(pl, ph["PHENO"], groups, ph[["QCOV1", "QCOV2", "CAT_COV"]])
        open(OUT, "w").write(" ".join(map(str, fit.h2)) + "\\n")
        """,
        prepare=prepare, anchor_cmd=("sh", "-c", bolt), anchor="BOLT-REML", repeats=3,
    )]  # fmt: skip


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _timing

    if not _timing.cli(user_tasks):
        main()

"""Genotype PCA, exact against randomized, and plink2 --pca / --pca approx (issue 23 item 2).

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_pcs.py [--pcs 10]

Per data set (HS1940, EUR_subset from ../shared): wall and CPU seconds of
``genotype_pca(method="exact")`` and ``method="randomized"`` (default settings), the largest
relative eigenvalue difference and principal angle between them, and plink2's own times
for ``--pca`` and ``--pca approx`` when plink2 is on the PATH.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.linalg import subspace_angles

from lmmkit.genetics.pca import genotype_pca

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "genetics"
DATA = {"HS1940": ("mouse_hs1940", ["--mouse", "--nonfounders"]), "EUR_subset": ("EUR_subset", [])}


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def plink2_seconds(prefix: Path, flags: list[str], k: int, approx: bool) -> float:
    if shutil.which("plink2") is None:
        return float("nan")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["plink2", "--bfile", str(prefix), *flags, "--pca", str(k),
               *(["approx"] if approx else []), "--threads", "1", "--out", f"{tmp}/x"]  # fmt: skip
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pcs", type=int, default=10)
    k = ap.parse_args().pcs
    print("| data | exact wall / CPU s | randomized wall / CPU s | eigenvalue rel. diff | "
          "largest angle (deg) | plink2 --pca s | plink2 --pca approx s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, (stem, flags) in DATA.items():
        prefix = SHARED / stem
        ex, ew, ec = timed(lambda p=prefix: genotype_pca(p, k, method="exact"))
        ra, rw, rc = timed(lambda p=prefix: genotype_pca(p, k, method="randomized"))
        rel = np.max(np.abs(ra.eigenvalues / ex.eigenvalues - 1))
        ang = np.degrees(subspace_angles(ex.eigenvectors.to_numpy(),
                                         ra.eigenvectors.to_numpy())).max()  # fmt: skip
        p_ex = plink2_seconds(prefix, flags, k, False)
        p_ap = plink2_seconds(prefix, flags, k, True)
        print(f"| {name} | {ew:.1f} / {ec:.1f} | {rw:.1f} / {rc:.1f} | {rel:.2e} | {ang:.3g} | "
              f"{p_ex:.1f} | {p_ap:.1f} |")  # fmt: skip


def user_tasks(quick: bool) -> list:
    """What a user times (#14): ``lmmkit pca`` against ``plink2 --pca`` (exact, plink2's own
    thread default), process start to ``.eigenvec``/``.eigenval`` written."""
    from _timing import Task

    tasks = []
    for name, (stem, flags) in DATA.items():
        cmd = "plink2 --bfile {arg0} " + " ".join(flags) + " --pca 10 --out {out}"
        tasks.append(Task(
            f"{name} `lmmkit pca` 10 PCs (exact)",
            setup="from lmmkit.cli.main import main as lmmkit",
            body="""
            code = lmmkit(["pca", "--bfile", ARGS[0], "--pcs", "10", "--out", OUT,
                           "--overwrite", "--quiet"])
            assert code == 0, code
            """,
            prepare=lambda tmp, p=str(SHARED / stem): [p], anchor_cmd=("sh", "-c", cmd),
            anchor="plink2", repeats=3,
        ))  # fmt: skip
    return tasks


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _timing

    if _timing.cli(user_tasks):
        raise SystemExit(0)
    main()

"""Time lmmkit's ComBat against R sva::ComBat on the bladder data (22,283 probes × 57 samples).

    .venv/bin/python benchmarks/bench_combat.py [--repeats 3] [--covariate] [--nonparametric]

R is run through ``Rscript`` only if it is on PATH (with sva installed); R's time is measured
inside R around the ``ComBat`` call only, so reading the CSV is excluded on both sides.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from lmmkit.errors import LmmkitWarning
from lmmkit.omics.combat import combat

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "omics"

R_SCRIPT = r"""
suppressPackageStartupMessages(library(sva))
args <- commandArgs(trailingOnly = TRUE)
exprs <- as.matrix(read.csv(gzfile(args[1]), row.names = 1, check.names = FALSE))
pheno <- read.csv(args[2], row.names = 1, check.names = FALSE)
mod <- if (args[3] == "1") model.matrix(~as.factor(cancer), data = pheno) else NULL
par <- args[4] == "1"
reps <- as.integer(args[5])
times <- numeric(reps)
for (i in seq_len(reps)) {
  t0 <- proc.time()[["elapsed"]]
  invisible(capture.output(out <- suppressMessages(
    ComBat(exprs, pheno$batch, mod = mod, par.prior = par))))
  times[i] <- proc.time()[["elapsed"]] - t0
}
write.csv(out, gzfile(args[6]))
cat(sprintf("%.6f\n", times))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--covariate", action="store_true", help="preserve the cancer covariate")
    ap.add_argument(
        "--nonparametric", action="store_true", help="non-parametric priors (slow in R)"
    )
    args = ap.parse_args()

    exprs_path = DATA / "bladder_exprs.csv.gz"
    pheno_path = DATA / "bladder_pheno.csv"
    if not exprs_path.exists():
        raise SystemExit(f"bladder data not found at {DATA}")
    exprs = pd.read_csv(exprs_path, index_col=0)
    pheno = pd.read_csv(pheno_path, index_col=0)
    cov = pheno[["cancer"]] if args.covariate else None
    par = not args.nonparametric
    label = f"{'parametric' if par else 'non-parametric'}, {'mod=~cancer' if cov is not None else 'mod=NULL'}"
    print(f"ComBat on bladder {exprs.shape[0]} probes × {exprs.shape[1]} samples ({label})")

    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LmmkitWarning)
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ours = combat(exprs, pheno["batch"], covariates=cov, parametric=par)
            times.append(time.perf_counter() - t0)
    t_py = min(times)
    print(
        f"lmmkit combat: {t_py:.3f} s (best of {args.repeats}: {', '.join(f'{t:.3f}' for t in times)})"
    )

    rscript = shutil.which("Rscript")
    if rscript is None:
        print("R sva: Rscript not on PATH; skipped")
        return
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "bench.R"
        script.write_text(R_SCRIPT)
        out_csv = Path(tmp) / "r_out.csv.gz"
        cmd = [rscript, str(script), str(exprs_path), str(pheno_path),
               "1" if cov is not None else "0", "1" if par else "0", str(args.repeats), str(out_csv)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"R sva: failed ({proc.stderr.strip()[-300:]}); skipped")
            return
        r_times = [float(x) for x in proc.stdout.split()]
        r_out = pd.read_csv(out_csv, index_col=0)
    t_r = min(r_times)
    diff = np.max(np.abs(ours.to_numpy() - r_out.loc[ours.index, ours.columns].to_numpy()))
    print(
        f"R sva ComBat:  {t_r:.3f} s (best of {args.repeats}: {', '.join(f'{t:.3f}' for t in r_times)})"
    )
    print(f"ratio R / lmmkit: {t_r / t_py:.1f}x   (max |lmmkit - sva| = {diff:.2e})")


def user_tasks(quick: bool) -> list:
    """What a user times (#14): read, ComBat, write the adjusted matrix; sva the same way."""
    from _timing import Task

    def prepare(tmp: Path) -> list[str]:
        return [str(DATA / "bladder_exprs.csv.gz"), str(DATA / "bladder_pheno.csv")]

    return [Task(
        "ComBat, bladder 22,283 probes x 57 samples",
        setup="import pandas as pd\nfrom lmmkit.omics.combat import combat\n"
        "exprs = pd.read_csv(ARGS[0], index_col=0)\npheno = pd.read_csv(ARGS[1], index_col=0)",
        body='combat(exprs, pheno["batch"]).to_csv(OUT)',
        prepare=prepare,
        r_setup="suppressMessages(library(sva))\n"
        "exprs <- as.matrix(read.csv(gzfile(ARGS[1]), row.names = 1, check.names = FALSE))\n"
        "pheno <- read.csv(ARGS[2], row.names = 1, check.names = FALSE)",
        r_body="invisible(capture.output(out <- suppressMessages(ComBat(exprs, pheno$batch))))\n"
        "write.csv(out, OUT)",
        anchor="sva", repeats=3,
    )]  # fmt: skip


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _timing

    if not _timing.cli(user_tasks):
        main()

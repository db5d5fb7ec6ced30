"""Time lmmkit's Cox fits against R survival, side by side in one run.

    .venv/bin/python benchmarks/bench_survival.py [--n 100000] [--p 20] [--sites 500]
                                                  [--repeats 2] [--skip-frailty]

Data: simulated once (seeded) with n rows, p standard-normal covariates, `sites` gaussian
site effects (variance 0.25), exponential times rounded to days (ties, as real data) and
about 40% censoring; written to a temporary CSV that both sides read.

Timed (reading the CSV excluded on both sides; R's time is measured inside R):
  * coxph, Efron ties:  R  coxph(Surv(time, status) ~ x1 + ... + xp)
  * gaussian frailty:   R  coxph(... + frailty(site, distribution = "gaussian"))
                        lmmkit coxph("... + (1 | site)", method="ppl")
  * cold: a new Python process that imports lmmkit and fits the Cox model once (numba's
    on-disk cache warm, as after the first use), against Rscript doing the same.
Prints the timings, the ratios R / lmmkit and the largest coefficient difference.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

R_SCRIPT = r"""
suppressPackageStartupMessages(library(survival))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1]); p <- as.integer(args[2]); reps <- as.integer(args[3])
frail <- args[4] == "1"
rhs <- paste0("x", seq_len(p), collapse = " + ")
f <- as.formula(paste("Surv(time, status) ~", rhs))
ff <- as.formula(paste("Surv(time, status) ~", rhs, "+ frailty(site, distribution = 'gaussian')"))
tc <- numeric(reps); tf <- numeric(0)
for (i in seq_len(reps)) {
  t0 <- proc.time()[["elapsed"]]; fit <- coxph(f, d); tc[i] <- proc.time()[["elapsed"]] - t0
}
out <- list(cox = tc, cox_coef = unname(coef(fit)))
if (frail) {
  t0 <- proc.time()[["elapsed"]]; fr <- coxph(ff, d); tf <- proc.time()[["elapsed"]] - t0
  h <- fr$history[[1]]$history
  out$frailty <- tf; out$frailty_coef <- unname(coef(fr)); out$theta <- h[nrow(h), 1]
}
cat(jsonlite::toJSON(out, digits = NA, auto_unbox = TRUE))
"""

COLD = r"""
import sys, time, pandas as pd
t0 = time.perf_counter()
import lmmkit
d = pd.read_csv(sys.argv[1]); p = int(sys.argv[2])
t1 = time.perf_counter()
lmmkit.coxph("Surv(time, status) ~ " + " + ".join(f"x{i + 1}" for i in range(p)), d)
t2 = time.perf_counter()
print(f"{t1 - t0:.4f} {t2 - t1:.4f}")
"""

R_COLD = r"""
t0 <- proc.time()[["elapsed"]]
suppressPackageStartupMessages(library(survival))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1]); p <- as.integer(args[2])
t1 <- proc.time()[["elapsed"]]
fit <- coxph(as.formula(paste("Surv(time, status) ~", paste0("x", seq_len(p), collapse = " + "))), d)
t2 <- proc.time()[["elapsed"]]
cat(sprintf("%.4f %.4f\n", t1 - t0, t2 - t1))
"""


def simulate(n: int, p: int, sites: int, seed: int = 2024) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    beta = rng.normal(0, 0.2, p)
    site = rng.integers(0, sites, n)
    b = rng.normal(0, 0.5, sites)
    eta = X @ beta + b[site]
    t = rng.exponential(np.exp(-eta))
    c = rng.exponential(np.quantile(t, 0.7), n)
    d = pd.DataFrame(X, columns=[f"x{i + 1}" for i in range(p)])
    d["time"] = np.round(np.minimum(t, c) * 365) + 1
    d["status"] = (t <= c).astype(int)
    d["site"] = site
    return d


def _best(times) -> float:
    return float(np.min(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--p", type=int, default=20)
    ap.add_argument("--sites", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--skip-frailty", action="store_true")
    args = ap.parse_args()

    import lmmkit

    d = simulate(args.n, args.p, args.sites)
    rhs = " + ".join(f"x{i + 1}" for i in range(args.p))
    print(
        f"data: n={args.n}, p={args.p}, sites={args.sites}, events={int(d.status.sum())}, "
        f"distinct times={d.time.nunique()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "surv.csv"
        d.to_csv(csv, index=False)
        lmmkit.coxph(f"Surv(time, status) ~ {rhs}", d.head(2000))  # compile / load cache
        tc = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fit = lmmkit.coxph(f"Surv(time, status) ~ {rhs}", d)
            tc.append(time.perf_counter() - t0)
        tf = None
        if not args.skip_frailty:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                fr = lmmkit.coxph(f"Surv(time, status) ~ {rhs} + (1 | site)", d)
                tf = time.perf_counter() - t0
        cold = subprocess.run(
            [sys.executable, "-c", COLD, str(csv), str(args.p)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        r = r_cold = None
        if shutil.which("Rscript"):
            rs = Path(tmp) / "bench.R"
            rs.write_text(R_SCRIPT)
            out = subprocess.run(
                [
                    "Rscript",
                    str(rs),
                    str(csv),
                    str(args.p),
                    str(args.repeats),
                    "0" if args.skip_frailty else "1",
                ],
                capture_output=True,
                text=True,
            )
            r = json.loads(out.stdout) if out.returncode == 0 else None
            if r is None:
                print("R failed:", out.stderr[-500:])
            rc = Path(tmp) / "cold.R"
            rc.write_text(R_COLD)
            r_cold = subprocess.run(
                ["Rscript", str(rc), str(csv), str(args.p)], capture_output=True, text=True
            ).stdout.split()
    print(f"\n{'task':<34}{'lmmkit s':>10}{'R s':>10}{'R/lmmkit':>10}")

    def row(name, ours, theirs):
        ratio = f"{theirs / ours:10.2f}" if theirs else f"{'':>10}"
        print(f"{name:<34}{ours:10.3f}{(theirs or float('nan')):10.3f}{ratio}")

    row("coxph (warm, best)", _best(tc), _best(r["cox"]) if r else None)
    if tf is not None:
        row(f"gaussian frailty, {args.sites} sites", tf, r.get("frailty") if r else None)
    row("cold: import + read", float(cold[0]), float(r_cold[0]) if r_cold else None)
    row("cold: first coxph", float(cold[1]), float(r_cold[1]) if r_cold else None)
    if r:
        dc = np.max(np.abs(fit.coef.to_numpy() - np.array(r["cox_coef"])))
        print(f"\nmax |coef - R| coxph: {dc:.2e}")
        if tf is not None and "frailty_coef" in r:
            df = np.max(np.abs(fr.coef.to_numpy() - np.array(r["frailty_coef"])))
            th = next(iter(fr.theta.values()))
            print(f"max |coef - R| frailty: {df:.2e}; theta {th:.6f} vs R {r['theta']:.6f}")


def user_tasks(quick: bool) -> list:
    """What a user times (#14): read, coxph (Efron), write; R survival the same way."""
    from _timing import frame_task

    n, p = (20_000, 20) if quick else (100_000, 20)

    def prepare(tmp: Path) -> list[str]:
        simulate(n, p, 500).to_csv(tmp / "surv.csv", index=False)
        return [str(tmp / "surv.csv")]

    rhs = " + ".join(f"x{i + 1}" for i in range(p))
    return [frame_task(f"coxph Efron, {n:,} rows x {p}", prepare, ["site"],
                       f'lmmkit.coxph("Surv(time, status) ~ {rhs}", d).coef',
                       f"coef(coxph(Surv(time, status) ~ {rhs}, d))",
                       r_library="survival", repeats=3)]  # fmt: skip


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _timing

    if not _timing.cli(user_tasks):
        main()

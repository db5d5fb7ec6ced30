"""Side-by-side benchmark of GLMM fits: lmmkit.glmm vs R's glmer (lme4), in one run.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_glmm.py
    .venv/bin/python benchmarks/bench_glmm.py --repeats 5 --json out.json --only poisson_100k

Models (glmer defaults: Laplace, nAGQ = 1, two-stage optimization, Hessian-based vcov):

* ``binomial_crossed``: 7,500 Bernoulli trials, 150 subjects crossed with 50 items
  (tests/reference/glmm/binomial_crossed.csv.gz, made by make_reference.R);
  ``correct ~ cond + freq + (1 | subject) + (1 | item)``.
* ``poisson_100k``: 100,000 simulated counts in 150 groups (numpy seed 20240603, written to
  benchmarks/_data/ on first use); ``y ~ x1 + x2 + (1 | g)``.

Timing: lmmkit runs one untimed warm-up fit (imports, numba compilation), then ``--repeats``
timed fits in this process; glmer runs in ``Rscript`` with one warm-up and ``--repeats`` timed
fits, timed inside R around ``glmer()`` only (``system.time``). Both wall-clock and CPU
(user) seconds are reported as medians, and the ratio glmer / lmmkit of each. CPU time is the
steadier number on a shared machine; wall time is what a user waits. The log-likelihoods are
printed side by side as a check that both fitted the same model.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / "_data"

MODELS = {
    "binomial_crossed": {
        "formula": "correct ~ cond + freq + (1 | subject) + (1 | item)",
        "family": "binomial",
        "factors": ["subject", "item", "cond"],
    },
    "poisson_100k": {
        "formula": "y ~ x1 + x2 + (1 | g)",
        "family": "poisson",
        "factors": ["g"],
    },
}

R_SCRIPT = r"""
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
a <- commandArgs(trailingOnly = TRUE)
d <- read.csv(a[1], stringsAsFactors = TRUE)
for (v in strsplit(a[4], ",")[[1]]) d[[v]] <- factor(d[[v]])
fam <- get(a[3])
reps <- as.integer(a[5])
m <- glmer(as.formula(a[2]), d, family = fam)  # warm-up
wall <- numeric(reps); cpu <- numeric(reps)
for (i in seq_len(reps)) {
  t <- system.time(m <- glmer(as.formula(a[2]), d, family = fam))
  wall[i] <- t[["elapsed"]]; cpu[i] <- t[["user.self"]] + t[["sys.self"]]
}
cat(toJSON(list(wall = median(wall), cpu = median(cpu), loglik = as.numeric(logLik(m)),
                fixef = unname(fixef(m)), version = as.character(packageVersion("lme4"))),
           digits = NA, auto_unbox = TRUE))
"""


def data_path(name: str) -> Path:
    if name == "binomial_crossed":
        return REPO / "tests" / "reference" / "glmm" / "binomial_crossed.csv.gz"
    path = DATA / "poisson_100k_seed20240603.csv"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(20240603)
        n, G = 100_000, 150
        g = rng.integers(0, G, n)
        x1, x2 = rng.normal(size=n), rng.normal(size=n)
        re = rng.normal(0, 0.5, G)
        y = rng.poisson(np.exp(0.5 + 0.3 * x1 - 0.2 * x2 + re[g]))
        frame = pd.DataFrame(
            {"y": y, "x1": x1.round(6), "x2": x2.round(6), "g": [f"g{i:03d}" for i in g]}
        )
        frame.to_csv(path, index=False)
    return path


def time_lmmkit(name: str, repeats: int) -> dict:
    from lmmkit.glmm.model import glmm

    spec = MODELS[name]
    d = pd.read_csv(data_path(name))
    for c in spec["factors"]:
        d[c] = d[c].astype(str)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        glmm(spec["formula"], d, family=spec["family"])  # warm-up
        wall, cpu = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            res = glmm(spec["formula"], d, family=spec["family"])
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return {
        "wall": statistics.median(wall),
        "cpu": statistics.median(cpu),
        "loglik": res.loglik,
        "fixef": res.fixef.tolist(),
    }


def time_glmer(name: str, repeats: int) -> dict:
    if shutil.which("Rscript") is None:
        return {"error": "Rscript not on PATH"}
    spec = MODELS[name]
    with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False) as fh:
        fh.write(R_SCRIPT)
        script = fh.name
    try:
        out = subprocess.run(
            [
                "Rscript",
                script,
                str(data_path(name)),
                spec["formula"],
                spec["family"],
                ",".join(spec["factors"]),
                str(repeats),
            ],
            capture_output=True,
            text=True,
            timeout=3600,
            env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
        )
    finally:
        os.unlink(script)
    if out.returncode != 0:
        return {"error": out.stderr.strip()[-400:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def user_tasks(quick: bool) -> list:
    """What a user times (#14): read, fit, write; glmer the same way."""
    from _timing import frame_task

    tasks = []
    for name in ["binomial_crossed"] if quick else sorted(MODELS):
        spec = MODELS[name]
        f, fam = spec["formula"], spec["family"]
        tasks.append(frame_task(f"glmm {name}", data_path(name), spec["factors"],
                                f"lmmkit.glmm({f!r}, d, family={fam!r}).fixef",
                                f"fixef(glmer({f}, d, family = {fam}))", repeats=3))  # fmt: skip
    return tasks


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(HERE))
    import _timing

    if _timing.cli(user_tasks, argv):
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", nargs="*", choices=sorted(MODELS), default=sorted(MODELS))
    ap.add_argument("--skip-r", action="store_true", help="time lmmkit only")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args(argv)
    rows = {}
    for name in args.only:
        lk = time_lmmkit(name, args.repeats)
        rr = {"error": "skipped"} if args.skip_r else time_glmer(name, args.repeats)
        rows[name] = {"lmmkit": lk, "glmer": rr}
    header = (
        f"{'model':<18}{'nobs':>8} | {'lmmkit wall':>11}{'glmer wall':>11}{'ratio':>7} | "
        f"{'lmmkit cpu':>10}{'glmer cpu':>10}{'ratio':>7} | {'logLik lmmkit':>15}{'glmer':>15}"
    )
    print(header)
    print("-" * len(header))
    for name, r in rows.items():
        lk, rr = r["lmmkit"], r["glmer"]
        nobs = len(pd.read_csv(data_path(name), usecols=[0]))
        if "error" in rr:
            print(f"{name:<18}{nobs:>8} | {lk['wall']:>11.3f}  glmer: {rr['error']}")
            continue
        print(
            f"{name:<18}{nobs:>8} | {lk['wall']:>11.3f}{rr['wall']:>11.3f}"
            f"{rr['wall'] / lk['wall']:>6.1f}x | {lk['cpu']:>10.3f}{rr['cpu']:>10.3f}"
            f"{rr['cpu'] / lk['cpu']:>6.1f}x | {lk['loglik']:>15.4f}{rr['loglik']:>15.4f}"
        )
    print(
        f"\nmedian of {args.repeats} timed fits after one warm-up each; seconds. The machine may "
        "be shared: wall times are noisy, CPU times steadier."
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Variance partition at scale, side by side: lmmkit vs an lme4 loop vs statsmodels.

    .venv/bin/python benchmarks/bench_varpart.py                  # 20,000 genes x 100 samples
    .venv/bin/python benchmarks/bench_varpart.py --genes 2000 --subset 100

Design: 100 samples; four crossed random factors (25 patients, 4 kits, 10 days, 3 operators);
each gene y = patient + kit + day + operator effects + noise with gene-specific variances
(seeded). Model: ~ (1|patient) + (1|kit) + (1|day) + (1|operator), ML (variancePartition).

* lmmkit: variance_partition over all genes, serial and on a distributed.LocalCluster with two
  single-threaded worker processes (the `local:2` scheduler); wall time includes the cluster
  start-up.
* lme4: an lmer loop over the first --subset genes inside R (Rscript, when present), timed in R;
  per-gene time extrapolated to all genes.
* statsmodels MixedLM: crossed factors as variance components of one group
  (vc_formula), on the first --subset genes; per-gene time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

FORMULA = "~ (1 | patient) + (1 | kit) + (1 | day) + (1 | operator)"


def simulate(genes: int, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n = 100
    samples = pd.DataFrame(
        {
            "patient": [f"P{i % 25:02d}" for i in range(n)],
            "kit": [f"K{k}" for k in rng.integers(0, 4, n)],
            "day": [f"D{d}" for d in rng.integers(0, 10, n)],
            "operator": [f"O{o}" for o in rng.integers(0, 3, n)],
        },
        index=[f"S{i:03d}" for i in range(n)],
    )
    codes = {c: pd.factorize(samples[c])[0] for c in ("patient", "kit", "day", "operator")}
    y = rng.normal(size=(genes, n))
    for c, sd in (("patient", 1.0), ("kit", 0.5), ("day", 0.3), ("operator", 0.2)):
        nl = codes[c].max() + 1
        scale = sd * rng.uniform(0.2, 1.5, size=(genes, 1))
        y += (rng.normal(size=(genes, nl)) * scale)[:, codes[c]]
    expr = pd.DataFrame(y, index=[f"g{i:05d}" for i in range(genes)], columns=samples.index)
    return expr, samples


def time_lmmkit(
    expr: pd.DataFrame, samples: pd.DataFrame, scheduler: str | None
) -> tuple[float, pd.DataFrame]:
    import lmmkit
    from lmmkit.parallel.executor import get_executor

    start = time.perf_counter()
    executor = get_executor(scheduler) if scheduler else None
    try:
        frac = lmmkit.variance_partition(FORMULA, expr, samples, executor=executor, progress=False)
    finally:
        if executor is not None:
            executor.close()
    return time.perf_counter() - start, frac


R_LOOP = r"""
suppressPackageStartupMessages(library(lme4))
a <- commandArgs(trailingOnly = TRUE)
expr <- as.matrix(read.csv(a[1], row.names = 1, check.names = FALSE))
s <- read.csv(a[2], row.names = 1)
for (v in names(s)) s[[v]] <- factor(s[[v]])
s <- s[colnames(expr), ]
fr <- matrix(NA, nrow(expr), 5)
t <- system.time(for (i in seq_len(nrow(expr))) {
  d <- s; d$y <- expr[i, ]
  f <- lmer(y ~ (1|patient) + (1|kit) + (1|day) + (1|operator), d, REML = FALSE)
  vc <- as.data.frame(VarCorr(f))
  v <- setNames(vc$vcov, vc$grp)
  fr[i, ] <- v[c("patient", "kit", "day", "operator", "Residual")] / sum(v)
})
cat(jsonlite::toJSON(list(seconds = t[["elapsed"]], fractions = fr), digits = NA))
"""


def time_lme4(expr: pd.DataFrame, samples: pd.DataFrame) -> dict | None:
    if not shutil.which("Rscript"):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        expr.to_csv(os.path.join(tmp, "e.csv"))
        samples.to_csv(os.path.join(tmp, "s.csv"))
        script = os.path.join(tmp, "loop.R")
        with open(script, "w") as fh:
            fh.write(R_LOOP)
        out = subprocess.run(
            ["Rscript", script, os.path.join(tmp, "e.csv"), os.path.join(tmp, "s.csv")],
            capture_output=True,
            text=True,
            timeout=3600,
        )
    if out.returncode != 0:
        print("lme4 loop failed:", out.stderr[-500:], file=sys.stderr)
        return None
    return json.loads(out.stdout)


def time_statsmodels(expr: pd.DataFrame, samples: pd.DataFrame) -> float | None:
    try:
        import statsmodels.formula.api as smf
    except ImportError:
        return None
    import warnings

    vc = {c: f"0 + C({c})" for c in ("patient", "kit", "day", "operator")}
    data = samples.assign(group=1)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for g in expr.index:
            d = data.assign(y=expr.loc[g].to_numpy())
            smf.mixedlm("y ~ 1", d, groups="group", vc_formula=vc).fit(reml=False)
    return (time.perf_counter() - start) / len(expr)


def user_tasks(quick: bool) -> list:
    """What a user times (#14): read expression and samples, fit every gene, write the
    fractions; an lmer loop over the same genes in R (the same model per gene)."""
    from _timing import Task

    genes = 200 if quick else 2_000

    def prepare(tmp) -> list[str]:
        expr, samples = simulate(genes)
        expr.to_csv(tmp / "e.csv")
        samples.to_csv(tmp / "s.csv")
        return [str(tmp / "e.csv"), str(tmp / "s.csv")]

    return [Task(
        f"variance partition, {genes:,} genes x 100 samples, 4 random terms",
        setup="import pandas as pd, lmmkit\n"
        "expr = pd.read_csv(ARGS[0], index_col=0)\nsamples = pd.read_csv(ARGS[1], index_col=0)",
        body=f"lmmkit.variance_partition({FORMULA!r}, expr, samples, progress=False).to_csv(OUT)",
        prepare=prepare,
        r_setup="""
        suppressMessages(library(lme4))
        expr <- as.matrix(read.csv(ARGS[1], row.names = 1, check.names = FALSE))
        s <- read.csv(ARGS[2], row.names = 1)
        for (v in names(s)) s[[v]] <- factor(s[[v]])
        s <- s[colnames(expr), ]
        """,
        r_body="""
        fr <- t(sapply(seq_len(nrow(expr)), function(i) {
          d <- s; d$y <- expr[i, ]
          vc <- as.data.frame(VarCorr(lmer(y ~ (1|patient) + (1|kit) + (1|day) + (1|operator),
                                           d, REML = FALSE)))
          v <- setNames(vc$vcov, vc$grp)
          v[c("patient", "kit", "day", "operator", "Residual")] / sum(v)
        }))
        write.csv(fr, OUT)
        """,
        anchor="lme4 loop", repeats=1,
    )]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--genes", type=int, default=20_000)
    p.add_argument("--subset", type=int, default=200, help="genes for lme4 and statsmodels")
    p.add_argument("--no-cluster", action="store_true", help="skip the LocalCluster run")
    args = p.parse_args(argv)
    expr, samples = simulate(args.genes)
    print(f"{args.genes} genes x {expr.shape[1]} samples; model {FORMULA} (ML)\n")
    serial_s, frac = time_lmmkit(expr, samples, None)
    print(
        f"lmmkit serial:            {serial_s:8.1f} s  ({serial_s / args.genes * 1e3:.2f} ms/gene)"
    )
    if not args.no_cluster:
        cluster_s, frac2 = time_lmmkit(expr, samples, "local:2")
        same = np.allclose(
            frac2.drop(columns="reason"), frac.drop(columns="reason"), equal_nan=True, atol=1e-12
        )
        print(
            f"lmmkit LocalCluster(2):   {cluster_s:8.1f} s  ({cluster_s / args.genes * 1e3:.2f} ms/gene; "
            f"identical to serial: {same})"
        )
    best = min(serial_s, cluster_s) if not args.no_cluster else serial_s
    sub = expr.iloc[: args.subset]
    r = time_lme4(sub, samples)
    if r is not None:
        per = float(np.atleast_1d(r["seconds"])[0]) / args.subset
        ref = np.asarray(r["fractions"], dtype=float)
        ours = frac.loc[sub.index, ["patient", "kit", "day", "operator", "Residuals"]].to_numpy()
        print(
            f"lme4 loop ({args.subset} genes): {per * 1e3:8.1f} ms/gene -> {per * args.genes:8.1f} s for all; "
            f"ratio {per * args.genes / best:.1f}x; max |fraction diff| {np.nanmax(np.abs(ours - ref)):.1e}"
        )
    else:
        print("lme4: Rscript not found, skipped")
    sm = time_statsmodels(expr.iloc[: min(args.subset, 50)], samples)
    if sm is not None:
        print(
            f"statsmodels MixedLM:      {sm * 1e3:8.1f} ms/gene -> {sm * args.genes:8.1f} s for all; "
            f"ratio {sm * args.genes / best:.1f}x"
        )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _timing

    if not _timing.cli(user_tasks):
        sys.exit(main())

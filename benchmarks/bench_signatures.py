"""Penalized signatures: LASSO-Cox path against R glmnet, and the LOSO signature pipeline.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_signatures.py [--n 500] [--p 20000]
        [--sites 20] [--per-site 20] [--features 2000] [--skip-r]

1. LASSO-Cox path (alpha = 1, glmnet's default 100-lambda path, default tolerances) on
   n x p simulated features (10 true effects). R glmnet and lmmkit.penalized_path run on the
   same data in one invocation; both are timed cold (first call in a fresh process,
   including loading the package) and warm (second call), and the ratio lmmkit / glmnet is
   printed with the largest coefficient difference at glmnet's lambdas.
2. The leave-one-site-out signature pipeline (ComBat, variance filter, LASSO with inner
   site-grouped CV, inside every fold) on sites x per-site rows and ``--features`` features,
   binary outcome, outer folds on two threads. Goal: under a minute.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

R_SCRIPT = r"""
t0 <- proc.time()[["elapsed"]]
suppressPackageStartupMessages({library(glmnet); library(survival)})
args <- commandArgs(trailingOnly = TRUE)
n <- as.integer(args[2]); p <- as.integer(args[3])
X <- matrix(readBin(args[1], "double", n * p), n, p)
y <- read.csv(args[4])
t1 <- proc.time()[["elapsed"]]
f <- glmnet(X, Surv(y$time, y$status), family = "cox")
t2 <- proc.time()[["elapsed"]]
f <- glmnet(X, Surv(y$time, y$status), family = "cox")
t3 <- proc.time()[["elapsed"]]
b <- as.matrix(f$beta)
keep <- which(rowSums(b != 0) > 0)
write.csv(data.frame(lambda = f$lambda), args[5], row.names = FALSE)
write.csv(data.frame(j = keep, as.matrix(b[keep, , drop = FALSE])), args[6], row.names = FALSE)
cat(sprintf("%.4f %.4f %.4f\n", t1 - t0, t2 - t1, t3 - t2))
"""

PY_COLD = r"""
import sys, time
t0 = time.perf_counter()
import numpy as np, pandas as pd
from lmmkit.signatures import penalized_path
n, p = int(sys.argv[2]), int(sys.argv[3])
X = np.fromfile(sys.argv[1]).reshape(p, n).T
y = pd.read_csv(sys.argv[4])
t1 = time.perf_counter()
penalized_path(X, (y.time.to_numpy(), y.status.to_numpy()), family="cox")
t2 = time.perf_counter()
print(f"{t1 - t0:.4f} {t2 - t1:.4f}")
"""


def simulate_cox(n: int, p: int, seed: int = 1) -> tuple[np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    lp = X[:, :10] @ np.full(10, 0.4)
    t = rng.exponential(np.exp(-lp))
    c = rng.exponential(1 / 0.3, n)
    y = pd.DataFrame({"time": np.minimum(t, c), "status": (t <= c).astype(int)})
    return X, y


def bench_cox(n: int, p: int, skip_r: bool) -> None:
    from lmmkit.signatures import penalized_path

    X, y = simulate_cox(n, p)
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        xb = tmpd / "X.bin"
        X.T.astype(float).tofile(xb)  # column-major for R
        y.to_csv(tmpd / "y.csv", index=False)
        print(f"\n## LASSO-Cox path, {n} x {p}, {int(y.status.sum())} events")
        cold = subprocess.run([sys.executable, "-c", PY_COLD, str(xb), str(n), str(p),
                               str(tmpd / "y.csv")], capture_output=True, text=True,
                              check=True)  # fmt: skip
        py_load, py_cold = map(float, cold.stdout.split())
        t0 = time.perf_counter()
        path = penalized_path(X, (y.time.to_numpy(), y.status.to_numpy()), family="cox")
        py_warm = time.perf_counter() - t0
        print(f"lmmkit: cold {py_cold:.2f} s (+{py_load:.2f} s import/read), warm {py_warm:.2f} s,"
              f" {len(path.lambdas)} lambdas")  # fmt: skip
        if skip_r or shutil.which("Rscript") is None:
            print("R glmnet: skipped")
            return
        (tmpd / "b.R").write_text(R_SCRIPT)
        out = subprocess.run(["Rscript", str(tmpd / "b.R"), str(xb), str(n), str(p),
                              str(tmpd / "y.csv"), str(tmpd / "lam.csv"), str(tmpd / "beta.csv")],
                             capture_output=True, text=True, check=True)  # fmt: skip
        r_load, r_cold, r_warm = map(float, out.stdout.split()[-3:])
        lam_r = pd.read_csv(tmpd / "lam.csv")["lambda"].to_numpy()
        braw = pd.read_csv(tmpd / "beta.csv")
        beta_r = np.zeros((len(lam_r), p))
        beta_r[:, braw["j"].to_numpy() - 1] = braw.drop(columns="j").to_numpy().T
        _, b = path.coef_at(lam_r)
        print(f"R glmnet: cold {r_cold:.2f} s (+{r_load:.2f} s load/read), warm {r_warm:.2f} s, "
              f"{len(lam_r)} lambdas")  # fmt: skip
        print(f"ratio lmmkit/glmnet: cold {py_cold / r_cold:.2f}, warm {py_warm / r_warm:.2f} "
              "(goal <= 2)")
        print(f"max |coef difference| at glmnet's lambdas (default tolerances): "
              f"{np.abs(b - beta_r).max():.2e}; relative lambda difference "
              f"{np.abs(path.lambdas[: len(lam_r)] / lam_r[: len(path.lambdas)] - 1).max():.1e}")


def bench_pipeline(n_sites: int, per_site: int, p: int) -> None:
    import lmmkit

    rng = np.random.default_rng(1)
    n = n_sites * per_site
    Z = rng.standard_normal((n, 20))
    X = np.repeat(Z, p // 20 + 1, axis=1)[:, :p] + rng.standard_normal((n, p))
    X += rng.standard_normal((n_sites, p))[np.repeat(np.arange(n_sites), per_site)] * 0.5
    df = pd.DataFrame(X, columns=[f"f{j}" for j in range(p)])
    df["site"] = np.repeat([f"s{i:02d}" for i in range(n_sites)], per_site)
    df["y"] = (Z[:, 0] - 0.8 * Z[:, 1] + rng.standard_normal(n) > 0).astype(int)
    print(f"\n## LOSO signature pipeline, {n_sites} sites x {per_site} rows, {p} features")
    t0 = time.perf_counter()
    res = lmmkit.signature(df, outcome="y", site="site", final_model=False,
                           scheduler="threads:2")  # fmt: skip
    el = time.perf_counter() - t0
    print(f"lmmkit.signature: {el:.1f} s (goal < 60 s); held-out AUC {res.metrics['auc']:.3f}; "
          f"median {res.folds['n_selected'].median():.0f} features selected")


def user_tasks(quick: bool) -> list:
    """What a user times (#14): read the features, the LASSO-Cox path, write the coefficients;
    R glmnet the same way."""
    from _timing import Task

    n, p = (200, 1_000) if quick else (500, 20_000)

    def prepare(tmp: Path) -> list[str]:
        X, y = simulate_cox(n, p)
        X.T.astype(float).tofile(tmp / "X.bin")  # column-major, as R reads it
        y.to_csv(tmp / "y.csv", index=False)
        return [str(tmp / "X.bin"), str(n), str(p), str(tmp / "y.csv")]

    return [Task(
        f"LASSO-Cox path, {n} x {p:,}, 100 lambdas",
        setup="import numpy as np, pandas as pd\nfrom lmmkit.signatures import penalized_path\n"
        "n, p = int(ARGS[1]), int(ARGS[2])\nX = np.fromfile(ARGS[0]).reshape(p, n).T\n"
        "y = pd.read_csv(ARGS[3])",
        body='np.savetxt(OUT, penalized_path(X, (y.time.to_numpy(), y.status.to_numpy()), '
        'family="cox").coef)',
        prepare=prepare,
        r_setup="suppressMessages({library(glmnet); library(survival)})\n"
        "n <- as.integer(ARGS[2]); p <- as.integer(ARGS[3])\n"
        "X <- matrix(readBin(ARGS[1], 'double', n * p), n, p)\ny <- read.csv(ARGS[4])",
        r_body="write.csv(as.matrix(glmnet(X, Surv(y$time, y$status), family = 'cox')$beta), OUT)",
        anchor="glmnet", repeats=1,
    )]  # fmt: skip


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _timing

    if _timing.cli(user_tasks):
        return
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--p", type=int, default=20000)
    ap.add_argument("--sites", type=int, default=20)
    ap.add_argument("--per-site", type=int, default=20)
    ap.add_argument("--features", type=int, default=2000)
    ap.add_argument("--skip-r", action="store_true")
    args = ap.parse_args()
    bench_cox(args.n, args.p, args.skip_r)
    bench_pipeline(args.sites, args.per_site, args.features)


if __name__ == "__main__":
    main()

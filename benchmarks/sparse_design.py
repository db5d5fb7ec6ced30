"""The crossed design of the sparse-block benchmark (issue #17): patients x providers.

Patients (``g1``) and providers (``g2``) each have ``levels`` levels, split into ``regions``
regions along a ring of catchment areas (a patient's region and a provider's region are
their level index times regions / levels). Every patient has ``n / levels`` visits; each
visit goes to a random provider of the patient's own region, or with probability
``p_out`` to one of an adjacent region. So the two factors are crossed (a patient sees many
providers, a provider many patients) with the locality of real referral patterns. The
response is

    y = 1 + 0.5 x + b0[g1] + b1[g1] x + c[g2] + e,
    sd(b0) = 1, sd(b1) = 0.3, corr(b0, b1) = 0.3, sd(c) = 0.7, sd(e) = 1,

fitted as ``y ~ x + (1 + x | g1) + (1 | g2)``: two crossed intercept factors plus a slope.

    .venv/bin/python benchmarks/sparse_design.py --n 200000 --out /tmp/crossed_200k.csv
    .venv/bin/python benchmarks/sparse_design.py --n 200000 --fit     # time and peak memory

With ``--fit`` the design is fitted by lmmkit (REML) and the set-up and fit times, the peak
resident memory, the objective, theta and the linear algebra chosen are printed as JSON.
lme4 on the same file: tests/reference/sparse/lme4_crossed.R.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import pandas as pd

FORMULA = "y ~ x + (1 + x | g1) + (1 | g2)"


def simulate(
    n: int, levels: int = 50_000, regions: int = 1_000, p_out: float = 0.1, seed: int = 17
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    per = n // levels
    g1 = np.repeat(np.arange(levels), per)
    g1 = np.concatenate([g1, rng.integers(0, levels, n - len(g1))])
    region = g1 * regions // levels
    move = rng.random(n) < p_out
    region = (region + np.where(move, rng.choice([-1, 1], n), 0)) % regions
    size = levels // regions
    g2 = region * size + rng.integers(0, size, n)
    x = rng.standard_normal(n)
    cov = np.array([[1.0, 0.3 * 0.3], [0.3 * 0.3, 0.09]])
    b = rng.multivariate_normal([0.0, 0.0], cov, size=levels)
    c = 0.7 * rng.standard_normal(levels)
    y = 1.0 + 0.5 * x + b[g1, 0] + b[g1, 1] * x + c[g2] + rng.standard_normal(n)
    return pd.DataFrame(
        {
            "y": y,
            "x": x,
            "g1": np.char.add("p", g1.astype(str)),
            "g2": np.char.add("v", g2.astype(str)),
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--levels", type=int, default=50_000)
    ap.add_argument("--regions", type=int, default=1_000)
    ap.add_argument("--p-out", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--out", help="write the simulated data to this CSV")
    ap.add_argument("--fit", action="store_true", help="fit it with lmmkit and report")
    a = ap.parse_args()
    if not (a.out or a.fit):
        ap.error("give --out FILE, --fit, or both")
    df = simulate(a.n, a.levels, a.regions, a.p_out, a.seed)
    if a.out:
        df.to_csv(a.out, index=False)
    if a.fit:
        print(json.dumps(fit_report(df), indent=2))


def fit_report(df: pd.DataFrame) -> dict:
    """Fit FORMULA to df by REML; wall and CPU times, peak memory (ru_maxrss), the result."""
    from lmmkit.models.lmm import LinearMixedModel

    c0, t0 = time.process_time(), time.perf_counter()
    model = LinearMixedModel(FORMULA, df)
    c1, t1 = time.process_time(), time.perf_counter()
    res = model.fit()
    c2, t2 = time.process_time(), time.perf_counter()
    return {
        "nobs": len(df),
        "levels_g1": int(df["g1"].nunique()),
        "levels_g2": int(df["g2"].nunique()),
        "seconds_setup": round(t1 - t0, 2),
        "seconds_fit": round(t2 - t1, 2),
        "cpu_seconds_setup": round(c1 - c0, 2),  # all threads; wall time on a shared machine
        "cpu_seconds_fit": round(c2 - c1, 2),  # is dominated by waiting for a core
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "objective": res.objective,
        "theta": list(map(float, res.theta)),
        "fixef": list(map(float, res.fixef)),
        "optimizer": res.optimization.optimizer,
        "linear_algebra": res.optimization.linear_algebra,
    }


def user_tasks(quick: bool) -> list:
    """What a user times (#14): read the CSV, fit, write; lme4 the same way."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _timing import lmm_task

    n, levels = (60_000, 15_000) if quick else (200_000, 50_000)

    def prepare(tmp: Path) -> list[str]:
        path = tmp / "crossed.csv"
        simulate(n, levels, max(levels // 50, 1)).to_csv(path, index=False)
        return [str(path)]

    label = f"sparse second block, {n:,} rows, {levels:,} x {levels:,} crossed + slope"
    return [lmm_task(label, prepare, FORMULA, ["g1", "g2"], reml=True, repeats=1,
                     goal="≥ 5× lme4 (#17)")]  # fmt: skip


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
    import _timing

    if not _timing.cli(user_tasks):
        main()

"""Deterministic simulated crossed design for the large benchmark.

    y ~ x + treat + (1 + x | subj) + (1 | item)

10,000 subjects crossed with 2,000 items; each subject sees 100 distinct items drawn at random,
so the default design has 1,000,000 rows. ``x ~ N(0, 1)`` at the observation level; ``treat`` is
a subject-level 0/1 indicator (half the subjects). True values (see ``TRUTH``): fixed effects
(2.0, 0.5, 0.3); subject intercept SD 1.0, subject slope SD 0.5, correlation 0.3; item intercept
SD 0.7; residual SD 1.0.

Usage::

    python benchmarks/simulate.py            # writes/refreshes benchmarks/_data/sim_1m_seed20240601.csv
    python benchmarks/simulate.py --n-subj 1000 --n-item 200 --per-subj 20

The CSV is cached under ``benchmarks/_data/`` (git-ignored); :func:`load` regenerates it when
missing. Subject and item ids are strings (``S00001``, ``I0001``) so that every consumer (R,
pandas, lmmkit) treats them as grouping factors.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

DATA_DIR = Path(__file__).resolve().parent / "_data"
SEED = 20240601
FORMULA = "y ~ x + treat + (1 + x | subj) + (1 | item)"
TRUTH = {
    "beta": (2.0, 0.5, 0.3),  # (Intercept), x, treat
    "sd_subj_int": 1.0,
    "sd_subj_slope": 0.5,
    "corr_subj": 0.3,
    "sd_item": 0.7,
    "sigma": 1.0,
}


def simulate(
    n_subj: int = 10_000, n_item: int = 2_000, per_subj: int = 100, seed: int = SEED
) -> pd.DataFrame:
    """Return the simulated data frame (``n_subj * per_subj`` rows), fully determined by the seed."""
    if per_subj > n_item:
        raise ValueError("per_subj must not exceed n_item")
    rng = np.random.default_rng(seed)
    # items seen by each subject: per_subj distinct items, chosen uniformly, in block chunks to
    # keep memory modest (the random keys for a chunk are chunk x n_item doubles)
    items = np.empty((n_subj, per_subj), dtype=np.int64)
    chunk = 1000
    for start in range(0, n_subj, chunk):
        stop = min(start + chunk, n_subj)
        keys = rng.random((stop - start, n_item))
        items[start:stop] = np.argpartition(keys, per_subj - 1, axis=1)[:, :per_subj]
    items.sort(axis=1)
    subj = np.repeat(np.arange(n_subj), per_subj)
    item = items.ravel()
    n = subj.size

    treat_subj = np.zeros(n_subj, dtype=np.int64)
    treat_subj[rng.permutation(n_subj)[: n_subj // 2]] = 1

    s0, s1, rho = TRUTH["sd_subj_int"], TRUTH["sd_subj_slope"], TRUTH["corr_subj"]
    cov = np.array([[s0 * s0, rho * s0 * s1], [rho * s0 * s1, s1 * s1]])
    u = rng.multivariate_normal(np.zeros(2), cov, size=n_subj, method="cholesky")
    v = rng.normal(0.0, TRUTH["sd_item"], size=n_item)

    x = rng.standard_normal(n)
    treat = treat_subj[subj]
    b0, b1, b2 = TRUTH["beta"]
    y = (
        b0
        + b1 * x
        + b2 * treat
        + u[subj, 0]
        + u[subj, 1] * x
        + v[item]
        + rng.normal(0.0, TRUTH["sigma"], size=n)
    )
    width_s = len(str(n_subj))
    width_i = len(str(n_item))
    subj_ids = np.char.add("S", np.char.zfill((np.arange(n_subj) + 1).astype(str), width_s))
    item_ids = np.char.add("I", np.char.zfill((np.arange(n_item) + 1).astype(str), width_i))
    return pd.DataFrame(
        {
            "y": np.round(y, 10),
            "x": np.round(x, 10),
            "treat": treat,
            "subj": subj_ids[subj],
            "item": item_ids[item],
        }
    )


def cache_path(
    n_subj: int = 10_000, n_item: int = 2_000, per_subj: int = 100, seed: int = SEED
) -> Path:
    n = n_subj * per_subj
    tag = f"{n // 1_000_000}m" if n % 1_000_000 == 0 else f"{n}"
    default = (n_subj, n_item, per_subj) == (10_000, 2_000, 100)
    stem = f"sim_{tag}_seed{seed}" if default else f"sim_{n_subj}x{n_item}x{per_subj}_seed{seed}"
    return DATA_DIR / f"{stem}.csv"


def ensure(
    n_subj: int = 10_000, n_item: int = 2_000, per_subj: int = 100, seed: int = SEED
) -> Path:
    """Write the CSV if it is not cached yet; return its path."""
    path = cache_path(n_subj, n_item, per_subj, seed)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        df = simulate(n_subj, n_item, per_subj, seed)
        tmp = path.with_suffix(".csv.partial")
        df.to_csv(tmp, index=False)
        tmp.replace(path)
    return path


def load(
    n_subj: int = 10_000, n_item: int = 2_000, per_subj: int = 100, seed: int = SEED
) -> pd.DataFrame:
    path = ensure(n_subj, n_item, per_subj, seed)
    return pd.read_csv(path, dtype={"subj": str, "item": str})


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-subj", type=int, default=10_000)
    p.add_argument("--n-item", type=int, default=2_000)
    p.add_argument("--per-subj", type=int, default=100)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--force", action="store_true", help="rewrite the cached CSV")
    a = p.parse_args(argv)
    path = cache_path(a.n_subj, a.n_item, a.per_subj, a.seed)
    if a.force and path.exists():
        path.unlink()
    path = ensure(a.n_subj, a.n_item, a.per_subj, a.seed)
    print(path)


if __name__ == "__main__":
    main()

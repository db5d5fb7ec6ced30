"""CPU time of the GWAS plots (Manhattan + QQ, built and written as PNG) at a user's sizes (#14).

    .venv/bin/python benchmarks/bench_plots.py --snps 12226 355000

For each size: a table of uniform p-values on 19 chromosomes, then
``lmmkit.genetics.gwas.plots.manhattan_figure`` / ``qq_figure`` built and saved to PNG in
memory at the dpi ``write_plots`` uses; the first round (fonts, caches) and the median of the
next ``--repeats`` are printed, in CPU seconds of this process (``time.process_time``, so a
loaded machine inflates them less than wall time).
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np
import pandas as pd


def one_round(table: pd.DataFrame) -> tuple[float, float]:
    """(Manhattan, QQ) CPU seconds, each figure built and written."""
    from lmmkit.genetics.gwas.plots import manhattan_figure, qq_figure

    out = []
    for build in (
        lambda: manhattan_figure(table, "p", title="y ~ intercept | centered kinship | exact"),
        lambda: qq_figure(table["p"].to_numpy(), "p", title="y ~ intercept"),
    ):
        t = time.process_time()
        build().savefig(io.BytesIO(), dpi=110, format="png")
        out.append(time.process_time() - t)
    return out[0], out[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--snps", type=int, nargs="+", default=[12_226, 355_000])
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    for n in a.snps:
        chrom = np.repeat(np.arange(1, 20), n // 19 + 1)[:n].astype(str)
        table = pd.DataFrame({"chrom": chrom, "pos": np.arange(n) * 100, "p": rng.uniform(size=n)})
        first = one_round(table)
        rest = [one_round(table) for _ in range(a.repeats)]
        med = [statistics.median(r[i] for r in rest) for i in (0, 1)]
        print(f"{n:>8} SNPs: first Manhattan {first[0]:.3f} s + QQ {first[1]:.3f} s; "
              f"then Manhattan {med[0]:.3f} s + QQ {med[1]:.3f} s (CPU, median of {a.repeats})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What a user times from the prompt (#14): start-up, one fit in a new process, and the floor.

Every figure is a new process timed from its start to its exit (``benchmarks/_timing.py``):

* ``python -c pass`` (the interpreter), ``import lmmkit``, ``lmmkit --help``;
* the floor of a one-fit script: a process that imports what any such script needs
  (NumPy, pandas, formulaic and the SciPy linear algebra it loads), reads the CSV, builds the
  fixed-effects matrix with formulaic and writes a CSV, plus the fit's own arithmetic (the
  warm in-process fit time). A cold lmmkit process cannot be faster than this without
  replacing pandas or formulaic;
* the tasks of ``bench_lmm.py`` (sleepstudy, InstEval) three ways, lme4 the same way, and
  each cold time over its floor.

Usage: ``OPENBLAS_NUM_THREADS=1 python benchmarks/bench_cold.py [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _timing  # noqa: E402
import bench_lmm  # noqa: E402

FLOOR = """
import sys, pandas as pd, formulaic, scipy.linalg
d = pd.read_csv(sys.argv[1], dtype={{c: str for c in {factors!r}}})
X = formulaic.model_matrix({fixed!r}, d)
pd.DataFrame({{"x": [0.0]}}).to_csv(sys.argv[2])
"""


def _wall(argv: list[str], repeats: int) -> float:
    return statistics.median(_timing.run(argv).wall for _ in range(repeats))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    py = sys.executable
    start = [("python -c pass (the interpreter)", [py, "-c", "pass"]),
             ("import lmmkit", [py, "-c", "import lmmkit"]),
             ("lmmkit --help", [str(Path(py).with_name("lmmkit")), "--help"])]  # fmt: skip
    print("| start-up | seconds (median of new processes) |\n|---|---|")
    for name, argv in start:
        print(f"| {name} | {_wall(argv, a.repeats):.2f} |")
    print()
    rows = _timing.report(bench_lmm.user_tasks(quick=True), repeats=a.repeats)
    print("\n| task | floor: imports + read + formulaic + write | + warm fit = floor | "
          "lmmkit cold | cold / floor |\n|---|---|---|---|---|")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for name, row in zip(["sleepstudy", "insteval_ml"], rows):
            spec = bench_lmm.MODELS[name]
            script = Path(tmp) / "floor.py"
            fixed = spec["formula"].split("+ (")[0].strip()
            script.write_text(FLOOR.format(factors=spec["factors"], fixed=fixed))
            base = _wall([py, str(script), str(bench_lmm.data_path(name)), f"{tmp}/o.csv"],
                         a.repeats)  # fmt: skip
            floor = base + (row["warm"] or 0.0)
            cold = row["cold"]
            print(f"| {row['label'].replace('|', chr(92) + '|')} | {base:.2f} s | {floor:.2f} s | "
                  f"{cold:.2f} s | {cold / floor:.2f}× |")


if __name__ == "__main__":
    main()

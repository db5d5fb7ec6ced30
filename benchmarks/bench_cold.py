"""What a user times from the prompt (#14): start-up, and one fit in a new process.

Every figure is a new process timed from its start to its output written, lmmkit and the
anchor the same way:

* ``import lmmkit`` and ``lmmkit --help`` (against ``python -c pass``, the interpreter's floor);
* InstEval ML, ``y ~ service + (1|s) + (1|d) + (1|dept)``, reading the CSV and writing the
  fixed effects: lmmkit with numba's cache present (what ``scripts/setup.sh`` leaves), lmmkit
  with an empty cache (a first call after an install that skipped the warm-up), and
  ``Rscript`` with lme4 (``library(lme4)``, ``read.csv``, ``lmer``, ``write.csv``);
* sleepstudy REML, the same three ways.

Usage: ``OPENBLAS_NUM_THREADS=1 python benchmarks/bench_cold.py [--repeats 3]`` (needs
``../shared`` for InstEval, and ``Rscript`` with lme4 for the anchor column).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "lme4"

PY_FIT = """
import sys, pandas as pd, lmmkit
d = pd.read_csv(sys.argv[1])
for c in {factors!r}:
    d[c] = d[c].astype(str)
fit = lmmkit.lmm({formula!r}, d, reml={reml})
fit.fixef.to_csv(sys.argv[2])
"""
R_FIT = """
suppressMessages(library(lme4))
a <- commandArgs(TRUE)
d <- read.csv(a[1])
for (c in c({factors})) d[[c]] <- factor(d[[c]])
m <- lmer({formula}, d, REML = {reml})
write.csv(fixef(m), a[2])
"""

MODELS = {
    "InstEval ML": dict(file="InstEval.csv.gz", formula="y ~ service + (1|s) + (1|d) + (1|dept)",
                        factors=["s", "d", "dept", "service"], reml=False),  # fmt: skip
    "sleepstudy REML": dict(file="sleepstudy.csv", formula="Reaction ~ Days + (Days|Subject)",
                            factors=["Subject"], reml=True),  # fmt: skip
}


def _time(argv: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed:\n{proc.stderr[-2000:]}")
    return took


def _median(argv: list[str], repeats: int, env: dict | None = None, before=None) -> float:
    runs = []
    for _ in range(repeats):
        if before:
            before()
        runs.append(_time(argv, env))
    return statistics.median(runs)


def main() -> None:
    import os

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    py = sys.executable
    lmmkit_cmd = str(Path(py).with_name("lmmkit"))
    rows = [("python -c pass (floor)", _median([py, "-c", "pass"], args.repeats)),
            ("import lmmkit", _median([py, "-c", "import lmmkit"], args.repeats)),
            ("lmmkit --help", _median([lmmkit_cmd, "--help"], args.repeats))]  # fmt: skip
    print("| start-up | seconds (median of new processes) |\n|---|---|")
    for name, s in rows:
        print(f"| {name} | {s:.2f} |")
    tmp = Path(tempfile.mkdtemp())
    empty_cache = tmp / "numba-empty"
    cold_env = {**os.environ, "NUMBA_CACHE_DIR": str(empty_cache)}

    def clear() -> None:
        shutil.rmtree(empty_cache, ignore_errors=True)

    has_r = shutil.which("Rscript") is not None
    print("\n| model (process start to CSV written) | lmmkit, cache present | lmmkit, empty cache "
          "| lme4 (Rscript) | lme4 / lmmkit cached | lme4 / lmmkit empty |\n|---|---|---|---|---|---|")
    for name, m in MODELS.items():
        data = SHARED / m["file"]
        if not data.exists():
            print(f"| {name} | skipped: {data} not found | | | | |")
            continue
        script = tmp / "fit.py"
        script.write_text(PY_FIT.format(**m))
        argv = [py, str(script), str(data), str(tmp / "out.csv")]
        warm = _median(argv, args.repeats)
        cold = _median(argv, args.repeats, cold_env, before=clear)
        if has_r:
            rscript = tmp / "fit.R"
            rscript.write_text(R_FIT.format(formula=m["formula"], reml="TRUE" if m["reml"] else "FALSE",
                                            factors=", ".join(f'"{c}"' for c in m["factors"])))  # fmt: skip
            r = _median(["Rscript", str(rscript), str(data), str(tmp / "r.csv")], args.repeats)
            print(f"| {name} | {warm:.2f} s | {cold:.2f} s | {r:.2f} s | **{r / warm:.1f}×** | "
                  f"**{r / cold:.1f}×** |")
        else:
            print(f"| {name} | {warm:.2f} s | {cold:.2f} s | (no Rscript) | | |")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

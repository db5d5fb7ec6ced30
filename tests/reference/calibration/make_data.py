"""Write the simulated data sets that the calibration reference is computed on.

    PYTHONPATH=src python tests/reference/calibration/make_data.py

Replicate 0 (seed 3) of each design of benchmarks/sim_inference.py: ``small`` (10 clusters
of sizes 2-8, n = 44; its ML profile of .sig01 reaches 0, so the lower limit is the
boundary) and ``moderate`` (30 clusters, n = 145; both limits interior). Writes
sim_<design>_seed3_rep0.csv next to this file (full precision); make_reference.R then fits
them with lme4/lmerTest/pbkrtest.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH = HERE.parents[2] / "benchmarks" / "sim_inference.py"


def main() -> None:
    spec = importlib.util.spec_from_file_location("sim_inference", BENCH)
    sim = importlib.util.module_from_spec(spec)
    sys.modules["sim_inference"] = sim  # dataclasses look their module up
    spec.loader.exec_module(sim)
    for design in ("small", "moderate"):
        d = sim.make_design(sim.DESIGNS[design])
        d["y"] = sim.simulate_response(d, sim.replicate_rng(3, design, 0))
        d.to_csv(HERE / f"sim_{design}_seed3_rep0.csv", index=False, float_format="%.17g")


if __name__ == "__main__":
    main()

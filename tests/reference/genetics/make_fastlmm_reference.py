"""Freeze FaST-LMM 0.6.13's single-kernel REML on kernels lmmkit computes (issue 25).

    PYTHONPATH=src .venv/bin/python tests/reference/genetics/make_fastlmm_reference.py \\
        /tmp/fastlmm/bin/python

The FaST-LMM venv: ``python -m venv /tmp/fastlmm && /tmp/fastlmm/bin/pip install fastlmm six``.
Inputs are built exactly as benchmarks/genetics_comparison.py builds them (HS1940 .fam
column 7, intercept only; EUR_subset PHENO ~ QCOV1 + QCOV2), the kernel computed by lmmkit
over the analysed samples (SNPs missing in > 10 % of them dropped, no MAF filter) in GCTA's
(``standardized``) and BOLT-LMM's (``empirical``) scaling, and handed to
``fastlmm.inference.lmm.LMM`` as is: ``findH2(REML=True)``.  Written to fastlmm_reml.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks"))

import genetics_comparison as G  # noqa: E402

CASES = [("hs_col7", "standardized"), ("hs_col7", "empirical"), ("eur_pheno", "standardized"),
         ("eur_pheno", "empirical")]  # fmt: skip


def main() -> None:
    python = sys.argv[1] if len(sys.argv) > 1 else "/tmp/fastlmm/bin/python"
    version = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('fastlmm'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    phs = G.phenotypes()
    out = {"fastlmm_version": version, "cases": []}
    for name, kind in CASES:
        rows, y, x = G.analysed(phs[name])
        k = G.kernel(phs[name]["prefix"], kind, rows)
        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp) / "in.npz"
            np.savez(f, K=k, X=x, y=y, h2_lmmkit=0.5)
            script = Path(tmp) / "run.py"
            script.write_text(G.FASTLMM_SCRIPT)
            run = subprocess.run([python, str(script), str(f)], capture_output=True, text=True,
                                 check=True)  # fmt: skip
        fl = json.loads(run.stdout.strip().splitlines()[-1])
        out["cases"].append({
            "phenotype": name, "kernel": kind, "n": int(len(y)), "h2": fl["h2"],
            "logl_reml": -fl["nLL"], "sigma2": fl["sigma2"], "beta": fl["beta"],
        })  # fmt: skip
        print(out["cases"][-1], flush=True)
    dest = Path(__file__).with_name("fastlmm_reml.json")
    dest.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()

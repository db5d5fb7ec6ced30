"""#14: a plain fit of a small or medium model never imports numba (NumPy/LAPACK kernels).

Each case runs in a new process (numba may already be imported in the test process) and
checks ``sys.modules`` after the fit and its usual accessors; timing-free.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

_FIT = r"""
import sys
import numpy as np
import pandas as pd
import lmmkit
from lmmkit.datasets import load_dataset

case = sys.argv[1]
if case == "sleepstudy":
    r = lmmkit.lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
elif case == "sleepstudy_ml_intercept":
    r = lmmkit.lmm("Reaction ~ Days + (1 | Subject)", load_dataset("sleepstudy"), reml=False)
elif case == "penicillin":
    r = lmmkit.lmm("diameter ~ 1 + (1 | plate) + (1 | sample)", load_dataset("Penicillin"))
elif case == "insteval_size":
    from lmmkit._warmup import INSTEVAL_FORMULA, insteval_like
    r = lmmkit.lmm(INSTEVAL_FORMULA, insteval_like(seed=5), reml=False)
elif case == "crossed_slopes":
    rng = np.random.default_rng(2)
    g1 = np.repeat(np.arange(300), 4)
    g2 = rng.integers(0, 40, g1.size)
    x = rng.normal(size=g1.size)
    y = rng.normal(size=300)[g1] * (1 + 0.3 * x) + rng.normal(size=40)[g2] + rng.normal(size=g1.size)
    d = pd.DataFrame({"y": y, "x": x, "g1": g1.astype(str), "g2": g2.astype(str)})
    r = lmmkit.lmm("y ~ x + (1 + x | g1) + (1 + x | g2)", d)
else:
    raise SystemExit(f"unknown case {case}")
r.ranef, r.varcorr, r.fixef, str(r)
print("numba" in sys.modules)
"""

CASES = ["sleepstudy", "sleepstudy_ml_intercept", "penicillin", "insteval_size", "crossed_slopes"]


@pytest.mark.parametrize("case", CASES)
def test_fit_does_not_import_numba(case):
    proc = subprocess.run([sys.executable, "-c", _FIT, case], capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False", (
        f"{case}: numba was imported by a plain fit (a kernel took its numba path)"
    )

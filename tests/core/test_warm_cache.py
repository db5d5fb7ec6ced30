"""#14 item 3: after scripts/setup.sh (which ends with ``python -m lmmkit._warmup``), a fresh
process's first InstEval-size fit on the numba kernels compiles nothing (numba's dispatcher
statistics, not timing). Such a fit runs on NumPy kernels (tests/core/test_no_numba.py); the
numba kernels of larger fits are reached at this size with ``prefer_numba``."""

from __future__ import annotations

import json
import subprocess
import sys

_FIT_AND_COUNT = r"""
import json, sys
import lmmkit
from lmmkit._jit import LazyKernel, prefer_numba
from lmmkit._warmup import INSTEVAL_FORMULA, insteval_like
from numba.core.registry import CPUDispatcher

# other data than the warm-up's (seed 11, not 1): the signatures, not the values, must be cached
with prefer_numba():
    lmmkit.lmm(INSTEVAL_FORMULA, insteval_like(seed=11), reml=False)

def built(obj):
    if isinstance(obj, LazyKernel):
        return obj.dispatcher() if obj.loaded else None
    return obj if isinstance(obj, CPUDispatcher) else None

def dispatchers(mod):
    for obj in list(vars(mod).values()):
        objs = obj.values() if isinstance(obj, dict) else [obj]
        yield from (d for d in map(built, objs) if d is not None)

seen, compiled = 0, []
for name, mod in list(sys.modules.items()):
    if name.startswith("lmmkit") and mod is not None:
        for disp in dispatchers(mod):
            seen += sum(disp.stats.cache_hits.values())
            if disp.stats.cache_misses:
                compiled.append(disp.py_func.__qualname__)
print(json.dumps({"hits": seen, "compiled": sorted(set(compiled))}))
"""


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=900)


def test_first_instEval_size_fit_in_a_fresh_process_compiles_nothing():
    proc = _run("-c", _FIT_AND_COUNT)
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert counts["hits"] > 0  # the fit did go through cached kernels
    assert counts["compiled"] == [], (
        f"kernels compiled on a first call after the warm-up: {counts['compiled']}; "
        "scripts/setup.sh runs `python -m lmmkit._warmup`: run it after editing a kernel, and "
        "add a call that reaches a new kernel to lmmkit/_warmup.py"
    )

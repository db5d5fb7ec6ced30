"""Fill numba's on-disk cache at set-up time, so no user pays compilation on a first real call.

lmmkit's kernels are ``@njit(cache=True)``: compiled once per signature, then loaded from the
cache in ``__pycache__`` beside the source (or numba's user-wide cache when that directory is
read-only). We chose warming the cache at set-up over ahead-of-time compilation (numba's AOT
is deprecated) and over explicit signatures (several kernels run on float64 and int64/float32
inputs, and each explicit signature would still compile in every fresh process without a
cache). ``scripts/setup.sh`` runs ``python -m lmmkit._warmup``; it fits small synthetic models
that walk the same kernels, serial and parallel variants, as real-size fits:

* the LMM engine: one term with slopes, crossed terms at InstEval's size (parallel variants),
  a sparse rest block;
* GLMMs: binomial and Poisson Laplace fits;
* genetics: PLINK decoding, the GRM, the null model and the per-SNP association;
* survival: Cox partial likelihood and concordance.

Small and medium linear mixed models do not use numba at all (NumPy formulations up to
sizes measured in :mod:`lmmkit.linalg.kernels` and friends), so the warm-up runs under
:func:`lmmkit._jit.prefer_numba`: the kernels that large fits use are compiled here too.

Run it again after upgrading numba or lmmkit; it takes about a minute and prints one line.
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

from lmmkit._jit import prefer_numba

__all__ = ["warm_cache"]


#: InstEval's model (lme4): students s and lecturers d crossed, departments, a service effect.
INSTEVAL_FORMULA = "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)"


def insteval_like(seed: int):
    """Simulated data of InstEval's shape: 73,421 ratings, 2,972 students x 1,128 lecturers."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n, ns, nd = 73_421, 2_972, 1_128
    s, d = rng.integers(0, ns, n), rng.integers(0, nd, n)
    y = rng.normal(size=ns)[s] * 0.5 + rng.normal(size=nd)[d] * 0.4 + rng.normal(size=n)
    return pd.DataFrame({"y": y, "s": s.astype(str), "d": d.astype(str),
                         "dept": (d % 14).astype(str), "service": rng.integers(0, 2, n)})  # fmt: skip


def _engine() -> None:
    import numpy as np
    import pandas as pd

    import lmmkit
    from lmmkit.datasets import load_dataset

    lmmkit.lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
    lmmkit.lmm("diameter ~ 1 + (1 | plate) + (1 | sample)", load_dataset("Penicillin"))
    data = insteval_like(seed=1)
    lmmkit.lmm(INSTEVAL_FORMULA, data, reml=False)
    lmmkit.lmm("y ~ 1 + service + (1 | d)", data)
    # crossed factors with locality, 2,500 providers after 3,000 patients: the sparse rest
    # block (CHOLMOD, selected inverse; linalg/sparse_rest.py)
    rng = np.random.default_rng(1)
    g1 = np.repeat(np.arange(3_000), 3)
    g2 = (g1 * 5 // 6 + rng.integers(-5, 6, g1.size)) % 2_500
    x = rng.normal(size=g1.size)
    y = (
        rng.normal(size=3_000)[g1]
        + rng.normal(size=2_500)[g2]
        + (0.5 + rng.normal(size=3_000)[g1]) * x
    )
    data = pd.DataFrame({"y": y + rng.normal(size=g1.size), "x": x,
                         "g1": g1.astype(str), "g2": g2.astype(str)})  # fmt: skip
    lmmkit.lmm("y ~ x + (1 + x | g1) + (1 | g2)", data)


def _glmm() -> None:
    import numpy as np
    import pandas as pd

    import lmmkit

    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(30), 10)
    x = rng.normal(size=g.size)
    eta = 0.3 * x + rng.normal(size=30)[g] * 0.6
    data = pd.DataFrame({"x": x, "g": g.astype(str),
                         "b": (rng.random(g.size) < 1 / (1 + np.exp(-eta))).astype(float),
                         "c": rng.poisson(np.exp(eta))})  # fmt: skip
    lmmkit.glmm("b ~ x + (1 | g)", data, family="binomial")
    lmmkit.glmm("c ~ x + (1 | g)", data, family="poisson")


def _genetics(tmp: Path) -> None:
    import numpy as np
    from bed_reader import to_bed

    import lmmkit

    rng = np.random.default_rng(3)
    n, m = 300, 3_000
    p = rng.uniform(0.05, 0.5, m)
    geno = rng.binomial(2, p, size=(n, m)).astype(np.float32)
    geno[rng.random((n, m)) < 0.002] = np.nan
    prefix = tmp / "warm"
    to_bed(f"{prefix}.bed", geno, properties={
        "fid": [f"f{i}" for i in range(n)], "iid": [f"i{i}" for i in range(n)],
        "chromosome": np.repeat(["1", "2"], m // 2), "bp_position": np.arange(m) + 1,
    })  # fmt: skip
    y = geno[:, :50].sum(axis=1) * 0.05 + rng.normal(size=n)
    y = np.where(np.isnan(y), rng.normal(size=n), y)
    lmmkit.gwas(str(prefix), y, progress=False, plots=False)
    lmmkit.gwas(str(prefix), y, loco=True, progress=False, plots=False)


def _survival() -> None:
    import numpy as np
    import pandas as pd

    import lmmkit

    rng = np.random.default_rng(4)
    n = 200
    x = rng.normal(size=n)
    t = rng.exponential(np.exp(-0.5 * x))
    c = rng.exponential(1.5, n)
    data = pd.DataFrame({"time": np.minimum(t, c), "status": (t <= c).astype(int), "x": x,
                         "site": rng.integers(0, 5, n).astype(str)})  # fmt: skip
    lmmkit.coxph("Surv(time, status) ~ x", data)
    lmmkit.coxph("Surv(time, status) ~ x", data, ties="breslow")


def warm_cache(*, verbose: bool = True) -> float:
    """Compile and cache every numba kernel a first real call would need.

    Parameters
    ----------
    verbose
        Print one line with the time taken.

    Returns
    -------
    float
        Seconds taken.

    Examples
    --------
    >>> from lmmkit._warmup import warm_cache
    >>> seconds = warm_cache(verbose=False)  # doctest: +SKIP
    """
    start = time.perf_counter()
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
        warnings.simplefilter("ignore")
        with prefer_numba():
            _engine()
            _glmm()
            _genetics(Path(tmp))
            _survival()
    seconds = time.perf_counter() - start
    if verbose:
        print(f"lmmkit: numba kernels compiled and cached in {seconds:.0f} s", file=sys.stderr)
    return seconds


if __name__ == "__main__":
    warm_cache()

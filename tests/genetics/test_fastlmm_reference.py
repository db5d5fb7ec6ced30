"""lmmkit's single-kernel REML with the kernel used as given (``center_kernel=False``,
FaST-LMM's convention) against FaST-LMM 0.6.13 (``LMM.findH2(REML=True)``) on the same
kernels (GCTA's and BOLT-LMM's scaling), phenotypes the other genetics tests do not use
(issue 25).  Reference: tests/reference/genetics/make_fastlmm_reference.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmmkit.genetics.grm import compute_grm
from lmmkit.genetics.heritability import reml_heritability
from lmmkit.genetics.plink import read_pheno_file, read_plink

from ._genetics_helpers import require_eur, require_hs

REF = Path(__file__).resolve().parents[1] / "reference" / "genetics" / "fastlmm_reml.json"


def _inputs(name: str):
    """(PLINK data, analysed .fam rows, y, covariates with intercept), as the freezing
    script (benchmarks/genetics_comparison.py) builds them."""
    if name == "hs_col7":
        pl = read_plink(require_hs())
        y = pl.phenotype(2)
        rows = np.flatnonzero(np.isfinite(y))
        return pl, rows, y[rows], np.ones((len(rows), 1))
    prefix = require_eur()
    pl = read_plink(prefix)
    tab = read_pheno_file(f"{prefix}.pheno2.covars", ["PHENO", "QCOV1", "QCOV2"])
    tab = tab.reindex(pd.MultiIndex.from_frame(pl.fam[["fid", "iid"]].astype(str)))
    v = tab.to_numpy(float)
    rows = np.flatnonzero(np.all(np.isfinite(v), axis=1))
    return pl, rows, v[rows, 0], np.column_stack([np.ones(len(rows)), v[rows, 1:]])


@pytest.mark.parametrize(
    "name,kind",
    [("hs_col7", "standardized"), ("hs_col7", "empirical"), ("eur_pheno", "standardized"),
     ("eur_pheno", "empirical")],
)  # fmt: skip
def test_reml_with_kernel_as_given_equals_fastlmm(name, kind):
    if not REF.exists():
        pytest.skip(f"frozen FaST-LMM reference {REF} missing; run make_fastlmm_reference.py")
    ref = next(c for c in json.loads(REF.read_text())["cases"]
               if c["phenotype"] == name and c["kernel"] == kind)  # fmt: skip
    pl, rows, y, x = _inputs(name)
    assert len(y) == ref["n"]
    k = compute_grm(pl, kind, samples=rows, gemma_filter=True, maf=0.0, max_missing=0.1).matrix
    fit = reml_heritability(y, k, x, intercept=False, center_kernel=False)
    # FaST-LMM's h2 comes from a Brent search to ~1e-8; its REML logL carries GEMMA's constant
    assert fit.vg / (fit.vg + fit.ve) == pytest.approx(ref["h2"], abs=1e-6)
    assert fit.logl_reml == pytest.approx(ref["logl_reml"], abs=1e-6)
    assert fit.vg + fit.ve == pytest.approx(ref["sigma2"], rel=1e-5)
    np.testing.assert_allclose(fit.beta, ref["beta"], rtol=1e-5, atol=1e-8)

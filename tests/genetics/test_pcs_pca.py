"""Randomized genotype PCA (#23 item 2): against the exact path and plink2 --pca approx;
references in tests/reference/pca and tests/reference/pcs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.linalg import subspace_angles

from lmmkit.errors import DataError
from lmmkit.genetics import pca as pca_module
from lmmkit.genetics.pca import genotype_pca
from lmmkit.genetics.plink import read_plink
from tests.conftest import REFERENCE
from tests.genetics._genetics_helpers import require_hs, write_plink

# plink2 prints 6 significant digits (see test_pca.py)
VAL_RTOL = 6e-6


@pytest.fixture(scope="module")
def structured(tmp_path_factory):
    """300 samples from three populations x 2,000 SNPs, 1% missing calls."""
    rng = np.random.default_rng(7)
    n, m = 300, 2000
    base = rng.uniform(0.1, 0.9, m)
    freqs = np.clip(base + rng.normal(0, 0.12, (3, m)), 0.02, 0.98)
    pop = np.repeat([0, 1, 2], n // 3)
    g = rng.binomial(2, freqs[pop]).astype(float)
    g[rng.random((n, m)) < 0.01] = np.nan
    return read_plink(write_plink(tmp_path_factory.mktemp("pca") / "s", g))


def _agree(a, b) -> tuple[float, float]:
    """Largest relative eigenvalue difference and largest principal angle (degrees)."""
    rel = float(np.max(np.abs(b.eigenvalues / a.eigenvalues - 1)))
    ang = float(np.degrees(subspace_angles(a.eigenvectors.to_numpy(),
                                           b.eigenvectors.to_numpy())).max())  # fmt: skip
    return rel, ang


def test_randomized_matches_exact_on_structured_data(structured):
    exact = genotype_pca(structured, 2, method="exact")  # two PCs carry the 3 populations
    rand = genotype_pca(structured, 2, method="randomized")
    assert exact.method == "exact" and rand.method == "randomized"
    rel, ang = _agree(exact, rand)
    print(f"randomized vs exact: eigenvalues {rel:.2e} relative, largest angle {ang:.2e} deg")
    assert rel < 1e-4 and ang < 0.1
    np.testing.assert_allclose(rand.variance_explained, exact.variance_explained, rtol=1e-4)
    # the sketch's seed moves nothing beyond the tolerance
    other = genotype_pca(structured, 2, method="randomized", seed=99)
    assert _agree(exact, other)[0] < 1e-4


def test_auto_takes_randomized_above_the_exact_limit(structured, monkeypatch):
    assert genotype_pca(structured, 2).method == "exact"
    monkeypatch.setattr(pca_module, "EXACT_MAX_SAMPLES", 100)
    assert genotype_pca(structured, 2).method == "randomized"
    with pytest.raises(DataError, match="exceed the exact eigendecomposition's limit of 100"):
        genotype_pca(structured, 2, method="exact")
    with pytest.raises(DataError, match="method must be one of"):
        genotype_pca(structured, 2, method="lanczos")


def test_randomized_reports_its_eigen_residuals(structured):
    """The residuals equal ||G u - lambda u|| / lambda from the exact GRM; a flat spectrum
    (PCs beyond the populations' two) sketched without power iterations is flagged."""
    from lmmkit.errors import LmmkitWarning
    from lmmkit.genetics.grm import compute_grm

    good = genotype_pca(structured, 2, method="randomized")
    assert genotype_pca(structured, 2, method="exact").residuals is None
    assert good.residuals.shape == (2,) and good.residuals.max() < 1e-3
    with pytest.warns(LmmkitWarning, match=r"PC\d+'s relative residual .* n_power_iter \(now 0\)"):
        rough = genotype_pca(structured, 8, method="randomized", n_power_iter=0)
    snps = np.flatnonzero(np.asarray(structured.bim["pos"]) >= 0)
    grm = compute_grm(structured, "standardized", snps=snps, gemma_filter=False).matrix
    u, lam = rough.eigenvectors.to_numpy(), rough.eigenvalues
    expected = np.linalg.norm(grm @ u - u * lam, axis=0) / lam
    np.testing.assert_allclose(rough.residuals, expected, rtol=1e-8)
    assert rough.residuals.max() > 1e-3


@pytest.mark.slow
def test_randomized_hs1940_against_exact_and_plink2_approx():
    """HS1940 (1,940 mice x 10,300 SNPs), 10 PCs: the default randomized path against the
    exact one and plink2 --pca approx (which prints 6 digits)."""
    pl = read_plink(require_hs())
    exact = genotype_pca(pl, 10, method="exact")
    rand = genotype_pca(pl, 10, method="randomized")
    rel, ang = _agree(exact, rand)
    print(f"HS1940 randomized vs exact: eigenvalues {rel:.2e}, largest angle {ang:.2e} deg")
    assert rel < 1e-4 and ang < 0.1
    ref = REFERENCE / "pcs"
    np.testing.assert_allclose(rand.eigenvalues, np.loadtxt(ref / "hs1940_approx.eigenval"),
                               rtol=VAL_RTOL)  # fmt: skip
    want = pd.read_csv(ref / "hs1940_approx.eigenvec.gz", sep="\t").iloc[:, 2:].to_numpy()
    # plink2's approx vectors are themselves approximate (up to ~2e-5 from the exact ones):
    # compare subspaces
    ang = np.degrees(subspace_angles(rand.eigenvectors.to_numpy(), want)).max()
    ang_plink2 = np.degrees(subspace_angles(exact.eigenvectors.to_numpy(), want)).max()
    print(f"largest angle to plink2 approx: ours {ang:.2e}, exact {ang_plink2:.2e} deg")
    assert ang < 0.1


def test_pca_command_randomized(structured, tmp_path):
    from lmmkit.cli.main import main

    out = tmp_path / "r"
    argv = ["pca", "--bfile", str(structured.prefix), "--pcs", "2", "--method", "randomized",
            "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    assert "method: randomized" in (tmp_path / "r.pca.log").read_text()
    exact = genotype_pca(structured, 2, method="exact")
    np.testing.assert_allclose(np.loadtxt(f"{out}.eigenval"), exact.eigenvalues, rtol=1e-6)

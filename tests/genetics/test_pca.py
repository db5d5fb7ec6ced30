"""Genotype PCs against plink2 --pca (#23 item 2); references in tests/reference/pca."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmmkit.errors import DataError
from lmmkit.genetics.pca import genotype_pca, write_plink2_pca
from tests.conftest import REFERENCE, shared_path


def _prefix(name: str):
    return shared_path("data", "genetics", f"{name}.bed").with_suffix("")


REF = REFERENCE / "pca"
# plink2 prints 6 significant digits: eigenvalues to half a unit in the 6th digit (relative
# 5e-6 plus one part in 1e-6 for the last digit's rounding), eigenvectors to 1e-6 absolute.
VAL_RTOL, VEC_ATOL = 6e-6, 1e-6


@pytest.mark.parametrize(
    ("prefix", "ref", "n_snps", "negative"),
    [("EUR_subset", "eur_subset", 54_051, 0), ("mouse_hs1940", "hs1940", 10_300, 1_926)],
)
def test_matches_plink2_pca(prefix, ref, n_snps, negative, tmp_path):
    pcs = genotype_pca(_prefix(prefix), 10)
    assert pcs.n_snps == n_snps  # plink2: "N out of M variants loaded"
    assert pcs.excluded["negative base-pair position"] == negative
    want_val = np.loadtxt(REF / f"{ref}.eigenval")
    np.testing.assert_allclose(pcs.eigenvalues, want_val, rtol=VAL_RTOL)
    vec_file = REF / (f"{ref}.eigenvec" + (".gz" if ref == "hs1940" else ""))
    want = pd.read_csv(vec_file, sep="\t")
    assert list(want["IID"].astype(str)) == list(pcs.sample_ids["iid"])
    got, ref_vec = pcs.eigenvectors.to_numpy(), want.iloc[:, 2:].to_numpy()
    sign = np.sign((got * ref_vec).sum(axis=0))
    np.testing.assert_allclose(got * sign, ref_vec, atol=VEC_ATOL)
    # unit-norm, orthogonal eigenvectors (a property, independent of plink2)
    np.testing.assert_allclose(got.T @ got, np.eye(10), atol=1e-10)
    # plink2's layouts round-trip
    written = write_plink2_pca(pcs, tmp_path / "out")
    back = pd.read_csv(written[0], sep="\t")
    assert list(back.columns) == list(want.columns)
    np.testing.assert_allclose(np.loadtxt(written[1]), pcs.eigenvalues, rtol=1e-7)


def test_bad_k_is_a_clear_error():
    prefix = _prefix("EUR_subset")
    with pytest.raises(DataError, match=r"k must be an integer from 1 to min\(n - 1, SNPs\) = 378"):
        genotype_pca(prefix, 0)
    with pytest.raises(DataError, match="got 379"):
        genotype_pca(prefix, 379)


def test_command_writes_plink2_files(tmp_path):
    from lmmkit.cli.main import main

    prefix = _prefix("EUR_subset")
    assert main(["pca", "--bfile", str(prefix), "--pcs", "3", "--out", str(tmp_path / "e"),
                 "--quiet"]) == 0  # fmt: skip
    vec = pd.read_csv(tmp_path / "e.eigenvec", sep="\t")
    assert list(vec.columns) == ["#FID", "IID", "PC1", "PC2", "PC3"] and len(vec) == 379
    np.testing.assert_allclose(np.loadtxt(tmp_path / "e.eigenval"),
                               np.loadtxt(REF / "eur_subset.eigenval")[:3], rtol=VAL_RTOL)  # fmt: skip
    # an existing output is refused without --overwrite, with exit code 2
    assert main(["pca", "--bfile", str(prefix), "--pcs", "3", "--out", str(tmp_path / "e"),
                 "--quiet"]) == 2  # fmt: skip

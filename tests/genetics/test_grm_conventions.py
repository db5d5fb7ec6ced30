"""GRM conventions: missing calls per pair (GCTA / plink2 default) or mean-imputed (plink2
meanimpute, GEMMA), BOLT-LMM's empirical standardization, GEMMA's kinship text files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lmmkit.errors import DataError, FileFormatError
from lmmkit.genetics.grm import compute_grm, loco_grms, read_gemma_kinship, read_grm, write_grm
from lmmkit.genetics.plink import read_plink

from ._genetics_helpers import simulate_genotypes, write_plink

REF = Path(__file__).resolve().parents[1] / "reference" / "genetics" / "plink2_grm_missing.json"


def _plink2_set(tmp_path: Path) -> Path:
    """The data set of make_plink2_missing_reference.sh (missing calls, a monomorphic SNP
    with missing calls, an all-heterozygous SNP)."""
    g = simulate_genotypes(60, 300, seed=3, missing=0.08)
    g[:, 5] = np.where(np.isnan(g[:, 5]), np.nan, 2.0)
    g[:, 6] = 1.0
    return write_plink(
        tmp_path / "sim",
        g,
        fam_rows=[f"F{i} I{i} 0 0 1 -9" for i in range(60)],
        bim_rows=[f"1 rs{j} 0 {1000 + j} A G" for j in range(300)],
    )


def _lower(k: np.ndarray) -> np.ndarray:
    return k[np.tril_indices(len(k))]


def test_pairwise_and_imputed_grm_match_plink2_with_missing_calls(tmp_path):
    ref = json.loads(REF.read_text())
    pl = read_plink(_plink2_set(tmp_path))
    pair = compute_grm(pl, "standardized", missing="pairwise")
    imp = compute_grm(pl, "standardized")  # default: mean-imputed
    # plink2 writes float32: agreement to float32 rounding
    np.testing.assert_allclose(_lower(pair.matrix), ref["pairwise"], rtol=0, atol=2e-7)
    np.testing.assert_allclose(_lower(imp.matrix), ref["impute"], rtol=0, atol=2e-7)
    np.testing.assert_array_equal(_lower(pair.pair_counts), ref["pairwise_n"])
    assert pair.missing == "pairwise" and imp.missing == "impute" and imp.pair_counts is None
    # the two conventions differ on these data (they agree only without missing calls)
    assert np.abs(pair.matrix - imp.matrix).max() > 0.05
    # .grm.N.bin holds the true per-pair counts (not the total SNP count everywhere)
    write_grm(pair, tmp_path / "out")
    back, nmat = read_grm(tmp_path / "out")
    np.testing.assert_array_equal(nmat, pair.pair_counts)
    assert len(np.unique(nmat)) > 10 and nmat.max() < 300
    np.testing.assert_allclose(back.matrix, pair.matrix, atol=2e-7)


def test_pairwise_equals_imputed_without_missing_calls_and_loco(tmp_path):
    g = simulate_genotypes(40, 120, seed=5)
    pl = read_plink(write_plink(tmp_path / "full", g))
    a = compute_grm(pl, "standardized", missing="pairwise")
    b = compute_grm(pl, "standardized")
    np.testing.assert_allclose(a.matrix, b.matrix, rtol=1e-12, atol=1e-14)
    assert np.all(a.pair_counts == 120)
    # LOCO with per-pair counts equals the GRM of the SNPs off each chromosome
    gm = simulate_genotypes(40, 120, seed=6, missing=0.1)
    plm = read_plink(write_plink(tmp_path / "miss", gm))
    loco = loco_grms(plm, "standardized", missing="pairwise")
    chrom = plm.bim["chrom"].to_numpy()
    for c, grm in loco.items():
        off = np.flatnonzero(chrom != c)
        direct = compute_grm(plm, "standardized", missing="pairwise", snps=off)
        np.testing.assert_allclose(grm.matrix, direct.matrix, rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(grm.pair_counts, direct.pair_counts)
    with pytest.raises(DataError, match="pairwise.*standardized"):
        compute_grm(plm, "centered", missing="pairwise")
    with pytest.raises(DataError, match="missing must be one of"):
        compute_grm(plm, "standardized", missing="drop")


def test_empirical_standardization_is_bolt_lmm_normalization(tmp_path):
    """BOLT-LMM: centre each SNP on its mean over the samples, missing -> the mean, scale
    to squared norm n - 1; monomorphic SNPs are not counted (written out independently)."""
    g = simulate_genotypes(50, 80, seed=8, missing=0.05)
    g[:, 3] = 1.0  # monomorphic
    pl = read_plink(write_plink(tmp_path / "e", g))
    keep = np.arange(5, 50)
    grm = compute_grm(pl, "empirical", samples=keep)
    x = g[keep]
    mean = np.nanmean(x, 0)
    z = np.where(np.isnan(x), 0.0, x - mean)
    norm2 = (z * z).sum(0)
    poly = norm2 > 0
    z = z[:, poly] * np.sqrt((len(keep) - 1) / norm2[poly])
    np.testing.assert_allclose(grm.matrix, z @ z.T / poly.sum(), rtol=1e-10, atol=1e-12)
    assert grm.denominator == poly.sum() == 79
    # standardized by 2p(1-p) instead (GCTA) differs whenever HWE does not hold exactly
    gcta = compute_grm(pl, "standardized", samples=keep)
    assert np.abs(gcta.matrix - grm.matrix).max() > 1e-3


def test_gemma_kinship_text_file(tmp_path):
    g = simulate_genotypes(12, 40, seed=2)
    pl = read_plink(write_plink(tmp_path / "k", g))
    k = compute_grm(pl, "centered").matrix
    path = tmp_path / "k.cXX.txt"
    path.write_text("\n".join("\t".join(f"{v:.10g}" for v in row) for row in k) + "\n")
    grm = read_gemma_kinship(path, pl.sample_ids)
    np.testing.assert_allclose(grm.matrix, k, atol=1e-9)
    assert list(grm.sample_ids["iid"]) == list(pl.sample_ids["iid"])
    with pytest.raises(FileFormatError, match="12 x 12 matrix.*5 samples"):
        read_gemma_kinship(path, pl.sample_ids.iloc[:5])
    bad = tmp_path / "bad.txt"
    bad.write_text("1 0\n0.5 1\n")
    with pytest.raises(FileFormatError, match="not symmetric"):
        read_gemma_kinship(bad, pl.sample_ids.iloc[:2])
    with pytest.raises(FileFormatError, match="not found"):
        read_gemma_kinship(tmp_path / "nope.txt", pl.sample_ids)

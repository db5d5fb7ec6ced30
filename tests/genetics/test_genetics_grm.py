"""GRMs: GEMMA -gk 1 and plink2 --make-grm-bin anchors, block invariance, LOCO, GCTA I/O."""

from __future__ import annotations

import numpy as np
import pytest

from lmmkit.errors import DataError, FileFormatError
from lmmkit.genetics.grm import GRM, compute_grm, loco_grms, read_grm, write_grm
from lmmkit.genetics.plink import read_plink
from tests.genetics._genetics_helpers import reference, require_hs, simulate_genotypes, write_plink


def _dense(g, normalization):
    mean = np.nanmean(g, 0)
    z = np.where(np.isnan(g), mean, g) - mean
    p = mean / 2
    v = 2 * p * (1 - p)
    if normalization == "centered":
        return z @ z.T / g.shape[1]
    if normalization == "standardized":
        s = np.where(v > 0, 1 / np.sqrt(np.where(v > 0, v, 1)), 0)
        return (z * s) @ (z * s).T / g.shape[1]
    return z @ z.T / v.sum()


@pytest.fixture()
def small(tmp_path):
    g = simulate_genotypes(30, 103, seed=3, missing=0.03)
    g[:, 7] = 1.0  # monomorphic (all het -> p = 0.5 but no variance); keep one
    g[:, 8] = 0.0  # truly monomorphic
    return g, read_plink(write_plink(tmp_path / "g", g))


@pytest.mark.parametrize("norm", ["centered", "standardized", "vanraden"])
def test_matches_dense_formula_and_block_size(small, norm):
    g, pl = small
    ref = compute_grm(pl, norm, gemma_filter=False, block_size=1000)
    np.testing.assert_allclose(ref.matrix, _dense(g, norm), rtol=0, atol=1e-12)
    for bs in (1, 7, 50):
        k = compute_grm(pl, norm, gemma_filter=False, block_size=bs)
        np.testing.assert_allclose(k.matrix, ref.matrix, rtol=0, atol=1e-12)
    k32 = compute_grm(pl, norm, gemma_filter=False, dtype="float32", block_size=10)
    np.testing.assert_allclose(k32.matrix, ref.matrix, atol=1e-5)
    assert ref.n_snps == 103 and ref.normalization == norm
    assert list(ref.sample_ids.columns) == ["fid", "iid"]


def test_exact_integer_route_flushes(small, monkeypatch):
    """Complete SNPs go through float32 X X' (exact for integer genotypes); with the flush
    threshold lowered to a few SNPs, the float64 flushes still give the dense formula."""
    import lmmkit.genetics.grm as grm_mod

    g, pl = small
    complete = np.flatnonzero(~np.isnan(g).any(0))
    assert 20 < len(complete) < 103  # both routes are exercised
    monkeypatch.setattr(grm_mod, "_EXACT_F32_SNPS", 5)
    for norm in ("centered", "vanraden"):
        k = compute_grm(pl, norm, gemma_filter=False, block_size=4)
        np.testing.assert_allclose(k.matrix, _dense(g, norm), rtol=0, atol=1e-12)


def test_gemma_filter_and_samples(small):
    g, pl = small
    k = compute_grm(pl, "centered")  # GEMMA filters on by default
    assert k.n_snps < 103
    sub = compute_grm(pl, "standardized", samples=np.arange(10), gemma_filter=False)
    np.testing.assert_allclose(sub.matrix, _dense(g[:10], "standardized"), atol=1e-12)
    assert sub.sample_ids["iid"].tolist() == [f"I{i}" for i in range(10)]


def test_loco_equals_grm_without_chromosome(small):
    g, pl = small
    for norm in ("centered", "vanraden"):
        loco = loco_grms(pl, norm, gemma_filter=False, block_size=9)
        chrom = pl.bim["chrom"].to_numpy()
        assert set(loco) == {"1", "2"}
        for c, k in loco.items():
            direct = compute_grm(pl, norm, snps=np.flatnonzero(chrom != c), gemma_filter=False)
            np.testing.assert_allclose(k.matrix, direct.matrix, atol=1e-12)
            assert k.n_snps == direct.n_snps
    with pytest.raises(DataError, match="chromosome '7'"):
        loco_grms(pl, chromosomes=["7"], gemma_filter=False)


def test_gcta_roundtrip(small, tmp_path):
    _, pl = small
    k = compute_grm(pl, "standardized", gemma_filter=False)
    write_grm(k, tmp_path / "out")
    assert (tmp_path / "out.grm.bin").stat().st_size == 4 * 30 * 31 // 2
    assert not list(tmp_path.glob("*.tmp"))
    back, nmat = read_grm(tmp_path / "out", normalization="standardized")
    np.testing.assert_allclose(back.matrix, k.matrix, atol=1e-6)
    assert back.sample_ids.equals(k.sample_ids)
    assert back.n_snps == 103 and np.all(nmat == 103)
    (tmp_path / "out.grm.bin").write_bytes(b"\0" * 12)
    with pytest.raises(FileFormatError, match=r"out\.grm\.bin: 12 bytes"):
        read_grm(tmp_path / "out")


def test_bad_normalization(small):
    with pytest.raises(DataError, match="normalization"):
        compute_grm(small[1], "gcta", gemma_filter=False)


def _check_summary(k, ref, atol=1e-6):
    n = ref["n"]
    assert k.shape == (n, n)
    np.testing.assert_allclose(k[:50, :50], np.array(ref["block50"]), rtol=0, atol=atol)
    assert abs(np.mean(np.diag(k)) - ref["diag_mean"]) < atol
    assert abs(k.sum() - ref["sum"]) < atol * n
    assert abs(np.linalg.norm(k) - ref["frobenius"]) / ref["frobenius"] < atol


@pytest.fixture(scope="module")
def hs():
    return read_plink(require_hs())


def test_hs1940_centered_equals_gemma_cxx(hs):
    ref = reference()["gemma_cXX_n1"]
    ok = np.flatnonzero(np.isfinite(hs.phenotype(1)))
    k = compute_grm(hs, "centered", filter_samples=ok, block_size=3000)
    assert k.n_snps == 10768
    _check_summary(k.matrix, ref, atol=1e-9)


def test_hs1940_standardized_equals_plink2(hs):
    ref = reference()["plink2_grm"]
    snps = np.flatnonzero(hs.bim["pos"].to_numpy() > 0)  # plink2 skips position -9
    assert len(snps) == ref["n_variants"]
    k = compute_grm(hs, "standardized", snps=snps, gemma_filter=False)
    _check_summary(k.matrix, ref, atol=1e-6)


def test_grm_dataclass_subset():
    ids = __import__("pandas").DataFrame({"fid": ["a", "b", "c"], "iid": ["1", "2", "3"]})
    k = GRM(np.eye(3) + 0.1, ids, n_snps=5, normalization="centered")
    s = k.subset(np.array([2, 0]))
    assert s.matrix.shape == (2, 2) and s.sample_ids["iid"].tolist() == ["3", "1"]
    assert "n=3" in repr(k)


def test_hs1940_float32_reads_close(hs):
    ref = reference()["plink2_grm"]
    snps = np.flatnonzero(hs.bim["pos"].to_numpy() > 0)
    k = compute_grm(hs, "standardized", snps=snps, gemma_filter=False, dtype="float32")
    np.testing.assert_allclose(k.matrix[:50, :50], np.array(ref["block50"]), atol=1e-5)


def test_progress_bar_runs(small, capsys):
    _, pl = small
    k = compute_grm(pl, "vanraden", gemma_filter=False, progress=True, block_size=20)
    assert k.n_snps == 103


class _Matrix:
    """A genotype source over an in-memory matrix (values need not be 0/1/2)."""

    def __init__(self, g):
        import pandas as pd

        self.g = g
        self.n_samples, self.n_snps = g.shape
        self.prefix = "matrix"
        self.sample_ids = pd.DataFrame({"fid": map(str, range(g.shape[0]))}).assign(
            iid=lambda d: d["fid"]
        )

    def read(self, snps=None, samples=None, dtype="float64"):
        g = self.g[:, snps if snps is not None else slice(None)]
        return np.asfortranarray(g if samples is None else g[samples], dtype=dtype)


def test_missing_calls_and_dosages_route(small):
    """Integer SNPs with missing calls go the exact float32 route (missing calls read as 0,
    corrected by their own terms); dosages from a source without ``read_zeroed`` go the
    dense route; both give the mean-imputed dense formula."""
    g, pl = small
    assert np.isnan(g).any(0).sum() > 20
    mixed = g.copy()
    mixed[:, ::5] += 0.25 * np.nan_to_num(mixed[:, ::5] < 1)  # dosages in some SNPs
    for src, geno in ((pl, g), (_Matrix(g), g), (_Matrix(mixed), mixed)):
        for norm in ("centered", "vanraden"):
            k = compute_grm(src, norm, gemma_filter=False, block_size=9)
            np.testing.assert_allclose(k.matrix, _dense(geno, norm), rtol=0, atol=1e-12)

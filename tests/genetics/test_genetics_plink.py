"""PLINK input, phenotype files, sample matching, SNP filters and their errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmmkit.errors import DataError, FileFormatError
from lmmkit.genetics.plink import (
    filter_snps,
    match_samples,
    read_fam,
    read_pheno_file,
    read_plink,
)
from tests.genetics._genetics_helpers import (
    require_eur,
    require_hs,
    simulate_genotypes,
    write_plink,
)


def test_counts_a1_allele_as_plink(tmp_path):
    g = np.array([[2, 0, 1], [1, np.nan, 0], [0, 2, 2], [2, 1, np.nan], [1, 1, 0]], float)
    pl = read_plink(write_plink(tmp_path / "t", g))
    assert pl.n_samples == 5 and pl.n_snps == 3
    got = pl.read()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(g))
    np.testing.assert_array_equal(np.nan_to_num(got, nan=-1), np.nan_to_num(g, nan=-1))
    assert pl.read(dtype="float32").dtype == np.float32
    # byte 0 of the first SNP: samples 1-4 = A1/A1 (00), het (10), A2/A2 (11), A1/A1 (00)
    raw = (tmp_path / "t.bed").read_bytes()
    assert raw[3] == 0b00111000
    assert list(pl.bim["a1"]) == ["A"] * 3


def test_blocked_reads_match_full_read(tmp_path):
    g = simulate_genotypes(13, 37, seed=1, missing=0.05)
    pl = read_plink(write_plink(tmp_path / "b", g))
    full = pl.read()
    for bs in (1, 5, 37, 100):
        parts = [blk for _, blk in pl.iter_blocks(bs)]
        np.testing.assert_array_equal(np.hstack(parts), full)
    sel = np.array([0, 3, 4, 10])
    parts = np.hstack([b for _, b in pl.iter_blocks(3, snps=sel, samples=np.arange(5))])
    np.testing.assert_array_equal(parts, full[:5][:, sel])


def test_fam_phenotypes_and_pheno_fam(tmp_path):
    fam = ["a 1 0 0 1 1.5 -9", "a 2 0 0 2 NA 3", "b 3 0 0 1 2.5 4"]
    g = simulate_genotypes(3, 4)
    pl = read_plink(write_plink(tmp_path / "f", g, fam_rows=fam))
    y1 = pl.phenotype(1)
    assert y1[0] == 1.5 and np.isnan(y1[1])
    assert np.isnan(pl.phenotype(2)[0])
    with pytest.raises(DataError, match="pheno_fam=3"):
        pl.phenotype(3)


def test_bed_size_mismatch_names_file(tmp_path):
    g = simulate_genotypes(6, 5)
    prefix = write_plink(tmp_path / "s", g)
    bim = prefix.with_suffix(".bim")
    bim.write_text(bim.read_text() + "1 extra 0 99999 A G\n")
    with pytest.raises(FileFormatError, match=r"s\.bed.*expected 3 \+ ceil\(6/4\) x 6 = 15"):
        read_plink(prefix)


def test_bad_magic(tmp_path):
    prefix = write_plink(tmp_path / "m", simulate_genotypes(4, 2))
    raw = bytearray(prefix.with_suffix(".bed").read_bytes())
    raw[0] = 0
    prefix.with_suffix(".bed").write_bytes(bytes(raw))
    with pytest.raises(FileFormatError, match="magic"):
        read_plink(prefix)


def test_duplicated_fam_ids(tmp_path):
    fam = ["a 1 0 0 1 1", "a 2 0 0 1 2", "a 1 0 0 1 3"]
    prefix = write_plink(tmp_path / "d", simulate_genotypes(3, 2), fam_rows=fam)
    with pytest.raises(FileFormatError, match=r"line 3: duplicated sample ID FID='a' IID='1'"):
        read_plink(prefix)


def test_duplicated_fam_ids_renamed_are_reported(tmp_path):
    """Opt-in renaming keeps both samples and the log line names each renamed one."""
    from lmmkit.genetics.samples import renamed_note

    fam = ["a 1 0 0 1 1", "a 2 0 0 1 2", "a 1 0 0 1 3"]
    prefix = write_plink(tmp_path / "d", simulate_genotypes(3, 2), fam_rows=fam)
    pl = read_plink(prefix, duplicate_ids="rename")
    assert pl.n_samples == 3
    note = renamed_note(pl.fam)
    assert note.startswith("1 duplicated .fam sample ID(s) kept as their own samples")
    assert "line 3 a/1 -> " in note
    assert renamed_note(read_plink(write_plink(tmp_path / "u", simulate_genotypes(3, 2))).fam) == ""


def test_ragged_fam_line(tmp_path):
    (tmp_path / "r.fam").write_text("a 1 0 0 1 1\na 2 0 0 1\n")
    with pytest.raises(FileFormatError, match="line 2"):
        read_fam(tmp_path / "r.fam")


def _pheno(tmp_path, text):
    p = tmp_path / "p.txt"
    p.write_text(text)
    return p


def test_pheno_file_and_matching(tmp_path):
    fam = read_fam(write_plink(tmp_path / "x", simulate_genotypes(4, 2)).with_suffix(".fam"))
    ph = read_pheno_file(_pheno(tmp_path, "FID IID y\nF0 I0 1.0\nF1 I1 NA\nF3 I3 -9\nF2 I2 2\n"))
    cov = read_pheno_file(_pheno(tmp_path, "FID IID c\nF0 I0 1\nF1 I1 1\nF2 I2 2\n"))
    keep, rep = match_samples(fam, ph["y"], cov, fam_path="x.fam")
    assert keep.tolist() == [0, 2]
    assert rep.n_kept == 2 and rep.n_fam == 4
    assert rep.counts() == {"missing phenotype value": 2}
    assert "2 of 4" in str(rep)
    cov2 = read_pheno_file(_pheno(tmp_path, "FID IID c\nF0 I0 1\nF2 I2 2\n"))
    keep, rep = match_samples(fam, ph["y"], cov2)
    assert keep.tolist() == [0, 2]
    assert set(rep.dropped["reason"]) == {"missing phenotype value"}


def test_pheno_id_absent_from_fam(tmp_path):
    fam = read_fam(write_plink(tmp_path / "x", simulate_genotypes(3, 2)).with_suffix(".fam"))
    ph = read_pheno_file(_pheno(tmp_path, "FID IID y\nF0 I0 1\nF9 I9 2\n"))
    with pytest.raises(DataError, match=r"absent from x\.fam.*F9/I9"):
        match_samples(fam, ph, fam_path="x.fam")


def test_pheno_duplicated_id(tmp_path):
    with pytest.raises(FileFormatError, match=r"line 3: duplicated sample ID FID='F0'"):
        read_pheno_file(_pheno(tmp_path, "FID IID y\nF0 I0 1\nF0 I0 2\n"))


def test_pheno_header_and_values(tmp_path):
    with pytest.raises(FileFormatError, match="FID IID"):
        read_pheno_file(_pheno(tmp_path, "ID y\nF0 1\n"))
    with pytest.raises(FileFormatError, match="line 3"):
        read_pheno_file(_pheno(tmp_path, "FID IID y\nF0 I0 1\nF1 I1\n"))
    with pytest.raises(DataError, match="Did you mean 'pheno'"):
        read_pheno_file(_pheno(tmp_path, "FID IID pheno\nF0 I0 1\n"), columns=["phen"])


def test_constant_phenotype(tmp_path):
    fam = read_fam(write_plink(tmp_path / "x", simulate_genotypes(3, 2)).with_suffix(".fam"))
    ph = read_pheno_file(_pheno(tmp_path, "FID IID y\nF0 I0 2\nF1 I1 2\nF2 I2 NA\n"))
    with pytest.raises(DataError, match=r"phenotype 'y' is constant"):
        match_samples(fam, ph)


def test_snp_filters_count_reasons(tmp_path):
    n = 40
    g = np.zeros((n, 4))
    g[:, 0] = np.tile([0, 1, 2, 1], 10)  # fine
    g[:, 1] = 0
    g[0, 1] = 1  # MAF 1/80 = 0.0125 -> kept at 0.01, dropped at 0.02
    g[:, 2] = 2  # monomorphic (MAF 0)
    g[:, 3] = np.tile([0, 1], 20)
    g[:3, 3] = np.nan  # 7.5% missing
    pl = read_plink(write_plink(tmp_path / "q", g))
    r = filter_snps(pl, maf=0.01, max_missing=0.05)
    assert r.mask.tolist() == [True, True, False, False]
    assert (r.n_missingness, r.n_maf, r.n_monomorphic, r.n_kept) == (1, 1, 0, 2)
    r = filter_snps(pl, maf=0.02, max_missing=0.1)
    assert r.mask.tolist() == [True, False, False, True]
    assert "2 of 4 SNPs kept" in str(r)


def test_hs1940_reads_and_filters():
    pl = read_plink(require_hs())
    assert (pl.n_samples, pl.n_snps) == (1940, 12226)
    y = pl.phenotype(1)
    ok = np.flatnonzero(np.isfinite(y))
    assert len(ok) == 1410
    assert filter_snps(pl, samples=ok).n_kept == 10768  # GEMMA's "analyzed SNPs"


def test_eur_pheno_covar_file_matching():
    eur = require_eur()
    pl = read_plink(eur)
    tab = read_pheno_file(str(eur) + ".pheno2.covars")
    assert {"PHENO", "QCOV1", "QCOV2", "CAT_COV"} <= set(tab.columns)
    keep, rep = match_samples(pl.fam, tab["PHENO"], tab[["QCOV1", "QCOV2"]])
    assert rep.n_kept == len(keep) and rep.n_fam == 379
    assert rep.n_kept + len(rep.dropped) == 379
    assert isinstance(rep.dropped, pd.DataFrame)


def test_prefix_with_dots_and_bed_suffix(tmp_path):
    g = simulate_genotypes(5, 3)
    write_plink(tmp_path / "data.v1", g)
    for p in (tmp_path / "data.v1", tmp_path / "data.v1.bed"):
        pl = read_plink(p)
        assert pl.prefix.name == "data.v1" and pl.n_snps == 3
        np.testing.assert_array_equal(pl.read(), g)


def test_read_zeroed_matches_read(tmp_path):
    """The one-pass decode (missing calls as 0, genotype counts, where the missing calls
    are) agrees with ``read`` for all samples (4 per byte), a subset and a non-PLINK
    source (the generic fallback)."""
    from lmmkit.genetics.plink import read_zeroed
    from tests.genetics._genetics_helpers import simulate_genotypes, write_plink

    g = simulate_genotypes(30, 41, seed=5, missing=0.1)
    pl = read_plink(write_plink(tmp_path / "z", g))

    class Other:
        def read(self, **kw):
            return pl.read(**kw)

    for samples in (None, np.array([29, 3, 4, 17]), np.arange(1, 30)):
        for snps in (None, np.array([40, 2, 2, 9])):
            ref = pl.read(snps=snps, samples=samples)
            miss = np.isnan(ref)
            for src in (pl, Other()):
                z, cnt, ptr, rows = read_zeroed(src, snps=snps, samples=samples, dtype="float64")
                np.testing.assert_array_equal(z, np.where(miss, 0.0, ref))
                for c, v in enumerate((0, 1, 2)):
                    np.testing.assert_array_equal(cnt[:, c], (ref == v).sum(0))
                np.testing.assert_array_equal(cnt[:, 3], miss.sum(0))
                for k in range(ref.shape[1]):
                    np.testing.assert_array_equal(
                        rows[ptr[k] : ptr[k + 1]], np.flatnonzero(miss[:, k])
                    )

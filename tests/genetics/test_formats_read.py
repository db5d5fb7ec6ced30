"""BGEN / PGEN / VCF readers against the .bed plink2 converted them from, and against
plink2's own reading of non-integer dosages (tests/reference/formats/make_formats.sh)."""

from __future__ import annotations

import numpy as np
import pytest

from lmmkit.genetics.plink import filter_snps, read_plink
from lmmkit.genetics.source import GenotypeSource, open_genotypes

from ._formats_helpers import codes, need, plink2_raw, ref

# (file, reader options, package); all made by plink2 from hs.bed / eur.bed
CONVERTED = [
    ("hs.b8.bgen", {}, "cbgen"),
    ("hs.b16.bgen", {}, "cbgen"),
    ("hs.b13.bgen", {}, "cbgen"),
    ("eur.b8.bgen", {}, "cbgen"),
    ("eur.b13.bgen", {}, "cbgen"),
    ("eur.b16rf.bgen", {"count_allele": "second"}, "cbgen"),
    ("hs.pgen", {}, "pgenlib"),
    ("eur.pgen", {}, "pgenlib"),
    ("hs.vcf.gz", {"id_delim": "+"}, "cyvcf2"),
    ("eur.vcf", {"id_delim": "+"}, "cyvcf2"),
    ("eur.ds.vcf.gz", {"id_delim": "+"}, "cyvcf2"),
    ("eur.bcf", {"id_delim": "+"}, "cyvcf2"),
]


@pytest.mark.parametrize("name,options,package", CONVERTED, ids=[c[0] for c in CONVERTED])
def test_converted_file_reads_as_the_bed(name, options, package):
    need(package)
    bed = read_plink(ref(name.split(".")[0]))
    src = open_genotypes(ref(name), **options)
    assert isinstance(src, GenotypeSource)
    # same samples, variants and counted allele as the .bed
    for col in ("fid", "iid"):
        assert src.fam[col].tolist() == bed.fam[col].tolist()
    for col in ("chrom", "snp", "pos", "a1", "a2"):
        assert src.bim[col].astype(str).tolist() == bed.bim[col].astype(str).tolist(), col
    g0 = bed.read()
    assert np.isnan(g0).any()  # the reference files carry missing calls
    np.testing.assert_array_equal(src.read(), g0)  # exact: hard calls, NaN where missing
    s, v = np.array([7, 3, 200, 5]), np.array([30, 2, 11])
    np.testing.assert_array_equal(src.read(snps=v, samples=s, dtype="float32"),
                                  g0[np.ix_(s, v)].astype("float32"))  # fmt: skip
    np.testing.assert_array_equal(codes(src), codes(bed))
    assert set(src.files) and all(p.is_file() for p in src.files.values())
    f0 = filter_snps(bed, samples=np.arange(0, bed.n_samples, 2))
    f1 = filter_snps(src, samples=np.arange(0, bed.n_samples, 2))
    np.testing.assert_array_equal(f1.mask, f0.mask)
    np.testing.assert_allclose(f1.maf, f0.maf, rtol=1e-14)


def test_pgen_psam_phenotype_and_sex():
    need("pgenlib")
    bed, src = read_plink(ref("hs")), open_genotypes(ref("hs.pgen"))
    np.testing.assert_array_equal(src.phenotype(1), bed.phenotype(1))
    assert src.fam["sex"].tolist() == bed.fam["sex"].tolist()


def test_bgen_sample_file_phenotype():
    """P columns as they are; B (binary) columns in Oxford's 0/1 coding (.fam: 1/2)."""
    need("cbgen")
    bed, src = read_plink(ref("hs")), open_genotypes(ref("hs.b8.bgen"))
    np.testing.assert_array_equal(src.phenotype(1), bed.phenotype(1))
    bed, src = read_plink(ref("eur")), open_genotypes(ref("eur.b8.bgen"))
    np.testing.assert_array_equal(src.phenotype(1), bed.phenotype(1) - 1)


@pytest.mark.parametrize("name,package", [("dos.vcf.gz", "cyvcf2"), ("dos.pgen", "pgenlib")])
def test_fractional_dosages_equal_plink2s(name, package):
    """A VCF with non-integer DS: read() keeps the dosages plink2 imports (plink2 stores them
    to 1/16384 and prints 6 digits: tolerance 5e-5), iter_codes() gives plink2's hard calls
    (--hard-call-threshold 0.1) exactly."""
    need(package)
    src = open_genotypes(ref(name), **({"id_delim": "+"} if "vcf" in name else {}))
    x = src.read()
    want = plink2_raw(ref("dos.plink2.raw.gz"), src.bim["a1"])
    np.testing.assert_array_equal(np.isnan(x), np.isnan(want))
    assert np.nanmax(np.abs(x - want)) < 5e-5
    frac = np.abs(x - np.rint(x))
    assert np.nanmax(frac) > 0.4  # really non-integer
    np.testing.assert_array_equal(codes(src), codes(read_plink(ref("dos.hard"))))


def test_bgen_8bit_dosages_equal_plink2s():
    """plink2's 8-bit BGEN of the dosage file: our dosages equal plink2 reading the same
    BGEN (5e-5, its printing); against the source dosages the 1/255 quantization moves them
    by at most 1/255."""
    need("cbgen")
    need("cyvcf2")
    src = open_genotypes(ref("dos.b8.bgen"))
    x = src.read()
    want = plink2_raw(ref("dos.b8.plink2.raw.gz"), src.bim["a1"])
    assert np.nanmax(np.abs(x - want)) < 5e-5
    exact = open_genotypes(ref("dos.vcf.gz"), id_delim="+").read()
    assert np.nanmax(np.abs(x - exact)) <= 1 / 255 + 1e-6
    np.testing.assert_array_equal(codes(src), codes(read_plink(ref("dos.hard"))))


def test_open_genotypes_recognizes_prefixes(tmp_path):
    need("pgenlib")
    assert type(open_genotypes(ref("hs"))).__name__ == "PlinkData"  # .bed wins
    assert type(open_genotypes(ref("dos"))).__name__ == "PgenData"  # only dos.pgen exists
    assert type(open_genotypes(ref("hs.pvar"))).__name__ == "PgenData"


def test_vcf_reads_out_of_order_from_threads_and_pickles():
    """One forward cursor: blocks asked out of order or from several threads still read
    right; a pickled copy (a process worker's) opens its own."""
    import pickle
    from concurrent.futures import ThreadPoolExecutor

    need("cyvcf2")
    g0 = read_plink(ref("eur")).read()
    src = open_genotypes(ref("eur.vcf.gz"), id_delim="+")
    blocks = [np.arange(a, min(a + 40, src.n_snps)) for a in range(0, src.n_snps, 40)][::-1]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda v: src.read(snps=v), blocks))
    for v, g in zip(blocks, got):
        np.testing.assert_array_equal(g, g0[:, v])
    copy = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(copy.read(snps=[3, 1]), g0[:, [3, 1]])

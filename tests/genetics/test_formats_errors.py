"""Bad BGEN / PGEN / VCF input gets a FileFormatError that names the file and the problem."""

from __future__ import annotations

import gzip
import importlib
import shutil

import numpy as np
import pytest

from lmmkit.cli.main import main
from lmmkit.errors import DataError, FileFormatError, LmmkitError
from lmmkit.genetics.formats import GenotypeReaderError, read_bgen, read_pgen, read_vcf
from lmmkit.genetics.source import open_genotypes

from ._formats_helpers import need, ref


def _copy(tmp_path, *names):
    for n in names:
        shutil.copy(ref(n), tmp_path / n)


def test_bgen_sample_file_disagreeing_with_stored_ids(tmp_path):
    need("cbgen")
    _copy(tmp_path, "eur.b8.bgen")
    lines = ref("eur.b8.sample").read_text().splitlines()
    lines[2 + 4], lines[2 + 5] = lines[2 + 5], lines[2 + 4]  # samples 5 and 6 swapped
    (tmp_path / "swapped.sample").write_text("\n".join(lines) + "\n")
    with pytest.raises(FileFormatError, match=r"sample 5 is ID_1='6' ID_2='HG00102' but "
                       r".*eur.b8.bgen stores '5_HG00101' at that position"):  # fmt: skip
        read_bgen(tmp_path / "eur.b8.bgen", sample=tmp_path / "swapped.sample")
    (tmp_path / "short.sample").write_text("\n".join(lines[:-3]) + "\n")
    with pytest.raises(FileFormatError, match="376 samples, but .* holds 379"):
        read_bgen(tmp_path / "eur.b8.bgen", sample=tmp_path / "short.sample")
    # the right .sample, found beside the .bgen, is accepted
    _copy(tmp_path, "eur.b8.sample")
    assert read_bgen(tmp_path / "eur.b8.bgen").files["sample"] == tmp_path / "eur.b8.sample"


def test_bgen_missing_sample_and_truncated_files(tmp_path):
    need("cbgen")
    with pytest.raises(FileFormatError, match="nope.sample: .sample file not found"):
        read_bgen(ref("eur.b8.bgen"), sample=tmp_path / "nope.sample")
    with pytest.raises(FileFormatError, match="none.bgen: .bgen file not found"):
        open_genotypes(tmp_path / "none.bgen")
    data = ref("hs.b13.bgen").read_bytes()
    (tmp_path / "cut.bgen").write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match=r"not a complete BGEN file \(variant \d+ of 253"):
        read_bgen(tmp_path / "cut.bgen", sample=ref("hs.b13.sample"))
    (tmp_path / "text.bgen").write_text("chrom pos\n" * 10)
    with pytest.raises(FileFormatError, match="magic number"):
        read_bgen(tmp_path / "text.bgen")
    # without a .sample the stored IDs serve as FID and IID (plink's --double-id)
    (tmp_path / "alone.bgen").write_bytes(ref("eur.b8.bgen").read_bytes())
    g = read_bgen(tmp_path / "alone.bgen")
    assert g.fam["iid"].iloc[0] == g.fam["fid"].iloc[0] == "1_HG00096"


def test_pgen_multiallelic_is_refused():
    need("pgenlib")
    with pytest.raises(FileFormatError, match=r"1 variant\(s\) are not biallelic \(first: "
                       r"'rs2', variant 2, 3 alleles\).*--max-alleles 2"):  # fmt: skip
        read_pgen(ref("multi"))


def test_vcf_multiallelic_is_refused():
    need("cyvcf2")
    with pytest.raises(FileFormatError, match=r"1 variant\(s\) are not biallelic \(first: 'rs2'"):
        read_vcf(ref("multi.vcf"))


def test_pgen_missing_companions_and_truncation(tmp_path):
    need("pgenlib")
    _copy(tmp_path, "eur.pgen", "eur.pvar")
    with pytest.raises(FileFormatError, match=r"eur.psam: .psam file not found"):
        read_pgen(tmp_path / "eur")
    _copy(tmp_path, "eur.psam")
    (tmp_path / "eur.pvar").unlink()
    with pytest.raises(FileFormatError, match=r"eur.pvar: .pvar file not found"):
        read_pgen(tmp_path / "eur.pgen")
    _copy(tmp_path, "eur.pvar")
    data = (tmp_path / "eur.pgen").read_bytes()
    (tmp_path / "eur.pgen").write_bytes(data[: len(data) // 3])
    g = read_pgen(tmp_path / "eur")
    with pytest.raises(FileFormatError, match="cannot be read .* truncated or corrupt"):
        g.read()
    lines = ref("eur.pvar").read_text().splitlines()
    (tmp_path / "eur.pvar").write_text("\n".join(lines[:-5]) + "\n")
    with pytest.raises(FileFormatError, match="holds 301 variants but .* lists 296"):
        read_pgen(tmp_path / "eur")


def _vcf(path, fmt_lines, fields, values):
    rows = [
        "##fileformat=VCFv4.2",
        "##contig=<ID=1>",
        *fmt_lines,
        "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT",
                   "a", "b"]),
        "\t".join(["1", "10", "rs1", "A", "G", ".", ".", ".", fields, *values]),
    ]  # fmt: skip
    path.write_text("\n".join(rows) + "\n")
    return path


def test_vcf_without_gt_or_ds(tmp_path):
    need("cyvcf2")
    ad = '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="depth">'
    p = _vcf(tmp_path / "ad.vcf", [ad], "AD", ["3,4", "5,0"])
    with pytest.raises(FileFormatError, match=r"no FORMAT/GT field \(nor DS nor GT\)"):
        read_vcf(p)
    gt = '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">'
    p = _vcf(tmp_path / "gt.vcf", [gt], "GT", ["0/1", "./."])
    with pytest.raises(FileFormatError, match="no FORMAT/DS field; it has GT"):
        read_vcf(p, field="DS")
    np.testing.assert_array_equal(read_vcf(p).read(), [[1.0], [np.nan]])


def test_vcf_truncated(tmp_path):
    need("cyvcf2")
    data = ref("eur.vcf.gz").read_bytes()
    (tmp_path / "cut.vcf.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(
        FileFormatError, match=r"truncated \(the BGZF end-of-file block is missing\)"
    ):
        read_vcf(tmp_path / "cut.vcf.gz")
    text = ref("eur.vcf").read_text()
    (tmp_path / "cut.vcf").write_text(text[: len(text) // 2])  # cut mid-line
    with pytest.raises(FileFormatError, match=r"cut.vcf: unreadable after record \d+"):
        read_vcf(tmp_path / "cut.vcf")
    with gzip.open(tmp_path / "plain.vcf.gz", "wt") as fh:  # gzip, not bgzip: still read
        fh.write(text)
    assert read_vcf(tmp_path / "plain.vcf.gz").n_snps == 301


def test_missing_reader_names_the_extra(monkeypatch):
    real = importlib.import_module

    def fake(name, *a, **k):
        if name in ("cbgen", "pgenlib", "cyvcf2"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", fake)
    for path in (ref("eur.b8.bgen"), ref("eur.pgen"), ref("eur.vcf")):
        with pytest.raises(GenotypeReaderError, match=r"pip install 'lmmkit\[biobank\]'"):
            open_genotypes(path)
    assert issubclass(GenotypeReaderError, LmmkitError)


def test_cli_sample_without_bgen_and_two_inputs(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["grm", "--bfile", "x", "--pfile", "y", "--out", str(tmp_path / "k")])
    assert "not allowed with argument" in capsys.readouterr().err
    code = main(["grm", "--bfile", str(ref("eur")), "--sample", "s.sample", "--out",
                 str(tmp_path / "k"), "--quiet"])  # fmt: skip
    assert code != 0 and "--sample goes with --bgen" in capsys.readouterr().err
    assert issubclass(DataError, LmmkitError)

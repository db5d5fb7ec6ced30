"""LD scores (``ld_scores``, ``marginal_z``, ``simulate_sumstats``, ``lmmkit ldsc --l2``) and
SNP-set GRMs (``snp_set_grms``) on BGEN, PGEN and VCF equal the .bed path's.

The converted files hold the .bed's hard calls, so the numbers must agree to rounding (LD
scores to 1e-12, GRMs exactly).  BGEN and VCF store no genetic positions: they take the kb
window, and a cM window is refused with the file named.
"""

from __future__ import annotations

import copy
import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmmkit.cli.main import main
from lmmkit.errors import DataError
from lmmkit.genetics.kernel_sets import snp_set_grms
from lmmkit.genetics.ldsc import ld_scores, marginal_z, simulate_sumstats
from lmmkit.genetics.plink import read_plink
from lmmkit.genetics.source import open_genotypes

from ._formats_helpers import need, ref

PACKAGE = {"bgen": "cbgen", "pgen": "pgenlib", "gz": "cyvcf2", "bcf": "cyvcf2"}
# (bed prefix, converted file, window in kb): EUR's SNPs are ~1 Mb apart, HS1940's mice
# share long haplotypes, so these windows hold SNP pairs in LD (checked below)
CASES = [
    ("eur", "eur.pgen", 10_000),
    ("eur", "eur.b8.bgen", 10_000),
    ("eur", "eur.vcf.gz", 10_000),  # GT hard calls
    ("eur", "eur.bcf", 10_000),
    ("hs", "hs.pgen", 20_000),
    ("hs", "hs.b8.bgen", 20_000),
    ("hs", "hs.vcf.gz", 20_000),
]
SAME = ["chrom", "snp", "pos", "a1", "a2", "maf"]


def _open(name: str, **options):
    need(PACKAGE[name.rsplit(".", 1)[1]])
    return open_genotypes(ref(name), **options)


def _assert_same_ld(got: pd.DataFrame, want: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(
        got[SAME].reset_index(drop=True), want[SAME].reset_index(drop=True), check_exact=True
    )
    np.testing.assert_allclose(got["l2"], want["l2"], rtol=0, atol=1e-12)
    for key in ("M", "M_5_50", "n_ref", "window"):
        assert got.attrs[key] == want.attrs[key], key


@pytest.mark.parametrize("bed_name,name,kb", CASES)
def test_ld_scores_equal_the_bed(bed_name, name, kb):
    src, bed = _open(name), read_plink(ref(bed_name))
    for chunk in (None, 50):  # exact windows and LDSC's chunks of 50
        want = ld_scores(bed, window_kb=kb, chunk_size=chunk)
        assert want["l2"].max() > 1.01  # pairs in LD are summed, not only each SNP itself
        assert len(want) > 200
        _assert_same_ld(ld_scores(src, window_kb=kb, chunk_size=chunk), want)
    # a path is opened as open_genotypes opens it
    _assert_same_ld(ld_scores(str(ref(name)), window_kb=kb), ld_scores(bed, window_kb=kb))


def test_pgen_cm_positions_give_the_bed_cm_window():
    """A .pvar with a CM column keeps the .bim's genetic positions: the cM window (chosen by
    default, as for the .bed) equals the .bed's."""
    src, bed = _open("hs.pgen"), read_plink(ref("hs"))
    want = ld_scores(bed)
    assert want.attrs["window"] == "1.0 cM"
    got = ld_scores(src)
    _assert_same_ld(got, want)
    np.testing.assert_array_equal(got["cm"], want["cm"])
    _assert_same_ld(ld_scores(src, window_cm=5.0), ld_scores(bed, window_cm=5.0))


@pytest.mark.parametrize("name", ["hs.b8.bgen", "hs.vcf.gz"])
def test_no_genetic_positions_kb_window_and_cm_refused(name):
    """BGEN and VCF: like a .bim whose cM column is all 0 (the .bed's cM window works)."""
    src, bed = _open(name), read_plink(ref("hs"))
    assert (src.bim["cm"] == 0).all() and (bed.bim["cm"] != 0).any()
    assert ld_scores(bed, window_cm=5.0).attrs["window"] == "5.0 cM"
    got = ld_scores(src)  # default: the kb window
    assert got.attrs["window"] == "1000.0 kb"
    _assert_same_ld(got, ld_scores(bed, window_kb=1000.0))
    assert (got["cm"] == 0).all()
    with pytest.raises(DataError, match=re.escape(str(ref(name))) + r" has no genetic positions.*window_kb"):  # fmt: skip
        ld_scores(src, window_cm=5.0)


def test_source_without_cm_column_is_all_zero_cm():
    """A source whose variant table has no cm column at all behaves as cM all 0."""
    src, bed = _open("hs.pgen"), read_plink(ref("hs"))
    bare = copy.copy(src)
    bare.bim = src.bim.drop(columns="cm")
    got = ld_scores(bare)
    assert got.attrs["window"] == "1000.0 kb"
    _assert_same_ld(got, ld_scores(bed, window_kb=1000.0))
    with pytest.raises(DataError, match=r"hs\.pvar has no genetic positions.*window_kb"):
        ld_scores(bare, window_cm=1.0)


def test_dosages_are_used_as_they_are():
    """Fractional dosages (PGEN imported from VCF DS) enter the LD scores unrounded: the scores
    equal a direct computation from read()'s dosages, and differ from the hard calls'."""
    src = _open("dos.pgen")
    got = ld_scores(src, window_kb=10_000)
    keep = np.flatnonzero(src.bim["snp"].isin(got["snp"]).to_numpy())
    assert src.bim["snp"].iloc[keep].tolist() == got["snp"].tolist()
    g = src.read(snps=keep)
    assert np.nanmax(np.abs(g - np.rint(g))) > 0.4  # really fractional
    g = np.where(np.isnan(g), np.nanmean(g, 0), g)
    x = (g - g.mean(0)) / g.std(0)
    n = len(x)
    r2 = (x.T @ x / n) ** 2
    r2u = r2 - (1 - r2) / (n - 2)
    chrom, pos = got["chrom"].to_numpy(), got["pos"].to_numpy(float)
    inside = (chrom[:, None] == chrom[None, :]) & (np.abs(pos[:, None] - pos[None, :]) <= 1e7)
    np.testing.assert_allclose(got["l2"], (r2u * inside).sum(1), rtol=0, atol=1e-10)
    hard = ld_scores(read_plink(ref("dos.hard")), window_kb=10_000)
    assert np.abs(hard["l2"].to_numpy() - got["l2"].to_numpy()).max() > 1e-3


@pytest.mark.parametrize("name", ["hs.pgen", "hs.b8.bgen"])
def test_marginal_z_and_simulated_sumstats_equal_the_bed(name):
    src, bed = _open(name), read_plink(ref("hs"))
    y = bed.phenotype(1)
    ok = np.flatnonzero(np.isfinite(y))
    want = marginal_z(bed, y[ok], samples=ok, block_size=100)
    assert np.abs(want).max() > 3  # HS1940's phenotype 1 has associated SNPs
    np.testing.assert_allclose(
        marginal_z(src, y[ok], samples=ok, block_size=100), want, rtol=0, atol=1e-12
    )
    a = simulate_sumstats(bed, (0.4, 0.6), rg=0.5, seed=3)
    b = simulate_sumstats(str(ref(name)), (0.4, 0.6), rg=0.5, seed=3)
    pd.testing.assert_frame_equal(b[["snp", "a1", "a2", "n"]], a[["snp", "a1", "a2", "n"]])
    np.testing.assert_allclose(b[["z1", "z2"]], a[["z1", "z2"]], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["eur.pgen", "eur.b8.bgen"])
def test_snp_set_grms_equal_the_bed(name):
    src, bed = _open(name), read_plink(ref("eur"))
    labels = bed.bim["chrom"].to_numpy()
    samples = np.arange(0, bed.n_samples, 2)
    for norm in ("standardized", "empirical"):
        want = snp_set_grms(bed, labels, norm, samples=samples)
        assert len(want) == 6
        for got in (
            snp_set_grms(src, labels, norm, samples=samples),
            snp_set_grms(str(ref(name)), labels, norm, samples=samples),  # a path
        ):
            assert list(got) == list(want)
            for k in want:
                np.testing.assert_array_equal(got[k].matrix, want[k].matrix)
                assert got[k].n_snps == want[k].n_snps
                assert got[k].sample_ids.equals(want[k].sample_ids)


# ----------------------------------------------------------------------------- CLI


def run(*argv) -> int:
    return main([str(a) for a in argv])


def _written(out) -> dict:
    with gzip.open(f"{out}.l2.ldscore.gz", "rb") as fh:
        table = fh.read()
    return {
        "ldscore": table,
        "M": Path(f"{out}.l2.M").read_text(),
        "M_5_50": Path(f"{out}.l2.M_5_50").read_text(),
    }


@pytest.mark.parametrize(
    "flag,name,window",
    [
        ("--pfile", "eur", ["--ld-wind-kb", 10_000]),
        ("--bgen", "eur.b8.bgen", ["--ld-wind-kb", 10_000]),
        ("--vcf", "eur.vcf.gz", ["--ld-wind-kb", 10_000]),
        ("--bgen", "hs.b8.bgen", []),  # no cM positions: the 1,000 kb window by default
    ],
)
def test_cli_l2_writes_what_bfile_writes(flag, name, window, tmp_path):
    need({"--pfile": "pgenlib", "--bgen": "cbgen", "--vcf": "cyvcf2"}[flag])
    bed = name.split(".")[0]
    want_window = window or ["--ld-wind-kb", 1000]
    common = ["ldsc", "--l2", "--quiet"]
    assert run(*common, "--bfile", ref(bed), *want_window, "--out", tmp_path / "bed") == 0
    assert run(*common, flag, ref(name), *window, "--out", tmp_path / "fmt") == 0
    want, got = _written(tmp_path / "bed"), _written(tmp_path / "fmt")
    assert len(want["ldscore"].splitlines()) > 200
    assert got == want
    log = (tmp_path / "fmt.log").read_text()
    assert f"window {float(want_window[1])} kb" in log


def test_cli_l2_input_errors(tmp_path, capsys):
    need("cbgen")
    with pytest.raises(SystemExit):
        run("ldsc", "--l2", "--bfile", ref("eur"), "--pfile", ref("eur"), "--out", tmp_path / "x")
    assert "argument --pfile: not allowed with argument --bfile" in capsys.readouterr().err
    assert run("ldsc", "--l2", "--out", tmp_path / "x", "--quiet") == 2
    err = capsys.readouterr().err
    assert "--l2 needs the reference panel" in err and "--pfile PREFIX" in err
    argv = ["ldsc", "--l2", "--bgen", ref("hs.b8.bgen"), "--ld-wind-cm", 1, "--quiet"]
    assert run(*argv, "--out", tmp_path / "cm") == 2
    err = capsys.readouterr().err
    assert f"{ref('hs.b8.bgen')} has no genetic positions" in err and "--ld-wind-kb" in err
    assert not (tmp_path / "cm.l2.ldscore.gz").exists()
    # the .bed of the same variants has them: its cM window is drawn
    assert run(*argv[:2], "--bfile", ref("hs"), *argv[4:], "--out", tmp_path / "cm") == 0

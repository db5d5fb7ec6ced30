"""GRM, heritability and GWAS on plink2-converted files equal the .bed path's exactly,
through the library and through ``lmmkit grm/h2/gwas --bgen/--pfile/--vcf``.

The converted files hold the .bed's hard calls (BGEN 8-bit probabilities of 0 and 1 are
exact), so every number must be identical, not merely close.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmmkit
from lmmkit.cli.main import main
from lmmkit.genetics.grm import compute_grm, read_grm
from lmmkit.genetics.plink import read_plink
from lmmkit.genetics.source import open_genotypes

from ._formats_helpers import need, ref
from ._genetics_helpers import require_hs

# (file, reader options, CLI arguments, package)
EUR = [
    ("eur.b8.bgen", {}, ["--bgen", "eur.b8.bgen", "--sample", "eur.b8.sample"], "cbgen"),
    pytest.param("eur.b16rf.bgen", {"count_allele": "second"},
                 ["--bgen", "eur.b16rf.bgen", "--bgen-count-allele", "second"], "cbgen",
                 marks=pytest.mark.slow),
    pytest.param("eur.pgen", {}, ["--pfile", "eur"], "pgenlib", marks=pytest.mark.slow),
    pytest.param("eur.ds.vcf.gz", {"id_delim": "+"},
                 ["--vcf", "eur.ds.vcf.gz", "--id-delim", "+"], "cyvcf2", marks=pytest.mark.slow),
]  # fmt: skip
# the default level runs the BGEN case; every format's reads (what these results rest on) are
# checked equal to the .bed in test_formats_read.py at the default level


def _pheno_file(path: Path, bed, seed: int = 3) -> Path:
    """A heritable phenotype (h2 away from its bounds): 100 causal variants plus noise."""
    rng = np.random.default_rng(seed)
    g = bed.read()
    g = np.where(np.isnan(g), np.nanmean(g, axis=0), g)
    causal = rng.choice(g.shape[1], 100, replace=False)
    y = g[:, causal] @ rng.normal(scale=0.15, size=100) + rng.normal(size=len(g))
    y = y.round(6).astype(object)
    y[::17] = "NA"
    fam = bed.fam
    pd.DataFrame({"FID": fam["fid"], "IID": fam["iid"], "y": y}).to_csv(path, sep=" ", index=False)
    return path


def _cli(args: list, tmp: Path, tag: str, pheno: Path) -> dict:
    """Run grm, h2 and gwas on one genotype input; return what they wrote."""
    argv = [str(a) if not str(a).startswith("eur") else str(ref(a)) for a in args]

    def run(*a) -> int:
        return main([str(x) for x in a])

    assert run("grm", *argv, "--kinship", "standardized", "--out", tmp / tag, "--quiet") == 0
    assert (
        run(
            "h2",
            *argv,
            "--pheno",
            pheno,
            "--pheno-col",
            "y",
            "--json",
            tmp / f"{tag}.json",
            "--quiet",
        )
        == 0
    )
    assert run("gwas", *argv, "--pheno", pheno, "--pheno-col", "y", "--out", tmp / f"{tag}.tsv", "--no-plots",
               "--quiet") == 0  # fmt: skip
    h2 = json.loads((tmp / f"{tag}.json").read_text())
    return {
        "grm": read_grm(tmp / tag),
        "h2": {k: v for k, v in h2.items() if not isinstance(v, str) or "/" not in v},
        "gwas": pd.read_csv(tmp / f"{tag}.tsv", sep="\t"),
    }


@pytest.mark.parametrize("name,options,cli,package", EUR)
def test_grm_h2_gwas_equal_the_bed(name, options, cli, package, tmp_path):
    need(package)
    bed, src = read_plink(ref("eur")), open_genotypes(ref(name), **options)
    for kinship in ("centered", "standardized", "empirical"):
        np.testing.assert_array_equal(
            compute_grm(src, kinship).matrix, compute_grm(bed, kinship).matrix
        )
    pheno = _pheno_file(tmp_path / "y.txt", bed)
    want = _cli(["--bfile", "eur"], tmp_path, "bed", pheno)
    got = _cli(cli, tmp_path, "fmt", pheno)
    np.testing.assert_array_equal(got["grm"][0].matrix, want["grm"][0].matrix)
    np.testing.assert_array_equal(got["grm"][1], want["grm"][1])
    assert 0.05 < want["h2"]["h2"] < 0.95  # an interior fit, not a boundary
    for key in ("h2", "h2_se", "vg", "ve", "loglik", "n", "fixed_effects"):
        assert got["h2"][key] == want["h2"][key], key
    pd.testing.assert_frame_equal(got["gwas"], want["gwas"], check_exact=True)
    assert len(want["gwas"]) > 250


@pytest.mark.slow
def test_matrix_free_gwas_equal_the_bed():
    """The matrix-free path (kinship from iter_codes' int8 hard calls) on a PGEN."""
    need("pgenlib")
    bed, src = read_plink(ref("eur")), open_genotypes(ref("eur.pgen"))
    y = np.random.default_rng(5).normal(size=bed.n_samples)
    kw = dict(pheno=y, method="matrix-free", progress=False, plots=False)
    a, b = lmmkit.gwas(bed, **kw), lmmkit.gwas(src, **kw)
    pd.testing.assert_frame_equal(a.table, b.table, check_exact=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hs.b8.bgen", "hs.b13.bgen", "hs.pgen", "hs.vcf.gz"])
def test_hs_subset_gwas_equal_the_bed(name):
    need({"bgen": "cbgen", "pgen": "pgenlib", "gz": "cyvcf2"}[name.rsplit(".", 1)[1]])
    bed = read_plink(ref("hs"))
    src = open_genotypes(ref(name), **({"id_delim": "+"} if "vcf" in name else {}))
    y = bed.phenotype(1)
    a = lmmkit.gwas(bed, pheno=y, progress=False, plots=False)
    b = lmmkit.gwas(src, pheno=y, progress=False, plots=False)
    pd.testing.assert_frame_equal(a.table, b.table, check_exact=True)
    assert a.null == b.null


@pytest.mark.slow
def test_full_hs1940_pgen_and_bgen_equal_the_bed(tmp_path):
    """The whole HS1940 converted by plink2 here (10,300 variants: plink2 drops the 1,926
    at position -9, so the .bed compared is plink2's --make-bed of the same variants, with
    the original .fam phenotype): GRM and GWAS equal the .bed path's exactly."""
    hs = require_hs()
    if shutil.which("plink2") is None:
        pytest.skip("plink2 is not installed")
    need("pgenlib")
    need("cbgen")
    for args in (["--make-bed"], ["--make-pgen"], ["--export", "bgen-1.2", "bits=8"]):
        subprocess.run(["plink2", "--bfile", str(hs), *args, "--out", str(tmp_path / "hs"),
                        "--threads", "1", "--silent"], check=True)  # fmt: skip
    bed = read_plink(tmp_path / "hs")
    assert bed.n_snps == 10300
    y = read_plink(hs).phenotype(1)
    k0 = compute_grm(bed).matrix
    a = lmmkit.gwas(bed, pheno=y, progress=False, plots=False)
    for name in ("hs.pgen", "hs.bgen"):
        src = open_genotypes(tmp_path / name)
        assert src.bim["snp"].tolist() == bed.bim["snp"].tolist()
        np.testing.assert_array_equal(compute_grm(src).matrix, k0)
        b = lmmkit.gwas(src, pheno=y, progress=False, plots=False)
        pd.testing.assert_frame_equal(a.table, b.table, check_exact=True)
        assert a.null == b.null

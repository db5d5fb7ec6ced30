"""``lmmkit grm``, ``lmmkit h2`` and ``lmmkit ldsc``: each command equals its library call and,
where the library is anchored to GEMMA / plink2 / LDSC, the same references hold through the
command line (tolerances: those of tests/genetics, widened only where the GCTA format's float32
storage requires it)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmmkit.cli.main import main
from lmmkit.genetics.grm import GRM, compute_grm, loco_grms, read_grm, write_grm
from lmmkit.genetics.heritability import reml_heritability
from lmmkit.genetics.ldsc import genetic_correlation, ld_score_regression
from lmmkit.genetics.multi_reml import multi_reml
from lmmkit.genetics.plink import read_plink
from tests.genetics._genetics_helpers import (
    reference,
    require_eur,
    require_hs,
    simulate_genotypes,
    write_plink,
)

RTOL_GEMMA = 1e-4  # as tests/genetics/test_genetics_heritability.py
LDSC_REF = Path(__file__).resolve().parents[1] / "reference" / "genetics" / "ldsc_eur.json"


def run(argv: list[str]) -> int:
    return main([str(a) for a in argv])


# ----------------------------------------------------------------------------- small data


@pytest.fixture
def small(tmp_path):
    """150 samples x 300 SNPs on 3 chromosomes, a .fam phenotype with 5 missing values."""
    n, m = 150, 300
    g = simulate_genotypes(n, m, seed=3, missing=0.01)
    g[:, 7] = 0.0  # monomorphic: dropped by the centered kernel's filter
    rng = np.random.default_rng(4)
    z = np.nan_to_num((g - np.nanmean(g, 0)) / (np.nanstd(g, 0) + 1e-12))
    y = z @ rng.normal(0, np.sqrt(0.5 / m), m) + rng.normal(0, np.sqrt(0.5), n)
    y[:5] = np.nan
    fam = [f"F{i} I{i} 0 0 1 {'-9' if np.isnan(y[i]) else f'{y[i]:.6f}'}" for i in range(n)]
    bim = [f"{1 + j // 100} rs{j} 0 {1000 + 10 * j} A G" for j in range(m)]
    prefix = write_plink(tmp_path / "small", g, fam_rows=fam, bim_rows=bim)
    return prefix, y


def test_grm_output_equals_compute_grm(small, tmp_path, capsys):
    prefix, _ = small
    pl = read_plink(prefix)
    for norm in ("centered", "standardized", "vanraden"):
        out = tmp_path / f"k_{norm}"
        assert run(["grm", "--bfile", prefix, "--out", out, "--kinship", norm]) == 0
        back, nmat = read_grm(out)
        direct = compute_grm(pl, norm)
        # GCTA stores float32: the file holds exactly compute_grm's matrix rounded to float32
        np.testing.assert_array_equal(back.matrix, direct.matrix.astype("<f4").astype(float))
        assert back.n_snps == direct.n_snps and np.all(nmat == direct.n_snps)
        assert back.sample_ids.equals(pl.sample_ids)
    log = (tmp_path / "k_centered.grm.log").read_text()
    assert "SNPs: 299 of 300 used; 1 dropped (MAF < 0.01)" in log
    excl = pd.read_csv(tmp_path / "k_centered.grm.excluded", sep="\t")
    assert excl.to_dict("list") == {"chrom": [1], "snp": ["rs7"], "reason": ["MAF < 0.01"]}
    assert not list(tmp_path.glob(".*.tmp"))
    # an existing output is refused unless --overwrite
    out = tmp_path / "k_centered"
    assert run(["grm", "--bfile", prefix, "--out", out]) == 2
    assert "output exists" in capsys.readouterr().err
    assert run(["grm", "--bfile", prefix, "--out", out, "--overwrite", "--quiet"]) == 0


def test_grm_loco_and_filters(small, tmp_path):
    prefix, _ = small
    pl = read_plink(prefix)
    out = tmp_path / "loco"
    assert run(["grm", "--bfile", prefix, "--out", out, "--loco", "--quiet"]) == 0
    direct = loco_grms(pl, "centered")
    assert sorted(direct) == ["1", "2", "3"]
    for c, k in direct.items():
        back, _ = read_grm(f"{out}.chr{c}")
        np.testing.assert_array_equal(back.matrix, k.matrix.astype("<f4").astype(float))
    # explicit filters on the standardized kernel, and --extract
    (tmp_path / "keep.txt").write_text("\n".join(f"rs{j}" for j in range(100, 300)) + "\n")
    out2 = tmp_path / "std"
    argv = ["grm", "--bfile", prefix, "--out", out2, "--kinship", "standardized"]
    assert run([*argv, "--maf", "0.05", "--extract", tmp_path / "keep.txt", "--quiet"]) == 0
    back, _ = read_grm(out2)
    want = compute_grm(
        pl, "standardized", snps=np.arange(100, 300), gemma_filter=True, maf=0.05, max_missing=1
    )
    np.testing.assert_array_equal(back.matrix, want.matrix.astype("<f4").astype(float))
    reasons = set(pd.read_csv(f"{out2}.grm.excluded", sep="\t")["reason"])
    assert "not in --extract" in reasons


def test_h2_bfile_equals_library_and_reports_samples(small, tmp_path, capsys):
    prefix, y = small
    pl = read_plink(prefix)
    out = tmp_path / "h2.json"
    assert run(["h2", "--bfile", prefix, "--pheno-fam", 1, "--json", out]) == 0
    err = capsys.readouterr().err
    assert "145 of 150 analyzed; 5 dropped (missing phenotype value)" in err
    res = json.loads(out.read_text())
    ok = np.flatnonzero(np.isfinite(y))
    grm = compute_grm(pl, "centered", filter_samples=ok).subset(ok)
    fit = reml_heritability(pl.phenotype(1)[ok], grm)
    for key, val in [("h2", fit.h2), ("h2_se", fit.h2_se), ("vg", fit.vg), ("ve", fit.ve)]:
        assert res[key] == pytest.approx(val, rel=1e-10), key
    assert res["loglik"] == pytest.approx(fit.logl_reml, rel=1e-12)
    assert res["n"] == 145 and res["kinship"] == "centered"
    assert res["samples"]["dropped"] == {"missing phenotype value": 5}
    assert [r[:2] for r in res["samples"]["dropped_samples"]] == [
        [f"F{i}", f"I{i}"] for i in range(5)
    ]
    assert {"lrt_stat", "lrt_pvalue"} <= set(res)


def test_h2_pheno_and_covariates_from_files(small, tmp_path, capsys):
    prefix, y = small
    pl = read_plink(prefix)
    rng = np.random.default_rng(9)
    n = len(y)
    age = np.round(rng.normal(50, 10, n), 4)
    lines = ["FID IID age site"] + [
        f"F{i} I{i} {'NA' if i == 10 else f'{age[i]:.4f}'} {'ab'[i % 2]}" for i in range(n)
    ]
    (tmp_path / "cov.txt").write_text("\n".join(lines) + "\n")
    yf = pl.phenotype(1)
    ph = ["FID IID trait"] + [f"F{i} I{i} {yf[i] if i >= 5 else 'NA'}" for i in range(n - 3)]
    (tmp_path / "ph.txt").write_text("\n".join(ph) + "\n")
    out = tmp_path / "h2.json"
    argv = ["h2", "--bfile", prefix, "--pheno", tmp_path / "ph.txt", "--pheno-col", "trait"]
    argv += ["--covar", tmp_path / "cov.txt", "--covar-cols", "age", "site", "--json", out]
    assert run(argv) == 0
    res = json.loads(out.read_text())
    assert res["samples"]["dropped"] == {
        "missing phenotype value": 5,
        "not in phenotype file": 3,
        "missing covariate value": 1,
    }
    keep = np.array([i for i in range(5, n - 3) if i != 10])
    grm = compute_grm(pl, "centered", filter_samples=keep)
    x = pd.DataFrame({"age": age[keep], "site[b]": (np.arange(n)[keep] % 2).astype(float)})
    fit = reml_heritability(pl.phenotype(1)[keep], grm.subset(keep), x)
    assert res["h2"] == pytest.approx(fit.h2, rel=1e-9)
    assert res["loglik"] == pytest.approx(fit.logl_reml, rel=1e-12)
    assert set(res["fixed_effects"]) == {"intercept", "age", "site[b]"}
    assert "1 dropped (missing covariate value)" in capsys.readouterr().err


def test_h2_two_grms_equal_multi_reml(small, tmp_path):
    prefix, y = small
    for name, chroms in (("a", "1"), ("b", "2 3")):
        keep = [f"rs{j}" for j in range(300) if str(1 + j // 100) in chroms.split()]
        (tmp_path / f"{name}.snps").write_text("\n".join(keep) + "\n")
        argv = ["grm", "--bfile", prefix, "--out", tmp_path / name, "--kinship", "standardized"]
        assert run([*argv, "--extract", tmp_path / f"{name}.snps", "--quiet"]) == 0
    out = tmp_path / "m.json"
    argv = ["h2", "--bfile", prefix, "--grm", tmp_path / "a", "--grm", tmp_path / "b"]
    assert run([*argv, "--pheno-fam", 1, "--json", out, "--quiet"]) == 0
    res = json.loads(out.read_text())
    ok = np.flatnonzero(np.isfinite(y))
    ka, _ = read_grm(tmp_path / "a")
    kb, _ = read_grm(tmp_path / "b")
    yf = read_plink(prefix).phenotype(1)  # the .fam's 6-decimal values
    fit = multi_reml(yf[ok], {"a": ka.subset(ok), "b": kb.subset(ok)})
    assert res["h2"] == pytest.approx(fit.h2_total, rel=1e-9)
    assert res["loglik"] == pytest.approx(fit.logl_reml, rel=1e-12)
    assert res["ve"] == pytest.approx(fit.sigma2[-1], rel=1e-9)
    assert [c["name"] for c in res["components"]] == ["a", "b"]
    for c, s2, h in zip(res["components"], fit.sigma2, fit.h2):
        assert c["sigma2"] == pytest.approx(s2, rel=1e-9, abs=1e-12)
        assert c["h2"] == pytest.approx(h, rel=1e-9, abs=1e-12)
    # GRM only (no .fam): a phenotype file; samples absent from the second GRM are dropped
    sub = GRM(ka.matrix[10:, 10:], ka.sample_ids.iloc[10:].reset_index(drop=True), 1, "x")
    write_grm(sub, tmp_path / "a_sub")
    ph = ["FID IID t"] + [f"F{i} I{i} {y[i]:.6f}" for i in range(5, 150)]
    (tmp_path / "ph.txt").write_text("\n".join(ph) + "\n")
    out2 = tmp_path / "m2.json"
    argv = ["h2", "--grm", tmp_path / "b", "--grm", tmp_path / "a_sub"]
    argv += ["--pheno", tmp_path / "ph.txt", "--pheno-col", "t", "--json", out2, "--quiet"]
    assert run(argv) == 0
    res2 = json.loads(out2.read_text())
    reason = f"not in {tmp_path / 'a_sub'}.grm.id"
    assert res2["samples"]["dropped"] == {"not in phenotype file": 5, reason: 5}
    assert res2["n"] == 140


def test_h2_liability_scale(small, tmp_path):
    prefix, y = small
    cc = np.where(np.isnan(y), np.nan, (y > np.nanmedian(y) + 0.3).astype(float))
    ph = ["FID IID cc"] + [f"F{i} I{i} {'NA' if np.isnan(v) else int(v)}" for i, v in enumerate(cc)]
    (tmp_path / "cc.txt").write_text("\n".join(ph) + "\n")
    out = tmp_path / "cc.json"
    argv = ["h2", "--bfile", prefix, "--pheno", tmp_path / "cc.txt", "--pheno-col", "cc"]
    assert run([*argv, "--prevalence", 0.1, "--json", out, "--quiet"]) == 0
    res = json.loads(out.read_text())
    from scipy import stats

    k, p = 0.1, float(np.nanmean(cc))
    z = stats.norm.pdf(stats.norm.isf(k))
    factor = k**2 * (1 - k) ** 2 / (z**2 * p * (1 - p))  # Lee et al. (2011) eq. 23
    assert res["sample_prevalence"] == pytest.approx(p)
    assert res["h2_liability"] == pytest.approx(res["h2"] * factor, rel=1e-12)
    assert res["h2_liability_se"] == pytest.approx(res["h2_se"] * factor, rel=1e-12)
    assert run([*argv[:-2], "--pheno-col", "cc", "--prevalence", 1.5]) == 2


# ----------------------------------------------------------------------------- errors


def _err(capsys, argv) -> str:
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"lmmkit {argv[0]}: error: "), err
    return last


def test_bad_inputs_give_clear_errors(small, tmp_path, capsys):
    prefix, y = small
    d = tmp_path
    h2 = ["h2", "--bfile", prefix]
    # phenotype ID absent from the .fam
    (d / "p1.txt").write_text("FID IID t\nF1 I1 1.0\nX9 Y9 2.0\nF2 I2 0.5\n")
    err = _err(capsys, [*h2, "--pheno", d / "p1.txt", "--pheno-col", "t"])
    assert "absent from" in err and "small.fam" in err and "X9/Y9" in err
    # duplicated ID in the phenotype file (file and line)
    (d / "p2.txt").write_text("FID IID t\nF1 I1 1.0\nF2 I2 2.0\nF1 I1 0.5\n")
    err = _err(capsys, [*h2, "--pheno", d / "p2.txt", "--pheno-col", "t"])
    assert "p2.txt, line 4: duplicated sample ID FID='F1' IID='I1'" in err
    # constant phenotype
    (d / "p3.txt").write_text("FID IID t\n" + "".join(f"F{i} I{i} 3\n" for i in range(150)))
    err = _err(capsys, [*h2, "--pheno", d / "p3.txt", "--pheno-col", "t"])
    assert "constant" in err
    # unknown column (with a suggestion)
    err = _err(capsys, [*h2, "--pheno", d / "p1.txt", "--pheno-col", "T"])
    assert "column 'T' not found" in err
    # .bed whose size does not match .bim x .fam
    bad = d / "bad"
    for ext in ("bim", "fam"):
        Path(f"{bad}.{ext}").write_text(Path(f"{prefix}.{ext}").read_text())
    Path(f"{bad}.bed").write_bytes(Path(f"{prefix}.bed").read_bytes()[:-10])
    err = _err(capsys, ["grm", "--bfile", bad, "--out", d / "x"])
    assert "bad.bed: size" in err and "does not match 300 SNPs" in err
    err = _err(capsys, ["h2", "--bfile", bad, "--pheno-fam", 1])
    assert "bad.bed: size" in err
    # duplicated ID in the .fam
    dup = d / "dup"
    Path(f"{dup}.bim").write_text(Path(f"{prefix}.bim").read_text())
    Path(f"{dup}.bed").write_bytes(Path(f"{prefix}.bed").read_bytes())
    fam = Path(f"{prefix}.fam").read_text().splitlines()
    fam[3] = fam[3].replace("F3 I3", "F2 I2")
    Path(f"{dup}.fam").write_text("\n".join(fam) + "\n")
    err = _err(capsys, ["h2", "--bfile", dup, "--pheno-fam", 1])
    assert "dup.fam, line 4: duplicated sample ID" in err
    # a --grm prefix that does not exist
    err = _err(capsys, ["h2", "--grm", d / "nope", "--pheno", d / "p1.txt", "--pheno-col", "t"])
    assert "nope.grm.id" in err
    # a duplicated ID in a .grm.id
    ids = pd.DataFrame({"fid": ["F0", "F1", "F0"], "iid": ["I0", "I1", "I0"]})
    write_grm(GRM(np.eye(3), ids, 5, "x"), d / "dupgrm")
    err = _err(capsys, ["h2", "--grm", d / "dupgrm", "--pheno", d / "p1.txt", "--pheno-col", "t"])
    assert "dupgrm.grm.id, line 3: duplicated sample ID" in err
    # a kernel that is not positive semi-definite, alone and with another kernel
    pl = read_plink(prefix)
    k = compute_grm(pl, "standardized")
    rng = np.random.default_rng(1)
    v = rng.normal(size=(150, 1))
    npsd = GRM(k.matrix - 3.0 * v @ v.T / 150, k.sample_ids, 5, "x")
    write_grm(npsd, d / "npsd")
    write_grm(k, d / "ok")
    err = _err(capsys, [*h2, "--grm", d / "npsd", "--pheno-fam", 1])
    assert "npsd.grm.bin" in err and "not positive semi-definite" in err
    err = _err(capsys, [*h2, "--grm", d / "ok", "--grm", d / "npsd", "--pheno-fam", 1])
    assert "npsd.grm.bin" in err and "not positive semi-definite" in err
    # option combinations
    err = _err(capsys, ["h2", "--grm", d / "ok", "--pheno-fam", 1])
    assert "--pheno-fam reads the phenotype from the .fam" in err
    err = _err(capsys, [*h2, "--pheno", d / "p1.txt"])
    assert "--pheno needs --pheno-col" in err


# ----------------------------------------------------------------------------- ldsc


def _write_ldsc_inputs(d: Path, n_snp=3000, seed=2):
    rng = np.random.default_rng(seed)
    snps = [f"rs{j}" for j in range(n_snp)]
    l2 = rng.gamma(2.0, 25.0, n_snp)
    n = 20000.0
    z1 = rng.normal(size=n_snp) * np.sqrt(1.02 + n * 0.3 * l2 / 40000)
    z2 = 0.5 * z1 + rng.normal(size=n_snp) * np.sqrt(1 + n * 0.1 * l2 / 40000)
    tab = pd.DataFrame({"CHR": 1, "SNP": snps, "BP": np.arange(n_snp) * 100, "L2": l2.round(3)})
    with gzip.open(d / "ref.l2.ldscore.gz", "wt") as fh:
        tab.to_csv(fh, sep="\t", index=False)
    (d / "ref.l2.M_5_50").write_text("40000\n")
    (d / "ref.l2.M").write_text("50000\n")
    a1 = rng.choice(list("AC"), n_snp)
    a2 = np.where(a1 == "A", "G", "T")
    s1 = pd.DataFrame({"SNP": snps, "A1": a1, "A2": a2, "Z": z1, "N": n})
    s1.loc[5, "Z"] = np.nan  # dropped (LDSC drops rows with missing values)
    s1.to_csv(d / "t1.sumstats.gz", sep="\t", index=False, float_format="%.17g")
    # trait 2: alleles swapped on some SNPs (z sign flips), one mismatch, one ambiguous
    s2 = pd.DataFrame({"SNP": snps, "A1": a1, "A2": a2, "Z": z2, "N": n})
    sw = np.arange(n_snp) % 3 == 0
    s2.loc[sw, ["A1", "A2"]] = s2.loc[sw, ["A2", "A1"]].to_numpy()
    s2.loc[sw, "Z"] *= -1
    s2.loc[1, ["A1", "A2"]] = ["A", "C"] if a1[1] != "A" else ["C", "G"]
    s2.loc[2, ["A1", "A2"]] = ["A", "T"]
    s2.to_csv(d / "t2.sumstats", sep="\t", index=False, float_format="%.17g")
    return l2.round(3), z1, z2, n


def test_ldsc_h2_and_rg_equal_library(tmp_path, capsys):
    l2, z1, z2, n = _write_ldsc_inputs(tmp_path)
    ref = ["--ref-ld", tmp_path / "ref", "--w-ld", tmp_path / "ref"]
    out = tmp_path / "h2"
    assert run(["ldsc", "--h2", tmp_path / "t1.sumstats.gz", *ref, "--out", out]) == 0
    printed = capsys.readouterr().out
    res = json.loads(Path(f"{out}.json").read_text())
    keep = np.arange(len(l2)) != 5
    fit = ld_score_regression(z=z1[keep], ld=l2[keep], n=n, m=40000)
    for key in ("h2", "h2_se", "intercept", "intercept_se", "ratio", "mean_chisq", "lambda_gc"):
        assert res[key] == pytest.approx(getattr(fit, key), rel=1e-12), key
    assert res["n_snps"] == len(l2) - 1 and res["M"] == 40000
    assert "Total Observed scale h2" in printed and "Lambda GC" in printed
    assert "Total Observed scale h2" in Path(f"{out}.log").read_text()
    # the same LD scores split into per-chromosome files (--ref-ld-chr / --w-ld-chr)
    whole = pd.read_csv(tmp_path / "ref.l2.ldscore.gz", sep="\t")
    for c, part in ((1, whole.iloc[:1700]), (2, whole.iloc[1700:].assign(CHR=2))):
        part.to_csv(tmp_path / f"chr{c}.l2.ldscore.gz", sep="\t", index=False)
        (tmp_path / f"chr{c}.l2.M_5_50").write_text("20000\n")
    outc = tmp_path / "h2chr"
    argv = ["ldsc", "--h2", tmp_path / "t1.sumstats.gz", "--ref-ld-chr", tmp_path / "chr"]
    assert run([*argv, "--w-ld-chr", tmp_path / "chr", "--out", outc, "--quiet"]) == 0
    rc = json.loads(Path(f"{outc}.json").read_text())
    assert rc["M"] == 40000 and rc["h2"] == pytest.approx(fit.h2, rel=1e-12)
    # --not-M-5-50, fixed intercept and liability conversion
    out2 = tmp_path / "h2b"
    argv = ["ldsc", "--h2", tmp_path / "t1.sumstats.gz", *ref, "--out", out2, "--quiet"]
    assert run([*argv, "--not-M-5-50", "--intercept-h2", 1.0]) == 0
    r2 = json.loads(Path(f"{out2}.json").read_text())
    f2 = ld_score_regression(z=z1[keep], ld=l2[keep], n=n, m=50000, intercept=1.0)
    assert r2["h2"] == pytest.approx(f2.h2, rel=1e-12) and r2["intercept_se"] is None
    out4 = tmp_path / "h2c"
    argv = ["ldsc", "--h2", tmp_path / "t1.sumstats.gz", *ref, "--out", out4, "--quiet"]
    assert run([*argv, "--samp-prev", 0.5, "--pop-prev", 0.01]) == 0
    r4 = json.loads(Path(f"{out4}.json").read_text())
    from lmmkit.genetics.liability import h2_observed_to_liability

    hl, hl_se = h2_observed_to_liability(fit.h2, 0.01, 0.5, se=fit.h2_se)
    assert r4["h2_liability"] == pytest.approx(hl, rel=1e-12)
    assert r4["h2_liability_se"] == pytest.approx(hl_se, rel=1e-12)
    # --rg: alleles aligned (swaps flip the sign), mismatched and ambiguous SNPs dropped
    out3 = tmp_path / "rg"
    rgarg = f"{tmp_path / 't1.sumstats.gz'},{tmp_path / 't2.sumstats'}"
    assert run(["ldsc", "--rg", rgarg, *ref, "--out", out3, "--quiet"]) == 0
    rr = json.loads(Path(f"{out3}.json").read_text())["rg"][0]
    ok = keep.copy()
    ok[[1, 2]] = False
    want = genetic_correlation(z1[ok], z2[ok], l2[ok], n, n, 40000)
    assert rr["n_snps"] == int(ok.sum())
    for key in ("rg", "rg_se", "gencov", "gencov_se", "gencov_intercept", "p"):
        assert rr[key] == pytest.approx(getattr(want, key), rel=1e-12), key
    # errors: missing M file, missing column, existing output
    (tmp_path / "ref.l2.M_5_50").unlink()
    err = _err(capsys, ["ldsc", "--h2", tmp_path / "t1.sumstats.gz", *ref, "--out", tmp_path / "e"])
    assert "ref.l2.M_5_50: file not found" in err and "--not-M-5-50" in err
    pd.DataFrame({"SNP": ["rs1"], "Z": [1.0]}).to_csv(tmp_path / "bad.sumstats", sep="\t")
    err = _err(
        capsys,
        ["ldsc", "--h2", tmp_path / "bad.sumstats", *ref, "--not-M-5-50", "--out", tmp_path / "e"],
    )
    assert "missing column(s) A1, A2, N" in err
    err = _err(
        capsys, ["ldsc", "--h2", tmp_path / "t1.sumstats.gz", *ref, "--not-M-5-50", "--out", out]
    )
    assert "output exists" in err


@pytest.mark.slow
def test_ldsc_pipeline_matches_frozen_ldsc_eur(tmp_path):
    """--l2 then --h2 / --rg through the command line on EUR_subset: LDSC 2.0.1's numbers
    (tests/reference/genetics/ldsc_eur.json) at the library test's tolerance."""
    prefix = require_eur()
    if not LDSC_REF.exists():
        pytest.skip(f"frozen LDSC reference {LDSC_REF} missing")
    ref = json.loads(LDSC_REF.read_text())
    from lmmkit.genetics.ldsc import simulate_sumstats

    ld = tmp_path / "eur"
    assert (
        run(["ldsc", "--l2", "--bfile", prefix, "--ld-wind-kb", 1000, "--out", ld, "--quiet"]) == 0
    )
    tab = pd.read_csv(f"{ld}.l2.ldscore.gz", sep="\t")
    assert int(Path(f"{ld}.l2.M").read_text()) == ref["M"] == len(tab)
    for c, total in ref["l2_sum_by_chr"].items():
        assert tab.loc[tab["CHR"].astype(str) == c, "L2"].sum() == pytest.approx(total, abs=1e-6)
    pl = read_plink(prefix)
    idx = np.flatnonzero(pl.bim["snp"].isin(tab["SNP"]).to_numpy())
    sim = ref["simulation"]
    ss = simulate_sumstats(pl, tuple(sim["h2"]), rg=sim["rg_effects"], seed=sim["seed"], snps=idx)
    for k in (1, 2):
        t = pd.DataFrame(
            {"SNP": ss["snp"], "A1": ss["a1"], "A2": ss["a2"], "Z": ss[f"z{k}"], "N": ss["n"]}
        )
        t.to_csv(tmp_path / f"trait{k}.sumstats", sep="\t", index=False, float_format="%.17g")
    common = ["--ref-ld", ld, "--w-ld", ld, "--not-M-5-50", "--quiet"]
    for k in (1, 2):
        out = tmp_path / f"h2_{k}"
        assert run(["ldsc", "--h2", tmp_path / f"trait{k}.sumstats", *common, "--out", out]) == 0
        res = json.loads(Path(f"{out}.json").read_text())
        r = ref[f"h2_trait{k}"]
        for key in (
            "h2",
            "h2_se",
            "intercept",
            "intercept_se",
            "ratio",
            "ratio_se",
            "mean_chisq",
            "lambda_gc",
        ):
            assert res[key] == pytest.approx(r[key], rel=1e-9, abs=1e-12), key
    out = tmp_path / "rg"
    pair = f"{tmp_path / 'trait1.sumstats'},{tmp_path / 'trait2.sumstats'}"
    assert run(["ldsc", "--rg", pair, *common, "--out", out]) == 0
    rr = json.loads(Path(f"{out}.json").read_text())["rg"][0]
    r = ref["rg"]
    assert rr["n_snps"] == r["n_snps"]
    for key in (
        "rg",
        "rg_se",
        "z",
        "p",
        "gencov",
        "gencov_se",
        "gencov_intercept",
        "gencov_intercept_se",
    ):
        assert rr[key] == pytest.approx(r[key], rel=1e-9, abs=1e-12), key


# ----------------------------------------------------------------------------- HS1940


def test_h2_hs1940_matches_gemma(tmp_path):
    prefix = require_hs()
    ref = reference()["gemma_lmm_n1"]
    out = tmp_path / "hs.json"
    argv = ["h2", "--bfile", prefix, "--pheno-fam", 1, "--kinship", "centered"]
    assert run([*argv, "--json", out, "--quiet"]) == 0
    res = json.loads(out.read_text())
    assert ref["pve"] == 0.609672 and ref["logl_reml"] == -1584.07
    for key, gemma in (
        ("h2", "pve"),
        ("h2_se", "pve_se"),
        ("vg", "vg"),
        ("ve", "ve"),
        ("loglik", "logl_reml"),
        ("loglik_ml", "logl_ml"),
    ):
        assert res[key] == pytest.approx(ref[gemma], rel=RTOL_GEMMA), key
    assert res["n"] == ref["n_analyzed"]
    assert res["samples"]["dropped"] == {"missing phenotype value": 1940 - 1410}


def test_grm_hs1940_matches_gemma_and_plink2(tmp_path):
    prefix = require_hs()
    pl = read_plink(prefix)
    # GEMMA -gk 1 -n 1: SNP filters over the samples with phenotype 1, all 1940 samples kept
    out = tmp_path / "cxx"
    assert run(["grm", "--bfile", prefix, "--out", out, "--filter-pheno-fam", 1, "--quiet"]) == 0
    back, _ = read_grm(out)
    assert back.n_snps == 10768
    # tests/genetics compares at 1e-9; float32 storage of values below 2 adds at most 1.2e-7
    _check_summary(back.matrix, reference()["gemma_cXX_n1"], atol=2e-7)
    # plink2 --make-grm-bin: standardized, no filter, SNPs with a base-pair position
    ref = reference()["plink2_grm"]
    keep = pl.bim.loc[pl.bim["pos"] > 0, "snp"]
    (tmp_path / "pos.txt").write_text("\n".join(keep) + "\n")
    out2 = tmp_path / "p2"
    argv = ["grm", "--bfile", prefix, "--out", out2, "--kinship", "standardized"]
    assert run([*argv, "--extract", tmp_path / "pos.txt", "--quiet"]) == 0
    back2, _ = read_grm(out2)
    assert back2.n_snps == ref["n_variants"]
    _check_summary(back2.matrix, ref, atol=1e-6)


def _check_summary(k, ref, atol):
    n = ref["n"]
    assert k.shape == (n, n)
    np.testing.assert_allclose(k[:50, :50], np.array(ref["block50"]), rtol=0, atol=atol)
    assert abs(np.mean(np.diag(k)) - ref["diag_mean"]) < atol
    assert abs(k.sum() - ref["sum"]) < atol * n
    assert abs(np.linalg.norm(k) - ref["frobenius"]) / ref["frobenius"] < atol

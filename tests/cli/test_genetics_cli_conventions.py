"""The genetics commands state and offer the anchors' conventions (issues 13, 21, 24, 25):
LDSC's log layout, list options in one form, one-line warnings, grm --missing pairwise,
h2/gwas kinship conventions, duplicated .fam IDs, output layouts, whole-chromosome LD
windows."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmmkit.cli.main import main
from lmmkit.genetics.grm import read_grm
from tests.genetics._genetics_helpers import simulate_genotypes, write_ldsc_log_inputs, write_plink

REF = Path(__file__).resolve().parents[1] / "reference" / "genetics"


def run(argv: list) -> int:
    return main([str(a) for a in argv])


def _block(lines: list[str], first: str, last: str) -> list[str]:
    i = next(k for k, x in enumerate(lines) if x.startswith(first))
    j = next(k for k in range(i, len(lines)) if lines[k].startswith(last))
    return lines[i : j + 1]


def test_ldsc_log_layout_is_ldscs(tmp_path, capsys):
    """Line for line LDSC 2.0.1's result blocks (4 decimals, e.g. 'Lambda GC: 7.975',
    'Intercept: constrained to 1.', 'P: 8.4482e-64')."""
    ref = json.loads((REF / "ldsc_logs.json").read_text())
    write_ldsc_log_inputs(tmp_path)
    common = ["--ref-ld", tmp_path / "ref", "--w-ld", tmp_path / "ref", "--quiet"]
    cases = {
        "h2": ["--h2", tmp_path / "t1.sumstats"],
        "h2fixed": ["--h2", tmp_path / "t1.sumstats", "--intercept-h2", 1],
        "h2liab": ["--h2", tmp_path / "t1.sumstats", "--samp-prev", 0.5, "--pop-prev", 0.01],
    }
    for name, argv in cases.items():
        assert run(["ldsc", *argv, *common, "--out", tmp_path / name]) == 0
        ours = (tmp_path / f"{name}.log").read_text().splitlines()
        last = "Intercept" if name == "h2fixed" else "Ratio"
        assert _block(ours, "Total", last) == _block(ref[name], "Total", last), name
    assert "Using two-step estimator with cutoff at 30." in (tmp_path / "h2.log").read_text()
    # --rg, the file list given space-separated (also accepted comma-separated)
    rg = ["--rg", tmp_path / "t1.sumstats", tmp_path / "t2.sumstats"]
    assert run(["ldsc", *rg, *common, "--out", tmp_path / "rg"]) == 0
    ours = (tmp_path / "rg.log").read_text().splitlines()
    want = _block(ref["rg"], "Heritability of phenotype 1", "P: ")
    assert _block(ours, "Heritability of phenotype 1", "P: ") == want
    # the summary table: same columns and numbers (file names aside)
    i = ours.index("Summary of Genetic Correlation Results")
    k = ref["rg"].index("Summary of Genetic Correlation Results")
    assert ours[i + 1].split() == ref["rg"][k + 1].split()
    assert ours[i + 2].split()[2:] == ref["rg"][k + 2].split()[2:]
    comma = f"{tmp_path / 't1.sumstats'},{tmp_path / 't2.sumstats'}"
    assert run(["ldsc", "--rg", comma, *common, "--out", tmp_path / "rg2"]) == 0
    a = json.loads((tmp_path / "rg.json").read_text())["rg"][0]["rg"]
    assert json.loads((tmp_path / "rg2.json").read_text())["rg"][0]["rg"] == a


@pytest.fixture
def small(tmp_path):
    n, m = 120, 240
    g = simulate_genotypes(n, m, seed=21, missing=0.05)
    rng = np.random.default_rng(2)
    y = rng.normal(size=n) + np.nan_to_num(g[:, 3] - 1.0)
    fam = [f"F{i} I{i} 0 0 1 {y[i]:.5f} {'-9' if i % 4 == 0 else f'{y[i]:.5f}'}" for i in range(n)]
    bim = [f"{1 + j // 80} rs{j} {0.01 * j:.4f} {100_000 * j} A G" for j in range(m)]
    prefix = write_plink(tmp_path / "s", g, fam_rows=fam, bim_rows=bim)
    cov = pd.DataFrame(
        {"FID": [f"F{i}" for i in range(n)], "IID": [f"I{i}" for i in range(n)],
         "age": rng.normal(size=n), "site": rng.normal(size=n)}
    )  # fmt: skip
    cov.to_csv(tmp_path / "cov.txt", sep=" ", index=False)
    return prefix


def test_list_options_accept_spaces_and_commas_everywhere(small, tmp_path):
    base = ["h2", "--bfile", small, "--pheno-fam", 1, "--covar", small.parent / "cov.txt"]
    outs = []
    for i, cols in enumerate((["age", "site"], ["age,site"], ["age", "--covar-cols", "site"])):
        out = tmp_path / f"h{i}.json"
        assert run([*base, "--covar-cols", *cols, "--json", out, "--quiet"]) == 0
        outs.append(json.loads(out.read_text()))
    assert all(o["fixed_effects"].keys() == {"intercept", "age", "site"} for o in outs)
    assert outs[0]["h2"] == outs[1]["h2"] == outs[2]["h2"]
    g = ["gwas", "--bfile", small, "--pheno-fam", 1, "--covar", small.parent / "cov.txt"]
    for i, cols in enumerate((["age", "site"], ["age,site"])):  # gwas took only A,B
        out = tmp_path / f"g{i}.tsv"
        assert run([*g, "--covar-cols", *cols, "--out", out, "--no-plots", "--quiet"]) == 0
    a = pd.read_csv(tmp_path / "g0.tsv", sep="\t")
    b = pd.read_csv(tmp_path / "g1.tsv", sep="\t")
    pd.testing.assert_frame_equal(a, b)
    assert "covariates: intercept, age, site" in (tmp_path / "g0.tsv.log").read_text()


def test_h2_states_recentring_loglik_conventions_and_kinship_samples(small, tmp_path, capsys):
    out = tmp_path / "h.json"
    argv = ["h2", "--bfile", small, "--pheno-fam", 2, "--json", out]
    assert run([*argv, "--kinship-samples", "all"]) == 0
    text = capsys.readouterr()
    res = json.loads(out.read_text())
    assert "re-centred on the analysed samples" in text.err + text.out
    assert "FaST-LMM" in text.err and "all 120 genotyped samples" in text.err
    assert res["kinship_recentred"] is True
    assert res["loglik_lme4"] < res["loglik"] and "GEMMA" in res["loglik_convention"]
    assert run([*argv, "--overwrite", "--no-recenter", "--quiet"]) == 0
    raw = json.loads(out.read_text())
    assert raw["kinship_recentred"] is False and raw["vg"] == pytest.approx(res["vg"], rel=1e-8)
    assert raw["h2"] != pytest.approx(res["h2"], rel=1e-6)


def test_grm_missing_pairwise_and_help(small, tmp_path, capsys):
    out = tmp_path / "k"
    assert run(["grm", "--bfile", small, "--kinship", "standardized", "--missing", "pairwise",
                "--out", out, "--quiet"]) == 0  # fmt: skip
    log = (tmp_path / "k.grm.log").read_text()
    assert "SNPs called in both samples" in log and "per-pair counts" in log
    _, nmat = read_grm(out)
    assert nmat is not None and len(np.unique(nmat)) > 5 and nmat.max() < 240
    assert run(["grm", "--bfile", small, "--kinship", "standardized", "--out", tmp_path / "i",
                "--quiet"]) == 0  # fmt: skip
    assert "mean-imputed" in (tmp_path / "i.grm.log").read_text()
    _, ni = read_grm(tmp_path / "i")
    assert np.all(ni == 240)
    with pytest.raises(SystemExit):
        main(["grm", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "equal to plink2's matrix with --missing pairwise, or without missing calls" in (
        help_text
    )
    assert run(["grm", "--bfile", small, "--missing", "pairwise", "--out", tmp_path / "c"]) == 2
    assert "goes with --kinship standardized" in capsys.readouterr().err


def test_duplicated_fam_ids_refused_unless_allowed(small, tmp_path, capsys):
    fam = Path(f"{small}.fam").read_text().splitlines()
    fam[7] = fam[3].split()[0] + " " + fam[3].split()[1] + " " + " ".join(fam[7].split()[2:])
    fam[9] = fam[3].split()[0] + " " + fam[3].split()[1] + " " + " ".join(fam[9].split()[2:])
    Path(f"{small}.fam").write_text("\n".join(fam) + "\n")
    argv = ["gwas", "--bfile", small, "--pheno-fam", 1, "--no-plots", "--quiet"]
    assert run([*argv, "--out", tmp_path / "d.tsv"]) == 2
    err = capsys.readouterr().err
    assert "FID='F3' IID='I3' on lines 4, 8, 10" in err and "--allow-duplicate-ids" in err
    assert run([*argv, "--out", tmp_path / "d.tsv", "--allow-duplicate-ids"]) == 0
    log = (tmp_path / "d.tsv.log").read_text()
    assert "2 duplicated .fam sample ID(s)" in log and "line 8 F3/I3 -> I3~2" in log
    assert "samples: 120 analyzed" in log


def test_ld_window_whole_chromosome_refused_and_morgans_warned(small, tmp_path, capsys):
    # 0.01 cM and 100 kb apart, 80 SNPs per chromosome (0.79 cM): 1 cM spans each whole
    argv = ["ldsc", "--l2", "--bfile", small, "--ld-wind-cm", 1, "--quiet"]
    assert run([*argv, "--out", tmp_path / "w"]) == 2
    err = capsys.readouterr().err
    assert "spans the whole chromosome" in err and "--yes-really" in err
    assert run([*argv, "--out", tmp_path / "w", "--yes-really"]) == 0
    assert "--yes-really" in (tmp_path / "w.log").read_text()
    # Morgans: 0.0001 per 100 kb = 0.001 per Mb; one warning line, no Python source line
    bim = Path(f"{small}.bim").read_text().splitlines()
    bim = [" ".join([r.split()[0], r.split()[1], f"{float(r.split()[2]) / 100:.6f}", *r.split()[3:]])
           for r in bim]  # fmt: skip
    Path(f"{small}.bim").write_text("\n".join(bim) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert run([*argv, "--out", tmp_path / "m", "--yes-really"]) == 0
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if "Morgans" in x]
    assert lines and all(x.startswith("lmmkit: warning: chromosome") for x in lines)
    assert "warnings.warn" not in err and ".py:" not in err


def test_gwas_output_format_option(small, tmp_path):
    out = tmp_path / "r.regenie"
    argv = ["gwas", "--bfile", small, "--pheno-fam", 1, "--no-plots", "--quiet", "--out", out]
    assert run([*argv, "--output-format", "regenie"]) == 0
    t = pd.read_csv(out, sep=" ")
    assert list(t.columns)[:5] == ["CHROM", "GENPOS", "ID", "ALLELE0", "ALLELE1"]
    assert "(regenie layout)" in Path(f"{out}.log").read_text()


@pytest.mark.slow
def test_h2_and_grm_commands_reproduce_gemmas_kinship_computed_once(tmp_path):
    """``--kinship-samples gemma`` at the command line on HS1940 MCH (.fam column 11) gives
    GEMMA 0.98.5's vg, ve and pve (tests/reference/gemma_mch), and ``lmmkit grm`` writes
    the kinship that, given back with --grm, gives the same fit."""
    from tests.genetics._genetics_helpers import require_hs

    prefix = require_hs()
    g = json.loads((REF.parent / "gemma_mch" / "gemma_mch_reference.json").read_text())["gemma"]
    out = tmp_path / "h.json"
    argv = ["h2", "--bfile", prefix, "--pheno-fam", 6, "--quiet"]
    assert run([*argv, "--kinship-samples", "gemma", "--json", out]) == 0
    res = json.loads(out.read_text())
    assert res["n"] == g["null"]["n_analyzed"]
    assert res["vg"] == pytest.approx(g["null"]["vg"], abs=5e-6)
    assert res["ve"] == pytest.approx(g["null"]["ve"], abs=5e-7)
    assert res["h2"] == pytest.approx(g["null"]["pve"], abs=5e-7)
    assert "GEMMA -gk 1 without -n" in res["kernels"][0]["convention"]
    assert run(["grm", "--bfile", prefix, "--kinship-samples", "gemma", "--out", tmp_path / "k",
                "--quiet"]) == 0  # fmt: skip
    out2 = tmp_path / "h2.json"
    assert run([*argv, "--grm", tmp_path / "k", "--json", out2]) == 0
    again = json.loads(out2.read_text())
    assert again["vg"] == pytest.approx(res["vg"], rel=1e-5)  # .grm.bin holds float32

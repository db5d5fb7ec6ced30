"""lmmkit.genetics.gwas: exact LMM association (GEMMA -lmm 1..4), streaming, resume, LOCO."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from lmmkit.cli.genetics.gwas import run_gwas_cli
from lmmkit.errors import DataError, FileFormatError
from lmmkit.genetics.grm import compute_grm
from lmmkit.genetics.gwas import OUTPUT_COLUMNS, genomic_control, gwas
from lmmkit.genetics.heritability import reml_heritability
from lmmkit.genetics.plink import read_plink
from lmmkit.parallel.executor import NO_SHARED, SerialExecutor
from tests.genetics._genetics_helpers import SHARED, require_hs
from tests.genetics.test_gwas_helpers import simulate

GEMMA_ASSOC = SHARED / "reference" / "gemma" / "mouse_hs1940_CD8.assoc.txt.gz"
STATS = ["beta", "se", "l_remle", "l_mle", "p_wald", "p_lrt", "p_score"]


@pytest.fixture(autouse=True)
def _one_blas_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    return simulate(tmp_path_factory.mktemp("gwas") / "sim")


@pytest.fixture(scope="module")
def hs_grm():
    prefix = require_hs()
    if not GEMMA_ASSOC.exists():
        pytest.skip(f"GEMMA reference {GEMMA_ASSOC} missing")
    pl = read_plink(prefix)
    ok = np.flatnonzero(np.isfinite(pl.phenotype(1)))
    return pl, compute_grm(pl, "centered", filter_samples=ok)


def _compare_gemma(table: pd.DataFrame) -> dict[str, float]:
    ref = pd.read_csv(GEMMA_ASSOC, sep="\t").set_index("rs")
    ref = ref.loc[table["snp"]]
    assert (ref["allele1"].to_numpy() == table["a1"].to_numpy()).all()
    out = {}
    for k in ("p_wald", "p_lrt", "p_score"):
        out[k] = float(np.max(np.abs(np.log10(table[k].to_numpy()) - np.log10(ref[k].to_numpy()))))
    for k in ("beta", "se"):
        out[k] = float(np.max(np.abs(table[k].to_numpy() / ref[k].to_numpy() - 1)))
    np.testing.assert_allclose(table["af"], ref["af"], atol=6e-4)
    return out


def test_gemma_hs1940_cd8_all_snps(hs_grm):
    """Every SNP of GEMMA 0.98.5 ``-lmm 4`` on HS1940 CD8 (10,768 tested SNPs)."""
    pl, grm = hs_grm
    res = gwas(pl, 1, kinship=grm, progress=False)
    ref = pd.read_csv(GEMMA_ASSOC, sep="\t")
    assert res.n_tested == 10768
    assert (res.table["snp"].to_numpy() == ref["rs"].to_numpy()).all()
    assert res.n_samples == 1410 and res.n_samples_dropped == {"missing phenotype value": 530}
    assert res.null["all"]["pve"] == pytest.approx(0.609672, abs=5e-7)
    assert res.null["all"]["logl_remle"] == pytest.approx(-1584.07, abs=5e-3)
    assert res.null["all"]["logl_mle"] == pytest.approx(-1584.45, abs=5e-3)
    d = _compare_gemma(res.table)
    print("max differences vs GEMMA:", d)
    assert d["p_wald"] < 1e-3 and d["p_lrt"] < 1e-3 and d["p_score"] < 1e-3, d
    assert d["beta"] < 1e-4 and d["se"] < 1e-4, d
    np.testing.assert_allclose(res.table["l_remle"], ref["l_remle"], rtol=1e-4)
    np.testing.assert_allclose(res.table["l_mle"], ref["l_mle"], rtol=1e-4)


@pytest.mark.slow
def test_gemma_hs1940_cd8_end_to_end(tmp_path):
    """The whole pipeline from the PLINK prefix (kinship = GEMMA -gk 1), written to disk."""
    prefix = require_hs()
    if not GEMMA_ASSOC.exists():
        pytest.skip(f"GEMMA reference {GEMMA_ASSOC} missing")
    res = gwas(prefix, 1, out=tmp_path / "cd8.tsv", progress=False)
    assert res.n_tested == 10768
    written = pd.read_csv(tmp_path / "cd8.tsv", sep="\t")
    assert list(written.columns) == OUTPUT_COLUMNS
    d = _compare_gemma(written)
    assert d["p_wald"] < 1e-3 and d["p_lrt"] < 1e-3 and d["p_score"] < 1e-3, d
    assert d["beta"] < 1e-4 and d["se"] < 1e-4, d
    assert (tmp_path / "cd8.tsv.qq.png").exists() and (tmp_path / "cd8.tsv.manhattan.png").exists()
    assert "genomic control lambda" in (tmp_path / "cd8.tsv.log").read_text()


def test_matches_dense_reml_with_covariates(sim):
    """Per-SNP REML lambda, beta and se equal a dense REML fit of [1, covariates, x]."""
    pl = read_plink(sim)
    covar = pd.DataFrame(
        {"c1": pl.fam["pheno2"].to_numpy(), "grp": np.where(np.arange(pl.n_samples) % 3, "a", "b")}
    )
    res = gwas(pl, 1, covariates=covar, block_snps=64, progress=False)
    keep = np.flatnonzero(np.isfinite(pl.phenotype(1)))
    grm = compute_grm(pl, "centered", filter_samples=keep)
    k = grm.matrix[np.ix_(keep, keep)]
    y = pl.phenotype(1)[keep]
    w = np.column_stack([covar["c1"].to_numpy()[keep], (covar["grp"] == "b").to_numpy()[keep]])
    for _, row in res.table.iloc[[0, 7, 10, 50]].iterrows():
        j = int(np.flatnonzero(pl.bim["snp"] == row["snp"])[0])
        x = pl.read(snps=[j], samples=keep)[:, 0]
        x = np.where(np.isnan(x), np.nanmean(x), x)
        fit = reml_heritability(y, k, np.column_stack([w, x]))
        assert row["l_remle"] == pytest.approx(fit.lam, rel=1e-5)
        assert row["beta"] == pytest.approx(fit.beta[-1], rel=1e-6, abs=1e-10)
        assert row["se"] == pytest.approx(fit.beta_se[-1], rel=1e-6)


@pytest.mark.parametrize("block", [3, 17, 64, 1000])
def test_block_size_invariance(sim, block):
    base = gwas(sim, 1, block_snps=240, progress=False).table
    other = gwas(sim, 1, block_snps=block, progress=False).table
    assert list(other["snp"]) == list(base["snp"])
    for k in STATS:
        np.testing.assert_allclose(other[k], base[k], rtol=1e-9, atol=1e-300, err_msg=k)


def test_block_size_property(sim):
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    base = gwas(sim, 1, block_snps=240, progress=False).table

    @hypothesis.settings(max_examples=4, deadline=None, derandomize=True)
    @hypothesis.given(st.integers(min_value=5, max_value=300))
    def check(block):
        t = gwas(sim, 1, block_snps=block, progress=False).table
        for k in STATS:
            np.testing.assert_allclose(t[k], base[k], rtol=1e-9, atol=1e-300, err_msg=k)

    check()


class _Interrupted(RuntimeError):
    pass


class _FailAfter(SerialExecutor):
    """Serial executor that dies after ``k`` blocks, like a killed job."""

    def __init__(self, k: int):
        self.k = k
        self.items: list[int] = []

    def map(self, fn, items, shared=NO_SHARED):
        for i, r in enumerate(super().map(fn, items, shared)):
            if i == self.k:
                raise _Interrupted(f"injected failure after {self.k} blocks")
            self.items.append(r["block"])
            yield r


class _Recording(SerialExecutor):
    def __init__(self):
        self.items: list[int] = []

    def map(self, fn, items, shared=NO_SHARED):
        items = list(items)
        self.items += [b for b, _ in items]
        return super().map(fn, items, shared)


def test_interrupted_run_resumes(sim, tmp_path):
    full = tmp_path / "full.tsv"
    gwas(sim, 1, block_snps=25, out=full, progress=False, plots=False)
    out = tmp_path / "resumed.tsv"
    with pytest.raises(_Interrupted):
        gwas(sim, 1, block_snps=25, out=out, executor=_FailAfter(4), progress=False, plots=False)
    assert not out.exists()  # never a half-written output
    manifest = json.loads((tmp_path / "resumed.tsv.parts" / "manifest.json").read_text())
    assert sorted(int(b) for b in manifest["done"]) == [0, 1, 2, 3]
    rec = _Recording()
    res = gwas(sim, 1, block_snps=25, out=out, executor=rec, progress=False, plots=False)
    assert res.resumed_blocks == 4
    assert rec.items == list(range(4, 10))  # only the missing blocks were computed
    assert out.read_text() == full.read_text()
    assert not (tmp_path / "resumed.tsv.parts").exists()
    assert "resuming: 4 of 10 blocks" in (tmp_path / "resumed.tsv.log").read_text()


_SLOW_RUN = """
import sys, time
from lmmkit.genetics.gwas import gwas
from lmmkit.parallel.executor import SerialExecutor

class Slow(SerialExecutor):
    def map(self, fn, items, shared):
        for r in super().map(fn, items, shared):
            time.sleep(0.3)
            yield r

gwas(sys.argv[1], 1, block_snps=10, out=sys.argv[2], executor=Slow(), progress=False,
     plots=False)
"""


def test_killed_process_resumes(sim, tmp_path):
    """SIGKILL a real run midway; the rerun resumes and equals an uninterrupted run."""
    import signal
    import subprocess
    import sys
    import time

    full = tmp_path / "full.tsv"
    gwas(sim, 1, block_snps=10, out=full, progress=False, plots=False)
    script = tmp_path / "run.py"
    script.write_text(_SLOW_RUN)
    out = tmp_path / "killed.tsv"
    manifest = tmp_path / "killed.tsv.parts" / "manifest.json"
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(script), str(sim), str(out)], env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if manifest.exists() and len(json.loads(manifest.read_text())["done"]) >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists()
    n_done = len(json.loads(manifest.read_text())["done"])
    assert 3 <= n_done < 24
    res = gwas(sim, 1, block_snps=10, out=out, progress=False, plots=False)
    assert res.resumed_blocks == n_done
    assert out.read_text() == full.read_text()


def test_changed_settings_discard_parts(sim, tmp_path):
    out = tmp_path / "o.tsv"
    with pytest.raises(_Interrupted):
        gwas(sim, 1, block_snps=25, out=out, executor=_FailAfter(2), progress=False, plots=False)
    res = gwas(sim, 1, block_snps=25, out=out, tests=("wald",), progress=False, plots=False)
    assert res.resumed_blocks == 0
    assert any("discarding" in line for line in res.log)


def test_existing_output_refused(sim, tmp_path):
    out = tmp_path / "x.tsv"
    out.write_text("precious\n")
    with pytest.raises(DataError, match="exists"):
        gwas(sim, 1, out=out, progress=False)
    assert out.read_text() == "precious\n"
    res = gwas(sim, 1, out=out, overwrite=True, progress=False, plots=False)
    t = pd.read_csv(out, sep="\t")
    assert list(t.columns) == OUTPUT_COLUMNS and len(t) == res.n_tested


def test_bad_snps_and_samples_reported(sim, tmp_path):
    pl = read_plink(sim)
    covar = pd.DataFrame({"c": pl.fam["pheno2"].to_numpy()})
    covar.loc[7, "c"] = np.nan
    out = tmp_path / "r.tsv"
    res = gwas(pl, 1, covariates=covar, out=out, progress=False, plots=False)
    assert res.n_samples_dropped == {"missing phenotype value": 1, "missing covariate value": 1}
    assert res.n_samples == pl.n_samples - 2
    assert res.n_skipped.get("monomorphic") == 1
    assert res.n_skipped.get("all genotypes missing") == 1
    skipped = pd.read_csv(f"{out}.skipped.tsv", sep="\t")
    assert set(skipped["snp"]) >= {"rs3", "rs5"}
    assert "rs3" not in set(res.table["snp"])
    log = (tmp_path / "r.tsv.log").read_text()
    assert "1 skipped (monomorphic)" in log and "genomic control lambda" in log
    assert res.table["n"].max() <= res.n_samples


def test_truncated_bed(sim, tmp_path):
    import shutil

    dst = tmp_path / "trunc"
    for ext in (".bim", ".fam"):
        shutil.copy(f"{sim}{ext}", f"{dst}{ext}")
    data = open(f"{sim}.bed", "rb").read()
    open(f"{dst}.bed", "wb").write(data[: len(data) - 100])
    with pytest.raises(FileFormatError, match="does not match"):
        gwas(dst, 1, progress=False)


def test_tests_subset_and_order(sim):
    full = gwas(sim, 1, progress=False).table
    only = gwas(sim, 1, tests=("lrt",), progress=False).table
    np.testing.assert_allclose(only["p_lrt"], full["p_lrt"], rtol=1e-12)
    assert only["p_wald"].isna().all()
    assert list(full["snp"]) == sorted(full["snp"], key=lambda s: int(s[2:]))


def test_loco_equals_kinship_without_chromosome(sim):
    pl = read_plink(sim)
    res = gwas(pl, 1, loco=True, progress=False)
    keep = np.flatnonzero(np.isfinite(pl.phenotype(1)))
    chrom = pl.bim["chrom"].to_numpy()
    assert set(res.null) == {"1", "2", "3"}
    for c in ("1", "3"):
        off = np.flatnonzero(chrom != c)
        on = np.flatnonzero(chrom == c)
        grm = compute_grm(pl, "centered", snps=off, filter_samples=keep)
        ref = gwas(pl, 1, kinship=grm, snps=on, progress=False).table
        got = res.table[res.table["chrom"] == c].reset_index(drop=True)
        for k in STATS:
            np.testing.assert_allclose(got[k], ref[k], rtol=1e-8, err_msg=f"chr{c} {k}")
    pves = {c: v["pve"] for c, v in res.null.items()}
    assert len(set(np.round(list(pves.values()), 10))) == 3  # re-estimated per chromosome


def test_pheno_file_and_cli(sim, tmp_path):
    pl = read_plink(sim)
    ph = tmp_path / "p.txt"
    lines = ["FID IID trait"] + [
        f"{f} {i} {'NA' if np.isnan(v) else v}"
        for f, i, v in zip(pl.fam["fid"], pl.fam["iid"], pl.phenotype(1))
    ]
    ph.write_text("\n".join(lines) + "\n")
    out = tmp_path / "cli.tsv"
    code = run_gwas_cli(
        ["--bfile", str(sim), "--pheno", str(ph), "--pheno-col", "trait", "--out", str(out),
         "--test", "wald", "--quiet", "--no-plots", "--block-snps", "50"]
    )  # fmt: skip
    assert code == 0
    t = pd.read_csv(out, sep="\t")
    ref = gwas(sim, 1, tests=("wald",), progress=False).table
    np.testing.assert_allclose(t["p_wald"], ref["p_wald"], rtol=1e-8)
    assert t["p_lrt"].isna().all()
    # existing output: refused with exit code 2 and a one-line message
    assert (
        run_gwas_cli(["--bfile", str(sim), "--pheno-fam", "1", "--out", str(out), "--quiet"]) == 2
    )


def test_add_gwas_parser_wires_into_argparse(sim, tmp_path):
    import argparse

    from lmmkit.cli.genetics.gwas import add_parser as add_gwas_parser

    parser = argparse.ArgumentParser(prog="lmmkit")
    sub = parser.add_subparsers(dest="command", required=True)
    add_gwas_parser(sub)
    out = tmp_path / "w.tsv"
    args = parser.parse_args(
        ["gwas", "--bfile", str(sim), "--pheno-fam", "1", "--out", str(out), "--quiet",
         "--kinship", "standardized", "--no-plots"]
    )  # fmt: skip
    assert args.func(args) == 0 and out.exists()


def test_genomic_control_null_is_one():
    p = (np.arange(1, 100001) - 0.5) / 100000
    assert genomic_control(p) == pytest.approx(1.0, abs=1e-3)


def test_memory_and_counts_in_log(sim, capsys):
    gwas(sim, 1, progress=True)
    err = capsys.readouterr().err
    assert "expected peak memory" in err and "samples:" in err


def test_grm_file_kinship(sim, tmp_path):
    """--grm PREFIX (GCTA binary, float32) gives the same scan as the in-memory GRM."""
    from lmmkit.genetics.grm import write_grm

    pl = read_plink(sim)
    keep = np.flatnonzero(np.isfinite(pl.phenotype(1)))
    grm = compute_grm(pl, "centered", filter_samples=keep)
    write_grm(grm, tmp_path / "k")
    out = tmp_path / "g.tsv"
    code = run_gwas_cli(
        ["--bfile", str(sim), "--pheno-fam", "1", "--grm", str(tmp_path / "k"), "--out", str(out),
         "--quiet", "--no-plots"]
    )  # fmt: skip
    assert code == 0
    got = pd.read_csv(out, sep="\t")
    ref = gwas(pl, 1, kinship=grm, progress=False).table
    np.testing.assert_allclose(got["p_wald"], ref["p_wald"], rtol=1e-4)
    with pytest.raises(DataError, match="loco"):
        gwas(pl, 1, kinship=grm, loco=True, progress=False)


# GEMMA 0.98.5 on EUR_subset with covariates (frozen here; 40 of its 53,695 SNPs: the 15
# strongest, 3 with |beta| ~ 1e-6 and 22 at random).  Generated with
#   gemma -bfile EUR_subset -p pheno.txt -gk 1 -o eur
#   gemma -bfile EUR_subset -p pheno.txt -c cov.txt -k output/eur.cXX.txt -lmm 4 -o eur_lmm
# where pheno.txt is PHENO of EUR_subset.pheno2.covars in .fam order (NA where PHENO or a
# covariate is missing) and cov.txt holds 1, QCOV1, QCOV2, CAT_COV == "B".  Over all 53,695
# SNPs lmmkit agrees to max |dlog10 p| 2.1e-6 (Wald), 2.1e-7 (LRT, score), se 5e-7 relative,
# beta 1.6e-4 relative (only at |beta| < 1e-4 with p > 0.999; elsewhere < 1e-5).
GEMMA_EUR_COVARS = """\
rs	beta	se	l_remle	l_mle	p_wald	p_lrt	p_score
rs75134039	-1.653290e+00	3.130123e-01	4.183886e+01	1.000000e+05	2.215077e-07	1.316659e-07	3.738869e-07
rs5028988	-4.068147e-01	7.707429e-02	4.119800e+00	1.000000e+05	2.256459e-07	6.169137e-07	1.433607e-06
rs7254125	-6.390859e-01	1.358948e-01	6.411656e+00	1.000000e+05	3.658846e-06	3.996691e-06	7.492729e-06
rs10417812	-8.163549e-01	1.740246e-01	6.854721e+00	1.000000e+05	3.862870e-06	4.343095e-06	8.070506e-06
rs11671304	-3.394595e-01	7.550585e-02	5.869193e+00	1.000000e+05	9.351161e-06	1.449168e-05	2.385553e-05
rs5752916	4.763023e-01	1.069163e-01	4.383596e+00	1.000000e+05	1.121006e-05	2.155021e-05	3.418451e-05
rs9613915	4.541881e-01	1.049557e-01	4.540084e+00	1.000000e+05	1.955756e-05	3.606570e-05	5.463996e-05
rs131289	-3.448159e-01	8.028348e-02	6.577260e+00	1.000000e+05	2.248619e-05	2.310364e-05	3.641659e-05
rs424541	4.559136e-01	1.066495e-01	4.719982e+00	1.000000e+05	2.450624e-05	4.134351e-05	6.190197e-05
rs10416568	-3.975511e-01	9.758817e-02	9.280440e+00	1.000000e+05	5.690347e-05	4.362194e-05	6.501470e-05
rs2530672	-2.971625e-01	7.339511e-02	5.393826e+00	1.000000e+05	6.302817e-05	8.713278e-05	1.226978e-04
rs9905218	5.227054e-01	1.296875e-01	6.331387e+00	1.000000e+05	6.791325e-05	7.905479e-05	1.121851e-04
rs8104555	-1.037700e+00	2.620580e-01	7.518627e+00	1.000000e+05	9.036975e-05	9.340431e-05	1.308129e-04
rs79185550	-1.200809e+00	3.033678e-01	7.388232e+00	1.000000e+05	9.093345e-05	9.163446e-05	1.285267e-04
rs62186893	-7.011471e-01	1.772995e-01	1.042331e+01	1.000000e+05	9.228100e-05	6.090076e-05	8.826800e-05
rs17160208	3.185927e-06	1.929021e-01	7.908181e+00	1.000000e+05	9.999868e-01	8.666917e-01	8.667882e-01
rs78149688	7.414733e-06	1.793510e-01	7.884001e+00	1.000000e+05	9.999670e-01	9.585995e-01	9.586283e-01
rs6566690	1.018705e-04	8.133335e-02	8.069773e+00	1.000000e+05	9.990013e-01	9.495388e-01	9.495740e-01
rs11911733	1.082560e-03	2.881115e-01	7.901126e+00	1.000000e+05	9.970041e-01	9.908537e-01	9.908601e-01
rs111294811	-7.280637e-02	1.239377e-01	8.233639e+00	1.000000e+05	5.572731e-01	6.248549e-01	6.252083e-01
rs12160337	-1.717151e-01	1.574701e-01	7.749444e+00	1.000000e+05	2.762374e-01	2.963940e-01	2.974519e-01
rs8095054	1.184547e-01	3.666522e-01	7.452671e+00	1.000000e+05	7.468286e-01	9.199497e-01	9.200060e-01
rs112120034	3.330637e-01	1.827087e-01	8.402460e+00	1.000000e+05	6.914216e-02	6.132041e-02	6.275231e-02
rs36125849	1.233484e-02	8.818436e-02	7.820598e+00	1.000000e+05	8.888363e-01	9.947543e-01	9.947579e-01
rs12624959	-3.003031e-02	1.087419e-01	7.772600e+00	1.000000e+05	7.825822e-01	8.269834e-01	8.271124e-01
rs348363	2.980397e-02	1.503323e-01	8.075891e+00	1.000000e+05	8.429581e-01	7.731134e-01	7.732914e-01
rs148667957	1.450798e-01	3.402257e-01	7.799803e+00	1.000000e+05	6.700543e-01	6.907008e-01	6.909677e-01
rs4813878	9.841622e-02	8.337609e-02	7.844796e+00	1.000000e+05	2.386227e-01	2.328225e-01	2.340597e-01
rs689178	3.582758e-02	1.052130e-01	7.605941e+00	1.000000e+05	7.336600e-01	8.541408e-01	8.542473e-01
rs1584976	8.658833e-02	7.786113e-02	8.952929e+00	1.000000e+05	2.668409e-01	2.325117e-01	2.337498e-01
rs6039839	6.151823e-01	3.430037e-01	9.577785e+00	1.000000e+05	7.372745e-02	5.974284e-02	6.116816e-02
rs79654721	-1.261085e-02	2.056208e-01	7.850291e+00	1.000000e+05	9.511298e-01	9.573484e-01	9.573781e-01
rs35219708	-9.281077e-03	7.458544e-02	7.762751e+00	1.000000e+05	9.010397e-01	9.782522e-01	9.782673e-01
rs76214858	-1.121457e-02	2.064858e-01	7.901328e+00	1.000000e+05	9.567170e-01	9.788134e-01	9.788281e-01
rs288980	3.770378e-02	7.829462e-02	8.246041e+00	1.000000e+05	6.304083e-01	6.091698e-01	6.095462e-01
rs10415394	-2.851284e-01	2.400352e-01	7.058273e+00	1.000000e+05	2.356690e-01	2.769153e-01	2.780280e-01
rs1786490	1.263720e-01	9.886269e-02	7.699022e+00	1.000000e+05	2.019799e-01	2.027468e-01	2.040662e-01
rs5028329	9.501924e-02	2.090110e-01	8.286083e+00	1.000000e+05	6.496604e-01	5.881342e-01	5.885430e-01
rs28573718	3.702386e-01	3.585189e-01	8.685848e+00	1.000000e+05	3.024407e-01	2.594821e-01	2.606441e-01
rs75765540	-2.606026e-02	1.198683e-01	7.847460e+00	1.000000e+05	8.280137e-01	8.527090e-01	8.528167e-01
"""


def test_gemma_eur_with_covariates():
    """Quantitative and categorical covariates, samples dropped for missing values."""
    import io

    from lmmkit.genetics.plink import read_pheno_file
    from tests.genetics._genetics_helpers import require_eur

    prefix = require_eur()
    covfile = f"{prefix}.pheno2.covars"
    pheno = read_pheno_file(covfile, ["PHENO"])["PHENO"]
    cov = read_pheno_file(covfile, ["QCOV1", "QCOV2", "CAT_COV"])
    ref = pd.read_csv(io.StringIO(GEMMA_EUR_COVARS), sep="\t").set_index("rs")
    pl = read_plink(prefix)
    rows = np.flatnonzero(pl.bim["snp"].isin(ref.index).to_numpy())
    res = gwas(pl, pheno, covariates=cov, snps=rows, progress=False)
    assert res.n_samples == 366
    assert res.n_samples_dropped == {
        "not in phenotype file": 6,
        "missing phenotype value": 4,
        "missing covariate value": 3,
    }
    assert res.null["all"]["pve"] == pytest.approx(0.663163, abs=1e-6)
    assert res.null["all"]["logl_remle"] == pytest.approx(-518.458, abs=1e-3)
    t = res.table.set_index("snp").loc[ref.index]
    for k in ("p_wald", "p_lrt", "p_score"):
        assert np.max(np.abs(np.log10(t[k]) - np.log10(ref[k]))) < 1e-3, k
    np.testing.assert_allclose(t["se"], ref["se"], rtol=1e-4)
    np.testing.assert_allclose(t["beta"], ref["beta"], rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(t["l_remle"], ref["l_remle"], rtol=1e-4)
    np.testing.assert_allclose(t["l_mle"], ref["l_mle"], rtol=1e-4)


def test_non_numeric_phenotype_refused(sim):
    pl = read_plink(sim)
    keys = pd.MultiIndex.from_frame(pl.fam[["fid", "iid"]])
    ph = pd.Series(["case"] + ["1.5"] * (pl.n_samples - 1), index=keys, name="t")
    with pytest.raises(DataError, match="non-numeric"):
        gwas(pl, ph, progress=False)


def test_tsv_writer_equals_pandas():
    """The fast TSV writer gives pandas' to_csv text exactly (NaN, inf, -0.0, exponents,
    integers, booleans, strings) and falls back to pandas where pandas would quote."""
    from lmmkit.genetics.gwas.output import to_tsv as _to_tsv

    rng = np.random.default_rng(5)
    x = rng.normal(size=300) * 10.0 ** rng.integers(-30, 30, 300)
    x[:8] = [np.nan, np.inf, -np.inf, -0.0, 1e16, 1e-5, 5e-324, 0.1]
    df = pd.DataFrame(
        {
            "chrom": ["1", "X"] * 150,
            "snp": [f"rs{i}" for i in range(300)],
            "pos": np.arange(300, dtype=np.int64) * 1000,
            "flag": np.arange(300) % 3 == 0,
            "beta": x,
            "p": rng.uniform(size=300),
        }
    )
    assert _to_tsv(df) == df.to_csv(sep="\t", index=False, na_rep="NA")
    assert _to_tsv(df.iloc[:0]) == df.iloc[:0].to_csv(sep="\t", index=False, na_rep="NA")
    odd = df.assign(snp=['rs"1'] + ["a\tb"] + df["snp"].tolist()[2:])
    assert _to_tsv(odd) == odd.to_csv(sep="\t", index=False, na_rep="NA")

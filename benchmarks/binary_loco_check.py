"""LOCO and the calibration of the binary GWAS on SNPs without effect (issue 17).

    .venv/bin/python benchmarks/binary_loco_check.py --n 50000 --samples 3000

On the scale_gwas.py cohort (``simulate --n N`` first) with the ``--background odd`` case/control
phenotype (polygenic background on the odd chromosomes only, so the even chromosomes' SNPs
have no effect), runs on the random ``--samples`` subset that ``scale_gwas.py binary
--exact-samples`` writes: the dense (exact) path without and with ``loco=True`` (null model
refitted per left-out chromosome) and the matrix-free path (LOCO as SAIGE: tau fixed at the
full-kinship fit), records lambda GC of p_spa over the SNPs without effect and over all SNPs,
and the agreement of the matrix-free p-values with the dense LOCO ones (``plain``: the
logistic score test without kinship, the chance spread of one phenotype's lambda), in
``sub<samples>/binary_loco_odd.json`` (``--variants`` runs a subset; earlier entries of the
file are kept; ``--pheno-seed S``: the phenotype replicate S, in ``binary_loco_odd_pS.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import scale_gwas  # noqa: E402

VARIANTS = {
    "dense": dict(method="exact", loco=False),
    "dense-loco": dict(method="exact", loco=True),
    "matfree-loco": dict(method="matrix-free"),
    "plain": None,  # logistic score test without kinship (plain_score_lambda)
}


def plain_score_lambda(prefix: Path, y: np.ndarray) -> dict:
    """lambda GC of the plain logistic score test (intercept only, no kinship: T = g'(y - ybar),
    Var = sum (g - gbar)^2 ybar (1 - ybar)) over the even chromosomes' SNPs: how far one
    phenotype's null-SNP lambda strays by chance on this design, with no mixed model."""
    from scipy import stats

    from lmmkit.genetics.plink import read_plink

    pl = read_plink(prefix)
    chrom = pl.bim["chrom"].astype(int).to_numpy()
    even = chrom % 2 == 0
    r = y - y.mean()
    chi2, codes = [], []
    for idx, x in scale_gwas.centered_blocks(pl, even, dtype="float64"):
        v = (x * x).sum(0) * y.mean() * (1.0 - y.mean())
        ok = v > 0
        chi2.append(((x.T @ r) ** 2 / np.where(ok, v, 1.0))[ok])
        codes.append(chrom[idx][ok])
    c, k = np.concatenate(chi2), np.concatenate(codes)
    p = stats.chi2.sf(c, 1)
    return {
        "gc_lambda_spa_null_snps": scale_gwas._lambda(p),
        "gc_lambda_spa_per_null_chrom": {
            int(j): scale_gwas._lambda(p[k == j]) for j in np.unique(k)
        },
    }


def main(argv: list[str] | None = None) -> int:
    from lmmkit.genetics.gwas import gwas

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--snps", type=int, default=100_000)
    ap.add_argument("--samples", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--pheno-seed",
        type=int,
        default=None,
        help="phenotype replicate (scale_gwas.py binary --pheno-seed); default --seed",
    )
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    a = ap.parse_args(argv)
    d = HERE / "_data" / f"scale_{a.n}x{a.snps}"
    sub = d / f"sub{a.samples}" / "cohort"
    if not Path(f"{sub}.bed").exists():
        raise SystemExit(f"{sub}.bed not found: run scale_gwas.py binary --exact-samples first")
    pseed = a.seed if a.pheno_seed is None else a.pheno_seed
    y = scale_gwas._null_binary(d / "cohort", 0.3, 0.1, pseed, "odd")
    ys = y[scale_gwas.subset_samples(a.n, a.samples, a.seed)]  # the subset scale_gwas drew
    tag = "" if a.pheno_seed is None else f"_p{pseed}"
    path = sub.parent / f"binary_loco_odd{tag}.json"
    out = json.loads(path.read_text()) if path.exists() else {}
    tables = {}
    for name in a.variants.split(","):
        t0, c0 = time.perf_counter(), time.process_time()
        if name == "plain":
            out[name] = plain_score_lambda(sub, ys)
            print(name, out[name], flush=True)
            continue
        res = gwas(sub, ys, binary=True, kinship="standardized", plots=False, progress=False,
                   **VARIANTS[name])  # fmt: skip
        tables[name] = res.table.set_index("snp")
        out[name] = {
            **scale_gwas._null_lambdas(res.table, "odd"),
            "tau": res.null["all"]["tau"] if "all" in res.null else None,
            "wall": round(time.perf_counter() - t0, 1),
            "cpu": round(time.process_time() - c0, 1),
        }
        if name == "matfree-loco":
            info = res.null["all"]
            out[name].update(var_ratio=info["var_ratio"], loco_var_ratio=info["loco_var_ratio"],
                             loco_var_ratio_sd=info["loco_var_ratio_sd"])  # fmt: skip
        print(name, out[name], flush=True)
    if {"dense-loco", "matfree-loco"} <= set(tables):
        a_, b_ = tables["dense-loco"], tables["matfree-loco"].loc[tables["dense-loco"].index]
        la, lb = -np.log10(a_["p_spa"].to_numpy()), -np.log10(b_["p_spa"].to_numpy())
        out["matfree_vs_dense_loco"] = {
            "median_abs_diff_mlog10p": float(np.median(np.abs(la - lb))),
            "max_abs_diff_mlog10p": float(np.max(np.abs(la - lb))),
            "corr_mlog10p": float(np.corrcoef(la, lb)[0, 1]),
        }
        print(out["matfree_vs_dense_loco"])
    path.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

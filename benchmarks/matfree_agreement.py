"""Matrix-free vs exact GWAS on the shared real data sets (same model: LOCO, same kinship).

    OPENBLAS_NUM_THREADS=2 .venv/bin/python benchmarks/matfree_agreement.py \
        [--data hs1940 eur] [--kinship standardized centered]

HS1940: 1,940 heterogeneous-stock mice x 12,226 SNPs, .fam column 6 (CD8), intercept only.
EUR_subset: 379 Europeans x 54,051 SNPs, PHENO with covariates QCOV1, QCOV2, CAT_COV.
Both paths run with ``loco=True``; reported: correlation and largest absolute difference of
-log10 p_wald, median relative differences of beta and se, the per-chromosome h2 of both,
and the matrix-free calibration spread (the approximation behind the differences).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from lmmkit.genetics.gwas import gwas, gwas_matrix_free
from lmmkit.genetics.plink import read_pheno_file

ROOT = Path(__file__).resolve().parents[1]
GEN = ROOT.parent / "shared" / "data" / "genetics"


def _inputs(name: str):
    if name == "hs1940":
        return GEN / "mouse_hs1940", 1, None
    prefix = GEN / "EUR_subset"
    f = Path(f"{prefix}.pheno2.covars")
    return (
        prefix,
        read_pheno_file(f, ["PHENO"])["PHENO"],
        read_pheno_file(f, ["QCOV1", "QCOV2", "CAT_COV"]),
    )


def run(name: str, kinship: str) -> dict:
    prefix, pheno, cov = _inputs(name)
    kw = dict(covariates=cov, kinship=kinship, loco=True, progress=False, plots=False)
    t0 = time.perf_counter()
    mf = gwas_matrix_free(prefix, pheno, **kw)
    t1 = time.perf_counter()
    ex = gwas(prefix, pheno, tests=("wald",), **kw)
    t2 = time.perf_counter()
    assert (mf.table["snp"].to_numpy() == ex.table["snp"].to_numpy()).all()
    a = -np.log10(mf.table["p_wald"].to_numpy())
    b = -np.log10(ex.table["p_wald"].to_numpy())
    chroms = [c for c in ex.null]
    return {
        "data": name,
        "kinship": kinship,
        "samples": mf.n_samples,
        "snps": mf.n_tested,
        "corr_mlog10p": float(np.corrcoef(a, b)[0, 1]),
        "max_abs_diff_mlog10p": float(np.max(np.abs(a - b))),
        "median_rel_diff_beta": float(np.median(np.abs(mf.table["beta"] / ex.table["beta"] - 1))),
        "median_rel_diff_se": float(np.median(np.abs(mf.table["se"] / ex.table["se"] - 1))),
        "h2_loco_matfree": [round(mf.null[c]["pve"], 4) for c in chroms],
        "h2_loco_exact": [round(ex.null[c]["pve"], 4) for c in chroms],
        "calibration_ratio_sd": mf.null["all"]["calibration_sd"],
        "calibration_ratio_mean": mf.null["all"]["calibration_ratio"],
        "seconds_matfree": round(t1 - t0, 1),
        "seconds_exact": round(t2 - t1, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=["hs1940", "eur"], choices=["hs1940", "eur"])
    ap.add_argument("--kinship", nargs="+", default=["standardized"])
    args = ap.parse_args(argv)
    for name in args.data:
        for kin in args.kinship:
            print(json.dumps(run(name, kin)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Does the simulation design, not the binary machinery, deflate lambda at n / M = 0.5? (issue 17)

    .venv/bin/python benchmarks/loco_design_check.py --cohort scale_50000x100000_coalescent \\
        --samples 5000 --thin 10 --seeds 1 2 3

The 50,000-sample binary GWAS of ``scale_gwas.py binary --background odd`` gave lambda GC 0.915
on the even chromosomes' SNPs (no effect), where 3,000-sample checks gave about 1.  There the
background sits on the odd chromosomes, but each LOCO kinship also holds the other even
chromosomes: a kinship term the phenotype does not have.  Its sample-specific part is of order
sqrt(n / M) (Marchenko-Pastur), negligible at n / M = 0.03 (3,000 x 100,000) and not at 0.5
(50,000 x 100,000).  If the model's covariance V holds more than the phenotype's, the score's
variance g'P Sigma P g falls below the g'P g the test divides by: deflation with any test, the
quantitative exact one included.

This check reproduces n / M = 0.5 with the exact (dense) quantitative path on ``--samples``
of the cohort (``sub<samples>/``, written by ``scale_gwas.py``) and every ``--thin``-th SNP
in the kinship, and tests every SNP of each even chromosome k (Wald, REML) under two designs
of the same h2 = 0.5 liability (``scale_gwas._background_snps``):

- ``odd``: background on the odd chromosomes' kinship SNPs; kinship = every chromosome but k
  (LOCO), so the other even chromosomes are in it without effect;
- ``but<k>``: background on every chromosome but k; kinship = every chromosome but k, exactly
  the SNPs that carry the background.

The kinship is GCTA's standardized one over the thinned SNPs, passed as an array.  Thinning
keeps the number of independent chromosome segments (M_eff), so n / M_eff stays far below the
50,000-sample run's; ``--window`` takes the first 1/thin of each chromosome instead (kinship
and tested SNPs), which divides M and M_eff alike and so reproduces that run's n / M_eff at
n / 10.  Lambda GC per (seed, chromosome), the expected chi2 (:func:`expected_ratio`, y's
noise integrated out) and their means go to ``sub<samples>/loco_design_<thin|window><t>.json``.
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


def standardized_by_chrom(
    prefix: Path, thin: int, window: bool
) -> tuple[dict[int, np.ndarray], np.ndarray, np.ndarray]:
    """Every ``thin``-th SNP (``window``: the first 1/``thin`` of each chromosome's SNPs, a
    contiguous stretch, so the number of independent segments falls with M), standardized (GCTA: mean 2p, SD sqrt(2p(1-p)), missing calls at
    the mean), grouped by chromosome; the .bim chromosome of every SNP and the mask of the
    SNPs used."""
    from lmmkit.genetics.plink import read_plink

    pl = read_plink(prefix)
    chrom = pl.bim["chrom"].astype(int).to_numpy()
    use = np.zeros(pl.n_snps, dtype=bool)
    if window:
        for c in np.unique(chrom):
            idx = np.flatnonzero(chrom == c)
            use[idx[: len(idx) // thin]] = True
    else:
        use[::thin] = True
    cols: dict[int, list[np.ndarray]] = {}
    for idx, x in pl.iter_blocks(4000, dtype="float64"):
        idx, x = idx[use[idx]], x[:, use[idx]]
        mean = np.nanmean(x, 0)
        sd = np.sqrt(2.0 * (mean / 2.0) * (1.0 - mean / 2.0))
        x = np.where(np.isnan(x), mean, x) - mean
        for c in np.unique(chrom[idx]):
            sel = (sd > 0) & (chrom[idx] == c)
            cols.setdefault(int(c), []).append(x[:, sel] / sd[sel])
    return {c: np.hstack(v) for c, v in cols.items()}, chrom, use


def tested_snps(prefix: Path, chrom: np.ndarray, chroms: list[int], k: int) -> dict:
    """For :func:`expected_ratio`: ``k`` evenly spaced SNPs of each of ``chroms`` (float64,
    missing calls at the mean)."""
    from lmmkit.genetics.plink import read_plink

    pl = read_plink(prefix)
    out = {}
    for c in chroms:
        idx = np.flatnonzero(chrom == c)
        pick = np.unique(np.linspace(0, len(idx) - 1, min(k, len(idx))).astype(int))
        x = pl.read(snps=idx[pick], dtype="float64")
        out[c] = np.where(np.isnan(x), np.nanmean(x, 0), x)
    return out


def liability(z: dict[int, np.ndarray], chroms: list[int], h2: float, seed: int) -> np.ndarray:
    """sqrt(h2) g + sqrt(1 - h2) e, g = Z b over the ``chroms``' kinship SNPs scaled to SD 1."""
    rng = np.random.default_rng(seed + 303)
    n = next(iter(z.values())).shape[0]
    g = np.zeros(n)
    for c in chroms:
        g += z[c] @ rng.standard_normal(z[c].shape[1])
    g = (g - g.mean()) / g.std()
    return np.sqrt(h2) * g + np.sqrt(1.0 - h2) * rng.standard_normal(n)


def expected_ratio(kin, z_carriers, test, h2, vg, ve) -> float:
    """E[chi2] of the score over the tested SNPs, y's noise integrated out: the mean over
    SNPs g of g'P Sigma P g / g'P g, with V = vg K + ve I the fitted model (intercept in P)
    and Sigma = h2 Z Z' / (tr(Z Z') / n) + (1 - h2) I the phenotype's covariance given the
    genotypes (``z_carriers``: the background's standardized SNPs).  1 when V matches Sigma
    up to scale; below 1 when V holds a kinship term Sigma lacks."""
    n = len(kin)
    s, u = np.linalg.eigh(kin)
    d = 1.0 / np.maximum(vg * s + ve, 1e-12)
    v1 = u @ (d * u.sum(0))  # V^-1 1
    g = test - test.mean(0)
    g = g[:, g.std(0) > 0]
    pg = u @ (d[:, None] * (u.T @ g))
    pg -= np.outer(v1, v1 @ g) / v1.sum()
    scale = h2 * n / float((z_carriers * z_carriers).sum())
    sig_pg = scale * (z_carriers @ (z_carriers.T @ pg)) + (1.0 - h2) * pg
    num, den = (pg * sig_pg).sum(0), (g * pg).sum(0)
    return float(np.mean(num / den))


def main(argv: list[str] | None = None) -> int:
    from lmmkit.genetics.gwas import gwas

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohort", default="scale_50000x100000_coalescent")
    ap.add_argument("--samples", type=int, default=5000)
    ap.add_argument("--thin", type=int, default=10, help="kinship: every thin-th SNP")
    ap.add_argument("--window", action="store_true",
                    help="the first 1/thin of each chromosome instead (kinship and tests)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--h2", type=float, default=0.5)
    ap.add_argument("--binary", type=float, default=0.0,
                    help="case fraction: the case/control trait of the liability (dense "
                    "logistic mixed model, tau refitted per left-out chromosome, p_spa); "
                    "0 = the quantitative liability")
    ap.add_argument("--test-snps", type=int, default=2000,
                    help="SNPs per chromosome in the expected chi2 (all are tested)")
    a = ap.parse_args(argv)
    d = scale_gwas.DATA / a.cohort / f"sub{a.samples}"
    prefix = d / "cohort"
    if not Path(f"{prefix}.bed").exists():
        print(f"{prefix}.bed missing: run scale_gwas.py with --exact-samples {a.samples}")
        return 1
    t0 = time.perf_counter()
    z, chrom, use = standardized_by_chrom(prefix, a.thin, a.window)
    tested = use if a.window else np.ones(len(chrom), dtype=bool)
    m = {c: v.shape[1] for c, v in z.items()}
    grm = {c: v @ v.T for c, v in z.items()}  # unnormalized per-chromosome blocks
    n = len(next(iter(z.values())))
    print(f"{n} samples, {sum(m.values())} kinship SNPs (n/M = {n / sum(m.values()):.2f}), "
          f"{time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
    chroms = sorted(z)
    odd = [c for c in chroms if c % 2]
    rows = []
    test = {} if a.binary else tested_snps(prefix, np.where(tested, chrom, -1), [c for c in chroms if c % 2 == 0],
                       a.test_snps)  # fmt: skip
    for seed in a.seeds:
        for k in [c for c in chroms if c % 2 == 0]:
            rest = [c for c in chroms if c != k]
            kin = sum(grm[c] for c in rest) / sum(m[c] for c in rest)
            for design, carriers in (("odd", odd), (f"but{k}", rest)):
                y = liability(z, carriers, a.h2, seed * 100 + k)
                sel = tested & (chrom == k)
                if a.binary:  # the top `binary` of the liability are the cases
                    y = (y > np.quantile(y, 1.0 - a.binary)).astype(float)
                    res = gwas(prefix, y, kinship=kin, method="exact", binary=True, snps=sel,
                               progress=False, plots=False)  # fmt: skip
                    lam = scale_gwas._lambda(res.table["p_spa"].to_numpy())
                    info = res.null["all"]
                    # the same 0/1 trait through the linear mixed model (BOLT-LMM's way with
                    # binary traits): same SNPs and phenotype, so the pair shares its noise
                    lin = gwas(prefix, y, kinship=kin, method="exact", tests=("wald",),
                               snps=sel, progress=False, plots=False)  # fmt: skip
                    rows.append({"seed": seed, "chrom": k, "design": design.rstrip("0123456789"),
                                 "lambda": lam, "tau": info["tau"],
                                 "lambda_lmm_on_01": scale_gwas._lambda(
                                     lin.table["p_wald"].to_numpy())})  # fmt: skip
                    print(json.dumps(rows[-1]), flush=True)
                    continue
                res = gwas(prefix, y, kinship=kin, method="exact", tests=("wald",), snps=sel,
                           progress=False, plots=False)  # fmt: skip
                lam = scale_gwas._lambda(res.table["p_wald"].to_numpy())
                info = res.null["all"]
                zc = np.hstack([z[c] for c in carriers])
                ratio = expected_ratio(kin, zc, test[k], a.h2, info["vg"], info["ve"])
                rows.append({"seed": seed, "chrom": k, "design": design.rstrip("0123456789"),
                             "lambda": lam, "expected_chi2": ratio,
                             "vg": info["vg"], "ve": info["ve"]})  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    out: dict = {"samples": n, "kinship_snps": sum(m.values()), "rows": rows}
    for design in ("odd", "but"):
        lam = np.array([r["lambda"] for r in rows if r["design"] == design])
        out[design] = {"mean_lambda": float(lam.mean()),
                       "se": float(lam.std(ddof=1) / np.sqrt(len(lam))), "values": len(lam)}  # fmt: skip
        if a.binary:
            lin = np.array([r["lambda_lmm_on_01"] for r in rows if r["design"] == design])
            ratio = lam / lin
            out[design].update(mean_lambda_lmm_on_01=float(lin.mean()),
                               mean_ratio_glmm_to_lmm=float(ratio.mean()),
                               se_ratio=float(ratio.std(ddof=1) / np.sqrt(len(ratio))))  # fmt: skip
        else:
            r = np.array([r["expected_chi2"] for r in rows if r["design"] == design])
            out[design].update(mean_expected_chi2=float(r.mean()),
                               min_expected_chi2=float(r.min()),
                               max_expected_chi2=float(r.max()))  # fmt: skip
    name = f"loco_design_{'window' if a.window else 'thin'}{a.thin}"
    name += f"_binary{a.binary:g}" if a.binary else ""
    (d / f"{name}.json").write_text(json.dumps(out, indent=1))
    print(json.dumps({k: out[k] for k in ("samples", "kinship_snps", "odd", "but")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Scale benchmark: matrix-free GWAS on a simulated cohort (20,000 x 100,000 by default).

    # 1. simulate (cached under benchmarks/_data/scale_<n>x<m>/)
    OPENBLAS_NUM_THREADS=2 .venv/bin/python benchmarks/scale_gwas.py simulate
    # 2. matrix-free GWAS end to end (time, peak RSS)
    OPENBLAS_NUM_THREADS=2 .venv/bin/python benchmarks/scale_gwas.py matfree
    # 3. exact path and matrix-free path on the same random 5,000 samples (written as their
    #    own PLINK set) and the same random 5,000 SNPs of chromosomes 1-2; then the agreement
    OPENBLAS_NUM_THREADS=2 .venv/bin/python benchmarks/scale_gwas.py exact \
        --exact-samples 5000 --exact-snps 5000 --exact-chroms 1,2
    # 4. agreement of -log10 p again from the saved tables
    .venv/bin/python benchmarks/scale_gwas.py compare --exact-samples 5000
Small development scale: add ``--n 2000 --snps 10000`` to every step.

Binary trait (issue 17): the 50,000 x 100,000 case, matrix-free logistic mixed model (SAIGE-like)
on a null case/control phenotype, then the dense path on a random subset for agreement:

    OPENBLAS_NUM_THREADS=2 .venv/bin/python benchmarks/scale_gwas.py simulate --n 50000
    OPENBLAS_NUM_THREADS=2 .venv/bin/python benchmarks/scale_gwas.py binary --n 50000 \
        --exact-samples 3000

``binary`` draws (seeded) a null phenotype with no SNP of large effect: liability
sqrt(h2) g + sqrt(1 - h2) e with g = Z b / sqrt(M) over every SNP (b ~ N(0, 1): the
infinitesimal background the kinship models, as benchmarks/gwas_binary_calibration.py) and
``--binary-h2`` (0.3), the top ``--prevalence`` (0.1) are the cases; runs
``gwas(binary=True, method="matrix-free", kinship="standardized")`` on every SNP (time, peak RSS,
lambda GC of p_spa and p_score_normal, tau and its Monte-Carlo SE, the variance ratio), and
with ``--exact-samples N`` both paths on a random N-sample subset (agreement of tau and
-log10 p, SPA flags) written to ``binary_agreement.json``. ``--background odd`` puts the
background on the odd chromosomes only: the even chromosomes' SNPs have no effect, and their
lambda GC (``gc_lambda_spa_null_snps``) is the calibration on truly null SNPs (files tagged
``_odd``; ``benchmarks/binary_loco_check.py`` then compares the dense path with and without LOCO).
``--pheno-seed S`` draws another phenotype on the same genotypes (files tagged ``_odd_pS``);
``binary-summary`` pools the null chromosomes' lambda over every replicate (mean and SE).
``--background but<k>`` puts the background on every chromosome but k and tests only k's
SNPs: k's LOCO kinship then holds exactly the SNPs that carry the background (with ``odd``
it also holds the other null chromosomes); ``matfree --background ...`` runs the
quantitative control on the same liability before its threshold (BOLT-LMM-inf, LOCO).

Multi-kernel REML (issue 17): ``multi`` fits two kernels (odd / even chromosomes, BOLT-LMM's
normalization) to the quantitative phenotype matrix-free on every sample, and with
``--exact-samples N`` dense and matrix-free on a random N-sample subset (``multi_reml.json``):

    OPENBLAS_NUM_THREADS=2 .venv/bin/python benchmarks/scale_gwas.py multi --n 50000 \
        --exact-samples 5000

Simulation (msprime): ``--chroms`` independent chromosome segments of ``--chrom-mb`` Mb with
human-like rates (recombination 1e-8 per bp per generation, mutation 1.25e-8, binary
mutations).  Demography: an ancestral population of Ne = 10,000 splits 400 generations ago
into 4 demes that grow exponentially to 25,000 diploids each (``--deme-size``) and exchange
migrants (m = 5e-4 per generation): population structure (F_ST of about 0.01-0.02 between demes) plus
the recent shared ancestry of a dense sample (5,000 of 25,000 per deme, so sibs and cousins
occur).  The first 50 generations are simulated with the discrete-time Wright-Fisher model,
which is exact when the sample is a sizeable fraction of the population (the coalescent
is not), then Hudson's coalescent (``--coalescent-only``: Hudson's throughout, no pedigree,
as a biobank sample that is a small fraction of its population).  Biallelic sites with
MAF >= 0.01 are kept and thinned at random to ``--snps``; genotypes are written with
bed-reader (``create_bed``).  Phenotype: h2 = 0.5 spread over ``--causal`` random SNPs with N(0, 1) effects on standardized genotypes,
environmental noise N(0, 0.5) (.fam column 6); the causal SNPs are in ``truth.tsv``.

The exact path (``lmmkit.gwas``, ``loco=True``) needs one n x n kinship per chromosome, an
eigendecomposition per tested chromosome and the rotation of every tested SNP: at 20,000
samples ten 3.2 GB LOCO matrices alone exceed the machine, so ``exact`` runs both paths on
a random ``--exact-samples`` subset of the cohort (written as its own PLINK set, so both see
the same samples and allele frequencies) and a random ``--exact-snps`` SNPs of
``--exact-chroms``.  At full scale the matrix-free run logs the spread of its only
approximation (the calibrated x'V^-1 x; exact on 30 SNPs).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "_data"


def _dir(args) -> Path:
    tag = "" if args.deme_size == 25_000 else f"_deme{args.deme_size}"
    tag += "_coalescent" if args.coalescent_only else ""
    return DATA / f"scale_{args.n}x{args.snps}{tag}"


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


# ----------------------------------------------------------------------------- simulate


def _demography(n_demes: int, migration: float, n_now: int = 25_000):
    import msprime

    d = msprime.Demography()
    n_anc, t_split = 10_000, 400
    n_split = n_anc / n_demes
    growth = float(np.log(n_now / n_split) / t_split)
    names = [f"deme{i}" for i in range(n_demes)]
    for name in names:
        d.add_population(name=name, initial_size=n_now, growth_rate=growth)
    d.add_population(name="anc", initial_size=n_anc)
    d.set_symmetric_migration_rate(names, migration)
    d.add_population_split(time=t_split, derived=names, ancestral="anc")
    return d, names


def _chromosome(args, demog, names, c: int, n_per: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Diploid A1 counts (sites x n, int8) and positions of the common biallelic sites."""
    import msprime

    seed = args.seed * 1000 + c
    ts = msprime.sim_ancestry(
        samples={name: k for name, k in zip(names, n_per)},
        demography=demog,
        sequence_length=args.chrom_mb * 1e6,
        recombination_rate=1e-8,
        ploidy=2,
        model=(
            msprime.StandardCoalescent()
            if args.coalescent_only
            else [msprime.DiscreteTimeWrightFisher(duration=50), msprime.StandardCoalescent()]
        ),
        random_seed=seed,
    )
    ts = msprime.sim_mutations(
        ts, rate=1.25e-8, model=msprime.BinaryMutationModel(), random_seed=seed
    )
    n = ts.num_individuals
    nodes = np.array([ts.individual(i).nodes for i in range(n)])  # (n, 2) sample nodes
    order = np.argsort(nodes.ravel())
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    pos_hap = inv.reshape(n, 2)  # column of each individual's haplotypes in genotypes
    rows, positions = [], []
    for var in ts.variants():
        g = var.genotypes
        if len(var.alleles) != 2 or g.max() > 1:
            continue
        d = (g[pos_hap[:, 0]] + g[pos_hap[:, 1]]).astype(np.int8)
        f = d.mean() / 2.0
        if min(f, 1.0 - f) < 0.01:
            continue
        rows.append(d)
        positions.append(int(var.site.position) + 1)
    print(
        f"  chromosome {c}: {ts.num_trees} trees, {ts.num_sites} sites, {len(rows)} with MAF >= 0.01",
        flush=True,
    )
    return np.array(rows, dtype=np.int8), np.array(positions, dtype=np.int64)


def simulate(args) -> int:
    from bed_reader import create_bed

    out = _dir(args)
    prefix = out / "cohort"
    if Path(f"{prefix}.bed").exists() and not args.force:
        print(f"{prefix}.bed exists (use --force to redo)")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    demog, names = _demography(args.demes, args.migration, args.deme_size)
    n_per = [
        args.n // args.demes + (1 if i < args.n % args.demes else 0) for i in range(args.demes)
    ]
    geno, pos, chrom = [], [], []
    for c in range(1, args.chroms + 1):
        g, p = _chromosome(args, demog, names, c, n_per)
        geno.append(g)
        pos.append(p)
        chrom.append(np.full(len(p), c))
    pos_all, chrom_all = np.concatenate(pos), np.concatenate(chrom)
    n_common = len(pos_all)
    rng = np.random.default_rng(args.seed)
    if len(pos_all) < args.snps:
        print(
            f"only {len(pos_all)} common SNPs < {args.snps}: use longer --chrom-mb", file=sys.stderr
        )
        return 1
    keep = np.sort(rng.choice(len(pos_all), args.snps, replace=False))
    # the kept rows, chromosome by chromosome (each freed once copied: no second full copy)
    g_all = np.empty((args.snps, args.n), dtype=np.int8)
    start = filled = 0
    for i, g in enumerate(geno):
        rows = keep[(keep >= start) & (keep < start + len(g))] - start
        g_all[filled : filled + len(rows)] = g[rows]
        filled, start, geno[i] = filled + len(rows), start + len(g), None
    del geno
    pos_all, chrom_all = pos_all[keep], chrom_all[keep]
    t_sim = time.perf_counter() - t0
    # phenotype: h2 = 0.5 on --causal SNPs, standardized genotypes
    f = g_all.mean(1, dtype=np.float64) / 2.0
    causal = np.sort(rng.choice(args.snps, args.causal, replace=False))
    beta = rng.standard_normal(args.causal)
    gv = np.zeros(args.n)
    for j, b in zip(causal, beta):
        gv += b * (g_all[j] - 2 * f[j]) / np.sqrt(2 * f[j] * (1 - f[j]))
    scale = np.sqrt(args.h2 / gv.var())
    gv *= scale
    y = gv + rng.standard_normal(args.n) * np.sqrt(1.0 - args.h2)
    deme = np.repeat(np.arange(args.demes), n_per)
    snp_ids = [f"c{c}_{p}" for c, p in zip(chrom_all, pos_all)]
    props = {
        "fid": [f"d{d}" for d in deme],
        "iid": [f"i{i}" for i in range(args.n)],
        "pheno": y.astype(float).tolist(),
        "chromosome": [str(c) for c in chrom_all],
        "sid": snp_ids,
        "bp_position": pos_all.tolist(),
        "allele_1": ["A"] * args.snps,
        "allele_2": ["G"] * args.snps,
    }
    with create_bed(f"{prefix}.bed", iid_count=args.n, sid_count=args.snps, properties=props) as w:
        for j in range(args.snps):
            w.write(g_all[j])
    pd.DataFrame(
        {"snp": [snp_ids[j] for j in causal], "beta_std": beta * scale, "af": f[causal]}
    ).to_csv(out / "truth.tsv", sep="\t", index=False)
    meta = {
        "n": args.n,
        "snps": args.snps,
        "chroms": args.chroms,
        "chrom_mb": args.chrom_mb,
        "demes": args.demes,
        "migration": args.migration,
        "deme_size": args.deme_size,
        "coalescent_only": args.coalescent_only,
        "h2": args.h2,
        "causal": args.causal,
        "seed": args.seed,
        "common_snps_before_thinning": n_common,
        "simulate_seconds": round(t_sim, 1),
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    print(json.dumps(meta, indent=1))
    return 0


# ----------------------------------------------------------------------------- GWAS runs


def _record(path: Path, res, seconds: float, extra: dict) -> dict:
    rec = {
        "seconds": round(seconds, 1),
        "peak_rss_gib": round(_peak_rss_gib(), 2),
        "n_samples": res.n_samples,
        "n_tested": res.n_tested,
        "gc_lambda": res.gc_lambda,
        "null": res.null,
        "machine_load_1min_at_end": os.getloadavg()[0],
        **extra,
    }
    path.write_text(json.dumps(rec, indent=1, default=float))
    return rec


def run_matfree(args) -> int:
    """Matrix-free GWAS of every SNP (LOCO, standardized kinship as BOLT-LMM).  With
    ``--background odd|but<k>``: the quantitative control of ``binary``, the same liability
    (``--binary-h2``, ``--pheno-seed``) before its threshold, lambda GC of the SNPs without
    effect (``but<k>``: only chromosome k tested); outputs ``matfree_<background>[_p<S>]``.
    ``--exact-den K``: only K evenly spaced tested SNPs, their x'V^-1x solved exactly
    (``exact_denominators=True``); compared SNP by SNP with the calibrated run of the same
    design (its TSV), whose numerators are the same: chi2 calibrated / chi2 exact is then
    exact / (rho * approximate), the calibrated denominators' error on the tested SNPs."""
    from lmmkit.genetics.gwas import gwas_matrix_free

    d = _dir(args)
    prefix = d / "cohort"
    pheno, snps, tag = 1, None, ""
    if args.background != "all":
        pseed = args.seed if args.pheno_seed is None else args.pheno_seed
        pheno = background_liability(prefix, args.binary_h2, pseed, args.background)
        tag = f"_{args.background}" + ("" if args.pheno_seed is None else f"_p{pseed}")
        snps = _tested_snps(prefix, args.background)
    base = tag
    if args.exact_den:
        pool = np.flatnonzero(snps) if snps is not None else np.arange(args.snps)
        snps = np.sort(pool[np.linspace(0, len(pool) - 1, args.exact_den).astype(int)])
        tag += f"_exactden{args.exact_den}"
    t0 = time.perf_counter()
    if args.pcs:  # top PCs as fixed covariates (plink2 --pca through gwas(pcs=K))
        from lmmkit.genetics.gwas import gwas

        tag += f"_pcs{args.pcs}"
        res = gwas(prefix, pheno, kinship="standardized", method="matrix-free", pcs=args.pcs,
                   out=d / f"matfree{tag}.tsv", overwrite=True, progress=True, snps=snps,
                   plots=False)  # fmt: skip
    else:
        res = gwas_matrix_free(
            prefix, pheno, kinship="standardized", loco=True, out=d / f"matfree{tag}.tsv",
            overwrite=True, progress=True, n_probes=args.probes, snps=snps,
            exact_denominators=True if args.exact_den else None,
        )  # fmt: skip
    extra = {"log": res.log}
    if args.exact_den and (d / f"matfree{base}.tsv").exists():
        from scipy import stats

        old = pd.read_csv(d / f"matfree{base}.tsv", sep="\t").set_index("snp")
        new = res.table.set_index("snp")
        both = new.index.intersection(old.index)
        c_new = stats.chi2.isf(new.loc[both, "p_wald"].to_numpy(float), 1)
        c_old = stats.chi2.isf(old.loc[both, "p_wald"].to_numpy(float), 1)
        ratio = c_old / c_new  # = exact / (rho * approximate) denominators
        extra["calibrated_over_exact_chi2"] = {
            "snps": len(both), "mean": float(np.mean(ratio)), "sd": float(np.std(ratio, ddof=1)),
            "min": float(np.min(ratio)), "max": float(np.max(ratio)),
            "mean_chi2_exact": float(np.mean(c_new)), "mean_chi2_calibrated": float(np.mean(c_old)),
        }  # fmt: skip
    if args.background != "all":
        extra.update(_null_lambdas(res.table, args.background, column="p_wald"))
    rec = _record(d / f"matfree{tag}.json", res, time.perf_counter() - t0, extra)
    print(json.dumps({k: v for k, v in rec.items() if k != "log"}, indent=1, default=float))
    return 0


def subset_samples(n: int, k: int, seed: int) -> np.ndarray:
    """The random ``k`` of the ``n`` samples that ``binary`` and ``multi`` compare both paths
    on (sorted; seeded, so ``binary_loco_check.py`` draws the same ones)."""
    rng = np.random.default_rng(seed + 7)
    return np.sort(rng.choice(n, min(k, n), replace=False))


def _subset_plink(src: Path, dst: Path, samples: np.ndarray) -> None:
    """Write the given samples of a PLINK set (all SNPs) with bed-reader."""
    from bed_reader import create_bed

    from lmmkit.genetics.plink import read_plink

    pl = read_plink(src)
    fam, bim = pl.fam.iloc[samples], pl.bim
    props = {
        "fid": fam["fid"].tolist(),
        "iid": fam["iid"].tolist(),
        "pheno": fam["pheno1"].tolist(),
        "chromosome": bim["chrom"].astype(str).tolist(),
        "sid": bim["snp"].tolist(),
        "bp_position": bim["pos"].tolist(),
        "allele_1": bim["a1"].tolist(),
        "allele_2": bim["a2"].tolist(),
    }
    dst.parent.mkdir(parents=True, exist_ok=True)
    with create_bed(f"{dst}.bed", iid_count=len(samples), sid_count=pl.n_snps,
                    properties=props) as w:  # fmt: skip
        for _idx, g in pl.iter_blocks(2000, samples=samples, dtype="float32"):
            for j in range(g.shape[1]):
                w.write(g[:, j])


def run_exact(args) -> int:
    """Exact path (``lmmkit.gwas``, loco=True, standardized) and the matrix-free path on the
    same samples and the same random SNP subset."""
    from lmmkit.genetics.gwas import gwas, gwas_matrix_free
    from lmmkit.genetics.plink import read_plink

    d = _dir(args)
    src = d / "cohort"
    rng = np.random.default_rng(args.seed + 7)
    if args.exact_samples and args.exact_samples < args.n:
        sub = d / f"sub{args.exact_samples}"
        prefix = sub / "cohort"
        if not Path(f"{prefix}.bed").exists():
            samples = np.sort(rng.choice(args.n, args.exact_samples, replace=False))
            _subset_plink(src, prefix, samples)
    else:
        sub, prefix = d, src
    pl = read_plink(prefix)
    chroms = [c.strip() for c in args.exact_chroms.split(",")]
    cand = np.flatnonzero(pl.bim["chrom"].astype(str).isin(chroms).to_numpy())
    snps = np.sort(rng.choice(cand, min(args.exact_snps, len(cand)), replace=False))
    out = {}
    for name in ("exact", "matfree"):
        t0 = time.perf_counter()
        if name == "exact":
            res = gwas(
                pl, 1, kinship="standardized", loco=True, snps=snps, tests=("wald",),
                out=sub / "exact.tsv", overwrite=True, progress=True, plots=False,
            )  # fmt: skip
        else:
            res = gwas_matrix_free(
                pl, 1, kinship="standardized", loco=True, snps=snps, out=sub / "matfree_sub.tsv",
                overwrite=True, progress=True, plots=False, n_probes=args.probes,
            )  # fmt: skip
        out[name] = _record(
            sub / f"{name}_run.json", res, time.perf_counter() - t0,
            {"samples": pl.n_samples, "chroms": chroms, "snps": len(snps)},
        )  # fmt: skip
        print(name, json.dumps({k: out[name][k] for k in ("seconds", "peak_rss_gib")}))
    return compare(args, sub)


def compare(args, sub: Path | None = None) -> int:
    """Correlation and largest difference of -log10 p (exact vs matrix-free)."""
    d = _dir(args)
    if sub is None:
        sub = d / f"sub{args.exact_samples}" if args.exact_samples else d
    ex = pd.read_csv(sub / "exact.tsv", sep="\t")
    mf = pd.read_csv(sub / "matfree_sub.tsv", sep="\t").set_index("snp").loc[ex["snp"]]
    a = -np.log10(ex["p_wald"].to_numpy())
    b = -np.log10(mf["p_wald"].to_numpy())
    res = {
        "samples": int(ex["n"].max()),
        "snps": len(ex),
        "corr_mlog10p": float(np.corrcoef(a, b)[0, 1]),
        "max_abs_diff_mlog10p": float(np.max(np.abs(a - b))),
        "max_mlog10p_exact": float(a.max()),
        "median_rel_diff_beta": float(np.median(np.abs(mf["beta"].to_numpy() / ex["beta"] - 1))),
        "median_rel_diff_se": float(np.median(np.abs(mf["se"].to_numpy() / ex["se"] - 1))),
    }
    (sub / "agreement.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return 0


# ----------------------------------------------------------------------------- binary


def _background_snps(bim, background: str) -> np.ndarray:
    """Mask of the SNPs carrying the polygenic background: every SNP (``all``), those of the
    odd chromosomes (``odd``: the even chromosomes' SNPs then have no effect at all) or of
    every chromosome but k (``but<k>``: chromosome k's SNPs have no effect, and its LOCO
    kinship holds exactly the SNPs that carry the background)."""
    if background == "all":
        return np.ones(len(bim), dtype=bool)
    return ~_null_snps(bim["chrom"].astype(int).to_numpy(), background)


def _null_snps(chrom: np.ndarray, background: str) -> np.ndarray:
    """Mask of the SNPs without effect under ``background`` (none for ``all``)."""
    if background == "all":
        return np.zeros(len(chrom), dtype=bool)
    if background == "odd":
        return chrom % 2 == 0
    return chrom == int(background[3:])


def _tested_snps(prefix: Path, background: str) -> np.ndarray | None:
    """The SNPs to test: ``but<k>`` tests only chromosome k (one LOCO fit); otherwise all
    (None)."""
    if not background.startswith("but"):
        return None
    from lmmkit.genetics.plink import read_plink

    return _null_snps(read_plink(prefix).bim["chrom"].astype(int).to_numpy(), background)


def _background_arg(text: str) -> str:
    """argparse type of ``--background``: all, odd or but<k>."""
    if text in ("all", "odd") or re.fullmatch(r"but\d+", text):
        return text
    raise argparse.ArgumentTypeError(f"expected all, odd or but<k> (e.g. but10), got {text!r}")


def centered_blocks(pl, use: np.ndarray, dtype: str = "float32"):
    """(SNP indices, genotypes) of the SNPs in ``use``, block by block, missing calls set to
    the SNP's mean and every column centered."""
    for idx, x in pl.iter_blocks(4000, dtype=dtype):
        x = x[:, use[idx]]
        if not x.shape[1]:
            continue
        mean = np.nanmean(x, 0)
        yield idx[use[idx]], np.where(np.isnan(x), mean, x) - mean


def background_liability(prefix: Path, h2: float, seed: int, background: str = "all") -> np.ndarray:
    """The liability of the null phenotypes: sqrt(h2) g + sqrt(1 - h2) e, g the standardized
    Z b / sqrt(M) over the ``background`` SNPs (see the module docstring)."""
    from lmmkit.genetics.plink import read_plink

    pl = read_plink(prefix)
    rng = np.random.default_rng(seed + 101)
    g = np.zeros(pl.n_samples)
    for _, x in centered_blocks(pl, _background_snps(pl.bim, background)):
        sd = x.std(0)
        x = x[:, sd > 0] / sd[sd > 0]
        g += x @ rng.standard_normal(x.shape[1]).astype(np.float32)
    g = (g - g.mean()) / g.std()
    return np.sqrt(h2) * g + np.sqrt(1.0 - h2) * rng.standard_normal(pl.n_samples)


def _null_binary(
    prefix: Path, h2: float, prevalence: float, seed: int, background: str = "all"
) -> np.ndarray:
    """Null case/control phenotype over the .fam samples: the top ``prevalence`` of the
    liability (:func:`background_liability`) are the cases."""
    liab = background_liability(prefix, h2, seed, background)
    return (liab > np.quantile(liab, 1.0 - prevalence)).astype(float)


def run_binary(args) -> int:
    """Matrix-free binary GWAS at full scale, then (``--exact-samples``) both paths on a
    random subset of the samples."""
    from lmmkit.genetics.gwas import gwas

    d = _dir(args)
    prefix = d / "cohort"
    pseed = args.seed if args.pheno_seed is None else args.pheno_seed
    y = _null_binary(prefix, args.binary_h2, args.prevalence, pseed, args.background)
    tag = "" if args.background == "all" else f"_{args.background}"
    if args.pheno_seed is not None:
        tag += f"_p{pseed}"
    tag += _variance_suffix(args)
    kw = dict(binary=True, kinship="standardized", plots=False, overwrite=True,
              score_variance=args.score_variance)  # fmt: skip
    snps = _tested_snps(prefix, args.background)
    t0, c0 = time.perf_counter(), time.process_time()
    res = gwas(prefix, y, method="matrix-free", out=d / f"binary{tag}.tsv", progress=True,
               snps=snps, **kw)  # fmt: skip
    extra = {
        "cpu_seconds": round(time.process_time() - c0, 1),
        "cases": int(y.sum()),
        "background": args.background,
        "gc_lambda_normal": _lambda(res.table["p_score_normal"].to_numpy()),
        **_null_lambdas(res.table, args.background),
        "log": res.log,
    }
    rec = _record(d / f"binary{tag}.json", res, time.perf_counter() - t0, extra)
    print(json.dumps({k: v for k, v in rec.items() if k != "log"}, indent=1, default=float))
    if not args.exact_samples:
        return 0
    sub = d / f"sub{args.exact_samples}"
    samples = subset_samples(args.n, args.exact_samples, args.seed)
    if not Path(f"{sub / 'cohort'}.bed").exists():
        _subset_plink(prefix, sub / "cohort", samples)
    ys = y[samples]
    out = {}
    for name in ("exact", "matrix-free"):
        t0, c0 = time.perf_counter(), time.process_time()
        # both with LOCO: the matrix-free binary path always is (SAIGE), the dense path
        # refits tau per left-out chromosome
        out[name] = gwas(sub / "cohort", ys, method=name, loco=True, progress=False, **kw)
        print(name, f"{time.perf_counter() - t0:.1f} s wall, {time.process_time() - c0:.1f} s CPU")
    a = out["exact"].table.set_index("snp")
    b = out["matrix-free"].table.set_index("snp").loc[a.index]
    la, lb = -np.log10(a["p_spa"].to_numpy()), -np.log10(b["p_spa"].to_numpy())
    info = out["matrix-free"].null["all"]
    agree = {
        "samples": len(samples),
        "cases": int(ys.sum()),
        "snps": len(a),
        "tau_exact": out["exact"].null["all"]["tau"],
        "tau_matfree": info["tau"],
        "tau_mc_se": info["tau_mc_se"],
        "tau_z": (info["tau"] - out["exact"].null["all"]["tau"]) / info["tau_mc_se"],
        "var_ratio": info["var_ratio"],
        "var_ratio_sd": info["var_ratio_sd"],
        "max_abs_diff_mlog10p": float(np.max(np.abs(la - lb))),
        "median_abs_diff_mlog10p": float(np.median(np.abs(la - lb))),
        "corr_mlog10p": float(np.corrcoef(la, lb)[0, 1]),
        "max_mlog10p_exact": float(la.max()),
        "spa_flags_equal": float(np.mean(a["spa"].to_numpy() == b["spa"].to_numpy())),
        "gc_lambda_exact": out["exact"].gc_lambda,
        "gc_lambda_matfree": out["matrix-free"].gc_lambda,
        **{f"exact_{k}": v for k, v in _null_lambdas(out["exact"].table, args.background).items()},
        **{f"matfree_{k}": v
           for k, v in _null_lambdas(out["matrix-free"].table, args.background).items()},
    }  # fmt: skip
    (sub / f"binary_agreement{tag}.json").write_text(json.dumps(agree, indent=1))
    print(json.dumps(agree, indent=1))
    return 0


def _variance_suffix(args) -> str:
    """File-name suffix of the binary runs' score variance: none for SAIGE's (the runs before
    2026-12-08), ``_moments`` for the residual-moment variance (lmmkit's default since)."""
    return "_moments" if args.score_variance == "moments" else ""


def run_multi(args) -> int:
    """Multi-kernel REML (one kernel per chromosome group: odd / even chromosomes) of the
    quantitative phenotype: matrix-free on every sample; with ``--exact-samples N`` both
    dense and matrix-free on a random N-sample subset (agreement in units of the SE)."""
    from lmmkit.genetics.multi_reml import multi_reml_from_plink
    from lmmkit.genetics.plink import read_plink

    d = _dir(args)

    def fit(prefix: Path, method: str):
        pl = read_plink(prefix)
        groups = np.where(pl.bim["chrom"].astype(int).to_numpy() % 2 == 1, "odd", "even")
        t0, c0 = time.perf_counter(), time.process_time()
        kw = {}
        if method == "matrix-free":
            kw = dict(n_probes=args.probes_multi, precondition_rank=args.precondition_rank,
                      progress=True)  # fmt: skip
        res = multi_reml_from_plink(
            pl, 1, groups, normalization="empirical", method=method, **kw
        )
        secs = (round(time.perf_counter() - t0, 1), round(time.process_time() - c0, 1))
        print(method, pl.n_samples, "samples:", res.sigma2, "wall/CPU s", secs, flush=True)
        return res, secs

    out: dict = {}
    if args.exact_samples:
        sub = d / f"sub{args.exact_samples}"
        if not Path(f"{sub / 'cohort'}.bed").exists():
            samples = subset_samples(args.n, args.exact_samples, args.seed)
            _subset_plink(d / "cohort", sub / "cohort", samples)
        dense, t_d = fit(sub / "cohort", "dense")
        mf, t_m = fit(sub / "cohort", "matrix-free")
        out["subset"] = {
            "samples": args.exact_samples,
            "sigma2_dense": dense.sigma2.tolist(),
            "se_dense": dense.sigma2_se.tolist(),
            "sigma2_matfree": mf.sigma2.tolist(),
            "mc_se_matfree": mf.sigma2_mc_se.tolist(),
            "diff_over_se": ((mf.sigma2 - dense.sigma2) / dense.sigma2_se).tolist(),
            "seconds_dense_wall_cpu": t_d,
            "seconds_matfree_wall_cpu": t_m,
        }
    if not args.subset_only:
        mf, t_m = fit(d / "cohort", "matrix-free")
        out["full"] = {
            "samples": args.n,
            "sigma2": mf.sigma2.tolist(),
            "se": mf.sigma2_se.tolist(),
            "mc_se": mf.sigma2_mc_se.tolist(),
            "passes": mf.passes,
            "n_iter": mf.n_iter,
            "converged": mf.converged,
            "n_probes": args.probes_multi,
            "precondition_rank": args.precondition_rank,
            "seconds_wall_cpu": t_m,
            "peak_rss_gib": round(_peak_rss_gib(), 2),
        }
    name = f"multi_reml_subset{args.exact_samples}.json" if args.subset_only else "multi_reml.json"
    (d / name).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return 0


def binary_summary(args) -> int:
    """λGC of the SNPs without effect pooled over the phenotype replicates of one
    ``--background`` design (``odd``: ``binary_odd.tsv`` and every ``binary_odd_p<seed>.tsv``;
    ``but``: every ``binary_but<k>[_p<seed>].tsv``): per replicate and null chromosome, their
    mean and its SE over the (replicate, chromosome) values, written to
    ``binary_<design>_replicates.json``."""
    d = _dir(args)
    design = "but" if args.background.startswith("but") else args.background
    suffix = _variance_suffix(args)
    stem = r"binary_but\d+" if design == "but" else f"binary_{design}"
    pattern = rf"{stem}(_p\d+)?{suffix}\.tsv"
    files = sorted(f for f in d.glob("binary_*.tsv") if re.fullmatch(pattern, f.name))
    if not files:
        print(f"no {pattern} under {d}: run `binary --background {args.background}` first")
        return 1
    reps, values = {}, []
    for f in files:
        t = pd.read_csv(f, sep="\t", usecols=["chrom", "p_spa"])
        chrom = t["chrom"].astype(int).to_numpy()
        p = t["p_spa"].to_numpy()
        bg = f.stem.split("_")[1]
        null = _null_snps(chrom, bg)
        per = {int(c): _lambda(p[chrom == c]) for c in np.unique(chrom[null])}
        reps[f.stem] = {"gc_lambda_spa_null_snps": _lambda(p[null]), "per_null_chrom": per}
        values += list(per.values())
    v = np.array(values)
    out = {
        "replicates": reps,
        "n_values": len(v),
        "mean_per_chrom_lambda": float(v.mean()),
        "se": float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan"),
        "mean_replicate_lambda": float(
            np.mean([r["gc_lambda_spa_null_snps"] for r in reps.values()])
        ),
    }
    (d / f"binary_{design}{suffix}_replicates.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return 0


def _null_lambdas(table: pd.DataFrame, background: str, column: str = "p_spa") -> dict:
    """lambda GC of ``column`` over the SNPs without effect (:func:`_null_snps`), per null
    chromosome, and over all SNPs (keys say ``spa`` whatever the column)."""
    out = {"gc_lambda_spa_all": _lambda(table[column].to_numpy())}
    if background != "all":
        chrom = table["chrom"].astype(int).to_numpy()
        p = table[column].to_numpy()
        null = _null_snps(chrom, background)
        out["gc_lambda_spa_null_snps"] = _lambda(p[null])
        out["n_null_snps"] = int(null.sum())
        out["gc_lambda_spa_per_null_chrom"] = {
            int(c): _lambda(p[chrom == c]) for c in np.unique(chrom[null])
        }
    return out


def _lambda(p: np.ndarray) -> float:
    from scipy import stats

    p = p[np.isfinite(p)]
    return float(np.median(stats.chi2.isf(p, 1)) / stats.chi2.ppf(0.5, 1))


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "step",
        choices=["simulate", "matfree", "exact", "compare", "binary", "binary-summary", "multi"],
    )
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--snps", type=int, default=100_000)
    ap.add_argument("--chroms", type=int, default=10)
    ap.add_argument("--chrom-mb", type=float, default=6.0)
    ap.add_argument("--demes", type=int, default=4)
    ap.add_argument("--migration", type=float, default=5e-4)
    ap.add_argument(
        "--deme-size", type=int, default=25_000,
        help="diploids per deme today (the sample takes n / demes of them: 25,000 at n = "
        "50,000 samples half of each deme, so close relatives abound; 250,000 samples 5 %%, "
        "as biobanks, but slow: at 250,000 the first of 10 segments took over 11 min); other "
        "than 25,000 the data go "
        "to scale_<n>x<snps>_deme<size>/",
    )  # fmt: skip
    ap.add_argument(
        "--coalescent-only", action="store_true",
        help="Hudson's coalescent throughout, no Wright-Fisher generations: no pedigree, so "
        "no relatives sharing whole chromosomes (a biobank-like sample, a small fraction of "
        "its population); data under scale_<n>x<snps>_coalescent/",
    )  # fmt: skip
    ap.add_argument("--h2", type=float, default=0.5)
    ap.add_argument("--causal", type=int, default=2500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--probes", type=int, default=20, help="REML probes (matrix-free)")
    ap.add_argument("--pcs", type=int, default=0,
                    help="matfree: this many top PCs as fixed covariates (gwas(pcs=K))")
    ap.add_argument("--exact-snps", type=int, default=5000)
    ap.add_argument("--exact-den", type=int, default=0,
                    help="matfree: test only this many SNPs, with exact denominators")
    ap.add_argument("--exact-chroms", default="1,2")
    ap.add_argument("--exact-samples", type=int, default=0, help="0 = every sample")
    ap.add_argument("--binary-h2", type=float, default=0.3, help="binary: liability h2")
    ap.add_argument("--pheno-seed", type=int, default=None,
                    help="binary: seed of the phenotype draw alone (replicates on the same "
                    "genotypes; outputs tagged _p<seed>); default --seed")
    ap.add_argument("--prevalence", type=float, default=0.1, help="binary: case fraction")
    ap.add_argument("--score-variance", choices=["moments", "saige"], default="moments",
                    help="binary: the score test's variance (lmmkit's default moments, or "
                    "SAIGE's as in the runs before 2026-12-08; file names then carry no suffix)")
    ap.add_argument(
        "--background", type=_background_arg, default="all",
        help="binary: SNPs carrying the polygenic background (odd: odd chromosomes only, so "
        "the even chromosomes' SNPs are truly null and their lambda GC is the calibration; "
        "but<k>: every chromosome but k, and only k's SNPs are tested)",
    )  # fmt: skip
    ap.add_argument("--probes-multi", type=int, default=100, help="multi: trace probes")
    ap.add_argument("--precondition-rank", type=int, default=64,
                    help="multi: kinship eigenvectors of the Nystrom preconditioner (0: Jacobi)")
    ap.add_argument("--subset-only", action="store_true", help="multi: skip the full run")
    args = ap.parse_args(argv)
    steps = {"simulate": simulate, "matfree": run_matfree, "exact": run_exact,
             "compare": lambda a: compare(a), "binary": run_binary,
             "binary-summary": binary_summary,
             "multi": run_multi}  # fmt: skip
    return steps[args.step](args)


if __name__ == "__main__":
    raise SystemExit(main())

"""Simulation benchmark: does LD score regression recover a known h2 (and rg) under real LD?

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/sim_ldsc.py          # defaults below
    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/sim_ldsc.py --replicates 20

Needs ``msprime`` (the optional ``bench`` extra: ``pip install -e .[bench]``).

Design (option "coalescent population, individual-level GWAS")
    A European-like population is simulated with msprime: the Gutenkunst et al. (2009) CEU
    size history (ancestral 12,300; out-of-Africa bottleneck 2,100 from 5,600 generations
    ago; founding at 1,000 848 generations ago with 0.4 %/generation growth), recombination
    1 cM/Mb, infinite-sites mutations at a fraction ``--density`` of 1.25e-8 (random thinning
    of the sites, i.e. an array-like SNP density).  ``--segments`` independent 5 Mb
    chromosomes (many short chromosomes rather than a few long ones: the coalescent with
    recombination costs ~ quadratic time in the length) are sampled for ``--n-ref`` +
    ``--n-gwas`` individuals at once, so the reference panel and the GWAS sample are
    disjoint samples of the same population.  SNPs: MAF >= 5 % in all simulated individuals.

    LD scores: lmmkit's ``ld_scores`` on the panel written as a PLINK fileset, LDSC's
    bias-corrected r^2, "panel": 1 cM windows, LDSC's default and the way LDSC is used;
    "panel-chr": every pair on a chromosome (the z-scores carry all the LD on a chromosome,
    including the weak long-range LD left by the bottleneck, which 1 cM windows miss; the
    missing part is nearly the same for every SNP and so goes into the intercept).  With
    ``--insample-ld`` also 1 cM LD scores from the GWAS sample itself ("in-sample").

    GWAS: individual-level, not z ~ N(sqrt(N) R beta, R) with R from a finite "population"
    sample: that shortcut inflates every LD score of the generating model by ~ (SNPs per
    chromosome) / (size of the sample R comes from) and so the intercept by
    N h2 / (chromosomes x that size), which would blur the check of the intercept.  Here
    y = X beta + e on the GWAS sample's genotypes, standardized in the sample, and z is every
    SNP's marginal OLS t statistic (as ``marginal_z``), so every approximation LDSC makes is
    tested, in-sample LD included.  beta ~ N(0, 1) on all SNPs (or on a random 1 %), the
    genetic values rescaled to variance h2 exactly, e drawn orthogonal to them with variance
    1 - h2: the sample's h2 is the stated one exactly (no realisation noise in the truth).

    Scenarios (``--replicates`` each, one genetic draw shared by all fits of a replicate):
    h2 = 0.1 and 0.5 with every SNP causal; h2 = 0.5 with 1 % causal; confounding: the
    h2 = 0.5 z-scores plus sqrt(N a) u with u = X_std' w / sqrt(N), w ~ N(0, I) (a uniform
    inflation with the sample's LD structure, LDSC's "N a" term), N a = 0.1, so the true
    intercept is 1.1; two traits on the same sample with h2 = 0.3 and 0.5, genetic
    correlation 0.5 (exact in the sample) and environmental correlation 0.2, so the true
    cross-trait intercept is the phenotypic correlation 0.5 sqrt(0.15) + 0.2 sqrt(0.35).
    Fits: LDSC's default two-step estimator (chi2 < 30 for the intercept) and the one-step
    fit, 200 jackknife blocks, M = the number of SNPs (every SNP is in the LD scores).

Reported per scenario: mean estimate, bias with its Monte Carlo SE, mean jackknife SE, SD of
the estimates, the coverage of estimate +- 1.96 SE, and the intercept.  The machine is
shared: set OPENBLAS_NUM_THREADS=1.  Simulated genotypes and LD scores are cached in
``--cache`` (keyed by the simulation settings).  Defaults (80 chromosomes, 55,181 SNPs,
panel 3,000, N = 20,000, 100 replicates) on a loaded 2-core machine: msprime 25 min
(once), LD scores 1 min, GWAS 2.5 min, fits 1.5 min.

What it shows (defaults): with chromosome-wide LD scores the one-step fit is unbiased for
h2 (0.1 and 0.5, all or 1 % causal) and the intercept (1, or 1.1 with confounding), with
95 % coverage 0.93-0.99; 1 cM windows move ~0.04 into the intercept at h2 = 0.5, not the
h2; LDSC's default two-step estimator is biased low when many SNPs have a large chi2
(h2 = 0.5: -0.011; 1 % causal: -0.05, coverage ~0.8) -- LDSC 2.0.1's own behaviour: our
two-step fit equals LDSC's to 1e-8 when step 1 is truncated (tests/genetics/
test_ldsc_sim.py); rg = 0.5 is recovered (0.500, coverage 0.98).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

# Gutenkunst et al. (2009, PLoS Genet 5:e1000695) CEU size history, one population, no
# migration, generation time 25 years.
T_EU, T_B, N_EU0, R_EU, N_B, N_A = 848, 5600, 1000.0, 0.004, 2100.0, 12300.0
MU, RHO = 1.25e-8, 1e-8  # per bp per generation; recombination 1 cM/Mb (uniform)
CONFOUND_NA = 0.1  # N a of the confounded scenario
RG, RHO_E, H2_RG = 0.5, 0.2, (0.3, 0.5)


def _demography():
    import msprime

    dem = msprime.Demography()
    dem.add_population(name="CEU", initial_size=N_EU0 * np.exp(R_EU * T_EU), growth_rate=R_EU)
    dem.add_population_parameters_change(time=T_EU, initial_size=N_B, growth_rate=0.0)
    dem.add_population_parameters_change(time=T_B, initial_size=N_A)
    return dem


def simulate_segment(seg: int, n_ind: int, length: float, density: float, seed: int, maf: float):
    """One independent chromosome: diploid A1 counts (n_ind x m, int8) and positions (bp)."""
    import msprime

    ts = msprime.sim_ancestry(
        samples={"CEU": n_ind},
        demography=_demography(),
        sequence_length=length,
        recombination_rate=RHO,
        random_seed=seed * 100_003 + seg + 1,
    )
    ts = msprime.sim_mutations(
        ts, rate=MU * density, random_seed=seed * 100_003 + seg + 1, discrete_genome=False
    )
    keep, pos = [], []
    for v in ts.variants():
        g = v.genotypes[0::2] + v.genotypes[1::2]
        f = g.mean() / 2.0
        if maf <= f <= 1.0 - maf:
            keep.append(g.astype(np.int8))
            pos.append(v.site.position)
    geno = np.array(keep, dtype=np.int8).T if keep else np.zeros((n_ind, 0), np.int8)
    bp = np.floor(np.array(pos)).astype(np.int64) + 1
    bp = np.maximum.accumulate(bp - np.arange(len(bp))) + np.arange(len(bp))  # distinct
    return geno, bp


def simulate_population(args, cache: Path) -> None:
    """Simulate (or reuse) every segment, cached one .npz per segment."""
    n_ind = args.n_ref + args.n_gwas
    t0 = time.perf_counter()
    for seg in range(args.segments):
        f = cache / f"seg{seg:03d}.npz"
        if f.exists():
            continue
        g, bp = simulate_segment(
            seg, n_ind, args.segment_mb * 1e6, args.density, args.seed, args.maf
        )
        np.savez(f, geno=g, bp=bp)
        print(
            f"segment {seg + 1}/{args.segments}: {g.shape[1]} SNPs "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )


def load_population(args, cache: Path):
    """Reference panel and GWAS genotypes (int8, individuals x SNPs) and the SNP map."""
    parts = [np.load(cache / f"seg{s:03d}.npz") for s in range(args.segments)]
    m = sum(p["bp"].size for p in parts)
    ref = np.empty((args.n_ref, m), dtype=np.int8)
    gwas = np.empty((args.n_gwas, m), dtype=np.int8)
    chrom, bp = np.empty(m, dtype=np.int64), np.empty(m, dtype=np.int64)
    j = 0
    for s, p in enumerate(parts):
        g = p["geno"]
        k = g.shape[1]
        ref[:, j : j + k] = g[: args.n_ref]
        gwas[:, j : j + k] = g[args.n_ref :]
        chrom[j : j + k] = s + 1
        bp[j : j + k] = p["bp"]
        j += k
    return ref, gwas, chrom, bp


def lmmkit_ld_scores(geno: np.ndarray, chrom, bp, prefix: Path, windows_cm) -> list[np.ndarray]:
    """Write the genotypes as a PLINK fileset and compute lmmkit's LD scores from it."""
    from bed_reader import to_bed

    from lmmkit.genetics.ldsc import ld_scores

    outs = [Path(f"{prefix}.w{w:g}cM.l2.npz") for w in windows_cm]
    if all(o.exists() for o in outs):
        return [np.load(o)["l2"] for o in outs]
    m = geno.shape[1]
    sid = np.array([f"s{j}" for j in range(m)])
    to_bed(
        f"{prefix}.bed",
        geno,
        properties={
            "chromosome": [str(c) for c in chrom],
            "sid": sid,
            "cm_position": bp / 1e6,  # uniform 1 cM/Mb
            "bp_position": bp,
            "allele_1": ["A"] * m,
            "allele_2": ["G"] * m,
        },
    )
    res = []
    for w, out in zip(windows_cm, outs):
        ld = ld_scores(prefix, window_cm=w)
        if len(ld) != m or not (ld["snp"].to_numpy() == sid).all():
            raise RuntimeError("ld_scores dropped SNPs of the simulated panel")
        res.append(ld["l2"].to_numpy())
        np.savez(out, l2=res[-1])
    for ext in ("bed", "bim", "fam"):
        Path(f"{prefix}.{ext}").unlink()
    return res


class GwasSample:
    """The GWAS sample's genotypes (int8) with per-SNP mean and SD, processed in chunks."""

    def __init__(self, geno: np.ndarray, chunk: int = 2000):
        self.geno, self.chunk = geno, chunk
        self.n, self.m = geno.shape
        self.sd = np.empty(self.m)
        for s in range(0, self.m, chunk):
            self.sd[s : s + chunk] = geno[:, s : s + chunk].astype(np.float64).std(0)

    def _blocks(self):
        for s in range(0, self.m, self.chunk):
            yield s, self.geno[:, s : s + self.chunk].astype(np.float32)

    def genetic_values(self, b: np.ndarray) -> np.ndarray:
        """Centered X_std b (n x k) for effects b (m x k) on standardized genotypes."""
        out = np.zeros((self.n, b.shape[1]))
        for s, x in self._blocks():
            out += x @ (b[s : s + self.chunk] / self.sd[s : s + self.chunk, None]).astype(
                np.float32
            )
        return out - out.mean(0)

    def xt(self, v: np.ndarray) -> np.ndarray:
        """X_std' v / sqrt(n) (m x k) for centered columns v."""
        vc = (v - v.mean(0)).astype(np.float32)
        out = np.empty((self.m, v.shape[1]))
        for s, x in self._blocks():
            out[s : s + self.chunk] = (x.T @ vc) / self.sd[s : s + self.chunk, None]
        return out / np.sqrt(self.n)

    def marginal_t(self, y: np.ndarray) -> np.ndarray:
        """Per-SNP OLS t statistic of y ~ 1 + x for each column of y (as ``marginal_z``)."""
        yc = y - y.mean(0)
        r = self.xt(yc / np.sqrt((yc**2).mean(0))) / np.sqrt(self.n)
        r = np.clip(r, -1 + 1e-12, 1 - 1e-12)
        return r * np.sqrt((self.n - 2) / (1 - r * r))


def _noise(rng, g: np.ndarray, k: int) -> np.ndarray:
    """k columns of N(0, I) orthogonal to 1, to the columns of g and to each other, var 1."""
    n = g.shape[0]
    q, _ = np.linalg.qr(np.column_stack([np.ones(n), g]))
    e = rng.normal(size=(n, k))
    e -= q @ (q.T @ e)
    e, _ = np.linalg.qr(e)
    return e * np.sqrt(n)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / v.std()


def simulate_gwas(gw: GwasSample, reps: int, rng):
    """z-scores of every scenario (dict name -> m x reps) and the truths."""
    m, n = gw.m, gw.n
    specs = [("h2=0.1", 0.1, 1.0), ("h2=0.5", 0.5, 1.0), ("h2=0.5, 1% causal", 0.5, 0.01)]
    cols = []
    for _name, _h2, frac in specs:
        b = rng.normal(size=(m, reps))
        if frac < 1:
            b *= rng.random((m, reps)) < frac
        cols.append(b)
    cols.append(rng.normal(size=(m, 2 * reps)))  # rg: beta1 and an independent gamma
    g = gw.genetic_values(np.concatenate(cols, axis=1))
    ys = {}
    for i, (name, h2, _) in enumerate(specs):
        gi = g[:, i * reps : (i + 1) * reps]
        y = np.empty_like(gi)
        for r in range(reps):
            e = _noise(rng, gi[:, [r]], 1)[:, 0]
            y[:, r] = np.sqrt(h2) * _unit(gi[:, r]) + np.sqrt(1 - h2) * e
        ys[name] = y
    h1, h2 = H2_RG
    g1s = g[:, 3 * reps : 4 * reps]
    gam = g[:, 4 * reps : 5 * reps]
    y1, y2 = np.empty((n, reps)), np.empty((n, reps))
    for r in range(reps):
        u1 = _unit(g1s[:, r])
        perp = gam[:, r] - (gam[:, r] @ u1) / (u1 @ u1) * u1
        u2 = RG * u1 + np.sqrt(1 - RG**2) * _unit(perp)  # corr(u1, u2) = RG exactly
        e = _noise(rng, np.column_stack([u1, u2]), 2)
        e2 = RHO_E * e[:, 0] + np.sqrt(1 - RHO_E**2) * e[:, 1]
        y1[:, r] = np.sqrt(h1) * u1 + np.sqrt(1 - h1) * e[:, 0]
        y2[:, r] = np.sqrt(h2) * u2 + np.sqrt(1 - h2) * e2
    ys["rg1"], ys["rg2"] = y1, y2
    names = list(ys)
    z = gw.marginal_t(np.concatenate([ys[k] for k in names], axis=1))
    zs = {k: z[:, i * reps : (i + 1) * reps] for i, k in enumerate(names)}
    u = gw.xt(rng.normal(size=(n, reps)))  # N(0, R) confounding
    zs["h2=0.5, confounded"] = zs["h2=0.5"] + np.sqrt(CONFOUND_NA) * u
    truth = {"h2=0.1": (0.1, 1.0), "h2=0.5": (0.5, 1.0), "h2=0.5, 1% causal": (0.5, 1.0)}
    truth["h2=0.5, confounded"] = (0.5, 1.0 + CONFOUND_NA)
    rho_p = RG * np.sqrt(h1 * h2) + RHO_E * np.sqrt((1 - h1) * (1 - h2))
    return zs, truth, float(rho_p)


def _summary(est, se, truth):
    est, se = np.asarray(est), np.asarray(se)
    return {
        "truth": truth,
        "mean": float(est.mean()),
        "bias": float(est.mean() - truth),
        "bias_mc_se": float(est.std(ddof=1) / np.sqrt(len(est))),
        "mean_se": float(se.mean()),
        "sd": float(est.std(ddof=1)),
        "coverage": float(np.mean(np.abs(est - truth) <= 1.96 * se)),
    }


def run_fits(zs, truth, rho_p, lds: dict, n: int, m: int):
    from lmmkit.genetics.ldsc import genetic_correlation, ld_score_regression

    reps = next(iter(zs.values())).shape[1]
    rows, raw = [], {}
    for name, (h2, a) in truth.items():
        z = zs[name]
        for src, l2 in lds.items():
            for est_name, ts in (("two-step", 30.0), ("one-step", None)):
                fits = [
                    ld_score_regression(z=z[:, r], ld=l2, n=n, m=m, two_step=ts)
                    for r in range(reps)
                ]
                h = [f.h2 for f in fits]
                ints = [f.intercept for f in fits]
                row = {"scenario": name, "ld": src, "estimator": est_name}
                row["h2"] = _summary(h, [f.h2_se for f in fits], h2)
                row["intercept"] = _summary(ints, [f.intercept_se for f in fits], a)
                row["mean_chisq"] = float(np.mean([f.mean_chisq for f in fits]))
                rows.append(row)
                raw[f"{name}|{src}|{est_name}"] = {"h2": h, "h2_se": [f.h2_se for f in fits]}
    rg_rows = []
    for src, l2 in lds.items():
        fits = [
            genetic_correlation(zs["rg1"][:, r], zs["rg2"][:, r], l2, n, n, m) for r in range(reps)
        ]
        row = {"ld": src, "estimator": "one-step (ldsc --rg default here)"}
        row["rg"] = _summary([f.rg for f in fits], [f.rg_se for f in fits], RG)
        row["gencov_intercept"] = _summary(
            [f.gencov_intercept for f in fits], [f.gencov_intercept_se for f in fits], rho_p
        )
        row["h2_1"] = _summary([f.h2_1.h2 for f in fits], [f.h2_1.h2_se for f in fits], H2_RG[0])
        row["h2_2"] = _summary([f.h2_2.h2 for f in fits], [f.h2_2.h2_se for f in fits], H2_RG[1])
        rg_rows.append(row)
        raw[f"rg|{src}"] = {"rg": [f.rg for f in fits], "rg_se": [f.rg_se for f in fits]}
    return rows, rg_rows, raw


def _fmt(s):
    return (
        f"{s['truth']:>6.3f} {s['mean']:>7.4f} {s['bias']:>+8.4f} ({s['bias_mc_se']:.4f}) "
        f"{s['mean_se']:>7.4f} {s['sd']:>7.4f} {s['coverage']:>6.2f}"
    )


def print_tables(rows, rg_rows) -> None:
    head = (
        f"{'truth':>6} {'mean':>7} {'bias':>8} {'(MC SE)':>8} {'mean SE':>7} {'SD':>7} {'cover':>6}"
    )
    print(f"\n{'scenario':<20} {'LD scores':<9} {'estimator':<9} | h2: {head} | intercept: {head}")
    for r in rows:
        print(
            f"{r['scenario']:<20} {r['ld']:<9} {r['estimator']:<9} | "
            f"{_fmt(r['h2'])} | {_fmt(r['intercept'])}   mean chi2 {r['mean_chisq']:.2f}"
        )
    print(f"\ngenetic correlation (h2 {H2_RG[0]} and {H2_RG[1]}, same sample)")
    for r in rg_rows:
        print(f"  {r['ld']:<9} rg:               {_fmt(r['rg'])}")
        print(f"  {r['ld']:<9} gencov intercept: {_fmt(r['gencov_intercept'])}")
        print(f"  {r['ld']:<9} h2 trait 1:       {_fmt(r['h2_1'])}")
        print(f"  {r['ld']:<9} h2 trait 2:       {_fmt(r['h2_2'])}")


def _parser():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=100)
    ap.add_argument("--segments", type=int, default=80, help="independent 5 Mb chromosomes")
    ap.add_argument("--segment-mb", type=float, default=5.0)
    ap.add_argument("--n-ref", type=int, default=3000, help="reference panel individuals")
    ap.add_argument("--n-gwas", type=int, default=20000, help="GWAS individuals")
    ap.add_argument("--density", type=float, default=0.2, help="fraction of the sites kept")
    ap.add_argument("--maf", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument(
        "--insample-ld", action="store_true", help="also LD scores from the GWAS sample (slow)"
    )
    ap.add_argument("--cache", type=Path, default=Path("/tmp/lmmkit_sim_ldsc"))
    ap.add_argument("--out", type=Path, help="write the summaries and estimates as JSON")
    ap.add_argument("--simulate-only", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    key = (
        f"n{args.n_ref}+{args.n_gwas}_L{args.segment_mb:g}_d{args.density:g}"
        f"_maf{args.maf:g}_s{args.seed}"
    )
    cache = args.cache / key
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    simulate_population(args, cache)
    if args.simulate_only:
        return 0
    ref, gwas, chrom, bp = load_population(args, cache)
    n, m = gwas.shape
    tag = f"{args.segments}seg"
    whole = args.segment_mb  # cM: every pair on a chromosome
    l1, lw = lmmkit_ld_scores(ref, chrom, bp, cache / f"panel_{tag}", [1.0, whole])
    lds = {"panel": l1, "panel-chr": lw}
    del ref
    if args.insample_ld:
        lds["in-sample"] = lmmkit_ld_scores(gwas, chrom, bp, cache / f"gwas_{tag}", [1.0])[0]
    print(
        f"{args.segments} x {args.segment_mb:g} Mb chromosomes, M = {m} SNPs; panel "
        f"{args.n_ref}, GWAS N = {n}; setup {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    for k, v in lds.items():
        d = v - lds["panel"]
        print(
            f"  LD scores {k:<9}: mean {v.mean():.3f}, max {v.max():.1f}; minus panel 1 cM: "
            f"mean {d.mean():+.4f}, SD {d.std():.4f}"
        )
    rng = np.random.default_rng(args.seed + 1)
    t1 = time.perf_counter()
    zs, truth, rho_p = simulate_gwas(GwasSample(gwas), args.replicates, rng)
    print(f"GWAS ({args.replicates} replicates): {time.perf_counter() - t1:.0f} s", flush=True)
    t1 = time.perf_counter()
    rows, rg_rows, raw = run_fits(zs, truth, rho_p, lds, n, m)
    print(f"LDSC fits: {time.perf_counter() - t1:.0f} s")
    print_tables(rows, rg_rows)
    if args.out is not None:
        args.out.write_text(
            json.dumps(
                {
                    "settings": {k: str(v) for k, v in vars(args).items()},
                    "m": m,
                    "rows": rows,
                    "rg": rg_rows,
                    "estimates": raw,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

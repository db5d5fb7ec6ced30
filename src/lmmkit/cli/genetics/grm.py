"""``lmmkit grm``: a genomic relationship matrix in GCTA's binary format
(:func:`lmmkit.genetics.grm.compute_grm`, :func:`~lmmkit.genetics.grm.loco_grms`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lmmkit._io import write_text_atomic
from lmmkit.cli._common import add_common, refuse_existing, say
from lmmkit.cli.genetics._options import (
    add_genotype_options,
    add_snp_filters,
    open_plink,
    snp_filter_settings,
)
from lmmkit.errors import DataError, FileFormatError

__all__ = ["add_parser", "run"]


def _read_extract(path: str) -> set[str]:
    p = Path(path)
    if not p.exists():
        raise FileFormatError(f"{p}: --extract file not found.")
    return {line.split()[0] for line in p.read_text().splitlines() if line.strip()}


def _convention(kinship: str, missing: str) -> str:
    """The GRM's convention in words, for the log."""
    what = {
        "centered": "GEMMA -gk 1: Z = x - 2p, Z Z' / m",
        "standardized": "GCTA --make-grm / plink2 --make-grm-bin: Z = (x - 2p) / sqrt(2p(1-p)), "
        "diagonal not GCTA-adjusted",
        "empirical": "BOLT-LMM: Z = (x - mean) / SD over the samples, squared norm n - 1",
        "vanraden": "VanRaden (2008) method 1: Z Z' / (2 sum p(1-p))",
    }[kinship]
    if missing == "pairwise":
        return (
            f"{what}; missing calls per pair: each entry over the SNPs called in both samples "
            "(GCTA's and plink2's default), true per-pair counts in .grm.N.bin"
        )
    return (
        f"{what}; missing calls mean-imputed, every entry over all SNPs (plink2 "
        "--make-grm-bin meanimpute; equals the plink2/GCTA default only without missing "
        "calls), .grm.N.bin holds that SNP count"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``lmmkit grm`` from parsed arguments; returns the exit code."""
    import numpy as np
    import pandas as pd

    from lmmkit.genetics.grm import compute_grm, kinship_samples, loco_grms, write_grm
    from lmmkit.genetics.plink import filter_snps

    out = Path(args.out)
    if args.missing == "pairwise" and args.kinship != "standardized":
        raise DataError(
            f"--missing pairwise (GCTA's per-pair SNP counts) goes with --kinship standardized, "
            f"not {args.kinship}."
        )
    pl = open_plink(args)
    log: list[str] = []
    say(args, f"lmmkit grm: {pl.prefix} ({pl.n_samples} samples, {pl.n_snps} SNPs)", log)
    chroms = list(pd.unique(pl.bim["chrom"].astype(str)))
    prefixes = [Path(f"{out}.chr{c}") for c in chroms] if args.loco else [out]
    targets = [Path(f"{p}.grm.{ext}") for p in prefixes for ext in ("bin", "N.bin", "id")]
    targets += [Path(f"{out}.grm.log"), Path(f"{out}.grm.excluded")]
    refuse_existing(targets, args.overwrite)

    snp_ok = np.ones(pl.n_snps, dtype=bool)
    reason = np.array([""] * pl.n_snps, dtype=object)
    if args.extract:
        wanted = _read_extract(args.extract)
        inside = pl.bim["snp"].isin(wanted).to_numpy()
        reason[~inside] = "not in --extract"
        snp_ok &= inside
        unknown = len(wanted - set(pl.bim["snp"]))
        say(args, f"--extract {args.extract}: {int(inside.sum())} SNPs listed", log)
        if unknown:
            say(args, f"  {unknown} --extract IDs are not in {pl.prefix}.bim (ignored)", log)
    apply, maf, max_missing = snp_filter_settings(args.kinship, args.maf, args.max_missing)
    if args.filter_pheno_fam is not None:
        filter_samples = np.flatnonzero(np.isfinite(pl.phenotype(args.filter_pheno_fam)))
        how = (
            f"SNP filters over the {len(filter_samples)} samples with .fam phenotype "
            f"{args.filter_pheno_fam} (GEMMA -gk 1 -n {args.filter_pheno_fam})"
        )
    else:
        filter_samples, how = kinship_samples(pl, args.kinship_samples, np.arange(pl.n_samples))
    if apply:
        say(args, how, log)
    if apply:
        res = filter_snps(pl, maf=maf, max_missing=max_missing, samples=filter_samples)
        miss = res.missing_rate > max_missing
        low = ~miss & ~(res.maf >= maf)
        mono = ~miss & ~low & ~res.mask
        for mask, why in (
            (miss, f"missing rate > {max_missing}"),
            (low, f"MAF < {maf}"),
            (mono, "one genotype class"),
        ):
            new = mask & snp_ok
            reason[new] = why
            snp_ok &= ~mask
    snps = np.flatnonzero(snp_ok)
    if len(snps) == 0:
        raise DataError(f"{pl.prefix}: no SNPs left to build the GRM (see the reasons above).")
    dropped = pd.Series(reason[~snp_ok]).value_counts()
    say(
        args,
        f"SNPs: {len(snps)} of {pl.n_snps} used"
        + "".join(f"; {v} dropped ({k})" for k, v in dropped.items()),
        log,
    )
    if not apply:
        say(args, f"no MAF/missingness filter (the default for {args.kinship})", log)
    say(args, f"convention: {_convention(args.kinship, args.missing)}", log)
    kw = dict(
        snps=snps,
        gemma_filter=False,
        block_size=args.block_snps,
        progress=not args.quiet,
        missing=args.missing,
    )
    if args.loco:
        grms = loco_grms(pl, args.kinship, **kw)
        for c, p in zip(chroms, prefixes):
            if c in grms:
                write_grm(grms[c], p)
                say(
                    args,
                    f"wrote {p}.grm.{{bin,N.bin,id}} (leaving out chr {c}: {grms[c].n_snps} SNPs)",
                    log,
                )
    else:
        grm = compute_grm(pl, args.kinship, **kw)
        write_grm(grm, out)
        say(
            args,
            f"wrote {out}.grm.{{bin,N.bin,id}} ({args.kinship}, {grm.n_snps} SNPs, "
            f"mean diagonal {np.mean(np.diag(grm.matrix)):.6g})",
            log,
        )
    excl = pl.bim.loc[~snp_ok, ["chrom", "snp"]].assign(reason=reason[~snp_ok])
    write_text_atomic(Path(f"{out}.grm.excluded"), excl.to_csv(sep="\t", index=False))
    write_text_atomic(Path(f"{out}.grm.log"), "\n".join(log) + "\n")
    return 0


def add_parser(subparsers) -> None:
    """Add ``grm`` to an argparse subparsers object."""
    g = subparsers.add_parser(
        "grm",
        help="genomic relationship matrix in GCTA binary format",
        description="Build a GRM from a PLINK fileset and write PREFIX.grm.bin/.grm.N.bin/"
        ".grm.id (with --loco: PREFIX.chrC.grm.* per chromosome C, each leaving C out).",
    )
    add_genotype_options(g)
    g.add_argument("--out", required=True, metavar="PREFIX", help="output prefix")
    g.add_argument(
        "--kinship",
        choices=["centered", "standardized", "empirical", "vanraden"],
        default="centered",
        help="centered = GEMMA -gk 1 (default); standardized = GCTA --make-grm / plink2 "
        "--make-grm-bin normalization 1/sqrt(2p(1-p)) (equal to plink2's matrix with "
        "--missing pairwise, or without missing calls); empirical = BOLT-LMM (SD over the "
        "samples); vanraden = VanRaden (2008) method 1",
    )
    g.add_argument(
        "--missing",
        choices=["impute", "pairwise"],
        default="impute",
        help="missing calls: impute (mean-imputed, every pair over all SNPs: plink2 "
        "--make-grm-bin meanimpute, GEMMA; default) or pairwise (per pair, the SNPs called "
        "in both, with true per-pair counts in .grm.N.bin: GCTA's and plink2's default; "
        "standardized only)",
    )
    g.add_argument(
        "--kinship-samples",
        choices=["all", "gemma"],
        default="all",
        help="samples the SNP filters use: all (default) or gemma (GEMMA -gk 1 without -n: "
        "the samples with a .fam column-6 phenotype); see also --filter-pheno-fam",
    )
    g.add_argument(
        "--allow-duplicate-ids",
        action="store_true",
        help="keep .fam rows whose (FID, IID) repeats, renaming later ones IID~2 (default: "
        "refuse, as PLINK)",
    )
    g.add_argument("--loco", action="store_true", help="one leave-one-chromosome-out GRM each")
    add_snp_filters(g)
    g.add_argument("--extract", metavar="FILE", help="use only the SNP IDs listed (first column)")
    g.add_argument(
        "--filter-pheno-fam",
        type=int,
        metavar="N",
        help="compute the SNP filters over the samples with .fam phenotype N (GEMMA -gk -n N)",
    )
    add_common(g)
    g.set_defaults(func=run)

"""``lmmkit gwas-compare``: PC-only, LMM and LMM+PCs scans of one phenotype side by side
(:func:`lmmkit.genetics.pc_compare.compare_pc_lmm`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lmmkit._io import write_text_atomic
from lmmkit.cli._common import add_common, add_list_option, refuse_existing, say

__all__ = ["add_parser", "run"]


def run(args: argparse.Namespace) -> int:
    """Run ``lmmkit gwas-compare`` from parsed arguments; returns the exit code."""
    from lmmkit.cli.genetics._options import kinship_arguments, open_plink
    from lmmkit.cli.genetics.gwas import pc_argument, pheno_covar_arguments
    from lmmkit.genetics.pc_compare import compare_pc_lmm

    out = Path(args.out)
    targets = [Path(f"{out}.{ext}") for ext in ("summary.tsv", "agreement.tsv", "qq.png", "md")]
    refuse_existing(targets, args.overwrite)
    pheno, covar = pheno_covar_arguments(args)
    kinship, _ = kinship_arguments(args)
    pcs = pc_argument(args)
    res = compare_pc_lmm(
        open_plink(args), pheno, covariates=covar, pcs=10 if pcs is None else pcs,
        kinship=kinship, top_k=args.top_k, n_boot=args.n_boot, block=args.block,
        seed=args.seed, maf=args.maf, max_missing=args.max_missing, progress=False,
    )  # fmt: skip
    write_text_atomic(targets[0], res.summary.to_csv(sep="\t", index=False))
    write_text_atomic(targets[1], res.agreement.to_csv(sep="\t", index=False))
    fig = res.qq_figure(args.title)
    tmp = targets[2].with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    tmp.replace(targets[2])
    write_text_atomic(targets[3], res.to_markdown() + "\n")
    say(args, res.to_markdown())
    say(args, f"lambda CI: {res.settings['lambda_ci']}")
    say(args, "wrote " + ", ".join(map(str, targets)))
    return 0


def add_parser(subparsers) -> None:
    """Add ``gwas-compare`` to an argparse subparsers object."""
    from lmmkit.cli.genetics._options import add_genotype_options, add_kinship_options
    from lmmkit.cli.genetics.gwas import add_pc_options

    p = subparsers.add_parser(
        "gwas-compare",
        help="PC-only, LMM and LMM+PCs scans side by side (lambda, hits, QQ)",
        description="Scan one phenotype three ways -- least squares with K PCs (plink2 --glm), "
        "the kinship LMM, the LMM with the PCs -- and write PREFIX.summary.tsv (lambda_GC with "
        "a block-bootstrap CI, hits at 5e-8 and Bonferroni), PREFIX.agreement.tsv (top-k "
        "overlap, rank correlation), PREFIX.qq.png and PREFIX.md.",
    )
    add_genotype_options(p)
    ph = p.add_mutually_exclusive_group(required=True)
    ph.add_argument("--pheno", metavar="FILE", help="phenotype file with a 'FID IID ...' header")
    ph.add_argument("--pheno-fam", type=int, metavar="N", help=".fam phenotype N (1 = column 6)")
    p.add_argument("--pheno-col", metavar="NAME", help="column of --pheno to analyze")
    p.add_argument("--covar", metavar="FILE", help="covariate file ('FID IID ...' header)")
    add_list_option(p, "--covar-cols", metavar="COL", help="covariate columns to use")
    add_pc_options(p)
    add_kinship_options(p, grm_help="GCTA binary GRM (PREFIX.grm.bin/.id) or GEMMA .cXX.txt")
    p.add_argument("--top-k", type=int, default=100, help="top SNPs compared (default 100)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of lambda")
    p.add_argument("--block", type=int, default=100, help="SNPs per bootstrap block")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--maf", type=float, default=0.01, help="minimum MAF (default 0.01)")
    p.add_argument("--max-missing", type=float, default=0.05, help="maximum missing rate")
    p.add_argument("--title", help="title of the QQ plot")
    p.add_argument("--out", required=True, metavar="PREFIX", help="output prefix")
    add_common(p)
    p.set_defaults(func=run)

"""``lmmkit gwas``: the command line of :func:`lmmkit.genetics.gwas.gwas` (input and output
only)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from lmmkit.cli._common import add_list_option
from lmmkit.cli.genetics._options import (
    add_genotype_options,
    add_kinship_options,
    kinship_arguments,
    open_plink,
)
from lmmkit.errors import DataError

__all__ = [
    "add_parser",
    "add_pc_options",
    "pc_argument",
    "pheno_covar_arguments",
    "run",
    "run_gwas_cli",
]


def add_parser(subparsers) -> Any:
    """Add the ``gwas`` sub-command to an argparse ``subparsers`` object; returns the parser.

    The parser's default ``func`` is :func:`run`:
    ``args.func(args)`` runs the analysis and returns an exit code.
    """
    p = subparsers.add_parser(
        "gwas",
        help="exact LMM association scan (GEMMA -lmm 1..4)",
        description="Exact per-SNP linear-mixed-model association (Wald, LRT, score), "
        "as GEMMA -lmm 1/2/3/4.",
    )
    _fill_parser(p)
    p.set_defaults(func=run)
    return p


def _fill_parser(p) -> None:
    add_genotype_options(p)
    ph = p.add_mutually_exclusive_group(required=True)
    ph.add_argument("--pheno", metavar="FILE", help="phenotype file with a 'FID IID ...' header")
    ph.add_argument(
        "--pheno-fam", type=int, metavar="N", help=".fam phenotype N (1 = column 6, GEMMA -n)"
    )
    p.add_argument("--pheno-col", metavar="NAME", help="column of --pheno to analyze")
    p.add_argument("--covar", metavar="FILE", help="covariate file ('FID IID ...' header)")
    add_list_option(p, "--covar-cols", metavar="COL", help="covariate columns to use")
    add_kinship_options(p, grm_help="GCTA binary GRM (PREFIX.grm.bin/.id) or GEMMA .cXX.txt")
    p.add_argument("--loco", action="store_true", help="leave-one-chromosome-out kinship")
    add_pc_options(p)
    p.add_argument(
        "--no-kinship",
        action="store_true",
        help="no kinship: least squares per SNP with the covariates and the PCs (plink2 "
        "--glm); needs --pcs or --pcs-file (--pcs 0 for none)",
    )
    p.add_argument(
        "--binary",
        action="store_true",
        help="case/control phenotype (0/1 or PLINK 1/2, -9/NA missing): logistic mixed "
        "model score test with saddlepoint p-values (SAIGE); --test all or score",
    )
    p.add_argument(
        "--score-variance",
        choices=["moments", "saige"],
        default="moments",
        help="with --binary: variance of the score test, the residuals' covariance fitted by "
        "moments (default; calibrated where SAIGE's deflates: large samples, LOCO) or the "
        "working model's (saige: SAIGE's and GMMAT's numbers)",
    )
    p.add_argument(
        "--test", choices=["wald", "lrt", "score", "all"], default="all", help="tests to run"
    )
    p.add_argument(
        "--method",
        choices=["auto", "exact", "matrix-free"],
        default="auto",
        help="exact (GEMMA, eigendecomposition) or matrix-free (BOLT-LMM-inf, conjugate "
        "gradients, LOCO, Wald only); auto: exact up to 10,000 samples when memory fits",
    )
    p.add_argument(
        "--block-snps", type=int, default=None, metavar="N",
        help="SNPs per block (default 2,000; the exact path takes up to 20,000 at small n, "
        "4 million genotype cells per block)",
    )  # fmt: skip
    p.add_argument("--maf", type=float, default=0.01, help="minimum MAF (GEMMA default 0.01)")
    p.add_argument(
        "--max-missing", type=float, default=0.05, help="maximum missing rate (default 0.05)"
    )
    p.add_argument("--out", required=True, metavar="FILE.tsv", help="output table")
    p.add_argument(
        "--output-format",
        choices=["lmmkit", "gemma", "plink2", "regenie"],
        default="lmmkit",
        help="layout of the output table: lmmkit's, or GEMMA's .assoc.txt, plink2's "
        ".glm.linear or REGENIE's step-2 columns (read unchanged by tools written for them)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="Dask scheduler address, 'local[:N]' for a local Dask cluster, or "
        "'threads[:N]' for threads in this process (default: serial)",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the Manhattan/QQ PNGs")
    p.add_argument("--quiet", action="store_true", help="no progress bar or messages")


def add_pc_options(p) -> None:
    """``--pcs K`` and ``--pcs-file FILE`` (shared by ``gwas`` and ``gwas-compare``)."""
    p.add_argument(
        "--pcs",
        type=int,
        metavar="K",
        help="add K genotype principal components (plink2 --pca, computed from --bfile) to "
        "the covariates; with --pcs-file: its first K PCs",
    )
    p.add_argument(
        "--pcs-file",
        metavar="FILE",
        help="PCs from a plink2 .eigenvec file ('#FID IID PC1 ...'); every .fam sample "
        "must be in it",
    )


def pheno_covar_arguments(args) -> tuple[Any, Any]:
    """The phenotype (``--pheno``/``--pheno-col`` or ``--pheno-fam``) and the covariates
    (``--covar``/``--covar-cols``) as ``gwas`` takes them."""
    from lmmkit.genetics.plink import read_pheno_file

    if args.pheno is not None:
        if not args.pheno_col:
            raise DataError("--pheno needs --pheno-col NAME.")
        pheno = read_pheno_file(args.pheno, [args.pheno_col])[args.pheno_col]
    else:
        if args.pheno_col:
            raise DataError("--pheno-col goes with --pheno, not --pheno-fam.")
        pheno = args.pheno_fam
    covar = None
    if args.covar_cols and not args.covar:
        raise DataError("--covar-cols needs --covar FILE.")
    if args.covar:
        covar = read_pheno_file(args.covar, args.covar_cols or None)
    return pheno, covar


def pc_argument(args) -> Any:
    """What ``gwas(pcs=...)`` gets from ``--pcs``/``--pcs-file`` (None: no PCs)."""
    if args.pcs is not None and args.pcs < 0:
        raise DataError(f"--pcs must be >= 0, got {args.pcs}.")
    if args.pcs_file is None:
        return args.pcs
    from lmmkit.genetics.pca import read_pcs

    tab = read_pcs(args.pcs_file)
    if args.pcs is not None:
        if args.pcs > tab.shape[1]:
            raise DataError(f"--pcs {args.pcs}: {args.pcs_file} has {tab.shape[1]} PCs.")
        tab = tab.iloc[:, : args.pcs]
    return tab


def run(args) -> int:
    """Run ``lmmkit gwas`` from parsed arguments; returns the exit code."""
    from lmmkit.genetics.gwas import TESTS, gwas
    from lmmkit.parallel.executor import get_executor

    pheno, covar = pheno_covar_arguments(args)
    kinship, kinship_samples = kinship_arguments(args)
    pcs = pc_argument(args)
    if args.no_kinship:
        if pcs is None:
            raise DataError("--no-kinship needs --pcs K or --pcs-file FILE (--pcs 0: none).")
        if args.grm or args.kinship or args.loco:
            raise DataError("--no-kinship goes without --kinship, --grm and --loco.")
        kinship = None
    tests = TESTS if args.test == "all" else (args.test,)
    geno = open_plink(args)
    executor = get_executor(args.scheduler)
    try:
        res = gwas(
            geno,
            pheno,
            covariates=covar,
            kinship=kinship,
            loco=args.loco,
            tests=tests,
            block_snps=args.block_snps,
            executor=executor,
            out=args.out,
            overwrite=args.overwrite,
            progress=not args.quiet,
            maf=args.maf,
            max_missing=args.max_missing,
            plots=not args.no_plots,
            binary=args.binary,
            score_variance=args.score_variance,
            method=args.method,
            kinship_samples=kinship_samples,
            recenter_kinship=not args.no_recenter,
            output_format=args.output_format,
            pcs=pcs,
        )
    finally:
        executor.close()
    if args.quiet:
        return 0
    print(f"wrote {res.out} ({res.n_tested} SNPs, lambda_GC {res.gc_lambda:.4f})")
    return 0


def run_gwas_cli(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (the arguments after ``lmmkit gwas``) and run; returns an exit code.

    Input errors (:class:`~lmmkit.errors.LmmkitError`) print one line to stderr and
    return 2."""
    import argparse

    from lmmkit.errors import LmmkitError

    parser = argparse.ArgumentParser(prog="lmmkit gwas")
    _fill_parser(parser)
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        return run(args)
    except LmmkitError as exc:
        print(f"lmmkit gwas: error: {exc}", file=sys.stderr)
        return 2

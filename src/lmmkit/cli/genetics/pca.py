"""``lmmkit pca``: genotype principal components in plink2's ``--pca`` layouts
(:func:`lmmkit.genetics.pca.genotype_pca`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lmmkit._io import write_text_atomic
from lmmkit.cli._common import add_common, refuse_existing, say
from lmmkit.cli.genetics._options import add_genotype_options, open_plink

__all__ = ["add_parser", "run"]


def run(args: argparse.Namespace) -> int:
    """Run ``lmmkit pca`` from parsed arguments; returns the exit code."""
    from lmmkit.genetics.pca import genotype_pca, write_plink2_pca

    out = Path(args.out)
    targets = [Path(f"{out}.{ext}") for ext in ("eigenvec", "eigenval", "pca.log")]
    refuse_existing(targets, args.overwrite)
    pl = open_plink(args)
    log: list[str] = []
    say(args, f"lmmkit pca: {pl.prefix} ({pl.n_samples} samples, {pl.n_snps} SNPs)", log)
    pcs = genotype_pca(pl, args.pcs, block_size=args.block_snps, progress=not args.quiet,
                       method=args.method, n_power_iter=args.power_iter,
                       n_oversamples=args.oversamples, seed=args.seed)  # fmt: skip
    say(args, f"method: {pcs.method}", log)
    for reason, count in pcs.excluded.items():
        if count:
            say(args, f"  {count} SNPs: {reason}", log)
    say(args, f"GRM (variance-standardized, plink2's) over {pcs.n_snps} SNPs", log)
    written = write_plink2_pca(pcs, out)
    say(args, "eigenvalues: " + " ".join(f"{v:.6g}" for v in pcs.eigenvalues), log)
    say(args, f"wrote {written[0]} and {written[1]}", log)
    write_text_atomic(targets[2], "\n".join(log) + "\n")
    return 0


def add_parser(subparsers) -> None:
    """Add ``pca`` to an argparse subparsers object."""
    p = subparsers.add_parser(
        "pca",
        help="genotype principal components (plink2 --pca)",
        description="Top principal components of the variance-standardized GRM, as plink2 --pca "
        "(exact, or randomized for large n). Writes PREFIX.eigenvec and PREFIX.eigenval in plink2's layouts and "
        "PREFIX.pca.log.",
    )
    add_genotype_options(p)
    p.add_argument("--pcs", type=int, default=10, metavar="K", help="components (default 10)")
    p.add_argument("--out", required=True, metavar="PREFIX", help="output prefix")
    p.add_argument("--block-snps", type=int, default=2000, help="SNPs read per block")
    p.add_argument(
        "--method",
        choices=["auto", "exact", "randomized"],
        default="auto",
        help="exact (GRM + eigendecomposition, plink2 --pca) or randomized (Dask's randomized "
        "SVD of the streamed genotypes, no n x n matrix; plink2 --pca approx); auto: exact up "
        "to 20,000 samples",
    )
    p.add_argument("--power-iter", type=int, default=10, help="randomized: power iterations")
    p.add_argument(
        "--oversamples",
        type=int,
        default=None,
        help="randomized: extra sketch columns (default max(2K, 20))",
    )
    p.add_argument("--seed", type=int, default=0, help="randomized: seed of the sketch")
    add_common(p)
    p.set_defaults(func=run)

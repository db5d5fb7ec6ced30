"""Options and defaults shared by the genetics commands."""

from __future__ import annotations

import argparse

__all__ = [
    "KINSHIPS",
    "add_kinship_options",
    "add_snp_filters",
    "kinship_arguments",
    "open_plink",
    "snp_filter_settings",
]


def snp_filter_settings(
    kinship: str, maf: float | None, max_missing: float | None
) -> tuple[bool, float, float]:
    """(apply filters, maf, max_missing): GEMMA's defaults (0.01, 0.05) for the centered
    kernel; no filter for standardized/vanraden (plink2's convention) unless asked."""
    from lmmkit.errors import DataError

    for name, v in (("--maf", maf), ("--max-missing", max_missing)):
        if v is not None and not (0.0 <= v <= (0.5 if name == "--maf" else 1.0)):
            raise DataError(f"{name} {v!r} is out of range.")
    if kinship == "centered":
        return True, 0.01 if maf is None else maf, 0.05 if max_missing is None else max_missing
    if maf is None and max_missing is None:
        return False, 0.0, 1.0
    return True, 0.0 if maf is None else maf, 1.0 if max_missing is None else max_missing


def add_snp_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--maf",
        type=float,
        default=None,
        help="minimum MAF (centered: 0.01 by default, as GEMMA; others: no filter)",
    )
    p.add_argument(
        "--max-missing",
        type=float,
        default=None,
        help="maximum missing rate (centered: 0.05 by default; others: no filter)",
    )
    p.add_argument("--block-snps", type=int, default=2000, metavar="N", help="SNPs per block")


KINSHIPS = ["centered", "standardized", "empirical", "vanraden"]


def add_kinship_options(
    p: argparse.ArgumentParser, *, grm_help: str, grm_repeatable: bool = False
) -> None:
    """``--kinship``/``--grm`` and the kinship conventions: ``--kinship-samples``,
    ``--no-recenter``; and ``--allow-duplicate-ids`` (the .fam)."""
    k = p if grm_repeatable else p.add_mutually_exclusive_group()
    k.add_argument(
        "--kinship",
        choices=KINSHIPS,
        default=None,
        help="kinship computed from the genotypes: centered = GEMMA -gk 1 (default), "
        "standardized = GCTA / plink2 (1/sqrt(2p(1-p))), empirical = BOLT-LMM (SD over the "
        "analysed samples), vanraden = VanRaden (2008) method 1",
    )
    if grm_repeatable:
        k.add_argument("--grm", action="append", metavar="PREFIX", help=grm_help)
    else:
        k.add_argument("--grm", metavar="PREFIX", help=grm_help)
    p.add_argument(
        "--kinship-samples",
        choices=["analyzed", "all", "gemma"],
        default="analyzed",
        help="samples the kinship's SNP filters use: analyzed (default; GEMMA -gk 1 -n N for "
        "this phenotype), all (every genotyped sample: one kinship for every phenotype) or "
        "gemma (GEMMA -gk 1 without -n: the samples with a .fam column-6 phenotype)",
    )
    p.add_argument(
        "--no-recenter",
        action="store_true",
        help="use the kinship as given (FaST-LMM, GCTA) instead of re-centring it on the "
        "analysed samples (GEMMA -lmm, the default); moves pve, the intercept and the ML fit",
    )
    p.add_argument(
        "--allow-duplicate-ids",
        action="store_true",
        help="keep .fam rows whose (FID, IID) repeats, renaming later ones IID~2, IID~3 "
        "(default: refuse the file, as PLINK)",
    )


def kinship_arguments(args: argparse.Namespace) -> tuple[str, str]:
    """(kinship, kinship samples) from ``--kinship``/``--grm``/``--kinship-samples``."""
    from lmmkit.errors import DataError

    grm = args.grm
    if grm and args.kinship_samples != "analyzed":
        raise DataError(
            "--kinship-samples applies to a kinship computed from the genotypes; a --grm is "
            "used as it was computed (lmmkit grm --kinship-samples ... makes one)."
        )
    if grm:
        return grm, "analyzed"
    return args.kinship or "centered", args.kinship_samples


def open_plink(args: argparse.Namespace):
    """The --bfile fileset (with --allow-duplicate-ids: duplicated .fam IDs renamed)."""
    from lmmkit.genetics.plink import read_plink

    return read_plink(
        args.bfile,
        duplicate_ids="rename" if getattr(args, "allow_duplicate_ids", False) else "error",
    )

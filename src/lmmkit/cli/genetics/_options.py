"""Options and defaults shared by the genetics commands."""

from __future__ import annotations

import argparse

__all__ = [
    "KINSHIPS",
    "add_genotype_options",
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


class _Genotypes(argparse.Action):
    """Store any genotype input in ``args.bfile`` (the commands test it for "genotypes
    given") and its format in ``args.genotype_format``."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.bfile = values
        namespace.genotype_format = self.const


def add_genotype_options(p, *, required: bool = True) -> None:
    """The genotype input, one of ``--bfile``/``--bgen``/``--pfile``/``--vcf``, and the
    options of the biobank formats (``--sample``, ``--bgen-count-allele``, ``--vcf-field``,
    ``--id-delim``); ``p`` is a parser or an argument group."""
    g = p.add_mutually_exclusive_group(required=required)
    for flag, kind, metavar, text in (
        ("--bfile", "bfile", "PREFIX", "PLINK 1 .bed/.bim/.fam"),
        ("--bgen", "bgen", "FILE", "BGEN 1.2/1.3 (with --sample FILE, or FILE's .sample)"),
        ("--pfile", "pfile", "PREFIX", "PLINK 2 .pgen/.pvar/.psam (biallelic)"),
        ("--vcf", "vcf", "FILE", "VCF or BCF (.vcf, .vcf.gz, .bcf): DS dosages, else GT"),
    ):
        g.add_argument(
            flag, dest="bfile", action=_Genotypes, const=kind, metavar=metavar, help=text
        )
    p.set_defaults(genotype_format="bfile")
    p.add_argument("--sample", metavar="FILE", help="--bgen: its Oxford .sample file")
    p.add_argument(
        "--bgen-count-allele",
        choices=["first", "second"],
        default="first",
        help="--bgen: the allele counted (first: plink2's default export, BOLT-LMM; "
        "second: files written REF first, e.g. UK Biobank imputation)",
    )
    p.add_argument(
        "--vcf-field",
        choices=["auto", "DS", "GT"],
        default="auto",
        help="--vcf: DS (dosages) or GT (hard calls); auto = DS when declared",
    )
    p.add_argument(
        "--id-delim",
        metavar="CHAR",
        default=None,
        help="--vcf, and --bgen without .sample: split sample IDs into FID and IID at CHAR "
        "(default: FID = IID = the ID)",
    )


def open_plink(args: argparse.Namespace):
    """The genotypes of ``--bfile``/``--bgen``/``--pfile``/``--vcf`` (with
    --allow-duplicate-ids: duplicated .fam IDs renamed)."""
    from lmmkit.errors import DataError

    kind = getattr(args, "genotype_format", "bfile")
    if getattr(args, "sample", None) and kind != "bgen":
        raise DataError("--sample goes with --bgen (the BGEN's Oxford .sample file).")
    if kind == "bgen":
        from lmmkit.genetics.formats.bgen import read_bgen

        return read_bgen(
            args.bfile,
            sample=args.sample,
            count_allele=args.bgen_count_allele,
            id_delim=args.id_delim,
        )
    if kind == "pfile":
        from lmmkit.genetics.formats.pgen import read_pgen

        return read_pgen(args.bfile)
    if kind == "vcf":
        from lmmkit.genetics.formats.vcf import read_vcf

        return read_vcf(args.bfile, field=args.vcf_field, id_delim=args.id_delim)
    from lmmkit.genetics.plink import read_plink

    return read_plink(
        args.bfile,
        duplicate_ids="rename" if getattr(args, "allow_duplicate_ids", False) else "error",
    )

"""Options and defaults shared by the genetics commands."""

from __future__ import annotations

import argparse

__all__ = ["add_snp_filters", "snp_filter_settings"]


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

"""The prepare stage of both GWAS paths: match the phenotype and covariates to the
genotyped samples (who is dropped and why), build the model inputs (y, covariates), and
cut the SNPs into blocks (never spanning chromosomes when the model is per chromosome)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError
from lmmkit.genetics.samples import (
    covariate_table,
    design_matrix,
    match_samples,
    phenotype_table,
    renamed_note,
)
from lmmkit.genetics.source import sample_table_path

__all__ = ["Blocks", "Matched", "Samples", "match", "model_inputs", "plan_blocks"]


@dataclass(frozen=True)
class Matched:
    """The samples that have a phenotype and every covariate (.fam rows, in order)."""

    keep: np.ndarray = field(repr=False)
    dropped: dict[str, int]  # reason -> number of samples
    pheno: pd.DataFrame = field(repr=False)  # one column, indexed by (fid, iid)
    pheno_name: str
    covariates: pd.DataFrame | None = field(repr=False)

    def restrict(self, have: np.ndarray, reason: str) -> Matched:
        """Keep only ``keep[have]``; the others are counted as dropped for ``reason``."""
        if len(have) == len(self.keep):
            return self
        dropped = {**self.dropped, reason: len(self.keep) - len(have)}
        return replace(self, keep=self.keep[have], dropped=dropped)


@dataclass(frozen=True)
class Samples:
    """The model inputs over the analyzed samples."""

    keep: np.ndarray = field(repr=False)  # .fam rows
    dropped: dict[str, int]
    y: np.ndarray = field(repr=False)
    w: np.ndarray = field(repr=False)  # intercept + covariates
    covariate_names: list[str]


@dataclass(frozen=True)
class Blocks:
    """The SNPs to test (.bim rows) in blocks: ``(group, rows)`` with group the chromosome
    (per-chromosome models) or ``"all"``."""

    snps: np.ndarray = field(repr=False)
    blocks: list[tuple[str, np.ndarray]] = field(repr=False)


def match(
    source: Any, pheno: Any, covariates: Any, *, binary: bool, say: Callable[[str], None]
) -> Matched:
    """Phenotype (binary: coded 0/1 by :func:`lmmkit.genetics.spa.binary_phenotype`) and
    covariates matched to the genotyped samples; at least three must remain."""
    if renamed_note(source.fam):
        say(renamed_note(source.fam))
    ptab, pname = phenotype_table(source, pheno, binary=binary)
    n_zero = 0
    if binary:
        from lmmkit.genetics.spa import binary_phenotype

        coded, coding, n_zero = binary_phenotype(ptab[pname], pname)
        ptab = coded.to_frame(pname)
        say(f"binary phenotype {pname!r}: coding {coding}")
    ctab = covariate_table(source, covariates)
    keep, report = match_samples(source.fam, ptab, ctab, fam_path=sample_table_path(source))
    dropped = report.counts()
    if binary and n_zero and "missing phenotype value" in dropped:
        dropped["missing phenotype value (incl. 0 in 1/2 coding)"] = dropped.pop(
            "missing phenotype value"
        )
    if len(keep) < 3:
        raise DataError(f"only {len(keep)} samples have a phenotype and all covariates.")
    return Matched(keep=keep, dropped=dropped, pheno=ptab, pheno_name=pname, covariates=ctab)


def model_inputs(source: Any, matched: Matched, say: Callable[[str], None]) -> Samples:
    """y and the covariate matrix (intercept first) over the matched samples; says who is
    analyzed and which covariates."""
    keep, dropped = matched.keep, matched.dropped
    say(
        f"samples: {len(keep)} analyzed"
        + "".join(f"; {v} dropped ({k})" for k, v in dropped.items())
    )
    keys = pd.MultiIndex.from_frame(source.fam[["fid", "iid"]].astype(str)).take(keep)
    y = matched.pheno[matched.pheno_name].reindex(keys).to_numpy(dtype=float)
    w, wnames = design_matrix(matched.covariates, keys)
    say(f"covariates: {', '.join(wnames)}")
    return Samples(keep=keep, dropped=dropped, y=y, w=w, covariate_names=wnames)


def plan_blocks(
    source: Any,
    snps: np.ndarray | None,
    block_snps: int,
    *,
    by_chromosome: bool,
    groups: Any = None,
) -> Blocks:
    """Blocks of at most ``block_snps`` of the SNPs to test (default: all), in .bim order.

    ``by_chromosome``: one run of blocks per chromosome, each needing a model in
    ``groups`` (when given)."""
    idx = np.arange(source.n_snps) if snps is None else np.asarray(snps)
    if idx.dtype == bool:
        idx = np.flatnonzero(idx)
    blocks: list[tuple[str, np.ndarray]] = []
    if by_chromosome:
        chrom = source.bim["chrom"].astype(str).to_numpy()
        for c in pd.unique(chrom[idx]):
            sel = idx[chrom[idx] == c]
            if groups is not None and c not in groups:
                raise DataError(f"chromosome {c!r}: no LOCO kinship (no SNPs passed filters).")
            blocks += [(c, sel[i : i + block_snps]) for i in range(0, len(sel), block_snps)]
    else:
        blocks = [("all", idx[i : i + block_snps]) for i in range(0, len(idx), block_snps)]
    return Blocks(snps=idx, blocks=blocks)

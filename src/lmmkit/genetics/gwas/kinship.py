"""The kinship stage of the exact path: the kinship matrices over the analyzed samples,
one for all SNPs or, with LOCO, one per chromosome (leaving it out).

Computed from the genotypes (:mod:`lmmkit.genetics.grm`: GEMMA's centered ``-gk 1``
matrix with the SNP filters on the analyzed samples, or plink2's standardized one), read
from a GCTA GRM, or given as an array.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError

__all__ = ["COMPUTED", "KinshipGroups", "kinship_groups"]

#: kinship names computed from the genotypes
COMPUTED = ("centered", "standardized", "vanraden")


@dataclass(frozen=True)
class KinshipGroups:
    """Kinship matrices by group (``"all"`` or a chromosome), over the analyzed samples."""

    matrices: dict[str, np.ndarray] = field(repr=False)
    have: np.ndarray = field(repr=False)  # positions in ``keep`` with a kinship row
    description: str  # for the log and the resume fingerprint
    log: tuple[str, ...]


def kinship_groups(
    pl: Any,
    kinship: Any,
    loco: bool,
    keep: np.ndarray,
    maf: float,
    max_missing: float,
    block_snps: int,
    progress: bool,
) -> KinshipGroups:
    """{"all": K} or {chrom: K_loco} over the analyzed samples ``keep`` (.fam rows) of the
    genotype source ``pl``.

    Samples absent from a given GRM have no row: ``have`` lists those that do."""
    from lmmkit.genetics.grm import GRM, compute_grm, loco_grms, read_grm

    if isinstance(kinship, str) and kinship in COMPUTED:
        kw = dict(filter_samples=keep, maf=maf, max_missing=max_missing, block_size=block_snps)
        if loco:
            grms = loco_grms(pl, kinship, progress=progress, **kw)
            mats = {c: g.matrix[np.ix_(keep, keep)] for c, g in grms.items()}
            n_used = {c: g.n_snps for c, g in grms.items()}
            msg = (
                f"kinship: {kinship}, leave-one-chromosome-out ({len(mats)} chromosomes, "
                f"{min(n_used.values())}-{max(n_used.values())} SNPs each)"
            )
        else:
            g = compute_grm(pl, kinship, progress=progress, **kw)
            mats = {"all": g.matrix[np.ix_(keep, keep)]}
            msg = f"kinship: {kinship} GRM from {g.n_snps} SNPs"
        return KinshipGroups(mats, np.arange(len(keep)), kinship, (msg,))
    if loco:
        raise DataError(
            "loco=True needs the kinship computed from the genotypes "
            "(kinship='centered' or 'standardized'), not a given matrix."
        )
    if isinstance(kinship, (str, Path)):
        grm, _ = read_grm(kinship)
        desc = f"GRM {kinship}"
    else:
        grm = kinship
        desc = "user-supplied matrix"
    if isinstance(grm, GRM):
        ids = grm.sample_ids[["fid", "iid"]].astype(str)
        pos = pd.MultiIndex.from_frame(ids)
        fam_keys = pd.MultiIndex.from_frame(pl.fam[["fid", "iid"]].astype(str)).take(keep)
        loc = pos.get_indexer(fam_keys)
        have = np.flatnonzero(loc >= 0)
        msg = f"kinship: {desc} ({grm.n} samples, {grm.n_snps} SNPs)"
        return KinshipGroups({"all": grm.matrix[np.ix_(loc[have], loc[have])]}, have, desc, (msg,))
    k = np.asarray(grm, dtype=float)
    if k.shape == (pl.n_samples, pl.n_samples):
        return KinshipGroups({"all": k[np.ix_(keep, keep)]}, np.arange(len(keep)), desc, ())
    if k.shape == (len(keep), len(keep)):
        return KinshipGroups({"all": k}, np.arange(len(keep)), desc, ())
    raise DataError(
        f"kinship is {k.shape[0]}x{k.shape[1]}; expected {pl.n_samples}x{pl.n_samples} (.fam) "
        f"or {len(keep)}x{len(keep)} (analyzed samples)."
    )

"""The kinship stage of the exact path: the kinship matrices over the analyzed samples,
one for all SNPs or, with LOCO, one per chromosome (leaving it out).

Computed from the genotypes (:mod:`lmmkit.genetics.grm`: GEMMA's centered ``-gk 1``
matrix, GCTA/plink2's standardized one, BOLT-LMM's empirical one), read from a GCTA GRM
or a GEMMA ``.cXX.txt``/``.sXX.txt`` file, or given as an array.  Which samples the
computed kinship's SNP filters (and, for ``"empirical"``, the standardization) use is the
*kinship sample convention* (:func:`~lmmkit.genetics.grm.kinship_samples`); whether the null model re-centres
the kinship on the analyzed samples is the other convention (GEMMA does, FaST-LMM and
GCTA do not).  Both are said in the log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmmkit.errors import DataError
from lmmkit.genetics.grm import KINSHIP_SAMPLES, kinship_samples

__all__ = [
    "COMPUTED",
    "KINSHIP_SAMPLES",
    "KinshipGroups",
    "kinship_groups",
    "kinship_samples",
]

#: kinship names computed from the genotypes
COMPUTED = ("centered", "standardized", "empirical", "vanraden")


@dataclass(frozen=True)
class KinshipGroups:
    """Kinship matrices by group (``"all"`` or a chromosome), over the analyzed samples."""

    matrices: dict[str, np.ndarray] = field(repr=False)
    have: np.ndarray = field(repr=False)  # positions in ``keep`` with a kinship row
    description: str  # for the log and the resume fingerprint
    log: tuple[str, ...]


def _computed(
    pl: Any,
    kinship: str,
    loco: bool,
    keep: np.ndarray,
    convention: Any,
    maf: float,
    max_missing: float,
    block_snps: int,
    progress: bool,
) -> KinshipGroups:
    from lmmkit.genetics.grm import compute_grm, loco_grms

    rows, how = kinship_samples(pl, convention, keep)
    kw: dict[str, Any] = dict(
        filter_samples=rows, maf=maf, max_missing=max_missing, block_size=block_snps
    )
    if kinship == "empirical":
        # BOLT-LMM: mean and SD over the kinship's samples, the matrix over them; with the
        # analysed samples (the default) exactly BOLT's, and no .fam-wide statistics
        kw["samples"] = rows
        how += "; mean and SD of each SNP over the same samples (BOLT-LMM)"
        pos = pd.Index(rows).get_indexer(keep)
        if np.any(pos < 0):
            raise DataError(
                "kinship='empirical' standardizes over the kinship's samples, which must "
                "include every analysed sample."
            )
    else:
        pos = np.asarray(keep)
        how += (
            "; centred over all .fam samples (GEMMA -gk)"
            if kinship in ("centered", "vanraden")
            else "; allele frequencies over all .fam samples (plink2 --make-grm-bin)"
        )
    if loco:
        grms = loco_grms(pl, kinship, progress=progress, **kw)
        mats = {c: g.matrix[np.ix_(pos, pos)] for c, g in grms.items()}
        n_used = {c: g.n_snps for c, g in grms.items()}
        msg = (
            f"kinship: {kinship}, leave-one-chromosome-out ({len(mats)} chromosomes, "
            f"{min(n_used.values())}-{max(n_used.values())} SNPs each); {how}"
        )
    else:
        g = compute_grm(pl, kinship, progress=progress, **kw)
        mats = {"all": g.matrix[np.ix_(pos, pos)]}
        msg = f"kinship: {kinship} GRM from {g.n_snps} SNPs; {how}"
    desc = (
        kinship
        if isinstance(convention, str) and convention == "analyzed"
        else (
            f"{kinship}, kinship samples {convention if isinstance(convention, str) else 'given'}"
        )
    )
    return KinshipGroups(mats, np.arange(len(keep)), desc, (msg,))


def _given(pl: Any, kinship: Any, keep: np.ndarray) -> KinshipGroups:
    from lmmkit.genetics.grm import GRM, read_gemma_kinship, read_grm

    if isinstance(kinship, (str, Path)):
        path = Path(kinship)
        if path.suffix == ".txt":
            grm = read_gemma_kinship(path, pl.sample_ids)
            desc = f"GEMMA kinship {kinship}"
        else:
            prefix = str(kinship).removesuffix(".grm.bin").removesuffix(".grm")
            if not Path(f"{prefix}.grm.id").exists() and not Path(f"{prefix}.grm.bin").exists():
                raise DataError(
                    f"kinship={str(kinship)!r} is neither a kinship computed from the genotypes "
                    f"({', '.join(map(repr, COMPUTED))}) nor a GCTA GRM ({prefix}.grm.id / "
                    f"{prefix}.grm.bin not found) nor a GEMMA .cXX.txt / .sXX.txt file."
                )
            grm, _ = read_grm(prefix)
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
        snps = f", {grm.n_snps} SNPs" if grm.n_snps else ""
        msg = f"kinship: {desc} ({grm.n} samples{snps}), used as given"
        return KinshipGroups({"all": grm.matrix[np.ix_(loc[have], loc[have])]}, have, desc, (msg,))
    try:
        k = np.asarray(grm, dtype=float)
    except (TypeError, ValueError):
        raise DataError(
            f"kinship of type {type(grm).__name__} is not a matrix; see gwas(kinship=...)."
        ) from None
    if k.ndim != 2:
        raise DataError(f"kinship must be an n x n matrix, got an array of shape {k.shape}.")
    msg = f"kinship: {desc} ({k.shape[0]} x {k.shape[1]}), used as given"
    if k.shape == (pl.n_samples, pl.n_samples):
        return KinshipGroups({"all": k[np.ix_(keep, keep)]}, np.arange(len(keep)), desc, (msg,))
    if k.shape == (len(keep), len(keep)):
        return KinshipGroups({"all": k}, np.arange(len(keep)), desc, (msg,))
    raise DataError(
        f"kinship is {k.shape[0]}x{k.shape[1]}; expected {pl.n_samples}x{pl.n_samples} (.fam) "
        f"or {len(keep)}x{len(keep)} (analyzed samples)."
    )


def kinship_groups(
    pl: Any,
    kinship: Any,
    loco: bool,
    keep: np.ndarray,
    maf: float,
    max_missing: float,
    block_snps: int,
    progress: bool,
    convention: Any = "analyzed",
) -> KinshipGroups:
    """{"all": K} or {chrom: K_loco} over the analyzed samples ``keep`` (.fam rows) of the
    genotype source ``pl``; ``convention``: the kinship samples (:func:`kinship_samples`)
    of a kinship computed from the genotypes.

    Samples absent from a given GRM have no row: ``have`` lists those that do."""
    if kinship is None or (isinstance(kinship, str) and kinship.lower() == "none"):
        raise DataError(
            f"kinship={kinship!r}: gwas fits a linear mixed model and needs a kinship -- "
            f"{', '.join(map(repr, COMPUTED))} (computed from the genotypes; default "
            "'centered'), a GRM, a GCTA GRM prefix, a GEMMA .cXX.txt file or an n x n array. "
            "For association without a kinship (ordinary least squares) use plink2 --glm."
        )
    if isinstance(kinship, str) and kinship in COMPUTED:
        return _computed(
            pl, kinship, loco, keep, convention, maf, max_missing, block_snps, progress
        )
    if loco:
        raise DataError(
            "loco=True needs the kinship computed from the genotypes "
            f"(kinship={' or '.join(map(repr, COMPUTED))}), not a given matrix."
        )
    if not (isinstance(convention, str) and convention == "analyzed"):
        raise DataError(
            "kinship_samples applies to a kinship computed from the genotypes; a given "
            "kinship is used as it was computed."
        )
    return _given(pl, kinship, keep)

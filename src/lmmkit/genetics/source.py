"""Genotype sources: what the genetics pipeline reads genotypes from.

A source is any object with the attributes of :class:`GenotypeSource`; PLINK 1 binary
filesets (:class:`~lmmkit.genetics.plink.PlinkData`) are the one implementation today.
A new format (BGEN, PGEN) plugs in here: a reader module returning an object with these
attributes, and a branch in :func:`open_genotypes` that recognizes its files.  Nothing
downstream (sample matching, kinship, null models, association, outputs) names a format.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

__all__ = ["GenotypeSource", "open_genotypes"]


@runtime_checkable
class GenotypeSource(Protocol):
    """Samples x variants of allele counts (0, 1, 2; missing calls NaN), read in blocks.

    ``fam`` has one row per sample with at least ``fid``, ``iid`` (and ``pheno1``...
    for phenotypes stored with the samples); ``bim`` one row per variant with ``chrom``,
    ``snp``, ``pos``, ``a1`` (the counted allele) and ``a2``.
    """

    prefix: Path
    fam: pd.DataFrame
    bim: pd.DataFrame

    @property
    def n_samples(self) -> int: ...

    @property
    def n_snps(self) -> int: ...

    @property
    def sample_ids(self) -> pd.DataFrame: ...

    @property
    def files(self) -> dict[str, Path]:
        """The files read, by role: their size and time stamp fingerprint a resumable run."""
        ...

    def phenotype(self, pheno_fam: int = 1) -> np.ndarray: ...

    def read(
        self,
        snps: slice | Sequence[int] | np.ndarray | None = None,
        samples: slice | Sequence[int] | np.ndarray | None = None,
        dtype: str | type = "float64",
    ) -> np.ndarray:
        """Allele counts (samples x variants, Fortran order), NaN for missing calls."""
        ...

    def iter_codes(self, block_size: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, codes)`` for consecutive blocks of variants: int8 allele counts of every
        sample (samples x variants, Fortran order), negative = missing."""
        ...


def open_genotypes(source: Any) -> GenotypeSource:
    """A genotype source as it is, or one opened from a path (a PLINK prefix or file).

    Parameters
    ----------
    source
        A :class:`GenotypeSource` (returned unchanged), or a path: a PLINK prefix or any
        of its ``.bed``/``.bim``/``.fam`` files.

    Returns
    -------
    GenotypeSource

    Raises
    ------
    FileFormatError
        The files are missing or malformed.

    Examples
    --------
    >>> from lmmkit.genetics.source import open_genotypes
    >>> geno = open_genotypes("mouse_hs1940")  # doctest: +SKIP
    >>> geno.read(snps=slice(0, 10)).shape  # doctest: +SKIP
    (1940, 10)
    """
    if isinstance(source, GenotypeSource):
        return source
    from lmmkit.genetics.plink import read_plink

    return read_plink(source)

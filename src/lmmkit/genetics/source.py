"""Genotype sources: what the genetics pipeline reads genotypes from.

A source is any object with the attributes of :class:`GenotypeSource`: PLINK 1 binary
filesets (:class:`~lmmkit.genetics.plink.PlinkData`), and in :mod:`lmmkit.genetics.formats`
BGEN 1.2/1.3, PLINK 2 (PGEN) and VCF/BCF files.  A new format plugs in here: a reader module
returning an object with these attributes, and a branch in :func:`open_genotypes` that
recognizes its files.  Nothing downstream (sample matching, kinship, null models,
association, outputs) names a format.

``read()`` returns allele counts as float, keeping the fractions of dosage files (BGEN
probabilities, VCF ``DS``); ``iter_codes()`` returns int8 hard calls (a dosage within 0.1 of
0, 1 or 2, plink2's ``--hard-call-threshold``, else missing).  Which uses what: GRMs, SNP
filters and association tests read dosages (GEMMA's mean-genotype convention); the
matrix-free GWAS kinship holds hard calls (BOLT-LMM's and REGENIE's model SNPs).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

__all__ = ["GenotypeSource", "open_genotypes", "sample_table_path"]


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
        """Allele counts (samples x variants, Fortran order), NaN for missing calls; dosage
        files (BGEN probabilities, VCF ``DS``) give their non-integer expected counts."""
        ...

    def iter_codes(self, block_size: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, codes)`` for consecutive blocks of variants: int8 allele counts of every
        sample (samples x variants, Fortran order), negative = missing; dosages become hard
        calls within 0.1 of 0, 1, 2 (plink2's ``--hard-call-threshold``), else missing."""
        ...


def _kind(path: Path) -> str:
    """The format a path names: by extension, else by the files beside a prefix."""
    name = path.name.lower()
    if name.endswith(".bgen"):
        return "bgen"
    if name.endswith((".vcf", ".vcf.gz", ".vcf.bgz", ".bcf")):
        return "vcf"
    if path.suffix in (".pgen", ".pvar", ".psam"):
        return "pgen"
    if path.suffix in (".bed", ".bim", ".fam"):
        return "plink"
    if not Path(f"{path}.bed").exists() and Path(f"{path}.pgen").exists():
        return "pgen"
    return "plink"


def open_genotypes(source: Any, **options: Any) -> GenotypeSource:
    """A genotype source as it is, or one opened from a path (recognized by its name).

    Parameters
    ----------
    source
        A :class:`GenotypeSource` (returned unchanged), or a path: a ``.bgen`` file, a
        ``.vcf``/``.vcf.gz``/``.bcf`` file, a ``.pgen``/``.pvar``/``.psam`` file, a PLINK 1
        ``.bed``/``.bim``/``.fam`` file, or a prefix (PLINK 1 when ``prefix.bed`` exists,
        else PLINK 2 when ``prefix.pgen`` does).
    **options
        Passed to the reader: :func:`~lmmkit.genetics.formats.read_bgen` (``sample``,
        ``count_allele``, ``id_delim``), :func:`~lmmkit.genetics.formats.read_vcf`
        (``field``, ``id_delim``), :func:`~lmmkit.genetics.plink.read_plink`
        (``duplicate_ids``).

    Returns
    -------
    GenotypeSource

    Raises
    ------
    FileFormatError
        The files are missing or malformed.
    GenotypeReaderError
        The reader of a BGEN, PGEN or VCF file is not installed (the ``biobank`` extra).

    Examples
    --------
    >>> from lmmkit.genetics.source import open_genotypes
    >>> geno = open_genotypes("mouse_hs1940")  # doctest: +SKIP
    >>> geno.read(snps=slice(0, 10)).shape  # doctest: +SKIP
    (1940, 10)
    """
    if isinstance(source, GenotypeSource):
        return source
    kind = _kind(Path(source))
    if kind == "bgen":
        from lmmkit.genetics.formats.bgen import read_bgen

        return read_bgen(source, **options)
    if kind == "vcf":
        from lmmkit.genetics.formats.vcf import read_vcf

        return read_vcf(source, **options)
    if kind == "pgen":
        from lmmkit.genetics.formats.pgen import read_pgen

        return read_pgen(source, **options)
    from lmmkit.genetics.plink import read_plink

    return read_plink(source, **options)


def sample_table_path(source: Any) -> str:
    """The file that lists a source's samples, for messages: the .fam, .psam or .sample,
    else the genotype file itself (a VCF, a BGEN storing its IDs).

    Examples
    --------
    >>> from pathlib import Path
    >>> class Src:
    ...     prefix = Path("x.bgen")
    ...     files = {"bgen": Path("x.bgen"), "sample": Path("x.sample")}
    >>> sample_table_path(Src())
    'x.sample'
    """
    files = getattr(source, "files", {})
    for role in ("fam", "psam", "sample"):
        if role in files:
            return str(files[role])
    return str(source.prefix)

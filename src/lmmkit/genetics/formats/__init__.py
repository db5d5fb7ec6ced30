"""Biobank genotype formats: BGEN 1.2/1.3, PGEN/PVAR/PSAM and VCF/BCF.

Each reader returns a :class:`~lmmkit.genetics.source.GenotypeSource`, so every genetics
command and function takes them as it takes a PLINK 1 fileset
(:func:`lmmkit.genetics.source.open_genotypes` recognizes the files).  The readers are
maintained packages of the ``biobank`` extra (``cbgen``, ``pgenlib``, ``cyvcf2``), imported on
first use; a missing one raises :class:`GenotypeReaderError` naming the extra.

Conventions (what ``a1``, the counted allele, is; dosages vs hard calls) are in
:mod:`lmmkit.genetics.formats._common` and each reader's module.
"""

from lmmkit.genetics.formats._common import GenotypeReaderError, hard_calls
from lmmkit.genetics.formats.bgen import BgenData, read_bgen, read_oxford_sample
from lmmkit.genetics.formats.pgen import PgenData, read_pgen, read_psam, read_pvar
from lmmkit.genetics.formats.vcf import VcfData, read_vcf

__all__ = [
    "BgenData",
    "GenotypeReaderError",
    "PgenData",
    "VcfData",
    "hard_calls",
    "read_bgen",
    "read_oxford_sample",
    "read_pgen",
    "read_psam",
    "read_pvar",
    "read_vcf",
]
